//! What a conformance check of a loss or miner needs, with no plugin machinery: seeded
//! random batches, a finite-difference gradient check that tells non-smooth points from wrong
//! gradients (and, for a function that names its smooth pieces, never differences across a
//! kink), and tolerant comparisons. The SDK's test kit re-exports it for plugin tests; the
//! host's conformance suite (`dmlbench plugins check`) uses it directly.
//!
//! ```
//! use dmlbench_testkit::{check_gradient, GradCheck};
//! // f(x) = Σ x², gradient 2x.
//! let x = [0.5f32, -1.0, 2.0];
//! let grad: Vec<f32> = x.iter().map(|v| 2.0 * v).collect();
//! let f = |x: &[f32]| Ok(x.iter().map(|&v| f64::from(v) * f64::from(v)).sum());
//! check_gradient(f, &x, &grad, &GradCheck::default()).unwrap();
//! let wrong: Vec<f32> = x.iter().map(|v| 3.0 * v).collect();
//! assert!(check_gradient(f, &x, &wrong, &GradCheck::default()).is_err());
//! ```

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// n×d standard-normal values, row-major, from `seed`.
pub fn random_embeddings(seed: u64, n: usize, d: usize) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n * d)
        .map(|_| {
            // Box–Muller; 1 − u keeps the logarithm finite.
            let (u, v): (f64, f64) = (rng.random(), rng.random());
            ((-2.0 * (1.0 - u).ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
        })
        .collect()
}

/// n labels in `0..classes`, each class present at least once when n ≥ classes, from `seed`.
pub fn random_labels(seed: u64, n: usize, classes: usize) -> Vec<i64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_1abe);
    let mut labels: Vec<i64> =
        (0..n).map(|i| if i < classes { i as i64 } else { rng.random_range(0..classes as i64) }).collect();
    // Shuffle so the guaranteed members are not always first.
    for i in (1..n).rev() {
        let j = rng.random_range(0..=i);
        labels.swap(i, j);
    }
    labels
}

/// Options of [`check_gradient`].
#[derive(Clone, Debug)]
pub struct GradCheck {
    /// Finite-difference step.
    pub step: f32,
    /// Relative tolerance.
    pub rtol: f64,
    /// Absolute tolerance, as a fraction of the largest analytic gradient entry.
    pub atol_scale: f64,
    /// Absolute tolerance floor.
    pub atol: f64,
    /// Check at most this many coordinates, sampled with `seed`.
    pub max_coordinates: usize,
    /// Fail when more than this share of checked coordinates sits on a non-smooth point.
    pub max_kink_fraction: f64,
    /// Seed of the coordinate sample.
    pub seed: u64,
    /// Row length of the input, to name a failing coordinate by row and column (0: by flat
    /// index).
    pub columns: usize,
}

impl Default for GradCheck {
    fn default() -> Self {
        GradCheck {
            step: 1e-3,
            rtol: 2e-2,
            atol_scale: 2e-3,
            atol: 1e-5,
            max_coordinates: 200,
            max_kink_fraction: 0.2,
            seed: 0,
            columns: 0,
        }
    }
}

/// What [`check_gradient`] found.
#[derive(Clone, Debug, PartialEq)]
pub struct GradReport {
    /// Coordinates compared.
    pub checked: usize,
    /// Coordinates skipped because the function is not smooth there (a hinge, or the set of
    /// active pairs changing).
    pub kinks: usize,
    /// Largest |analytic − numeric| over compared coordinates.
    pub max_abs_error: f64,
}

/// What the finite differences said about one coordinate.
enum Verdict {
    /// No derivative on this scale: forward and backward differences disagree, or every
    /// admissible step leaves the input's smooth piece.
    Kink,
    /// The difference matches, with this error.
    Match(f64),
    /// The difference (first) differs from the analytic value by the second.
    Mismatch(f64, f64),
}

