//! Reductions of per-tuple losses to one scalar, as pytorch-metric-learning's reducers.
//! [`mean_of_nonzero_pairs`] also carries the gradient back to the pair values.
//!
//! ```
//! use dmlbench_sdk::reduce::mean_of_nonzero;
//! let r = mean_of_nonzero(&[0.0, 2.0, 4.0]);
//! assert_eq!((r.value, r.count, r.weight), (3.0, 2, 0.5));
//! assert_eq!(mean_of_nonzero(&[0.0]).value, 0.0);
//! ```

use crate::matrix::{MatRef, Matrix};

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

/// Per-pair losses over `pairs` (row, column indices into the pair-value matrix `values`),
/// reduced with [`mean_of_nonzero`], with the gradient of that mean with respect to each pair
/// value added into `dvalues`. `loss(v)` gives a pair's term and its derivative dterm/dv; a
/// pair listed twice counts twice.
pub fn mean_of_nonzero_pairs(
    values: MatRef<'_>,
    pairs: impl Iterator<Item = (u32, u32)> + Clone,
    loss: impl Fn(f64) -> (f64, f64),
    dvalues: &mut Matrix,
) -> NonZeroMean {
    let terms: Vec<(f64, f64)> =
        pairs.clone().map(|(i, j)| loss(f64::from(values.get(i as usize, j as usize)))).collect();
    let mean = mean_of_nonzero(&terms.iter().map(|t| t.0).collect::<Vec<_>>());
    for ((i, j), (term, slope)) in pairs.zip(terms) {
        if term > 0.0 {
            let (i, j) = (i as usize, j as usize);
            dvalues.set(i, j, dvalues.get(i, j) + (mean.weight * slope) as f32);
        }
    }
    mean
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_terms_average_over_the_active_ones_and_scatter_their_slopes() {
        let values = Matrix::from_vec(2, 2, vec![0.0, 3.0, 1.0, 0.5]);
        // Hinge [v − 0.75]₊ with slope 1 on (0,1): 2.25, (1,0): 0.25, (1,1): 0, and (0,1) again.
        let hinge = |v: f64| if v > 0.75 { (v - 0.75, 1.0) } else { (0.0, 0.0) };
        let mut dvalues = Matrix::zeros(2, 2);
        let pairs = [(0u32, 1u32), (1, 0), (1, 1), (0, 1)];
        let mean = mean_of_nonzero_pairs(values.view(), pairs.iter().copied(), hinge, &mut dvalues);
        assert_eq!((mean.count, mean.value), (3, (2.25 + 0.25 + 2.25) / 3.0));
        assert_eq!(dvalues.data, vec![0.0, 2.0 / 3.0, 1.0 / 3.0, 0.0]);
    }
}
