//! Reductions of per-tuple losses to one scalar, as pytorch-metric-learning's reducers.
//!
//! ```
//! use dmlbench_sdk::reduce::mean_of_nonzero;
//! let r = mean_of_nonzero(&[0.0, 2.0, 4.0]);
//! assert_eq!((r.value, r.count, r.weight), (3.0, 2, 0.5));
//! assert_eq!(mean_of_nonzero(&[0.0]).value, 0.0);
//! ```

/// The mean of the strictly positive terms (PML's `AvgNonZeroReducer`), and the weight each
/// positive term carries in it (1/count, or 0 when there is none).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NonZeroMean {
    /// The mean of the positive terms; 0 when there is none.
    pub value: f64,
    /// How many terms are positive.
    pub count: usize,
    /// dvalue/dterm for a positive term.
    pub weight: f64,
}

/// The mean of the strictly positive entries of `terms`.
pub fn mean_of_nonzero(terms: &[f64]) -> NonZeroMean {
    let (sum, count) = terms.iter().filter(|&&t| t > 0.0).fold((0.0, 0usize), |(s, c), &t| (s + t, c + 1));
    if count == 0 {
        NonZeroMean { value: 0.0, count: 0, weight: 0.0 }
    } else {
        NonZeroMean { value: sum / count as f64, count, weight: 1.0 / count as f64 }
    }
}