/// Compares `analytic` with central finite differences of `f` at `x`.
///
/// Non-smooth points are detected, not failed: where the forward and backward differences
/// disagree even at a quarter of the step, the coordinate is counted as a kink and skipped,
/// because the loss really has no derivative there (a hinge at its margin, a pair entering the
/// set of active pairs). A mismatch at the first step is confirmed at a quarter of it before it
/// fails the check: a kink just inside the first step may leave forward and backward
/// differences close enough to pass as smooth while still bending the central one; a wrong
/// gradient at a smooth point mismatches at both steps. Too many kinks fail the check, so a
/// loss that is discontinuous everywhere cannot pass by being skipped.
pub fn check_gradient(
    mut f: impl FnMut(&[f32]) -> Result<f64, String>,
    x: &[f32],
    analytic: &[f32],
    options: &GradCheck,
) -> Result<GradReport, String> {
    check(|x: &[f32]| f(x).map(|value| (value, None)), x, analytic, options)
}

/// [`check_gradient`] for a piecewise smooth function that names the piece each input lies
/// on: `f` returns its value and a piece identifier, equal for two inputs on the same smooth
/// piece and different across a kink (for a binned loss, say, which bin each distance falls
/// in).
///
/// A kink close to `x` can bend a central difference by less than the kink test notices yet
/// more than the tolerance, at every step the check tries (a distance 1e-5 from a bin edge).
/// Knowing the pieces, the check never differences across one: when both steps stay on the
/// piece of `x` it proceeds as [`check_gradient`]; when only one side does, it compares the
/// analytic value with the one-sided difference of that side (second order, from the full
/// and the half step, both on the piece); when neither does, the coordinate is a kink. The
/// tolerances are the same, so a wrong gradient fails as it does at a smooth point, and the
/// one-sided estimate is the derivative on the side the analytic value describes.
pub fn check_piecewise_gradient(
    mut f: impl FnMut(&[f32]) -> Result<(f64, u64), String>,
    x: &[f32],
    analytic: &[f32],
    options: &GradCheck,
) -> Result<GradReport, String> {
    check(|x: &[f32]| f(x).map(|(value, piece)| (value, Some(piece))), x, analytic, options)
}

