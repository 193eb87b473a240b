//! Scalable neighbourhood component analysis (Wu, Efros and Yu, "Improving Generalization via
//! Scalable Neighborhood Component Analysis", ECCV 2018), in its batch form.
//!
//! With cosine similarities s_ij between L2-normalised embeddings and a temperature σ:
//!
//! ```text
//! p_ij = exp(s_ij / σ) / Σ_{k ≠ i} exp(s_ik / σ)
//! ℓ_i  = −log Σ_{j ≠ i, y_j = y_i} p_ij
//! L    = mean of ℓ_i over the anchors i that have a positive
//! ```
//!
//! σ = 0.05, the paper's value. The paper's neighbours are a memory bank of the whole
//! training set; here they are the other members of the batch, as in NCA-style batch losses.
//! An anchor alone in its class has no positive and an undefined ℓ_i: it is skipped and
//! counted (`skipped_anchors`), and the mean runs over the anchors that have a positive (so a
//! batch where no class repeats gives 0 and a zero gradient, with `no_positive_pairs`).
//!
//! pytorch-metric-learning's `NCALoss` computes the same function with other parameters: it
//! takes a softmax of −scale·‖u_i − u_j‖² over normalised embeddings (its default distance
//! `LpDistance(power=2)`), and ‖u_i − u_j‖² = 2 − 2 s_ij, so `NCALoss(softmax_scale = 1/(2σ))`
//! (10 for σ = 0.05) equals this loss; it also averages over the anchors with a non-zero
//! positive mass. Its default `softmax_scale=1` corresponds to σ = 0.5. The test suite checks
//! the equivalence.

use dmlbench_sdk::checks::positive;
use dmlbench_sdk::distance::DistanceConfig;
use dmlbench_sdk::matrix::Matrix;
use dmlbench_sdk::{Batch, Context, Loss, Plugin, Result, Stats};
use serde::{Deserialize, Serialize};

/// Configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// σ > 0: the temperature dividing cosine similarities.
    pub sigma: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config { sigma: 0.05 }
    }
}

/// The SNCA loss.
pub struct Snca {
    sigma: f64,
}

impl Plugin for Snca {
    type Config = Config;
    const ID: &'static str = "snca";
    const NAME: &'static str = "Scalable NCA";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const SUMMARY: &'static str =
        "−log Σ_{same class} softmax_{k≠i}(cos(z_i, z_k)/σ), mean over anchors with a positive (Wu et al. 2018)";

    fn new(config: Config, _context: &Context) -> Result<Self> {
        positive("sigma", config.sigma)?;
        Ok(Snca { sigma: config.sigma })
    }
}

impl Loss for Snca {
    fn forward_backward(&mut self, batch: &Batch<'_>, grad: &mut [f32], stats: &mut Stats) -> Result<f64> {
        let n = batch.n();
        let labels = batch.labels;
        let anchors: Vec<usize> = (0..n).filter(|&i| (0..n).any(|j| j != i && labels[j] == labels[i])).collect();
        stats.record("skipped_anchors", (n - anchors.len()) as f64);
        if anchors.is_empty() {
            stats.record("no_positive_pairs", 1.0);
            return Ok(0.0);
        }
        let similarities = DistanceConfig::cosine().compute(batch.embeddings);
        let s = similarities.values();
        let inv_sigma = 1.0 / self.sigma;
        let weight = 1.0 / anchors.len() as f64;
        let mut total = 0.0;
        let mut ds = Matrix::zeros(n, n);
        let mut scaled = vec![0.0f64; n];
        for &i in &anchors {
            // ℓ_i = LSE_{k≠i}(x_ik) − LSE_{j∈P(i)}(x_ij), both shifted by the row maximum.
            let mut max = f64::NEG_INFINITY;
            for (k, x) in scaled.iter_mut().enumerate() {
                *x = f64::from(s.get(i, k)) * inv_sigma;
                if k != i {
                    max = max.max(*x);
                }
            }
            // Keep e^{x_ik − max} in place of x_ik for the gradient below.
            let (mut all, mut pos) = (0.0, 0.0);
            for (k, x) in scaled.iter_mut().enumerate() {
                if k == i {
                    *x = 0.0;
                    continue;
                }
                *x = (*x - max).exp();
                all += *x;
                if labels[k] == labels[i] {
                    pos += *x;
                }
            }
            total += all.ln() - pos.ln();
            // dℓ_i/dx_ik = softmax over k ≠ i − softmax over the positives.
            let row = ds.row_mut(i);
            for (k, &e) in scaled.iter().enumerate() {
                let mut g = e / all;
                if k != i && labels[k] == labels[i] {
                    g -= e / pos;
                }
                row[k] = (g * inv_sigma * weight) as f32;
            }
        }
        let dz = similarities.backward(batch.embeddings, ds.view());
        grad.copy_from_slice(&dz.data);
        Ok(total * weight)
    }
}

dmlbench_sdk::export_plugins!(loss: Snca);
