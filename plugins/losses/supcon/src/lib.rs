//! Supervised contrastive loss (Khosla, Teterwak, Wang, Sarna, Tian, Isola, Maschinot, Liu
//! and Krishnan, "Supervised Contrastive Learning", NeurIPS 2020; its L^sup_out form), with
//! the definitions and defaults of pytorch-metric-learning's `SupConLoss`.
//!
//! With cosine similarities s (by default), a temperature τ and, for each anchor i, its
//! positive pairs P(i) and negative pairs N(i):
//!
//! ```text
//! x_ik = s(i, k) / τ                                         τ = temperature = 0.1
//! ℓ_i  = −(1/|P(i)|) Σ_{p ∈ P(i)} log( e^{x_ip} / Σ_{k ∈ P(i) ∪ N(i)} e^{x_ik} )
//! L    = mean of ℓ_i over the anchors with ℓ_i > 0           (PML's AvgNonZeroReducer)
//! ```
//!
//! Every anchor has one softmax, over all of its pairs, positive and negative; the anchor
//! itself is never in it. An anchor without a positive pair has ℓ_i = 0, as has one whose
//! only pair is a single positive (its softmax is 1): neither counts in the mean, which runs
//! over the `active_anchors`. With a distance d instead of a similarity, x = −d/τ, as PML
//! does for distances that are not "inverted".
//!
//! The pairs are the mined ones when a miner ran (triplets split into their (a, p) and (a, n)
//! pairs, PML's `convert_to_pairs`), and every ordered pair of the batch otherwise. As in PML
//! they form masks over the n×n matrix, so a pair mined twice counts once. A batch without a
//! positive pair or without a negative pair gives 0 and a zero gradient
//! (`no_positive_pairs`, `no_negative_pairs`), as in PML; so does one where no anchor is
//! active (`active_anchors` = 0).
//!
//! For stability PML subtracts each row's maximum before its log-sum-exp (detached, so it
//! changes neither the value nor the gradient); here each row's log-sum-exp is shifted by the
//! largest logit of the anchor's pairs and evaluated in `f64` with `ln_1p`, so that an anchor
//! whose single positive dominates keeps its small ℓ_i exactly. The gradient is exact:
//! dℓ_i/dx_ik = softmax_k − [k ∈ P(i)]/|P(i)|.
//!
//! Defaults, all PML's: τ = 0.1, `CosineSimilarity()` (on normalised embeddings),
//! `AvgNonZeroReducer`.
//!
//! Difference from PML: PML returns 0 when every index array of the mined tuple has at most
//! one element (one positive and one negative pair are ignored, `GenericPairLoss`); here
//! such a batch is computed like any other, as every dmlbench pair loss does, since that one
//! anchor carries a well-defined loss.
//!
//! With reference embeddings (a cross-batch memory), anchors are batch rows and positives
//! and negatives reference rows, as PML's `ref_emb`; each anchor's row of the matrix runs over
//! the references, and the gradient is the batch's only.

use dmlbench_sdk::checks::positive;
use dmlbench_sdk::distance::DistanceConfig;
use dmlbench_sdk::matrix::Matrix;
use dmlbench_sdk::{Batch, Context, Loss, Plugin, Result, Stats, TupleForm, TupleUse};
use serde::{Deserialize, Serialize};

/// Configuration (PML's defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// τ > 0: the temperature dividing every similarity.
    pub temperature: f64,
    /// How embeddings are compared (cosine similarity by default).
    pub distance: DistanceConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config { temperature: 0.1, distance: DistanceConfig::cosine() }
    }
}

/// The supervised contrastive loss.
pub struct SupCon {
    config: Config,
}

impl Plugin for SupCon {
    type Config = Config;
    const ID: &'static str = "supcon";
    const NAME: &'static str = "Supervised contrastive loss";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const SUMMARY: &'static str = "−mean_{p∈P(i)} log softmax_{k∈P(i)∪N(i)}(s(i,k)/τ)_p, mean over anchors with a non-zero loss (Khosla et al. 2020; PML defaults)";

    fn new(config: Config, _context: &Context) -> Result<Self> {
        positive("temperature", config.temperature)?;
        Ok(SupCon { config })
    }
}

/// What a pair (i, k) is to the loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pair {
    Positive,
    Negative,
    None,
}