/// The check behind both entry points; `f` gives the value and, if known, the piece.
fn check(
    mut f: impl FnMut(&[f32]) -> Result<(f64, Option<u64>), String>,
    x: &[f32],
    analytic: &[f32],
    options: &GradCheck,
) -> Result<GradReport, String> {
    if x.len() != analytic.len() {
        return Err(format!("gradient has {} values for {} inputs", analytic.len(), x.len()));
    }
    let mut eval = |x: &[f32]| f(x).map_err(|e| format!("evaluating the loss failed: {e}"));
    let (f0, piece) = eval(x)?;
    let scale = analytic.iter().fold(0.0f64, |m, &g| m.max(f64::from(g).abs()));
    let atol = options.atol + options.atol_scale * scale;
    let judge = |estimate: f64, a: f64| {
        let error = (a - estimate).abs();
        if error <= atol + options.rtol * estimate.abs().max(a.abs()) {
            Verdict::Match(error)
        } else {
            Verdict::Mismatch(estimate, error)
        }
    };
    let coordinates = sample_coordinates(x.len(), options.max_coordinates, options.seed);
    let mut report = GradReport { checked: 0, kinks: 0, max_abs_error: 0.0 };
    let mut probe = x.to_vec();
    let mut first_failure: Option<String> = None;
    for &c in &coordinates {
        let a = f64::from(analytic[c]);
        // f at x + h along coordinate c: the value, the step actually representable in f32
        // (signed), and whether it stays on the piece of x.
        let mut moved = |h: f32| -> Result<(f64, f64, bool), String> {
            probe[c] = x[c] + h;
            let (value, at) = eval(&probe)?;
            let step = f64::from(probe[c] - x[c]);
            probe[c] = x[c];
            Ok((value, step, at == piece))
        };
        // The verdict of the finest step tried: a kink there, a match, or a mismatch that is
        // confirmed at a quarter of the step before it counts (a kink just inside the first
        // step can pass the smoothness test and still bend its difference).
        let mut verdict = Verdict::Kink;
        for shrink in [1.0f32, 0.25] {
            let h = options.step * shrink * x[c].abs().max(1.0);
            let (up, h_up, up_on_piece) = moved(h)?;
            let (down, h_down, down_on_piece) = moved(-h)?;
            verdict = match (up_on_piece, down_on_piece) {
                (true, true) => {
                    let forward = (up - f0) / h_up;
                    let backward = (f0 - down) / -h_down;
                    let central = (up - down) / (h_up - h_down);
                    if (forward - backward).abs() > 4.0 * (atol + options.rtol * central.abs()) {
                        Verdict::Kink
                    } else {
                        judge(central, a)
                    }
                }
                (false, false) => Verdict::Kink,
                (true, false) | (false, true) => {
                    // One side stays on the piece: fit a parabola through f(x), f(x + s/2)
                    // and f(x + s) on that side; its slope at x is exact to second order.
                    let (full, s) = if up_on_piece { (up, h_up) } else { (down, h_down) };
                    let (half, s_half, half_on_piece) = moved((s / 2.0) as f32)?;
                    if half_on_piece {
                        let (d_half, d_full) = ((half - f0) / s_half, (full - f0) / s);
                        judge((s * d_half - s_half * d_full) / (s - s_half), a)
                    } else {
                        Verdict::Kink
                    }
                }
            };
            if matches!(verdict, Verdict::Match(_)) {
                break;
            }
        }
        match verdict {
            Verdict::Kink => report.kinks += 1,
            Verdict::Match(error) => {
                report.checked += 1;
                report.max_abs_error = report.max_abs_error.max(error);
            }
            Verdict::Mismatch(numeric, error) => {
                report.checked += 1;
                report.max_abs_error = report.max_abs_error.max(error);
                if first_failure.is_none() {
                    let at = match options.columns {
                        0 => format!("index {c}"),
                        d => format!("row {}, column {}", c / d, c % d),
                    };
                    first_failure =
                        Some(format!("gradient mismatch at {at}: analytic {a:.6e}, finite difference {numeric:.6e}"));
                }
            }
        }
    }
    if let Some(failure) = first_failure {
        return Err(failure);
    }
    let total = coordinates.len().max(1);
    if report.kinks as f64 > options.max_kink_fraction * total as f64 {
        return Err(format!(
            "{} of {total} coordinates are at non-smooth points; the gradient could not be verified",
            report.kinks
        ));
    }
    Ok(report)
}

