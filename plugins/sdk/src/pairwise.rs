//! Pairwise similarity and distance matrices with exact backward passes.
//!
//! For rows x_i of X (n×d) and y_j of Y (m×d), [`pairwise`] computes the n×m matrix
//!
//! | [`Measure`] | value | gradient w.r.t. x_i of Σ G_ij·S_ij |
//! |---|---|---|
//! | `Dot` | x_i·y_j | Σ_j G_ij y_j |
//! | `Cosine` | u_i·v_j with u, v the L2-normalised rows | through [`crate::normalize`] |
//! | `SquaredEuclidean` | ‖x_i − y_j‖² | 2 Σ_j G_ij (x_i − y_j) |
//! | `Euclidean` | ‖x_i − y_j‖ | Σ_j G_ij (x_i − y_j) / D_ij, 0 where D_ij = 0 |
//!
//! Products go through one GEMM each way. Distances use ‖x‖² + ‖y‖² − 2x·y, clamped at 0;
//! [`pairwise_self`] also sets the diagonal of a self-distance matrix to exactly 0, so a
//! point is never at a rounding-error distance from itself. The gradient of the Euclidean
//! distance at 0 is taken as 0 (a subgradient), as a point cannot be moved away from itself.
//!
//! ```
//! use dmlbench_sdk::matrix::MatRef;
//! use dmlbench_sdk::pairwise::{pairwise_self, Measure};
//! let x = MatRef::new(2, 2, &[0.0, 0.0, 3.0, 4.0]);
//! let d = pairwise_self(Measure::Euclidean, x);
//! assert_eq!(d.values.data, vec![0.0, 5.0, 5.0, 0.0]);
//! ```

use serde::{Deserialize, Serialize};

use crate::matrix::{MatRef, Matrix, Op, matmul, matmul_into};
use crate::normalize::{Normalized, l2_normalize, l2_normalize_backward};

/// How two embeddings are compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    /// Inner product (a similarity).
    Dot,
    /// Cosine similarity.
    Cosine,
    /// Euclidean distance.
    Euclidean,
    /// Squared Euclidean distance.
    SquaredEuclidean,
}

impl Measure {
    /// True for similarities (larger is closer), false for distances.
    pub fn is_similarity(self) -> bool {
        matches!(self, Measure::Dot | Measure::Cosine)
    }
}

/// A computed pairwise matrix and what its backward pass needs.
#[derive(Clone, Debug)]
pub struct Pairwise {
    /// The measure.
    pub measure: Measure,
    /// The n×m values.
    pub values: Matrix,
    /// For `Cosine`: the normalised X and Y.
    normalized: Option<(Normalized, Normalized)>,
}

/// The pairwise matrix between the rows of `x` and `y`.
pub fn pairwise(measure: Measure, x: MatRef<'_>, y: MatRef<'_>) -> Pairwise {
    assert_eq!(x.cols, y.cols, "pairwise: embedding sizes differ ({} and {})", x.cols, y.cols);
    match measure {
        Measure::Dot => Pairwise { measure, values: matmul(x, Op::N, y, Op::T), normalized: None },
        Measure::Cosine => {
            let (nx, ny) = (l2_normalize(x), l2_normalize(y));
            let values = matmul(nx.unit.view(), Op::N, ny.unit.view(), Op::T);
            Pairwise { measure, values, normalized: Some((nx, ny)) }
        }
        Measure::SquaredEuclidean | Measure::Euclidean => {
            let mut values = Matrix::from_vec(x.rows, y.rows, vec![0.0; x.rows * y.rows]);
            let sq_x: Vec<f32> = (0..x.rows).map(|i| squared_norm(x.row(i))).collect();
            let sq_y: Vec<f32> = (0..y.rows).map(|j| squared_norm(y.row(j))).collect();
            matmul_into(-2.0, x, Op::N, y, Op::T, 0.0, &mut values);
            for (i, sq_xi) in sq_x.iter().enumerate() {
                for (v, sq_yj) in values.row_mut(i).iter_mut().zip(&sq_y) {
                    let d2 = (*v + sq_xi + sq_yj).max(0.0);
                    *v = if measure == Measure::Euclidean { d2.sqrt() } else { d2 };
                }
            }
            Pairwise { measure, values, normalized: None }
        }
    }
}

/// The pairwise matrix of the rows of `x` with themselves; distances have an exact zero
/// diagonal.
pub fn pairwise_self(measure: Measure, x: MatRef<'_>) -> Pairwise {
    let mut p = pairwise(measure, x, x);
    if !measure.is_similarity() {
        for i in 0..x.rows {
            p.values.set(i, i, 0.0);
        }
    }
    p
}

fn squared_norm(row: &[f32]) -> f32 {
    row.iter().map(|v| v * v).sum()
}