/// One anchor's softmax: its log-denominator and loss.
#[derive(Clone, Copy, Debug)]
struct Row {
    lse: f64,
    loss: f64,
    positives: usize,
}

impl Loss for SupCon {
    const TUPLES: TupleUse = TupleUse::Optional(TupleForm::Pairs);
    const ACCEPTS_REFERENCES: bool = true;

    fn forward_backward(&mut self, batch: &Batch<'_>, grad: &mut [f32], stats: &mut Stats) -> Result<f64> {
        let (n, m) = (batch.n(), batch.reference_count());
        let pairs = batch.pairs();
        // The masks: a pair listed twice is marked once. Positive and negative pairs never
        // coincide (the SDK checks that positives share the anchor's label and negatives do not).
        let mut kind = vec![Pair::None; n * m];
        for (&a, &p) in pairs.a1.iter().zip(&pairs.p) {
            kind[a as usize * m + p as usize] = Pair::Positive;
        }
        for (&a, &k) in pairs.a2.iter().zip(&pairs.n) {
            kind[a as usize * m + k as usize] = Pair::Negative;
        }
        let pos_count = kind.iter().filter(|&&k| k == Pair::Positive).count();
        let neg_count = kind.iter().filter(|&&k| k == Pair::Negative).count();
        stats.record("pos_pairs", pos_count as f64);
        stats.record("neg_pairs", neg_count as f64);
        if pos_count == 0 {
            stats.record("no_positive_pairs", 1.0);
            return Ok(0.0);
        }
        if neg_count == 0 {
            stats.record("no_negative_pairs", 1.0);
            return Ok(0.0);
        }

        let distances = self.config.distance.for_batch(batch);
        let values = distances.values();
        // x = v/τ for a similarity, −v/τ for a distance; `scale` is dx/dv.
        let sign = if self.config.distance.is_similarity() { 1.0 } else { -1.0 };
        let scale = sign / self.config.temperature;
        let logit = |i: usize, k: usize| f64::from(values.get(i, k)) * scale;

        let mut rows: Vec<Option<Row>> = vec![None; n];
        for (i, row) in rows.iter_mut().enumerate() {
            let kinds = &kind[i * m..(i + 1) * m];
            let positives = kinds.iter().filter(|&&k| k == Pair::Positive).count();
            if positives == 0 {
                continue;
            }
            // The largest logit of the row's pairs, and where it is.
            let (mut top, mut max) = (0, f64::NEG_INFINITY);
            let mut pos_sum = 0.0;
            for (k, &what) in kinds.iter().enumerate() {
                if what != Pair::None && logit(i, k) > max {
                    (top, max) = (k, logit(i, k));
                }
                if what == Pair::Positive {
                    pos_sum += logit(i, k);
                }
            }
            // lse = max + log(1 + Σ_{k ≠ top} e^{x_ik − max}).
            let rest: f64 =
                (0..m).filter(|&k| k != top && kinds[k] != Pair::None).map(|k| (logit(i, k) - max).exp()).sum();
            let log_sum = rest.ln_1p();
            // ℓ_i = lse − mean of the positive logits, with the max ≥ that mean taken first.
            let loss = (max - pos_sum / positives as f64) + log_sum;
            *row = Some(Row { lse: max + log_sum, loss, positives });
        }
        let active = rows.iter().flatten().filter(|r| r.loss > 0.0).count();
        stats.record("active_anchors", active as f64);
        if active == 0 {
            return Ok(0.0);
        }

        let weight = 1.0 / active as f64;
        let mut dvalues = Matrix::zeros(n, m);
        let mut total = 0.0;
        for (i, row) in rows.iter().enumerate() {
            let Some(row) = row.filter(|r| r.loss > 0.0) else { continue };
            total += row.loss;
            let inv_positives = 1.0 / row.positives as f64;
            for (k, g) in dvalues.row_mut(i).iter_mut().enumerate() {
                let dlogit = match kind[i * m + k] {
                    Pair::Positive => (logit(i, k) - row.lse).exp() - inv_positives,
                    Pair::Negative => (logit(i, k) - row.lse).exp(),
                    Pair::None => continue,
                };
                *g = (dlogit * weight * scale) as f32;
            }
        }
        let dz = distances.backward(batch, dvalues.view());
        grad.copy_from_slice(&dz.data);
        Ok(total * weight)
    }
}

dmlbench_sdk::export_plugins!(loss: SupCon);
