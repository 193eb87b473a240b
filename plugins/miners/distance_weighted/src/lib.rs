//! Distance-weighted negative sampling (Wu, Manmatha, Smola and Krähenbühl, "Sampling Matters
//! in Deep Embedding Learning", ICCV 2017), with the settings of pytorch-metric-learning's
//! `DistanceWeightedMiner`.
//!
//! On the unit sphere in R^k, distances between uniformly spread points have the density
//!
//! ```text
//! q(d) ∝ d^{k−2} (1 − d²/4)^{(k−3)/2}
//! ```
//!
//! (the paper's section 4). Sampling negatives with probability ∝ 1/q(d) undoes that
//! concentration, so negatives are drawn evenly across distances instead of almost all near
//! √2. For each anchor a and each negative n (another class), with d = ‖u_a − u_n‖ between
//! L2-normalised embeddings:
//!
//! ```text
//! d' = max(d, cutoff)                                   cutoff = 0.5
//! log w(a, n) = −(k − 2) log d' − ((k − 3)/2) log(1 − d'²/4)
//! w(a, n) = 0 if d' ≥ nonzero_loss_cutoff               nonzero_loss_cutoff = 1.4
//! P(n | a) = w(a, n) / Σ_n' w(a, n')
//! ```
//!
//! computed in log space (weights are shifted by the row's largest log-weight before
//! exponentiation; k = 512 gives exponents in the hundreds). The cutoff bounds the weights of
//! very close negatives ("to avoid high variance"); beyond `nonzero_loss_cutoff` a margin loss
//! would be zero, so those negatives are never drawn. Non-finite weights (d' ≥ 2) are zero.
//!
//! Each (anchor, positive) pair gets one negative drawn from P(· | a), as in the paper's
//! reference implementation. Output: triplets, by anchor then positive. Anchors without a
//! positive, or without a negative of non-zero weight, are skipped and counted. Draws come from
//! the run's seed and a call counter (saved as state), so a run is reproducible.
//!
//! Differences from PML, and why:
//! - PML draws, for each anchor, as many positives as its class has members, uniformly with
//!   replacement, and one negative for each; here every (anchor, positive) pair is used once,
//!   as in the paper's code, so no positive is missed or repeated by chance.
//! - PML shifts all weights by the batch's largest log-weight, so in high dimension a whole
//!   row can underflow to zero and its anchor be dropped; the per-row shift used here gives
//!   the same probabilities without that loss.
//!
//! The distance is fixed to PML's only compatible one: Euclidean on normalised embeddings.

use dmlbench_sdk::checks::positive;
use dmlbench_sdk::distance::DistanceConfig;
use dmlbench_sdk::rng::{CallRng, decode_counter, encode_counter};
use dmlbench_sdk::state::{TensorMap, save_tensors};
use dmlbench_sdk::{Batch, Context, Error, Miner, Plugin, Result, Stats, Triplets, TupleForm, Tuples};
use serde::{Deserialize, Serialize};

/// Configuration (PML's defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Distances below this are raised to it before weighting.
    pub cutoff: f64,
    /// Negatives at this distance or farther are never drawn.
    pub nonzero_loss_cutoff: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config { cutoff: 0.5, nonzero_loss_cutoff: 1.4 }
    }
}

/// The distance-weighted miner.
pub struct DistanceWeighted {
    config: Config,
    seed: u64,
    calls: u64,
}

impl DistanceWeighted {
    /// Weights ∝ P(n | a) over the batch for anchor `a`, from its row of distances and the
    /// embedding size `k`: zero for the anchor's own class, at or beyond the non-zero-loss
    /// cutoff, and where the log-weight is not finite. All zeros when no negative qualifies.
    fn negative_weights(&self, distances: &[f32], labels: &[i64], a: usize, k: usize) -> Vec<f64> {
        let k = k as f64;
        let log_weights: Vec<Option<f64>> = distances
            .iter()
            .zip(labels)
            .map(|(&d, &label)| {
                let d = f64::from(d).max(self.config.cutoff);
                if label == labels[a] || d >= self.config.nonzero_loss_cutoff {
                    return None;
                }
                let value = -(k - 2.0) * d.ln() - ((k - 3.0) / 2.0) * (1.0 - 0.25 * d * d).ln();
                value.is_finite().then_some(value)
            })
            .collect();
        let max = log_weights.iter().flatten().copied().fold(f64::NEG_INFINITY, f64::max);
        log_weights.iter().map(|lw| lw.map_or(0.0, |v| (v - max).exp())).collect()
    }
}

impl Plugin for DistanceWeighted {
    type Config = Config;
    const ID: &'static str = "distance_weighted";
    const NAME: &'static str = "Distance-weighted sampling";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const SUMMARY: &'static str = "one negative per (anchor, positive), drawn ∝ 1/q(d) on the unit sphere, cut off at 0.5 and 1.4 (Wu et al. 2017; PML)";
    const HAS_STATE: bool = true;

    fn new(config: Config, context: &Context) -> Result<Self> {
        positive("cutoff", config.cutoff)?;
        if !(config.nonzero_loss_cutoff.is_finite() && config.nonzero_loss_cutoff > config.cutoff) {
            return Err(Error::bad_config(format!(
                "nonzero_loss_cutoff must be a number above cutoff ({}), got {}",
                config.cutoff, config.nonzero_loss_cutoff
            )));
        }
        Ok(DistanceWeighted { config, seed: context.seed, calls: 0 })
    }

    fn save(&self) -> Result<Vec<u8>> {
        save_tensors(&[("calls", &[4], &encode_counter(self.calls))])
    }

    fn load(&mut self, bytes: &[u8]) -> Result<()> {
        let mut map = TensorMap::parse(bytes)?;
        let calls = decode_counter(&map.take("calls", &[4])?, "calls")?;
        map.finish()?;
        self.calls = calls;
        Ok(())
    }
}

impl Miner for DistanceWeighted {
    const OUTPUT: TupleForm = TupleForm::Triplets;

    fn mine(&mut self, batch: &Batch<'_>, stats: &mut Stats) -> Result<Tuples> {
        let (n, k) = (batch.n(), batch.d());
        let labels = batch.labels;
        let distances = DistanceConfig::default().compute(batch.embeddings);
        let values = distances.values();
        let mut rng = CallRng::new(self.seed, "distance_weighted", self.calls);
        self.calls += 1;
        let mut out = Triplets::default();
        let (mut without_positive, mut without_negative) = (0usize, 0usize);
        for a in 0..n {
            let positives: Vec<usize> = (0..n).filter(|&p| p != a && labels[p] == labels[a]).collect();
            if positives.is_empty() {
                without_positive += 1;
                continue;
            }
            let weights = self.negative_weights(values.row(a), labels, a, k);
            for &p in &positives {
                let Some(negative) = rng.categorical(&weights) else {
                    without_negative += 1;
                    break;
                };
                out.a.push(a as u32);
                out.p.push(p as u32);
                out.n.push(negative as u32);
            }
        }
        stats.record("triplets", out.len() as f64);
        stats.record("anchors_without_positive", without_positive as f64);
        stats.record("anchors_without_negative", without_negative as f64);
        Ok(Tuples::Triplets(out))
    }
}

dmlbench_sdk::export_plugins!(miner: DistanceWeighted);
