//! The test kit every plugin test uses: seeded random batches, a finite-difference gradient
//! check and tolerant comparisons (from `dmlbench-testkit`), the same check run on a loss
//! instance, and plain-loop reference maths in `f64` to compare optimised code against.

pub mod batches;

pub use dmlbench_testkit::{
    GradCheck, GradReport, assert_all_close, assert_close, check_gradient, check_piecewise_gradient, random_embeddings,
    random_labels,
};

use dmlbench_abi::PIECE_STAT;

use crate::instance::Instance;
use crate::plugin::{Context, Loss};
use crate::tuples::Tuples;

/// A context for tests: d, class count, seed 0, learning rate 0.1.
pub fn context(embedding_dim: usize, num_classes: usize) -> Context {
    Context { embedding_dim, num_classes, seed: 0, base_lr: 0.1 }
}

/// Finite-difference check of a loss instance on one batch: its own gradient against
/// differences of its own loss value; for a [`Loss::PIECEWISE_SMOOTH`] loss, differences that
/// stay on the piece it names ([`check_piecewise_gradient`]).
pub fn check_loss_gradient<T: Loss>(
    instance: &mut Instance<T>,
    embeddings: &[f32],
    labels: &[i64],
    tuples: Option<&Tuples>,
    options: &GradCheck,
) -> std::result::Result<GradReport, String> {
    let value = instance.forward_backward(embeddings, labels, tuples).map_err(|e| e.to_string())?;
    let options = GradCheck { columns: instance.context().embedding_dim, ..options.clone() };
    let mut eval = |x: &[f32]| instance.forward_backward(x, labels, tuples).map_err(|e| e.to_string());
    if T::PIECEWISE_SMOOTH {
        // The instance refuses a call of such a loss that records no piece.
        let f = |x: &[f32]| eval(x).map(|v| (v.loss, v.stats.get(PIECE_STAT).unwrap_or(f64::NAN).to_bits()));
        check_piecewise_gradient(f, embeddings, &value.grad, &options)
    } else {
        check_gradient(|x: &[f32]| eval(x).map(|v| v.loss), embeddings, &value.grad, &options)
    }
}

/// Plain-loop reference maths in `f64`, written for clarity, not speed.
pub mod naive {
    /// Row i of a row-major n×d buffer, in f64.
    pub fn row(x: &[f32], d: usize, i: usize) -> Vec<f64> {
        x[i * d..(i + 1) * d].iter().map(|&v| f64::from(v)).collect()
    }

    /// Dot product.
    pub fn dot(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    /// Euclidean norm.
    pub fn norm(a: &[f64]) -> f64 {
        dot(a, a).sqrt()
    }

    /// a / max(‖a‖, 1e-12).
    pub fn normalized(a: &[f64]) -> Vec<f64> {
        let n = norm(a).max(1e-12);
        a.iter().map(|x| x / n).collect()
    }

    /// Cross-entropy of the SDK's linear classifier ([`crate::classifier`]) by its definition:
    /// each row L2-normalised if the configuration says so, then multiplied by the given
    /// dropout mask (already scaled by 1/(1 − p)); class weights L2-normalised if it says so;
    /// logits (w_c·x + b_c)/T; label-smoothed targets; the mean over rows. `w` is
    /// classes × d and `b` has one bias per class.
    pub fn classifier_loss(
        config: &crate::classifier::ClassifierConfig,
        w: &[f32],
        b: &[f32],
        z: &[f32],
        labels: &[i64],
        d: usize,
        mask: Option<&[f32]>,
    ) -> f64 {
        let classes = b.len();
        let mut total = 0.0;
        for (i, &label) in labels.iter().enumerate() {
            let mut x = row(z, d, i);
            if config.normalize_features {
                x = normalized(&x);
            }
            if let Some(m) = mask {
                for (k, v) in x.iter_mut().enumerate() {
                    *v *= f64::from(m[i * d + k]);
                }
            }
            let logits: Vec<f64> = (0..classes)
                .map(|c| {
                    let mut wc = row(w, d, c);
                    if config.normalize_weights {
                        wc = normalized(&wc);
                    }
                    (dot(&wc, &x) + f64::from(b[c])) / config.temperature
                })
                .collect();
            let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let log_sum_exp = max + logits.iter().map(|l| (l - max).exp()).sum::<f64>().ln();
            let eps = config.label_smoothing;
            for (c, l) in logits.iter().enumerate() {
                let target = if c as i64 == label { 1.0 - eps } else { eps / (classes - 1) as f64 };
                total -= target * (l - log_sum_exp);
            }
        }
        total / labels.len() as f64
    }

    /// Cosine similarity.
    pub fn cosine(a: &[f64], b: &[f64]) -> f64 {
        dot(&normalized(a), &normalized(b))
    }

    /// Squared Euclidean distance.
    pub fn squared_euclidean(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
    }

    /// Euclidean distance.
    pub fn euclidean(a: &[f64], b: &[f64]) -> f64 {
        squared_euclidean(a, b).sqrt()
    }

    /// Every row of an n×d buffer, L2-normalised.
    pub fn normalized_rows(x: &[f32], d: usize) -> Vec<Vec<f64>> {
        (0..x.len() / d).map(|i| normalized(&row(x, d, i))).collect()
    }
}
