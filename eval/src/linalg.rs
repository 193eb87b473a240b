//! Dense helpers shared by the search and k-means: input checks, row norms, and the one
//! matrix product both spend their time in.

use super::EvalError;

/// Checks that `data` holds `rows × dim` finite values.
pub(crate) fn check_matrix(what: &'static str, data: &[f32], rows: usize, dim: usize) -> Result<(), EvalError> {
    if data.len() != rows * dim {
        return Err(EvalError::Shape {
            what,
            message: format!("{} values for {rows} labels of dimension {dim}; expected {}", data.len(), rows * dim),
        });
    }
    if let Some(index) = data.iter().position(|x| !x.is_finite()) {
        return Err(EvalError::NonFinite { what, row: index / dim, column: index % dim, value: data[index] });
    }
    Ok(())
}

/// Checks that Euclidean scores (`2·q·g − ‖g‖²`) cannot overflow `f32`: both terms are at most
/// `2·max‖x‖²`, so a quarter of `f32::MAX` leaves room.
pub(crate) fn check_norms(what: &'static str, data: &[f32], dim: usize) -> Result<(), EvalError> {
    let limit = f64::from(f32::MAX) / 4.0;
    for (row, x) in data.chunks_exact(dim).enumerate() {
        let squared_norm: f64 = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
        if squared_norm > limit {
            return Err(EvalError::TooLarge { what, row, squared_norm });
        }
    }
    Ok(())
}

/// Rows scaled to unit L2 norm. The norm is accumulated in `f64` so large values cannot
/// overflow; all-zero rows stay zero, as PyTorch's `F.normalize` leaves them.
pub fn l2_normalised(data: &[f32], dim: usize) -> Vec<f32> {
    let mut out = data.to_vec();
    for row in out.chunks_exact_mut(dim) {
        let norm = row.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>().sqrt();
        if norm > 0.0 {
            for v in row.iter_mut() {
                *v = (f64::from(*v) / norm) as f32;
            }
        }
    }
    out
}

/// Squared L2 norm of each row.
pub(crate) fn squared_norms(data: &[f32], dim: usize) -> Vec<f32> {
    data.chunks_exact(dim).map(|row| row.iter().map(|v| v * v).sum()).collect()
}

/// `out[i·b_rows + j] = a_i · b_j` for the rows of two row-major matrices with `dim` columns,
/// on the calling thread: callers parallelise over blocks, which scales better on few cores
/// than splitting every small product and keeps results independent of the thread count.
pub(crate) fn dot_tile(a: &[f32], b: &[f32], dim: usize, out: &mut [f32]) {
    let m = a.len() / dim;
    let n = b.len() / dim;
    debug_assert_eq!(a.len(), m * dim);
    debug_assert_eq!(b.len(), n * dim);
    assert!(out.len() >= m * n, "dot_tile: output holds {} values, needs {}", out.len(), m * n);
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: `a` is m×dim row-major (row stride dim, column stride 1); `b` read as its
    // transpose is dim×n (row stride 1, column stride dim); `out` is m×n row-major and was
    // checked to be large enough. The three slices do not overlap (`out` is borrowed
    // mutably). With beta = 0 the previous contents of `out` are not read.
    unsafe {
        matrixmultiply::sgemm(
            m,
            dim,
            n,
            1.0,
            a.as_ptr(),
            dim as isize,
            1,
            b.as_ptr(),
            1,
            dim as isize,
            0.0,
            out.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_tile_matches_naive_products() {
        let dim = 7;
        let a: Vec<f32> = (0..5 * dim).map(|i| ((i * 37) % 11) as f32 - 5.0).collect();
        let b: Vec<f32> = (0..9 * dim).map(|i| ((i * 13) % 7) as f32 - 3.0).collect();
        let mut out = vec![f32::NAN; 5 * 9];
        dot_tile(&a, &b, dim, &mut out);
        for i in 0..5 {
            for j in 0..9 {
                let naive: f32 = (0..dim).map(|t| a[i * dim + t] * b[j * dim + t]).sum();
                assert_eq!(out[i * 9 + j], naive, "entry ({i}, {j})");
            }
        }
    }

    #[test]
    fn normalisation_keeps_zero_rows_and_scales_others() {
        let out = l2_normalised(&[3.0, 4.0, 0.0, 0.0], 2);
        assert_eq!(out, vec![0.6, 0.8, 0.0, 0.0]);
    }

    #[test]
    fn checks_name_the_argument_and_position() {
        let err = check_matrix("gallery", &[1.0, f32::NAN, 0.0, 0.0], 2, 2).unwrap_err();
        assert!(matches!(err, EvalError::NonFinite { what: "gallery", row: 0, column: 1, value } if value.is_nan()));
        assert!(err.to_string().starts_with("gallery: row 0, column 1 is NaN"), "{err}");
        let err = check_matrix("queries", &[1.0; 5], 2, 2).unwrap_err();
        assert!(err.to_string().contains("queries: 5 values for 2 labels"), "{err}");
        let err = check_norms("queries", &[1e19, 0.0], 2).unwrap_err();
        assert!(matches!(err, EvalError::TooLarge { what: "queries", row: 0, .. }), "{err}");
    }
}
