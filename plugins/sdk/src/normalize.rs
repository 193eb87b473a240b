//! L2 normalisation of rows and its exact backward pass.
//!
//! u = x / max(‖x‖, ε) with ε = 1e-12, as PyTorch's `F.normalize` (which PML uses). For
//! ‖x‖ > ε the Jacobian-vector product is dL/dx = (g − u (u·g)) / ‖x‖; below ε the map is
//! linear, x / ε, and so is its gradient.
//!
//! ```
//! use dmlbench_sdk::matrix::MatRef;
//! use dmlbench_sdk::normalize::l2_normalize;
//! let n = l2_normalize(MatRef::new(1, 2, &[3.0, 4.0]));
//! assert_eq!(n.unit.data, vec![0.6, 0.8]);
//! assert_eq!(n.norms, vec![5.0]);
//! ```

use crate::matrix::{MatRef, Matrix};

/// The ε below which a row is divided by ε instead of its norm.
pub const NORM_EPS: f32 = 1e-12;

/// Rows scaled to unit length, with the original norms kept for the backward pass.
#[derive(Clone, Debug, PartialEq)]
pub struct Normalized {
    /// The unit rows.
    pub unit: Matrix,
    /// The norm of each input row (before clamping).
    pub norms: Vec<f32>,
}

/// Euclidean norm of a row, accumulated in `f64`.
pub fn norm(row: &[f32]) -> f32 {
    row.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>().sqrt() as f32
}

/// Scales every row of `x` to unit L2 norm.
pub fn l2_normalize(x: MatRef<'_>) -> Normalized {
    let mut unit = x.to_matrix();
    let mut norms = Vec::with_capacity(x.rows);
    for i in 0..x.rows {
        let row_norm = norm(x.row(i));
        let scale = 1.0 / row_norm.max(NORM_EPS);
        for v in unit.row_mut(i) {
            *v *= scale;
        }
        norms.push(row_norm);
    }
    Normalized { unit, norms }
}

/// dL/dx from dL/du (`grad_unit`, same shape as the input).
pub fn l2_normalize_backward(normalized: &Normalized, grad_unit: MatRef<'_>) -> Matrix {
    let unit = &normalized.unit;
    assert_eq!((grad_unit.rows, grad_unit.cols), (unit.rows, unit.cols), "l2_normalize_backward: shape mismatch");
    let mut dx = Matrix::zeros(unit.rows, unit.cols);
    for i in 0..unit.rows {
        let (u, g, out) = (unit.row(i), grad_unit.row(i), dx.row_mut(i));
        let row_norm = normalized.norms[i];
        if row_norm > NORM_EPS {
            let ug: f32 = u.iter().zip(g).map(|(a, b)| a * b).sum();
            for ((o, &gv), &uv) in out.iter_mut().zip(g).zip(u) {
                *o = (gv - uv * ug) / row_norm;
            }
        } else {
            for (o, &gv) in out.iter_mut().zip(g) {
                *o = gv / NORM_EPS;
            }
        }
    }
    dx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{GradCheck, check_gradient, naive, random_embeddings};

    #[test]
    fn forward_matches_naive_and_backward_matches_finite_differences() {
        let (n, d) = (4, 5);
        let x = random_embeddings(11, n, d);
        let out = l2_normalize(MatRef::new(n, d, &x));
        for i in 0..n {
            let want = naive::normalized(&naive::row(&x, d, i));
            for (g, w) in out.unit.row(i).iter().zip(&want) {
                assert!((f64::from(*g) - w).abs() < 1e-6);
            }
        }
        let w = random_embeddings(12, n, d);
        let dx = l2_normalize_backward(&out, MatRef::new(n, d, &w));
        let f = |xs: &[f32]| {
            let u = l2_normalize(MatRef::new(n, d, xs)).unit;
            Ok(u.data.iter().zip(&w).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum())
        };
        check_gradient(f, &x, &dx.data, &GradCheck::default()).unwrap();
    }

    #[test]
    fn zero_rows_stay_finite() {
        let out = l2_normalize(MatRef::new(1, 2, &[0.0, 0.0]));
        assert_eq!(out.unit.data, vec![0.0, 0.0]);
        let dx = l2_normalize_backward(&out, MatRef::new(1, 2, &[1.0, 1.0]));
        assert!(dx.data.iter().all(|v| v.is_finite()));
    }
}
