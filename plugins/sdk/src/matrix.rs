//! Row-major `f32` matrices and their products on a tuned GEMM.
//!
//! Losses work on small dense matrices (a batch of embeddings, its n×n similarity matrix, a
//! class-proxy matrix). [`Matrix`] owns one, [`MatRef`] borrows one (for example the batch
//! embeddings, without a copy), and [`matmul`] multiplies them through `matrixmultiply`'s
//! packed, vectorised kernels: a naive triple loop is 10–50× slower at n = 256, d = 512.
//!
//! ```
//! use dmlbench_sdk::matrix::{matmul, MatRef, Matrix, Op};
//! let x = Matrix::from_vec(2, 3, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
//! let gram = matmul(x.view(), Op::N, x.view(), Op::T); // X·Xᵀ
//! assert_eq!(gram.data, vec![14.0, 32.0, 32.0, 77.0]);
//! ```

/// An owned row-major matrix.
#[derive(Clone, Debug, PartialEq)]
pub struct Matrix {
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// rows·cols values, row by row.
    pub data: Vec<f32>,
}

/// A borrowed row-major matrix.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MatRef<'a> {
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// rows·cols values, row by row.
    pub data: &'a [f32],
}

/// Whether an operand of [`matmul`] is used as is or transposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// As is.
    N,
    /// Transposed.
    T,
}

impl Matrix {
    /// A rows×cols matrix of zeros.
    pub fn zeros(rows: usize, cols: usize) -> Self {
        Matrix { rows, cols, data: vec![0.0; rows * cols] }
    }

    /// Wraps `data` (row-major). Panics if its length is not rows·cols.
    pub fn from_vec(rows: usize, cols: usize, data: Vec<f32>) -> Self {
        assert_eq!(data.len(), rows * cols, "Matrix::from_vec: {rows}×{cols} needs {} values", rows * cols);
        Matrix { rows, cols, data }
    }

    /// A borrowed view.
    pub fn view(&self) -> MatRef<'_> {
        MatRef { rows: self.rows, cols: self.cols, data: &self.data }
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// Row `i`, mutable.
    pub fn row_mut(&mut self, i: usize) -> &mut [f32] {
        &mut self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// Element (i, j).
    pub fn get(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.cols + j]
    }

    /// Sets element (i, j).
    pub fn set(&mut self, i: usize, j: usize, value: f32) {
        self.data[i * self.cols + j] = value;
    }

    /// Adds `other` element-wise. Panics on a shape mismatch.
    pub fn add_assign(&mut self, other: &Matrix) {
        assert_eq!((self.rows, self.cols), (other.rows, other.cols), "Matrix::add_assign: shapes differ");
        for (x, y) in self.data.iter_mut().zip(&other.data) {
            *x += y;
        }
    }
}

impl<'a> MatRef<'a> {
    /// Borrows `data` as a rows×cols matrix. Panics if its length is not rows·cols.
    pub fn new(rows: usize, cols: usize, data: &'a [f32]) -> Self {
        assert_eq!(data.len(), rows * cols, "MatRef::new: {rows}×{cols} needs {} values", rows * cols);
        MatRef { rows, cols, data }
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &'a [f32] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// Element (i, j).
    pub fn get(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.cols + j]
    }

    /// An owned copy.
    pub fn to_matrix(&self) -> Matrix {
        Matrix { rows: self.rows, cols: self.cols, data: self.data.to_vec() }
    }
}

/// Shape of `op(m)` and the (row, column) strides that read `m` as `op(m)`.
fn operand(m: MatRef<'_>, op: Op) -> (usize, usize, isize, isize) {
    match op {
        Op::N => (m.rows, m.cols, m.cols as isize, 1),
        Op::T => (m.cols, m.rows, 1, m.cols as isize),
    }
}

/// `op_a(a) · op_b(b)` as a new matrix.
pub fn matmul(a: MatRef<'_>, op_a: Op, b: MatRef<'_>, op_b: Op) -> Matrix {
    let rows = operand(a, op_a).0;
    let cols = operand(b, op_b).1;
    let mut c = Matrix::zeros(rows, cols);
    matmul_into(1.0, a, op_a, b, op_b, 0.0, &mut c);
    c
}

