//! Lifted structure loss (Oh Song, Xiang, Jegelka and Savarese, "Deep Metric Learning via
//! Lifted Structured Feature Embedding", CVPR 2016), with the definitions and defaults of
//! pytorch-metric-learning's `LiftedStructureLoss`.
//!
//! With a distance d (Euclidean on L2-normalised embeddings by default), the list of positive
//! pairs P and the list of negative pairs N:
//!
//! ```text
//! J(a, p) = log Σ_{(k, l) ∈ N, k ∈ {a, p}} e^{m⁻ − d(k, l)}  +  d(a, p) − m⁺
//! L       = (1/|P|) Σ_{(a, p) ∈ P} ½ [J(a, p)]₊²
//! ```
//!
//! m⁻ = neg_margin = 1, m⁺ = pos_margin = 0 (PML's defaults). The sum runs over the negative
//! pairs anchored at a or at p. Without a miner P and N hold every ordered pair of the batch,
//! so each unordered positive pair appears twice and the ½ makes this the paper's
//! 1/(2|P̂|) Σ [J]₊² over unordered pairs. With a similarity (cosine, dot) both margins flip
//! as PML's `distance.margin` does: e^{s(k, l) − m⁻} and m⁺ − s(a, p).
//!
//! As in PML (a pair-based loss): the pairs are lists, not masks, so a pair listed twice counts
//! twice, in the mean and in the sum of exponentials; a positive pair whose anchor and
//! positive anchor no negative pair gets 0 in place of the log-sum-exp (PML's masked
//! `logsumexp`), so its term is ½ [d(a, p) − m⁺]₊²; and a batch with no positive pair or no
//! negative pair gives 0 and a zero gradient (`no_pos_pairs`, `no_neg_pairs`). The mean runs
//! over every positive pair, active or not (PML's `MeanReducer`). The pairs are the mined ones
//! when a miner ran (triplets are split into their (a, p) and (a, n) pairs, duplicates kept,
//! PML's `convert_to_pairs`), and every ordered pair otherwise.
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
    /// m⁺: subtracted from the positive distance.
    pub pos_margin: f64,
    /// How pairs are compared.
    pub distance: DistanceConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config { neg_margin: 1.0, pos_margin: 0.0, distance: DistanceConfig::default() }
    }
}

/// The lifted structure loss.
pub struct LiftedStructure {
    config: Config,
}

impl Plugin for LiftedStructure {
    type Config = Config;
    const ID: &'static str = "lifted_structure";
    const NAME: &'static str = "Lifted structure loss";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const SUMMARY: &'static str = "½[log Σ_{negatives of a or p} e^{m⁻−d} + d(a,p) − m⁺]₊², mean over positive pairs (Oh Song et al. 2016; PML defaults)";

    fn new(config: Config, _context: &Context) -> Result<Self> {
        finite("neg_margin", config.neg_margin)?;
        finite("pos_margin", config.pos_margin)?;
        Ok(LiftedStructure { config })
    }
}

impl Loss for LiftedStructure {
    const TUPLES: TupleUse = TupleUse::Optional(TupleForm::Pairs);

    fn forward_backward(&mut self, batch: &Batch<'_>, grad: &mut [f32], stats: &mut Stats) -> Result<f64> {
        let pairs = batch.pairs();
        let (pos_count, neg_count) = (pairs.a1.len(), pairs.a2.len());
        stats.record("pos_pairs", pos_count as f64);
        stats.record("neg_pairs", neg_count as f64);
        if pos_count == 0 || neg_count == 0 {
            stats.record(if pos_count == 0 { "no_pos_pairs" } else { "no_neg_pairs" }, 1.0);
            return Ok(0.0);
        }

        let n = batch.n();
        let distances = self.config.distance.compute(batch.embeddings);
        let values = distances.values();
        // The positive term is σ(v − m⁺) and the negative exponent −σ(v − m⁻), with σ = +1
        // for a distance and −1 for a similarity (PML's `distance.margin`).
        let sigma = if self.config.distance.is_similarity() { -1.0 } else { 1.0 };
        let (m_pos, m_neg) = (self.config.pos_margin, self.config.neg_margin);
        let exponents: Vec<f64> = pairs
            .a2
            .iter()
            .zip(&pairs.n)
            .map(|(&k, &l)| -sigma * (f64::from(values.get(k as usize, l as usize)) - m_neg))
            .collect();
        // Per row k, the log-sum-exp of the negative pairs anchored at k, as (max, Σ e^{x − max});
        // the sum over the negatives of a or p combines the rows a and p.
        let mut row_max = vec![f64::NEG_INFINITY; n];
        for (&k, &x) in pairs.a2.iter().zip(&exponents) {
            row_max[k as usize] = row_max[k as usize].max(x);
        }
        let mut row_sum = vec![0.0f64; n];
        for (&k, &x) in pairs.a2.iter().zip(&exponents) {
            row_sum[k as usize] += (x - row_max[k as usize]).exp();
        }
        let weight = 1.0 / pos_count as f64;
        // dL/dv of each positive pair, and per row k the factor c_k with dL/dx_j = c_k e^{x_j − max_k}
        // for each negative pair j anchored at k.
        let mut slopes = vec![0.0f64; n * n];
        let mut row_factor = vec![0.0f64; n];
        let (mut total, mut active) = (0.0, 0usize);
        for (&a, &p) in pairs.a1.iter().zip(&pairs.p) {
            let (a, p) = (a as usize, p as usize);
            let max = row_max[a].max(row_max[p]);
            let lse = if max == f64::NEG_INFINITY {
                // No negative pair anchored at a or p: PML's masked log-sum-exp gives 0.
                0.0
            } else {
                let scaled = |k: usize| if row_sum[k] > 0.0 { row_sum[k] * (row_max[k] - max).exp() } else { 0.0 };
                max + (scaled(a) + scaled(p)).ln()
            };
            let j = lse + sigma * (f64::from(values.get(a, p)) - m_pos);
            if j <= 0.0 {
                continue;
            }
            total += 0.5 * j * j;
            active += 1;
            // d(½J²)/dJ = J, over |P|; the softmax weight of negative pair x is e^{x − lse}.
            let slope = j * weight;
            slopes[a * n + p] += slope * sigma;
            for k in [a, p] {
                if row_sum[k] > 0.0 {
                    row_factor[k] += slope * (row_max[k] - lse).exp();
                }
            }
        }
        stats.record("active_pos_pairs", active as f64);
        if active == 0 {
            stats.record("all_pos_pairs_inactive", 1.0);
            return Ok(0.0);
        }
        for ((&k, &l), &x) in pairs.a2.iter().zip(&pairs.n).zip(&exponents) {
            let (k, l) = (k as usize, l as usize);
            if row_factor[k] != 0.0 {
                slopes[k * n + l] -= sigma * row_factor[k] * (x - row_max[k]).exp();
            }
        }
        let dvalues = Matrix::from_vec(n, n, slopes.iter().map(|&g| g as f32).collect());
        grad.copy_from_slice(&distances.backward(batch.embeddings, dvalues.view()).data);
        Ok(total * weight)
    }
}

dmlbench_sdk::export_plugins!(loss: LiftedStructure);
