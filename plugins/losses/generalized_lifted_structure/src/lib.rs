//! Generalised lifted structure loss (Hermans, Beyer and Leibe, "In Defense of the Triplet
//! Loss for Person Re-Identification", arXiv 1703.07737, 2017, section 2), with the
//! definitions and defaults of pytorch-metric-learning's `GeneralizedLiftedStructureLoss`.
//!
//! A per-anchor softening of the lifted structure loss of Oh Song et al. (CVPR 2016): with a
//! distance d (Euclidean on L2-normalised embeddings by default) and, for each anchor i, its
//! positive pairs P_i and negative pairs N_i:
//!
//! ```text
//! ℓ_i = [ log Σ_{p ∈ P_i} e^{d(i, p) − m⁺}  +  log Σ_{n ∈ N_i} e^{m⁻ − d(i, n)} ]₊
//! L   = (1/n) Σ_i ℓ_i
//! ```
//!
//! m⁻ = neg_margin = 1, m⁺ = pos_margin = 0 (PML's defaults; the paper has m⁺ = 0). As in
//! PML's masked `logsumexp`, a log-sum-exp over an empty set is 0, not −∞: an anchor without
//! positives keeps its negative term and one without negatives keeps its positive term (so a
//! batch of one class is still pulled together). The mean runs over all n rows (PML's
//! `MeanReducer`), an anchor without any pair contributing 0. With a similarity (cosine, dot)
//! both margins flip as PML's `distance.margin` does: e^{m⁺ − s(i, p)} and e^{s(i, n) − m⁻}.
//!
//! The pairs are the mined ones when a miner ran (triplets are split into their (a, p) and
//! (a, n) pairs, PML's `convert_to_pairs`), and every ordered pair of the batch otherwise. As in
//! PML (`mat_based_loss`), the pairs form masks over the n×n matrix, so a pair mined twice
//! counts once. A batch without any pair gives 0 and a zero gradient (`no_pairs`); at the
//! hinge (ℓ_i = 0 exactly) the gradient is 0.
//!
//! Difference from PML: PML returns 0 when every index array of the mined tuple has at most
//! one element (one positive and one negative pair are ignored); here such a batch is
//! computed like any other.

use dmlbench_sdk::checks::finite;
use dmlbench_sdk::distance::DistanceConfig;
use dmlbench_sdk::matrix::Matrix;
use dmlbench_sdk::{Batch, Context, Loss, Plugin, Result, Stats, TupleForm, TupleUse};
use serde::{Deserialize, Serialize};

/// Configuration (PML's defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// m⁻: the margin inside the exponentials of the negative pairs.
    pub neg_margin: f64,
    /// m⁺: the margin inside the exponentials of the positive pairs.
    pub pos_margin: f64,
    /// How pairs are compared.
    pub distance: DistanceConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config { neg_margin: 1.0, pos_margin: 0.0, distance: DistanceConfig::default() }
    }
}

/// The generalised lifted structure loss.
pub struct GeneralizedLiftedStructure {
    config: Config,
}

impl Plugin for GeneralizedLiftedStructure {
    type Config = Config;
    const ID: &'static str = "generalized_lifted_structure";
    const NAME: &'static str = "Generalised lifted structure loss";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const SUMMARY: &'static str =
        "[log Σ_p e^{d(i,p)−m⁺} + log Σ_n e^{m⁻−d(i,n)}]₊, mean over rows (Hermans et al. 2017; PML defaults)";

    fn new(config: Config, _context: &Context) -> Result<Self> {
        finite("neg_margin", config.neg_margin)?;
        finite("pos_margin", config.pos_margin)?;
        Ok(GeneralizedLiftedStructure { config })
    }
}

/// What a pair (i, j) is to the loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pair {
    None,
    Positive,
    Negative,
}

/// A masked log-sum-exp in progress: the maximum and Σ e^{x − max} of its terms.
#[derive(Clone, Copy)]
struct Lse {
    max: f64,
    sum: f64,
}

