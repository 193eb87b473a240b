//! The learning-rate factor at each iteration: the network's optimiser uses base lr × factor,
//! and loss plugins with parameters get the same factor in `step(lr_scale)`.

use crate::experiment::spec::ScheduleSpec;

/// The factor for (0-based) `iteration` of `total` iterations, `iterations_per_epoch` per
/// epoch.
///
/// - `Constant`: 1.
/// - `WarmupCosine { w }`: min((i + 1) / w, ½ (1 + cos(π i / total))): a cosine over the
///   whole run, capped by a linear warm-up over the first w iterations (the schedule of
///   Boudiaf et al.'s code, `warmcos`).
/// - `Step { every_epochs, gamma }`: gamma^⌊epoch / every_epochs⌋.
pub fn lr_factor(schedule: ScheduleSpec, iteration: usize, total: usize, iterations_per_epoch: usize) -> f64 {
    match schedule {
        ScheduleSpec::Constant => 1.0,
        ScheduleSpec::WarmupCosine { warmup_iterations: w } => {
            let warm = (iteration + 1) as f64 / w.max(1) as f64;
            let progress = (iteration as f64 / total.max(1) as f64).min(1.0);
            warm.min(0.5 * (1.0 + (std::f64::consts::PI * progress).cos()))
        }
        ScheduleSpec::Step { every_epochs, gamma } => {
            let epoch = iteration / iterations_per_epoch.max(1);
            gamma.powi((epoch / every_epochs.max(1)) as i32)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_capped_cosine_by_hand() {
        let s = ScheduleSpec::WarmupCosine { warmup_iterations: 4 };
        let f = |i| lr_factor(s, i, 20, 10);
        // Warm-up: (i + 1) / 4 is below the cosine for the first iterations.
        assert_eq!((f(0), f(1), f(2)), (0.25, 0.5, 0.75));
        // i = 3: min(1, ½(1 + cos(3π/20))) = the cosine.
        let cosine = |i: f64| 0.5 * (1.0 + (std::f64::consts::PI * i / 20.0).cos());
        assert!((f(3) - cosine(3.0)).abs() < 1e-12 && f(3) < 1.0);
        assert!((f(10) - 0.5).abs() < 1e-12); // halfway
        assert!((f(19) - cosine(19.0)).abs() < 1e-12 && f(19) < 0.01);
    }

    #[test]
    fn step_and_constant() {
        let s = ScheduleSpec::Step { every_epochs: 2, gamma: 0.1 };
        assert_eq!(lr_factor(s, 0, 100, 10), 1.0);
        assert_eq!(lr_factor(s, 19, 100, 10), 1.0);
        assert!((lr_factor(s, 20, 100, 10) - 0.1).abs() < 1e-15);
        assert!((lr_factor(s, 45, 100, 10) - 0.01).abs() < 1e-15);
        assert_eq!(lr_factor(ScheduleSpec::Constant, 5, 10, 2), 1.0);
    }
}
