//! Contrastive loss (Hadsell, Chopra and LeCun, "Dimensionality Reduction by Learning an
//! Invariant Mapping", CVPR 2006), with the defaults of pytorch-metric-learning's
//! `ContrastiveLoss`.
//!
//! With a distance d (Euclidean on L2-normalised embeddings by default), positive pairs P and
//! negative pairs N:
//!
//! ```text
//! ℓ⁺(a, p) = [d(a, p) − m⁺]₊          m⁺ = pos_margin = 0
//! ℓ⁻(a, n) = [m⁻ − d(a, n)]₊          m⁻ = neg_margin = 1
//! L = mean_{ℓ⁺ > 0} ℓ⁺  +  mean_{ℓ⁻ > 0} ℓ⁻
//! ```
//!
//! Each term is averaged over its non-zero elements only (PML's `AvgNonZeroReducer`), then
//! the two are summed; a term with no non-zero element contributes 0. With a similarity
//! measure (cosine, dot) the inequalities flip as in PML: ℓ⁺ = [m⁺ − s]₊, ℓ⁻ = [s − m⁻]₊.
//!
//! The pairs are the mined ones when a miner ran (triplets are split into their (a, p) and
//! (a, n) pairs, PML's `convert_to_pairs`), and otherwise every ordered pair of the batch
//! (PML's `get_all_pairs_indices`). The gradient is exact; at a hinge (ℓ = 0 exactly) it
//! is taken as 0.

use dmlbench_sdk::distance::DistanceConfig;
use dmlbench_sdk::matrix::Matrix;
use dmlbench_sdk::reduce::mean_of_nonzero;
use dmlbench_sdk::tuples::all_pairs;
use dmlbench_sdk::{Batch, Context, Error, Loss, Plugin, Result, Stats, TupleForm, TupleUse, Tuples};
use serde::{Deserialize, Serialize};

/// Configuration (PML's defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// m⁺: positive pairs closer than this cost nothing.
    pub pos_margin: f64,
    /// m⁻: negative pairs farther than this cost nothing.
    pub neg_margin: f64,
    /// How pairs are compared.
    pub distance: DistanceConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config { pos_margin: 0.0, neg_margin: 1.0, distance: DistanceConfig::default() }
    }
}

/// The contrastive loss.
pub struct Contrastive {
    config: Config,
}

impl Plugin for Contrastive {
    type Config = Config;
    const ID: &'static str = "contrastive";
    const NAME: &'static str = "Contrastive loss";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const SUMMARY: &'static str =
        "[d(a,p) − m⁺]₊ and [m⁻ − d(a,n)]₊, each averaged over non-zero pairs (Hadsell et al. 2006; PML defaults)";

    fn new(config: Config, _context: &Context) -> Result<Self> {
        for (name, value) in [("pos_margin", config.pos_margin), ("neg_margin", config.neg_margin)] {
            if !value.is_finite() {
                return Err(Error::bad_config(format!("{name} must be finite, got {value}")));
            }
        }
        Ok(Contrastive { config })
    }
}

impl Contrastive {
    /// ℓ for one pair value: the hinge on the side its kind and the measure call for, and
    /// its derivative with respect to the value.
    fn hinge(&self, value: f64, positive: bool) -> (f64, f64) {
        // For a distance, positives are pushed below m⁺ and negatives above m⁻; a similarity
        // flips both.
        let sign = if positive != self.config.distance.is_similarity() { 1.0 } else { -1.0 };
        let margin = if positive { self.config.pos_margin } else { self.config.neg_margin };
        let t = sign * (value - margin);
        if t > 0.0 { (t, sign) } else { (0.0, 0.0) }
    }
}

impl Loss for Contrastive {
    const TUPLES: TupleUse = TupleUse::Optional(TupleForm::Pairs);

    fn forward_backward(&mut self, batch: &Batch<'_>, grad: &mut [f32], stats: &mut Stats) -> Result<f64> {
        let n = batch.n();
        let pairs = match &batch.tuples {
            Some(Tuples::Pairs(p)) => p.clone(),
            Some(Tuples::Triplets(t)) => t.to_pairs(),
            None => all_pairs(batch.labels),
        };
        let distances = self.config.distance.compute(batch.embeddings);
        let values = distances.values();

        let mut dvalues = Matrix::zeros(n, n);
        let mut total = 0.0;
        for (positive, anchors, others) in [(true, &pairs.a1, &pairs.p), (false, &pairs.a2, &pairs.n)] {
            let terms: Vec<(f64, f64)> = anchors
                .iter()
                .zip(others.iter())
                .map(|(&a, &b)| self.hinge(f64::from(values.get(a as usize, b as usize)), positive))
                .collect();
            let losses: Vec<f64> = terms.iter().map(|t| t.0).collect();
            let mean = mean_of_nonzero(&losses);
            total += mean.value;
            for ((&a, &b), &(loss, slope)) in anchors.iter().zip(others.iter()).zip(&terms) {
                if loss > 0.0 {
                    let (a, b) = (a as usize, b as usize);
                    dvalues.set(a, b, dvalues.get(a, b) + (mean.weight * slope) as f32);
                }
            }
            let kind = if positive { "pos" } else { "neg" };
            stats.record(&format!("{kind}_pairs"), anchors.len() as f64);
            stats.record(&format!("active_{kind}_pairs"), mean.count as f64);
        }
        if pairs.a1.is_empty() && pairs.a2.is_empty() {
            stats.record("no_pairs", 1.0);
            return Ok(0.0);
        }
        let dz = distances.backward(batch.embeddings, dvalues.view());
        grad.copy_from_slice(&dz.data);
        Ok(total)
    }
}

dmlbench_sdk::export_plugins!(loss: Contrastive);
