//! Multi-class N-pair loss (Sohn, "Improved Deep Metric Learning with Multi-class N-pair Loss
//! Objective", NeurIPS 2016), with the definitions and defaults of pytorch-metric-learning's
//! `NPairsLoss`.
//!
//! From the batch's positive pairs, one pair (a_k, p_k) is kept for each anchor label,
//! k = 1..K. Every other chosen positive p_l (l ≠ k) is of another class than a_k and serves as
//! one of its negatives. With a similarity s:
//!
//! ```text
//! ℓ_k = −log( e^{s(a_k, p_k)} / Σ_{l=1..K} e^{s(a_k, p_l)} )     (cross-entropy, target k)
//! L   = (1/K) Σ_k ℓ_k                                              (PML's MeanReducer)
//! ```
//!
//! With a distance d instead of a similarity the logits are −d(a_k, p_l), as PML negates
//! distances that are not "inverted".
//!
//! **Which pairs.** The candidate positive pairs are the mined ones when a miner ran (the
//! (a1, p) part of mined pairs, or the (a, p) of mined triplets, in their order, duplicates
//! included), and otherwise every ordered positive pair of the batch in row-major order (by
//! anchor, then positive: PML's `get_all_pairs_indices`). For each anchor label, in increasing
//! label order, the first candidate whose anchor has that label is kept, as PML's
//! `convert_to_pos_pairs_with_unique_labels` does with `np.unique(..., return_index=True)`.
//! Without a miner this is, for each class with at least two members in the batch, the pair
//! (its lowest-indexed member, its second lowest-indexed member), which is computed directly
//! instead of listing every pair. The choice depends only on the batch order, never on a
//! random draw.
//!
//! **Defaults.** PML's default distance is `DotProductSimilarity()`, whose base class
//! normalises embeddings by default (`normalize_embeddings=True`): the similarity is the dot
//! product of L2-normalised embeddings, i.e. cosine similarity, with no scale. The paper uses
//! the raw inner product plus an L2 penalty on the embeddings (in PML, an embedding
//! regulariser, not part of this loss); `distance: (measure: dot, normalize_embeddings: false)`
//! gives the raw product.
//!
//! **Degenerate batches.** No positive pair (K = 0) gives 0 and a zero gradient with
//! `no_pairs`, as PML's zero loss. With K = 1 the softmax has one entry: ℓ = 0 and the
//! gradient vanishes. `num_pairs` (PML's statistic of the same name) records K.
//!
//! There is no difference from PML: values and gradients agree (checked by the tests).

use std::collections::BTreeMap;

use dmlbench_sdk::distance::DistanceConfig;
use dmlbench_sdk::matrix::{MatRef, Matrix};
use dmlbench_sdk::pairwise::Measure;
use dmlbench_sdk::{Batch, Context, Loss, Plugin, Result, Stats, TupleForm, TupleUse};
use serde::{Deserialize, Serialize};

/// Configuration (PML's defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// How anchors are compared with the chosen positives (dot product of L2-normalised
    /// embeddings by default, PML's `DotProductSimilarity()`).
    pub distance: DistanceConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config { distance: DistanceConfig { measure: Measure::Dot, normalize_embeddings: true } }
    }
}

/// The N-pair loss.
pub struct NPairs {
    config: Config,
}

impl Plugin for NPairs {
    type Config = Config;
    const ID: &'static str = "n_pairs";
    const NAME: &'static str = "Multi-class N-pair loss";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const SUMMARY: &'static str =
        "cross-entropy of s(a_k, p_l) over one positive pair per label, mean over pairs (Sohn 2016; PML defaults)";

    fn new(config: Config, _context: &Context) -> Result<Self> {
        // Every measure, normalised or not, is valid: there is no value to check.
        Ok(NPairs { config })
    }
}

/// For each anchor label in increasing order, the first (anchor, positive) of the list whose
/// anchor has that label.
pub fn first_pair_per_label(labels: &[i64], anchors: &[u32], positives: &[u32]) -> Vec<(usize, usize)> {
    let mut chosen = BTreeMap::new();
    for (&a, &p) in anchors.iter().zip(positives) {
        chosen.entry(labels[a as usize]).or_insert((a as usize, p as usize));
    }
    chosen.into_values().collect()
}

/// For each label with at least two members, in increasing label order, (first member, second
/// member): what [`first_pair_per_label`] picks from every ordered positive pair of the batch.
pub fn first_two_per_class(labels: &[i64]) -> Vec<(usize, usize)> {
    let mut members: BTreeMap<i64, (usize, Option<usize>)> = BTreeMap::new();
    for (i, &label) in labels.iter().enumerate() {
        members.entry(label).and_modify(|(_, second)| *second = second.or(Some(i))).or_insert((i, None));
    }
    members.into_values().filter_map(|(first, second)| second.map(|s| (first, s))).collect()
}

impl Loss for NPairs {
    const TUPLES: TupleUse = TupleUse::Optional(TupleForm::Pairs);

    fn forward_backward(&mut self, batch: &Batch<'_>, grad: &mut [f32], stats: &mut Stats) -> Result<f64> {
        let chosen = match batch.mined_pairs() {
            Some(pairs) => first_pair_per_label(batch.labels, &pairs.a1, &pairs.p),
            None => first_two_per_class(batch.labels),
        };
        let k = chosen.len();
        stats.record("num_pairs", k as f64);
        if k == 0 {
            stats.record("no_pairs", 1.0);
            return Ok(0.0);
        }

        // The anchors (rows 0..k) and positives (rows k..2k), measured together; the loss
        // reads the block (anchor r, positive l) of that 2k×2k matrix.
        let d = batch.d();
        let mut rows = Vec::with_capacity(2 * k * d);
        for &(a, _) in &chosen {
            rows.extend_from_slice(batch.embeddings.row(a));
        }
        for &(_, p) in &chosen {
            rows.extend_from_slice(batch.embeddings.row(p));
        }
        let gathered = MatRef::new(2 * k, d, &rows);
        let measured = self.config.distance.compute(gathered);
        let values = measured.values();
        let sign = if self.config.distance.is_similarity() { 1.0 } else { -1.0 };

        let weight = 1.0 / k as f64;
        let mut total = 0.0;
        let mut logits = vec![0.0f64; k];
        let mut dvalues = Matrix::zeros(2 * k, 2 * k);
        for r in 0..k {
            for (l, x) in logits.iter_mut().enumerate() {
                *x = sign * f64::from(values.get(r, k + l));
            }
            let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lse = max + logits.iter().map(|x| (x - max).exp()).sum::<f64>().ln();
            total += lse - logits[r];
            // dℓ_r/dx_rl = softmax_l − [l = r]; the logit is sign·value.
            let row = dvalues.row_mut(r);
            for (l, &x) in logits.iter().enumerate() {
                let target = if l == r { 1.0 } else { 0.0 };
                row[k + l] = (sign * ((x - lse).exp() - target) * weight) as f32;
            }
        }
        let dz = measured.backward(gathered, dvalues.view());
        // Scatter the gathered rows back (a row is never both an anchor and a positive).
        for (slot, &(a, p)) in chosen.iter().enumerate() {
            for (row, from) in [(a, slot), (p, k + slot)] {
                for (g, &v) in grad[row * d..(row + 1) * d].iter_mut().zip(dz.row(from)) {
                    *g += v;
                }
            }
        }
        Ok(total * weight)
    }
}

dmlbench_sdk::export_plugins!(loss: NPairs);