fn sample_coordinates(len: usize, max: usize, seed: u64) -> Vec<usize> {
    let mut all: Vec<usize> = (0..len).collect();
    if len <= max {
        return all;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for i in 0..max {
        let j = rng.random_range(i..len);
        all.swap(i, j);
    }
    all.truncate(max);
    all.sort_unstable();
    all
}

/// Asserts |a − b| ≤ tol·max(1, |b|), naming `what` on failure.
#[track_caller]
pub fn assert_close(a: f64, b: f64, tol: f64, what: &str) {
    assert!((a - b).abs() <= tol * b.abs().max(1.0), "{what}: {a} vs reference {b} (difference {:.3e})", (a - b).abs());
}

/// Asserts two slices agree element by element within `tol` (relative to max(1, |b|)).
#[track_caller]
pub fn assert_all_close(a: &[f32], b: &[f64], tol: f64, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
        assert!((f64::from(x) - y).abs() <= tol * y.abs().max(1.0), "{what}[{i}]: {x} vs reference {y}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_seeded_and_cover_every_class() {
        assert_eq!(random_embeddings(3, 4, 5), random_embeddings(3, 4, 5));
        assert_ne!(random_embeddings(3, 4, 5), random_embeddings(4, 4, 5));
        let labels = random_labels(7, 20, 6);
        assert_eq!(labels.len(), 20);
        for class in 0..6 {
            assert!(labels.contains(&class), "class {class} missing from {labels:?}");
        }
        assert!(labels.iter().all(|l| (0..6).contains(l)));
    }

    #[test]
    fn a_wrong_gradient_is_named_by_row_and_column() {
        // f(x) = Σ xᵢ³: gradient 3xᵢ²; one entry is off.
        let x = [0.5f32, -1.0, 2.0, 1.5];
        let mut grad: Vec<f32> = x.iter().map(|v| 3.0 * v * v).collect();
        let f = |x: &[f32]| Ok(x.iter().map(|&v| f64::from(v).powi(3)).sum());
        let report = check_gradient(f, &x, &grad, &GradCheck { columns: 2, ..GradCheck::default() }).unwrap();
        assert_eq!((report.checked, report.kinks), (4, 0));
        grad[3] += 1.0;
        let error = check_gradient(f, &x, &grad, &GradCheck { columns: 2, ..GradCheck::default() }).unwrap_err();
        assert!(error.starts_with("gradient mismatch at row 1, column 1"), "{error}");
        assert!(check_gradient(f, &x, &grad[..3], &GradCheck::default()).unwrap_err().contains("3 values for 4"));
    }

    #[test]
    fn kinks_are_skipped_but_a_function_of_kinks_fails() {
        // |x| at 0 has no derivative: one kink among four coordinates is allowed at 0.25...
        let x = [0.0f32, 1.0, -2.0, 3.0];
        let grad = [0.0f32, 1.0, -1.0, 1.0];
        let abs = |x: &[f32]| Ok(x.iter().map(|&v| f64::from(v).abs()).sum());
        let options = GradCheck { max_kink_fraction: 0.25, ..GradCheck::default() };
        assert_eq!(check_gradient(abs, &x, &grad, &options).unwrap().kinks, 1);
        // ...but not when every coordinate sits on one.
        let zeros = [0.0f32; 4];
        let error = check_gradient(abs, &zeros, &[0.0; 4], &options).unwrap_err();
        assert!(error.contains("4 of 4 coordinates are at non-smooth points"), "{error}");
    }

    #[test]
    fn a_kink_just_inside_the_step_is_not_a_failure_but_a_wrong_gradient_is() {
        // Slope 1, then 1.6 past k = 0.9·h: over the first step forward and backward
        // differences agree well enough (0.06 apart) but the central one is off by 0.03, more
        // than the tolerance (about 0.022); a quarter step no longer reaches the kink.
        let k = 0.9 * GradCheck::default().step as f64;
        let f = |x: &[f32]| {
            let x = f64::from(x[0]);
            Ok(x + 0.6 * (x - k).max(0.0))
        };
        let report = check_gradient(f, &[0.0], &[1.0], &GradCheck::default()).unwrap();
        assert_eq!((report.checked, report.kinks), (1, 0));
        assert!(check_gradient(f, &[0.0], &[1.5], &GradCheck::default()).unwrap_err().contains("mismatch at index 0"));
    }

    /// x + J·[x − k]₊ with a kink at k = 0.1·h, J = 0.09, and its piece (which side of k):
    /// over either step the kink is too small for the kink test and bends the central
    /// difference by more than the tolerance (see below).
    fn small_kink(x: &[f32]) -> (f64, u64) {
        let k = 0.1 * f64::from(GradCheck::default().step);
        let x = f64::from(x[0]);
        (x + 0.09 * (x - k).max(0.0), u64::from(x > k))
    }

    #[test]
    fn a_kink_inside_the_quarter_step_fails_unless_the_pieces_are_known() {
        // Tolerance about 0.022, kink test 4·0.022: at the full step forward and backward
        // differences are 0.081 apart and the central one is off by 0.041; at a quarter step
        // 0.054 apart and off by 0.027. The slope on the side of x is 1.
        let value = |x: &[f32]| Ok(small_kink(x).0);
        let error = check_gradient(value, &[0.0], &[1.0], &GradCheck::default()).unwrap_err();
        assert!(error.contains("mismatch at index 0"), "{error}");
        // Named pieces: the backward side stays on x's piece and its difference is compared.
        let pieces = |x: &[f32]| Ok(small_kink(x));
        let report = check_piecewise_gradient(pieces, &[0.0], &[1.0], &GradCheck::default()).unwrap();
        assert_eq!((report.checked, report.kinks), (1, 0));
        assert!(report.max_abs_error < 1e-6, "{report:?}");
        // A wrong slope is still caught there: 5% off, or the slope of the other side.
        for wrong in [1.05f32, 0.95, 1.09] {
            let error = check_piecewise_gradient(pieces, &[0.0], &[wrong], &GradCheck::default()).unwrap_err();
            assert!(error.contains("mismatch at index 0"), "{wrong}: {error}");
        }
    }

    #[test]
    fn one_sided_differences_are_second_order_and_catch_wrong_coordinates() {
        // f(x) = Σ xᵢ³ + ½|xᵢ − kᵢ|, each kink just past xᵢ (inside the quarter step) on one side
        // or the other, so every coordinate is checked one-sided, on the cubic's curvature.
        let x = [0.5f32, -1.5, 2.0, 1.2, -0.7, 1.9];
        let h = GradCheck::default().step;
        let kinks: Vec<f32> = x
            .iter()
            .enumerate()
            .map(|(i, &v)| v + if i % 2 == 0 { 0.1 } else { -0.1 } * h * v.abs().max(1.0))
            .collect();
        let f = |z: &[f32]| {
            let mut piece = 0u64;
            let mut value = 0.0;
            for (i, (&v, &k)) in z.iter().zip(&kinks).enumerate() {
                let (v, k) = (f64::from(v), f64::from(k));
                value += v.powi(3) + 0.5 * (v - k).abs();
                piece |= u64::from(v > k) << i;
            }
            Ok((value, piece))
        };
        let grad: Vec<f32> =
            x.iter().zip(&kinks).map(|(&v, &k)| 3.0 * v * v + if v > k { 0.5 } else { -0.5 }).collect();
        let options = GradCheck { columns: 3, ..GradCheck::default() };
        let report = check_piecewise_gradient(f, &x, &grad, &options).unwrap();
        assert_eq!((report.checked, report.kinks), (6, 0));
        // The whole gradient 5% too large, or one coordinate 5% off, fails.
        let scaled: Vec<f32> = grad.iter().map(|g| 1.05 * g).collect();
        let error = check_piecewise_gradient(f, &x, &scaled, &options).unwrap_err();
        assert!(error.starts_with("gradient mismatch at row"), "{error}");
        let mut one = grad.clone();
        one[4] *= 1.05;
        let error = check_piecewise_gradient(f, &x, &one, &options).unwrap_err();
        assert!(error.starts_with("gradient mismatch at row 1, column 1"), "{error}");
    }

    #[test]
    fn a_coordinate_whose_steps_both_leave_its_piece_is_a_kink() {
        // |x| at 0: its pieces are x < 0, x = 0 and x > 0, so both steps leave the piece of
        // 0 and the coordinate cannot be checked; too many such coordinates fail.
        let abs = |x: &[f32]| Ok((f64::from(x[0]).abs(), (x[0].signum() as i64 + i64::from(x[0] != 0.0)) as u64));
        let error = check_piecewise_gradient(abs, &[0.0], &[0.0], &GradCheck::default()).unwrap_err();
        assert!(error.contains("1 of 1 coordinates are at non-smooth points"), "{error}");
    }

    #[test]
    fn a_failing_function_is_reported() {
        let error = check_gradient(|_: &[f32]| Err("NaN loss".into()), &[1.0], &[0.0], &GradCheck::default());
        assert_eq!(error.unwrap_err(), "evaluating the loss failed: NaN loss");
    }
}
