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

/// Rows of a rows×d f64 matrix divided by max(‖row‖, ε), with the norms: the f64 form of
/// [`l2_normalize`], for losses that compute cosines in f64 (ArcFace's φ′ grows like 1/sin θ
/// near θ = 0 and π, where f32 cosines would lose digits).
pub fn l2_normalize_f64(a: &[f64], d: usize) -> (Vec<f64>, Vec<f64>) {
    let mut unit = a.to_vec();
    let norms = unit
        .chunks_exact_mut(d)
        .map(|row| {
            let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt();
            let inv = 1.0 / norm.max(f64::from(NORM_EPS));
            row.iter_mut().for_each(|v| *v *= inv);
            norm
        })
        .collect();
    (unit, norms)
}

/// ∂L/∂a from ∂L/∂(normalised a), row by row, for [`l2_normalize_f64`]: (g − u(u·g)) / ‖a‖,
/// or g / ε for a row shorter than ε.
pub fn l2_normalize_f64_backward(unit: &[f64], norms: &[f64], grad: &[f64], d: usize) -> Vec<f64> {
    let eps = f64::from(NORM_EPS);
    let mut out = grad.to_vec();
    for ((o, u), &norm) in out.chunks_exact_mut(d).zip(unit.chunks_exact(d)).zip(norms) {
        if norm > eps {
            let ug: f64 = u.iter().zip(o.iter()).map(|(a, b)| a * b).sum();
            o.iter_mut().zip(u).for_each(|(g, &uv)| *g = (*g - uv * ug) / norm);
        } else {
            o.iter_mut().for_each(|g| *g /= eps);
        }
    }
    out
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

    #[test]
    fn the_f64_form_agrees_with_the_f32_one() {
        let x = [3.0f32, 4.0, 0.0, 0.0, 1.0, -2.0];
        let n = l2_normalize(MatRef::new(3, 2, &x));
        let (unit, norms) = l2_normalize_f64(&x.map(f64::from), 2);
        assert_eq!(norms, vec![5.0, 0.0, 5f64.sqrt()]);
        for (a, b) in unit.iter().zip(&n.unit.data) {
            assert!((a - f64::from(*b)).abs() < 1e-6);
        }
        let g = [0.5f32, -1.0, 2.0, 1.0, 0.25, 0.75];
        let want = l2_normalize_backward(&n, MatRef::new(3, 2, &g));
        let got = l2_normalize_f64_backward(&unit, &norms, &g.map(f64::from), 2);
        for (a, b) in got.iter().zip(&want.data) {
            assert!((a - f64::from(*b)).abs() <= 1e-6 * f64::from(b.abs()).max(1.0), "{got:?} vs {:?}", want.data);
        }
    }
}