impl Pairwise {
    /// Gradients (dL/dX, dL/dY) from `grad` = dL/dS (n×m), for the same `x` and `y` that
    /// produced these values.
    pub fn backward(&self, x: MatRef<'_>, y: MatRef<'_>, grad: MatRef<'_>) -> (Matrix, Matrix) {
        assert_eq!((grad.rows, grad.cols), (x.rows, y.rows), "Pairwise::backward: gradient shape mismatch");
        match self.measure {
            Measure::Dot => (matmul(grad, Op::N, y, Op::N), matmul(grad, Op::T, x, Op::N)),
            Measure::Cosine => {
                let (nx, ny) = self.normalized.as_ref().expect("cosine keeps its normalised rows");
                let du = matmul(grad, Op::N, ny.unit.view(), Op::N);
                let dv = matmul(grad, Op::T, nx.unit.view(), Op::N);
                (l2_normalize_backward(nx, du.view()), l2_normalize_backward(ny, dv.view()))
            }
            Measure::SquaredEuclidean => squared_euclidean_backward(x, y, grad),
            Measure::Euclidean => {
                // dD/dD² = 1 / (2D); zero where D = 0 (see the module docs).
                let mut g = grad.to_matrix();
                for (gv, &d) in g.data.iter_mut().zip(&self.values.data) {
                    *gv = if d > 0.0 { *gv / (2.0 * d) } else { 0.0 };
                }
                squared_euclidean_backward(x, y, g.view())
            }
        }
    }

    /// dL/dX alone, for an X compared with constants Y (reference embeddings): half the
    /// work of [`backward`](Self::backward).
    pub fn backward_x(&self, x: MatRef<'_>, y: MatRef<'_>, grad: MatRef<'_>) -> Matrix {
        assert_eq!((grad.rows, grad.cols), (x.rows, y.rows), "Pairwise::backward_x: gradient shape mismatch");
        match self.measure {
            Measure::Dot => matmul(grad, Op::N, y, Op::N),
            Measure::Cosine => {
                let (nx, ny) = self.normalized.as_ref().expect("cosine keeps its normalised rows");
                l2_normalize_backward(nx, matmul(grad, Op::N, ny.unit.view(), Op::N).view())
            }
            Measure::SquaredEuclidean => squared_euclidean_backward_x(x, y, grad),
            Measure::Euclidean => {
                let mut g = grad.to_matrix();
                for (gv, &d) in g.data.iter_mut().zip(&self.values.data) {
                    *gv = if d > 0.0 { *gv / (2.0 * d) } else { 0.0 };
                }
                squared_euclidean_backward_x(x, y, g.view())
            }
        }
    }

    /// dL/dX for a matrix made by [`pairwise_self`] (both operands are X).
    ///
    /// With both operands equal, dL/dX of S(X, X) is the X-gradient of S with the symmetrised
    /// weights G + Gᵀ, which costs one matrix product instead of two.
    pub fn backward_self(&self, x: MatRef<'_>, grad: MatRef<'_>) -> Matrix {
        let n = x.rows;
        assert_eq!((grad.rows, grad.cols), (n, n), "Pairwise::backward_self: gradient shape mismatch");
        let mut sym = Matrix::zeros(n, n);
        for i in 0..n {
            for j in 0..n {
                sym.set(i, j, grad.get(i, j) + grad.get(j, i));
            }
        }
        match self.measure {
            Measure::Dot => matmul(sym.view(), Op::N, x, Op::N),
            Measure::Cosine => {
                let (nx, _) = self.normalized.as_ref().expect("cosine keeps its normalised rows");
                let du = matmul(sym.view(), Op::N, nx.unit.view(), Op::N);
                l2_normalize_backward(nx, du.view())
            }
            Measure::SquaredEuclidean => squared_euclidean_backward_x(x, x, sym.view()),
            Measure::Euclidean => {
                for (gv, &d) in sym.data.iter_mut().zip(&self.values.data) {
                    *gv = if d > 0.0 { *gv / (2.0 * d) } else { 0.0 };
                }
                squared_euclidean_backward_x(x, x, sym.view())
            }
        }
    }
}

/// dX = 2 (diag(G·1) X − G Y): the X half of [`squared_euclidean_backward`].
fn squared_euclidean_backward_x(x: MatRef<'_>, y: MatRef<'_>, grad: MatRef<'_>) -> Matrix {
    let mut dx = Matrix::zeros(x.rows, x.cols);
    matmul_into(-2.0, grad, Op::N, y, Op::N, 0.0, &mut dx);
    for i in 0..x.rows {
        let row_sum: f32 = grad.row(i).iter().sum();
        for (o, &xv) in dx.row_mut(i).iter_mut().zip(x.row(i)) {
            *o += 2.0 * row_sum * xv;
        }
    }
    dx
}

