//! Multi-similarity loss (Wang, Han, Huang, Dong and Scott, "Multi-Similarity Loss with
//! General Pair Weighting for Deep Metric Learning", CVPR 2019), with the definitions and
//! defaults of pytorch-metric-learning's `MultiSimilarityLoss`.
//!
//! With cosine similarities S (by default) and, for each anchor i, its positive pairs P_i and
//! negative pairs N_i:
//!
//! ```text
//! ℓ_i = (1/α) log(1 + Σ_{p ∈ P_i} e^{−α (S_ip − λ)}) + (1/β) log(1 + Σ_{n ∈ N_i} e^{β (S_in − λ)})
//! L   = (1/n) Σ_i ℓ_i
//! ```
//!
//! α = 2, β = 50, λ = base = 0.5 (PML's defaults). The mean runs over all n rows of the
//! batch, as PML's `MeanReducer` over the per-row losses: a row with no pair contributes 0
//! and still counts (`anchors_without_pairs`).
//!
//! The pairs are the mined ones when a miner ran (usually the `multi_similarity` miner;
//! triplets are split into their (a, p) and (a, n) pairs), and every ordered pair of the batch
//! otherwise. As in PML the pairs form a mask over the n×n matrix, so a pair mined twice
//! counts once. With a distance instead of a similarity, the exponents flip as PML's
//! `distance.margin` does: α (d_ip − λ) and β (λ − d_in).
//!
//! Difference from PML: PML returns 0 when every index array of the mined tuple has at most
//! one element (one positive and one negative pair are ignored); here such a batch is
//! computed like any other. A batch without any pair gives 0 and a zero gradient with
//! `no_pairs`.
//!
//! With reference embeddings (a cross-batch memory), anchors are batch rows and positives
//! and negatives reference rows, as PML's `ref_emb`; each anchor's row of the matrix runs over
//! the references, and the gradient is the batch's only.

use dmlbench_sdk::checks::{finite, positive};
use dmlbench_sdk::distance::DistanceConfig;
use dmlbench_sdk::matrix::Matrix;
use dmlbench_sdk::{Batch, Context, Loss, Plugin, Result, Stats, TupleForm, TupleUse};
use serde::{Deserialize, Serialize};

/// Configuration (PML's defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// α > 0: sharpness of the positive term.
    pub alpha: f64,
    /// β > 0: sharpness of the negative term.
    pub beta: f64,
    /// λ: the similarity at which pairs switch between pull and push.
    pub base: f64,
    /// How embeddings are compared (cosine similarity by default).
    pub distance: DistanceConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config { alpha: 2.0, beta: 50.0, base: 0.5, distance: DistanceConfig::cosine() }
    }
}

/// The multi-similarity loss.
pub struct MultiSimilarity {
    config: Config,
}

impl Plugin for MultiSimilarity {
    type Config = Config;
    const ID: &'static str = "multi_similarity";
    const NAME: &'static str = "Multi-similarity loss";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const SUMMARY: &'static str = "(1/α)log(1+Σ_p e^{−α(S_ip−λ)}) + (1/β)log(1+Σ_n e^{β(S_in−λ)}), mean over rows (Wang et al. 2019; PML defaults)";

    fn new(config: Config, _context: &Context) -> Result<Self> {
        positive("alpha", config.alpha)?;
        positive("beta", config.beta)?;
        finite("base", config.base)?;
        Ok(MultiSimilarity { config })
    }
}

impl Loss for MultiSimilarity {
    const TUPLES: TupleUse = TupleUse::Optional(TupleForm::Pairs);
    const ACCEPTS_REFERENCES: bool = true;