/// `c = alpha · op_a(a) · op_b(b) + beta · c`. Panics on mismatched shapes.
pub fn matmul_into(alpha: f32, a: MatRef<'_>, op_a: Op, b: MatRef<'_>, op_b: Op, beta: f32, c: &mut Matrix) {
    let (m, k, rsa, csa) = operand(a, op_a);
    let (k2, n, rsb, csb) = operand(b, op_b);
    assert_eq!(k, k2, "matmul: inner dimensions differ ({m}×{k} · {k2}×{n})");
    assert_eq!((c.rows, c.cols), (m, n), "matmul: output is {}×{}, expected {m}×{n}", c.rows, c.cols);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        // matrixmultiply handles k = 0, but skip the call to keep beta semantics obvious.
        for x in &mut c.data {
            *x *= beta;
        }
        return;
    }
    // SAFETY: the strides describe a and b exactly as op(a) (m×k) and op(b) (k×n) within
    // their slices (checked by the shape asserts and the MatRef/Matrix invariants), and c is
    // an exclusive m×n row-major buffer.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            alpha,
            a.data.as_ptr(),
            rsa,
            csa,
            b.data.as_ptr(),
            rsb,
            csb,
            beta,
            c.data.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// Panics unless an m×k operand of `a_len` values read through strides `sa` and a k×n one
/// of `b_len` through `sb` stay inside their slices (`what` names the caller); the unsafe
/// GEMM calls rely on it. Only for non-empty products (m, k, n ≥ 1).
fn assert_strides_in_bounds(
    what: &str,
    (m, k, n): (usize, usize, usize),
    (a_len, sa): (usize, (usize, usize)),
    (b_len, sb): (usize, (usize, usize)),
) {
    assert!(
        (m - 1) * sa.0 + (k - 1) * sa.1 < a_len && (k - 1) * sb.0 + (n - 1) * sb.1 < b_len,
        "{what}: the strides read past an operand"
    );
}

