//! Numerically stable log-sum-exp and softmax.
//!
//! log Σ_k exp(x_k) = m + log Σ_k exp(x_k − m) with m = max_k x_k, accumulated in `f64`.
//! Its gradient is the softmax, exp(x_k − lse). An empty input, or one of only −∞, has
//! log-sum-exp −∞ and a zero softmax, so masked-out terms can be written as −∞.
//!
//! ```
//! use dmlbench_sdk::softmax::{log_sum_exp, softmax};
//! let x = [0.0, (3.0f32).ln()];
//! assert!((log_sum_exp(&x) - 4.0f64.ln()).abs() < 1e-7);
//! assert_eq!(softmax(&x), vec![0.25, 0.75]);
//! ```

/// log Σ exp(x), stable for large |x|.
pub fn log_sum_exp(x: &[f32]) -> f64 {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return f64::NEG_INFINITY;
    }
    let max = f64::from(max);
    let sum: f64 = x.iter().map(|&v| (f64::from(v) - max).exp()).sum();
    max + sum.ln()
}

/// exp(x − log Σ exp(x)): the gradient of [`log_sum_exp`]. All zeros where that is −∞.
pub fn softmax(x: &[f32]) -> Vec<f32> {
    let lse = log_sum_exp(x);
    if lse == f64::NEG_INFINITY {
        return vec![0.0; x.len()];
    }
    x.iter().map(|&v| (f64::from(v) - lse).exp() as f32).collect()
}

/// log softmax: x − log Σ exp(x).
pub fn log_softmax(x: &[f32]) -> Vec<f32> {
    let lse = log_sum_exp(x);
    x.iter().map(|&v| (f64::from(v) - lse) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_for_large_values_and_masks() {
        let x = [1000.0, 1000.0];
        assert!((log_sum_exp(&x) - (1000.0 + 2f64.ln())).abs() < 1e-9);
        assert_eq!(softmax(&x), vec![0.5, 0.5]);
        let masked = [f32::NEG_INFINITY, 2.0];
        assert_eq!(softmax(&masked), vec![0.0, 1.0]);
        assert_eq!(log_sum_exp(&[]), f64::NEG_INFINITY);
        assert_eq!(softmax(&[f32::NEG_INFINITY]), vec![0.0]);
        let ls = log_softmax(&[0.0, 0.0]);
        assert!((ls[0] + 2f32.ln()).abs() < 1e-7);
    }
}
