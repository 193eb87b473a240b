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
//! The pairs are the mined ones when a miner ran (triplets split into their (a, p) and (a, n)
//! pairs, PML's `convert_to_pairs`), and otherwise every ordered pair of the batch (PML's
//! `get_all_pairs_indices`). The gradient is exact; at a hinge (ℓ = 0 exactly) it is 0.
//!
//! With reference embeddings (a cross-batch memory), anchors are batch rows and the other
//! end of each pair a reference row, as PML's `ref_emb`; the gradient is the batch's only.

use dmlbench_sdk::checks::finite;
use dmlbench_sdk::distance::DistanceConfig;
use dmlbench_sdk::matrix::Matrix;
use dmlbench_sdk::reduce::mean_of_nonzero_pairs;
use dmlbench_sdk::{Batch, Context, Loss, Plugin, Result, Stats, TupleForm, TupleUse};
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
        finite("pos_margin", config.pos_margin)?;
        finite("neg_margin", config.neg_margin)?;
        Ok(Contrastive { config })
    }
}

impl Loss for Contrastive {
    const TUPLES: TupleUse = TupleUse::Optional(TupleForm::Pairs);
    const ACCEPTS_REFERENCES: bool = true;

    fn forward_backward(&mut self, batch: &Batch<'_>, grad: &mut [f32], stats: &mut Stats) -> Result<f64> {
        let pairs = batch.pairs();
        let distances = self.config.distance.for_batch(batch);
        let mut dvalues = Matrix::zeros(batch.n(), batch.reference_count());
        let (m_pos, m_neg) = (self.config.pos_margin, self.config.neg_margin);
        let mut total = 0.0;
        for (kind, margin, anchors, others) in
            [("pos", m_pos, &pairs.a1, &pairs.p), ("neg", m_neg, &pairs.a2, &pairs.n)]
        {
            // ℓ and dℓ/dv of a pair with value v: a distance pushes positives below m⁺ and
            // negatives above m⁻; a similarity flips both.
            let sign = if (kind == "pos") != self.config.distance.is_similarity() { 1.0 } else { -1.0 };
            let hinge = |v: f64| if sign * (v - margin) > 0.0 { (sign * (v - margin), sign) } else { (0.0, 0.0) };
            let each = anchors.iter().copied().zip(others.iter().copied());
            let mean = mean_of_nonzero_pairs(distances.values().view(), each, hinge, &mut dvalues);
            total += mean.value;
            stats.record(&format!("{kind}_pairs"), anchors.len() as f64);
            stats.record(&format!("active_{kind}_pairs"), mean.count as f64);
        }
        if pairs.a1.is_empty() && pairs.a2.is_empty() {
            stats.record("no_pairs", 1.0);
            return Ok(0.0);
        }
        grad.copy_from_slice(&distances.backward(batch, dvalues.view()).data);
        Ok(total)
    }
}

dmlbench_sdk::export_plugins!(loss: Contrastive);