/// dX = 2 (diag(G·1) X − G Y), dY = 2 (diag(Gᵀ·1) Y − Gᵀ X).
fn squared_euclidean_backward(x: MatRef<'_>, y: MatRef<'_>, grad: MatRef<'_>) -> (Matrix, Matrix) {
    let grad_t = transpose(grad);
    (squared_euclidean_backward_x(x, y, grad), squared_euclidean_backward_x(y, x, grad_t.view()))
}

fn transpose(m: MatRef<'_>) -> Matrix {
    let mut t = Matrix::zeros(m.cols, m.rows);
    for i in 0..m.rows {
        for (j, &v) in m.row(i).iter().enumerate() {
            t.set(j, i, v);
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{GradCheck, check_gradient, naive, random_embeddings};

    const MEASURES: [Measure; 4] = [Measure::Dot, Measure::Cosine, Measure::Euclidean, Measure::SquaredEuclidean];

    fn reference(measure: Measure, a: &[f64], b: &[f64]) -> f64 {
        match measure {
            Measure::Dot => naive::dot(a, b),
            Measure::Cosine => naive::cosine(a, b),
            Measure::Euclidean => naive::euclidean(a, b),
            Measure::SquaredEuclidean => naive::squared_euclidean(a, b),
        }
    }

    /// Σ_ij G_ij S_ij, the scalar whose gradient the backward pass computes.
    fn weighted_sum(values: &Matrix, weights: &[f32]) -> f64 {
        values.data.iter().zip(weights).map(|(&v, &w)| f64::from(v) * f64::from(w)).sum()
    }

    #[test]
    fn values_match_naive_loops() {
        let (n, m, d) = (5, 4, 3);
        let x = random_embeddings(1, n, d);
        let y = random_embeddings(2, m, d);
        for measure in MEASURES {
            let p = pairwise(measure, MatRef::new(n, d, &x), MatRef::new(m, d, &y));
            for i in 0..n {
                for j in 0..m {
                    let want = reference(measure, &naive::row(&x, d, i), &naive::row(&y, d, j));
                    let got = f64::from(p.values.get(i, j));
                    assert!((got - want).abs() < 1e-5 * want.abs().max(1.0), "{measure:?} ({i},{j}): {got} vs {want}");
                }
            }
        }
    }

    #[test]
    fn backward_matches_finite_differences() {
        let (n, m, d) = (5, 4, 3);
        let x = random_embeddings(3, n, d);
        let y = random_embeddings(4, m, d);
        let g = random_embeddings(5, n, m);
        for measure in MEASURES {
            let yv = MatRef::new(m, d, &y);
            let p = pairwise(measure, MatRef::new(n, d, &x), yv);
            let (dx, dy) = p.backward(MatRef::new(n, d, &x), yv, MatRef::new(n, m, &g));
            let f = |xs: &[f32]| Ok(weighted_sum(&pairwise(measure, MatRef::new(n, d, xs), yv).values, &g));
            check_gradient(f, &x, &dx.data, &GradCheck::default()).unwrap_or_else(|e| panic!("{measure:?} dX: {e}"));
            let xv = MatRef::new(n, d, &x);
            let f = |ys: &[f32]| Ok(weighted_sum(&pairwise(measure, xv, MatRef::new(m, d, ys)).values, &g));
            check_gradient(f, &y, &dy.data, &GradCheck::default()).unwrap_or_else(|e| panic!("{measure:?} dY: {e}"));
        }
    }

    #[test]
    fn self_backward_matches_finite_differences_and_zero_diagonal() {
        let (n, d) = (6, 4);
        let x = random_embeddings(6, n, d);
        let g = random_embeddings(7, n, n);
        for measure in MEASURES {
            let p = pairwise_self(measure, MatRef::new(n, d, &x));
            if !measure.is_similarity() {
                assert!((0..n).all(|i| p.values.get(i, i) == 0.0));
            }
            let dx = p.backward_self(MatRef::new(n, d, &x), MatRef::new(n, n, &g));
            let f = |xs: &[f32]| Ok(weighted_sum(&pairwise_self(measure, MatRef::new(n, d, xs)).values, &g));
            check_gradient(f, &x, &dx.data, &GradCheck::default()).unwrap_or_else(|e| panic!("{measure:?}: {e}"));
        }
    }

    #[test]
    fn euclidean_gradient_is_zero_between_identical_points() {
        let x = [1.0f32, 2.0, 1.0, 2.0];
        let p = pairwise_self(Measure::Euclidean, MatRef::new(2, 2, &x));
        let dx = p.backward_self(MatRef::new(2, 2, &x), MatRef::new(2, 2, &[1.0; 4]));
        assert!(dx.data.iter().all(|v| v.is_finite() && v.abs() < 1e-3), "{:?}", dx.data);
    }
}