impl Lse {
    /// The log-sum-exp, or 0 for an empty set (PML's masked `logsumexp`).
    fn value(self) -> f64 {
        if self.max == f64::NEG_INFINITY { 0.0 } else { self.max + self.sum.ln() }
    }
}

impl Loss for GeneralizedLiftedStructure {
    const TUPLES: TupleUse = TupleUse::Optional(TupleForm::Pairs);

    fn forward_backward(&mut self, batch: &Batch<'_>, grad: &mut [f32], stats: &mut Stats) -> Result<f64> {
        let n = batch.n();
        let pairs = batch.pairs();
        let mut kinds = vec![Pair::None; n * n];
        for (&a, &p) in pairs.a1.iter().zip(&pairs.p) {
            kinds[a as usize * n + p as usize] = Pair::Positive;
        }
        for (&a, &x) in pairs.a2.iter().zip(&pairs.n) {
            kinds[a as usize * n + x as usize] = Pair::Negative;
        }
        let pos_count = kinds.iter().filter(|&&k| k == Pair::Positive).count();
        let neg_count = kinds.iter().filter(|&&k| k == Pair::Negative).count();
        stats.record("pos_pairs", pos_count as f64);
        stats.record("neg_pairs", neg_count as f64);
        if pos_count + neg_count == 0 {
            stats.record("no_pairs", 1.0);
            return Ok(0.0);
        }

        let distances = self.config.distance.compute(batch.embeddings);
        let values = distances.values();
        // Positive exponent σ(v − m⁺), negative exponent −σ(v − m⁻), σ = +1 for a distance and
        // −1 for a similarity (PML's `distance.margin`).
        let sigma = if self.config.distance.is_similarity() { -1.0 } else { 1.0 };
        let (m_pos, m_neg) = (self.config.pos_margin, self.config.neg_margin);
        let inv_n = 1.0 / n as f64;
        let mut dvalues = Matrix::zeros(n, n);
        let mut exponents = vec![0.0f64; n];
        let (mut total, mut active) = (0.0, 0usize);
        for i in 0..n {
            let row_kinds = &kinds[i * n..(i + 1) * n];
            let mut pos = Lse { max: f64::NEG_INFINITY, sum: 0.0 };
            let mut neg = pos;
            for (j, &kind) in row_kinds.iter().enumerate() {
                let v = f64::from(values.get(i, j));
                match kind {
                    Pair::Positive => {
                        exponents[j] = sigma * (v - m_pos);
                        pos.max = pos.max.max(exponents[j]);
                    }
                    Pair::Negative => {
                        exponents[j] = -sigma * (v - m_neg);
                        neg.max = neg.max.max(exponents[j]);
                    }
                    Pair::None => exponents[j] = 0.0,
                }
            }
            // Keep e^{x − max} in place of x for the softmax below.
            for (j, &kind) in row_kinds.iter().enumerate() {
                let lse = match kind {
                    Pair::Positive => &mut pos,
                    Pair::Negative => &mut neg,
                    Pair::None => continue,
                };
                exponents[j] = (exponents[j] - lse.max).exp();
                lse.sum += exponents[j];
            }
            let x = pos.value() + neg.value();
            if x <= 0.0 {
                continue;
            }
            total += x;
            active += 1;
            // dℓ_i/dv_ij: the softmax weight within the pair's kind, times dx/dv (±σ), over n.
            let row = dvalues.row_mut(i);
            for (j, &kind) in row_kinds.iter().enumerate() {
                let g = match kind {
                    Pair::Positive => sigma * exponents[j] / pos.sum,
                    Pair::Negative => -sigma * exponents[j] / neg.sum,
                    Pair::None => continue,
                };
                row[j] = (g * inv_n) as f32;
            }
        }
        stats.record("active_anchors", active as f64);
        if active == 0 {
            stats.record("no_active_anchors", 1.0);
            return Ok(0.0);
        }
        grad.copy_from_slice(&distances.backward(batch.embeddings, dvalues.view()).data);
        Ok(total * inv_n)
    }
}

dmlbench_sdk::export_plugins!(loss: GeneralizedLiftedStructure);