/// The m×n product of an m×k matrix `a` and a k×n matrix `b`, each read through its (row
/// stride, column stride), in f64 (`matrixmultiply`'s `dgemm`); a transposed operand is the
/// same data read with its strides swapped.
pub fn matmul_f64(
    m: usize,
    k: usize,
    n: usize,
    a: &[f64],
    sa: (usize, usize),
    b: &[f64],
    sb: (usize, usize),
) -> Vec<f64> {
    let mut c = vec![0.0f64; m * n];
    if m == 0 || n == 0 || k == 0 {
        return c;
    }
    assert_strides_in_bounds("matmul_f64", (m, k, n), (a.len(), sa), (b.len(), sb));
    // SAFETY: the assertion keeps every element read within `a` and `b`, and `c` is an
    // exclusive m×n row-major buffer.
    unsafe {
        matrixmultiply::dgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            sa.0 as isize,
            sa.1 as isize,
            b.as_ptr(),
            sb.0 as isize,
            sb.1 as isize,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
    c
}

/// [`matmul_f64`]'s product on the f32 GEMM (`sgemm`, about twice as fast as `dgemm`): the
/// operands are rounded to f32, the products summed in f32 and the result widened back. For
/// products whose entries f32's digits serve (similarities fed to a softmax, gradients that
/// are returned in f32), next to f64 work that needs more.
pub fn matmul_f64_in_f32(
    m: usize,
    k: usize,
    n: usize,
    a: &[f64],
    sa: (usize, usize),
    b: &[f64],
    sb: (usize, usize),
) -> Vec<f64> {
    let mut c = vec![0.0f32; m * n];
    if m == 0 || n == 0 || k == 0 {
        return vec![0.0; m * n];
    }
    assert_strides_in_bounds("matmul_f64_in_f32", (m, k, n), (a.len(), sa), (b.len(), sb));
    let a32: Vec<f32> = a.iter().map(|&v| v as f32).collect();
    let b32: Vec<f32> = b.iter().map(|&v| v as f32).collect();
    // SAFETY: the assertion keeps every element read within `a32` and `b32` (as long as `a`
    // and `b`), and `c` is an exclusive m×n row-major buffer.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a32.as_ptr(),
            sa.0 as isize,
            sa.1 as isize,
            b32.as_ptr(),
            sb.0 as isize,
            sb.1 as isize,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
    c.into_iter().map(f64::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &Matrix, op_a: Op, b: &Matrix, op_b: Op) -> Matrix {
        let at = |i: usize, j: usize| if op_a == Op::N { a.get(i, j) } else { a.get(j, i) };
        let bt = |i: usize, j: usize| if op_b == Op::N { b.get(i, j) } else { b.get(j, i) };
        let (m, k) = if op_a == Op::N { (a.rows, a.cols) } else { (a.cols, a.rows) };
        let n = if op_b == Op::N { b.cols } else { b.rows };
        let mut c = Matrix::zeros(m, n);
        for i in 0..m {
            for j in 0..n {
                c.set(i, j, (0..k).map(|l| at(i, l) * bt(l, j)).sum());
            }
        }
        c
    }

    #[test]
    fn every_transpose_combination_matches_a_naive_loop() {
        let a = Matrix::from_vec(3, 4, (0..12).map(|x| (x as f32 * 0.37).sin()).collect());
        let b = Matrix::from_vec(4, 3, (0..12).map(|x| (x as f32 * 0.91).cos()).collect());
        let a_t = Matrix::from_vec(4, 3, (0..12).map(|i| a.get(i % 3, i / 3)).collect());
        let b_t = Matrix::from_vec(3, 4, (0..12).map(|i| b.get(i % 4, i / 4)).collect());
        for (x, ox, y, oy) in
            [(&a, Op::N, &b, Op::N), (&a_t, Op::T, &b, Op::N), (&a, Op::N, &b_t, Op::T), (&a_t, Op::T, &b_t, Op::T)]
        {
            let got = matmul(x.view(), ox, y.view(), oy);
            let want = naive(x, ox, y, oy);
            for (g, w) in got.data.iter().zip(&want.data) {
                assert!((g - w).abs() < 1e-5, "{ox:?}{oy:?}: {g} vs {w}");
            }
        }
    }

    #[test]
    fn alpha_and_beta_accumulate() {
        let a = Matrix::from_vec(1, 2, vec![1.0, 2.0]);
        let mut c = Matrix::from_vec(1, 1, vec![10.0]);
        matmul_into(2.0, a.view(), Op::N, a.view(), Op::T, 0.5, &mut c);
        assert_eq!(c.data, vec![2.0 * 5.0 + 5.0]);
    }

    #[test]
    fn f64_products_read_operands_through_their_strides() {
        // a = [[1, 2, 3], [4, 5, 6]] (2×3), b = aᵀ read from a's storage with swapped strides.
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let c = matmul_f64(2, 3, 2, &a, (3, 1), &a, (1, 3));
        assert_eq!(c, vec![14.0, 32.0, 32.0, 77.0]);
        assert!(matmul_f64(0, 3, 2, &a, (3, 1), &a, (1, 3)).is_empty());
    }

    #[test]
    fn f32_products_of_f64_operands_agree_with_f64_to_f32_precision() {
        // 7×40 times its transpose: every entry a sum of 40 products of values in [−1, 1].
        let a: Vec<f64> = (0..280).map(|x| (x as f64 * 0.37).sin()).collect();
        let exact = matmul_f64(7, 40, 7, &a, (40, 1), &a, (1, 40));
        let fast = matmul_f64_in_f32(7, 40, 7, &a, (40, 1), &a, (1, 40));
        for (f, e) in fast.iter().zip(&exact) {
            assert!((f - e).abs() < 1e-5 * e.abs().max(1.0), "{f} vs {e}");
        }
        assert!(fast.iter().zip(&exact).any(|(f, e)| f != e), "the f32 product is rounded");
        assert_eq!(matmul_f64_in_f32(2, 0, 3, &[], (0, 1), &[], (3, 1)), vec![0.0; 6]);
    }
}
