//! NT-Xent, the normalised-temperature cross-entropy (Chen, Kornblith, Norouzi and Hinton,
//! "A Simple Framework for Contrastive Learning of Visual Representations", ICML 2020; the
//! same softmax as Sohn's N-pair loss, NeurIPS 2016, and van den Oord et al.'s InfoNCE,
//! 2018), with the definitions and defaults of pytorch-metric-learning's `NTXentLoss`.
//!
//! With cosine similarities s (by default), a temperature τ, positive pairs P and negative
//! pairs N:
//!
//! ```text
//! x(a, b)  = s(a, b) / τ                                      τ = temperature = 0.07
//! ℓ(a, p)  = −log( e^{x(a,p)} / (e^{x(a,p)} + Σ_{(a,n) ∈ N} e^{x(a,n)}) )
//! L        = (1/|P|) Σ_{(a,p) ∈ P} ℓ(a, p)
//! ```
//!
//! Each positive pair is one softmax: its own logit against the negative pairs that share its
//! anchor. The anchor's other positives are not in that denominator, and neither is the
//! anchor itself. The mean runs over every positive pair, as PML's `MeanReducer` with its
//! `pos_pair` reduction: a positive pair whose anchor has no negative pair has ℓ = −log 1 = 0
//! and still counts (`pos_pairs_without_negatives`). With a distance d instead of a
//! similarity, x = −d/τ, as PML does for distances that are not "inverted".
//!
//! The pairs are the mined ones when a miner ran (triplets split into their (a, p) and (a, n)
//! pairs, PML's `convert_to_pairs`), and every ordered pair of the batch otherwise. As in PML
//! they are a list, not a mask: a positive pair mined twice is two terms of the mean, and a
//! negative pair mined twice enters its anchor's denominator twice. A batch without a
//! positive pair or without a negative pair gives 0 and a zero gradient
//! (`no_positive_pairs`, `no_negative_pairs`), as in PML.
//!
//! For stability PML subtracts from each softmax the largest of its logits (detached, so it
//! changes neither the value nor the gradient); here ℓ = log(1 + Σ_n e^{x_n − x_p}) is
//! evaluated in `f64` around the same maximum, with `ln_1p` when the positive is the largest
//! logit, so that a well-separated pair keeps its small ℓ exactly. The gradient is exact:
//! dℓ/dx(a,p) = −Σ_n softmax_n and dℓ/dx(a,n) = softmax_n.
//!
//! Defaults, all PML's: τ = 0.07, `CosineSimilarity()` (on normalised embeddings).
//!
//! Differences from PML:
//! - PML returns 0 when every index array of the mined tuple has at most one element (one
//!   positive and one negative pair are ignored, `GenericPairLoss`); here such a batch is
//!   computed like any other, as every dmlbench pair loss does, since that one pair carries
//!   a well-defined loss.
//! - PML takes −log(p + ε) with ε the smallest normal float, which caps ℓ at −log ε (87 in
//!   `f32`, 708 in `f64`) and flattens its gradient there; here ℓ is not capped. The cap
//!   needs a logit gap near 87, which cosine similarities or distances between normalised
//!   embeddings (a gap of at most 2/τ) reach only for τ below about 0.025.
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
        Config { temperature: 0.07, distance: DistanceConfig::cosine() }
    }
}

/// The NT-Xent loss.
pub struct NtXent {
    config: Config,
}

impl Plugin for NtXent {
    type Config = Config;
    const ID: &'static str = "ntxent";
    const NAME: &'static str = "NT-Xent loss";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const SUMMARY: &'static str = "−log e^{s(a,p)/τ} / (e^{s(a,p)/τ} + Σ_n e^{s(a,n)/τ}), mean over positive pairs (Chen et al. 2020; PML defaults)";

    fn new(config: Config, _context: &Context) -> Result<Self> {
        positive("temperature", config.temperature)?;
        Ok(NtXent { config })
    }
}

