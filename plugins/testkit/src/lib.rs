//! What a conformance check of a loss or miner needs, with no plugin machinery: seeded
//! random batches, a finite-difference gradient check that tells non-smooth points from wrong
//! gradients, and tolerant comparisons. The SDK's test kit re-exports it for plugin tests; the
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
    /// Forward and backward differences disagree: no derivative on this scale.
    Kink,
    /// The central difference matches, with this error.
    Match(f64),
    /// The central difference (first) differs from the analytic value by the second.
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
    if x.len() != analytic.len() {
        return Err(format!("gradient has {} values for {} inputs", analytic.len(), x.len()));
    }
    let mut eval = |x: &[f32]| f(x).map_err(|e| format!("evaluating the loss failed: {e}"));
    let f0 = eval(x)?;
    let scale = analytic.iter().fold(0.0f64, |m, &g| m.max(f64::from(g).abs()));
    let atol = options.atol + options.atol_scale * scale;
    let coordinates = sample_coordinates(x.len(), options.max_coordinates, options.seed);
    let mut report = GradReport { checked: 0, kinks: 0, max_abs_error: 0.0 };
    let mut probe = x.to_vec();
    let mut first_failure: Option<String> = None;
    for &c in &coordinates {
        // The verdict of the finest step tried: a kink there, a match, or a mismatch that is
        // confirmed at a quarter of the step before it counts (a kink just inside the first
        // step can pass the smoothness test and still bend its difference).
        let mut verdict = Verdict::Kink;
        for shrink in [1.0f32, 0.25] {
            let h = options.step * shrink * x[c].abs().max(1.0);
            // Use the steps actually representable in f32.
            probe[c] = x[c] + h;
            let (up, h_up) = (eval(&probe)?, f64::from(probe[c] - x[c]));
            probe[c] = x[c] - h;
            let (down, h_down) = (eval(&probe)?, f64::from(x[c] - probe[c]));
            probe[c] = x[c];
            let forward = (up - f0) / h_up;
            let backward = (f0 - down) / h_down;
            let central = (up - down) / (h_up + h_down);
            if (forward - backward).abs() > 4.0 * (atol + options.rtol * central.abs()) {
                verdict = Verdict::Kink;
                continue;
            }
            let a = f64::from(analytic[c]);
            let error = (a - central).abs();
            if error <= atol + options.rtol * central.abs().max(a.abs()) {
                verdict = Verdict::Match(error);
                break;
            }
            verdict = Verdict::Mismatch(central, error);
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
                    let a = f64::from(analytic[c]);
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

    #[test]
    fn a_failing_function_is_reported() {
        let error = check_gradient(|_: &[f32]| Err("NaN loss".into()), &[1.0], &[0.0], &GradCheck::default());
        assert_eq!(error.unwrap_err(), "evaluating the loss failed: NaN loss");
    }
}