    fn forward_backward(&mut self, batch: &Batch<'_>, grad: &mut [f32], stats: &mut Stats) -> Result<f64> {
        let (n, m) = (batch.n(), batch.reference_count());
        let rows = batch.rows();
        // Which pairs count: masks built from the mined tuples, or the labels themselves.
        let masks = batch.mined_pairs().map(|pairs| {
            let mut pos = vec![false; n * m];
            let mut neg = vec![false; n * m];
            for (&a, &p) in pairs.a1.iter().zip(&pairs.p) {
                pos[a as usize * m + p as usize] = true;
            }
            for (&a, &x) in pairs.a2.iter().zip(&pairs.n) {
                neg[a as usize * m + x as usize] = true;
            }
            (pos, neg)
        });
        let kind = |i: usize, j: usize| -> Pair {
            match &masks {
                Some((pos, neg)) if pos[i * m + j] => Pair::Positive,
                Some((_, neg)) if neg[i * m + j] => Pair::Negative,
                Some(_) => Pair::None,
                None if rows.is_self(i, j) => Pair::None,
                None if rows.labels[i] == rows.reference_labels[j] => Pair::Positive,
                None => Pair::Negative,
            }
        };
        let (mut pos_count, mut neg_count) = (0usize, 0usize);
        for i in 0..n {
            for j in 0..m {
                match kind(i, j) {
                    Pair::Positive => pos_count += 1,
                    Pair::Negative => neg_count += 1,
                    Pair::None => {}
                }
            }
        }
        stats.record("pos_pairs", pos_count as f64);
        stats.record("neg_pairs", neg_count as f64);
        if pos_count + neg_count == 0 {
            stats.record("no_pairs", 1.0);
            return Ok(0.0);
        }

        let distances = self.config.distance.for_batch(batch);
        let values = distances.values();
        let (alpha, beta, base) = (self.config.alpha, self.config.beta, self.config.base);
        // Exponents: −α(S − λ) for positives and β(S − λ) for negatives with a similarity;
        // both flip with a distance. `sign` is d(β-exponent)/dS / β.
        let sign = if self.config.distance.is_similarity() { 1.0 } else { -1.0 };
        let inv_n = 1.0 / n as f64;
        let mut dvalues = Matrix::zeros(n, m);
        let mut exponent = vec![0.0f64; m];
        let mut kinds = vec![Pair::None; m];
        let mut total = 0.0;
        let mut without_pairs = 0usize;
        for i in 0..n {
            // (1/k) log(1 + Σ e^{x_j}) = (1/k)(m + log(e^{−m} + Σ e^{x_j − m})), m = max(0, x_j):
            // the "1 +" is e^0, so the shift includes 0 and the sum never underflows to 0.
            let (mut max_pos, mut max_neg) = (0.0f64, 0.0f64);
            for j in 0..m {
                kinds[j] = kind(i, j);
                let s = f64::from(values.get(i, j)) - base;
                exponent[j] = match kinds[j] {
                    Pair::Positive => -sign * alpha * s,
                    Pair::Negative => sign * beta * s,
                    Pair::None => 0.0,
                };
                match kinds[j] {
                    Pair::Positive => max_pos = max_pos.max(exponent[j]),
                    Pair::Negative => max_neg = max_neg.max(exponent[j]),
                    Pair::None => {}
                }
            }
            if kinds.iter().all(|&k| k == Pair::None) {
                without_pairs += 1;
                continue;
            }
            let (mut sum_pos, mut sum_neg) = ((-max_pos).exp(), (-max_neg).exp());
            for j in 0..m {
                match kinds[j] {
                    Pair::Positive => {
                        exponent[j] = (exponent[j] - max_pos).exp();
                        sum_pos += exponent[j];
                    }
                    Pair::Negative => {
                        exponent[j] = (exponent[j] - max_neg).exp();
                        sum_neg += exponent[j];
                    }
                    Pair::None => exponent[j] = 0.0,
                }
            }
            total += (max_pos + sum_pos.ln()) / alpha + (max_neg + sum_neg.ln()) / beta;
            // d/dS of each term: its softmax weight times d(exponent)/dS divided by k.
            let row = dvalues.row_mut(i);
            for j in 0..m {
                let g = match kinds[j] {
                    Pair::Positive => -sign * exponent[j] / sum_pos,
                    Pair::Negative => sign * exponent[j] / sum_neg,
                    Pair::None => 0.0,
                };
                row[j] = (g * inv_n) as f32;
            }
        }
        stats.record("anchors_without_pairs", without_pairs as f64);
        let dz = distances.backward(batch, dvalues.view());
        grad.copy_from_slice(&dz.data);
        Ok(total * inv_n)
    }
}

/// What a pair (i, j) is to the loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pair {
    Positive,
    Negative,
    None,
}

dmlbench_sdk::export_plugins!(loss: MultiSimilarity);