impl Loss for NtXent {
    const TUPLES: TupleUse = TupleUse::Optional(TupleForm::Pairs);
    const ACCEPTS_REFERENCES: bool = true;

    fn forward_backward(&mut self, batch: &Batch<'_>, grad: &mut [f32], stats: &mut Stats) -> Result<f64> {
        let pairs = batch.pairs();
        stats.record("pos_pairs", pairs.a1.len() as f64);
        stats.record("neg_pairs", pairs.a2.len() as f64);
        if pairs.a1.is_empty() {
            stats.record("no_positive_pairs", 1.0);
            return Ok(0.0);
        }
        if pairs.a2.is_empty() {
            stats.record("no_negative_pairs", 1.0);
            return Ok(0.0);
        }

        let (n, columns) = (batch.n(), batch.reference_count());
        let distances = self.config.distance.for_batch(batch);
        let values = distances.values();
        // x = v/τ for a similarity, −v/τ for a distance; `scale` is dx/dv.
        let sign = if self.config.distance.is_similarity() { 1.0 } else { -1.0 };
        let scale = sign / self.config.temperature;
        let logit = |a: u32, b: u32| f64::from(values.get(a as usize, b as usize)) * scale;
        let negatives = || pairs.a2.iter().copied().zip(pairs.n.iter().copied());

        // Per anchor: the largest negative logit m_a, and S_a = Σ e^{x(a,n) − m_a} over its
        // negative pairs (a pair listed twice counts twice).
        let mut neg_max = vec![f64::NEG_INFINITY; n];
        for (a, k) in negatives() {
            neg_max[a as usize] = neg_max[a as usize].max(logit(a, k));
        }
        let mut neg_sum = vec![0.0f64; n];
        for (a, k) in negatives() {
            neg_sum[a as usize] += (logit(a, k) - neg_max[a as usize]).exp();
        }

        let weight = 1.0 / pairs.a1.len() as f64;
        let mut dlogits = vec![0.0f64; n * columns];
        // Per anchor: Σ over its positive pairs of weight·e^{m_a − lse}, so that the gradient
        // of the mean with respect to a negative logit x(a,n) is this times e^{x(a,n) − m_a}.
        let mut neg_factor = vec![0.0f64; n];
        let mut total = 0.0;
        let mut without_negatives = 0usize;
        for (&a, &p) in pairs.a1.iter().zip(&pairs.p) {
            let (m, s) = (neg_max[a as usize], neg_sum[a as usize]);
            if m == f64::NEG_INFINITY {
                // The softmax holds the positive alone: ℓ = 0 and no gradient.
                without_negatives += 1;
                continue;
            }
            let x = logit(a, p);
            // ℓ = log(1 + S·e^{m − x}), shifted by the larger of x and m.
            let loss = if x >= m { (s * (m - x).exp()).ln_1p() } else { (m - x) + ((x - m).exp() + s).ln() };
            total += loss;
            // e^{m − lse} with lse = x + ℓ the log-denominator; the negatives' total softmax
            // mass is S·e^{m − lse} = 1 − softmax of the positive.
            let r = (m - x - loss).exp();
            dlogits[a as usize * columns + p as usize] -= weight * s * r;
            neg_factor[a as usize] += weight * r;
        }
        for (a, k) in negatives() {
            let e = (logit(a, k) - neg_max[a as usize]).exp();
            dlogits[a as usize * columns + k as usize] += neg_factor[a as usize] * e;
        }
        stats.record("pos_pairs_without_negatives", without_negatives as f64);

        let dvalues = Matrix::from_vec(n, columns, dlogits.iter().map(|&g| (g * scale) as f32).collect());
        let dz = distances.backward(batch, dvalues.view());
        grad.copy_from_slice(&dz.data);
        Ok(total * weight)
    }
}

dmlbench_sdk::export_plugins!(loss: NtXent);
