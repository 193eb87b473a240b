//! Multi-similarity pair miner (Wang, Han, Huang, Dong and Scott, "Multi-Similarity Loss with
//! General Pair Weighting for Deep Metric Learning", CVPR 2019, section 4.2), as
//! pytorch-metric-learning's `MultiSimilarityMiner`.
//!
//! With cosine similarities S (by default), for each anchor a (itself excluded):
//!
//! ```text
//! keep positive p  if  S_ap − ε < max_{n: y_n ≠ y_a} S_an
//! keep negative n  if  S_an + ε > min_{p ≠ a: y_p = y_a} S_ap
//! ```
//!
//! ε = epsilon = 0.1 (PML's default). An anchor without negatives keeps no positive, and one
//! without positives keeps no negative (the max and min over an empty set are −∞ and +∞). With
//! a distance the comparisons flip as in PML: keep p if d_ap + ε > min_n d_an, keep n if
//! d_an − ε < max_p d_ap. As in PML, a batch without any positive pair or without any
//! negative pair yields nothing (`empty_batch`). Output: pairs (a1, p, a2, n), ordered by
//! anchor, then index (PML orders each anchor's pairs by similarity; the set is the same).
//!
//! Against reference embeddings (a cross-batch memory) anchors are batch rows and positives
//! and negatives reference rows, as PML's miners given `ref_emb`; a row's own copy in the
//! memory is then an ordinary positive here, and removed from the output afterwards (PML's
//! `remove_self_comparisons`).

use dmlbench_sdk::checks::finite;
use dmlbench_sdk::distance::DistanceConfig;
use dmlbench_sdk::{Batch, Context, Miner, Pairs, Plugin, Result, Stats, TupleForm, Tuples};
use serde::{Deserialize, Serialize};

/// Configuration (PML's defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// ε: how far inside the hardest opposite pair a pair may be and still be kept.
    pub epsilon: f64,
    /// How embeddings are compared (cosine similarity by default).
    pub distance: DistanceConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config { epsilon: 0.1, distance: DistanceConfig::cosine() }
    }
}

/// The multi-similarity miner.
pub struct MultiSimilarityMiner {
    config: Config,
}

impl Plugin for MultiSimilarityMiner {
    type Config = Config;
    const ID: &'static str = "multi_similarity";
    const NAME: &'static str = "Multi-similarity miner";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const SUMMARY: &'static str =
        "positives with S_ap − ε < max_n S_an, negatives with S_an + ε > min_p S_ap (Wang et al. 2019; PML)";

    fn new(config: Config, _context: &Context) -> Result<Self> {
        finite("epsilon", config.epsilon)?;
        Ok(MultiSimilarityMiner { config })
    }
}

impl Miner for MultiSimilarityMiner {
    const OUTPUT: TupleForm = TupleForm::Pairs;
    const ACCEPTS_REFERENCES: bool = true;

    fn mine(&mut self, batch: &Batch<'_>, stats: &mut Stats) -> Result<Tuples> {
        let rows = batch.rows();
        let (labels, reference_labels) = (rows.labels, rows.reference_labels);
        let (n, m) = (batch.n(), batch.reference_count());
        let mut out = Pairs::default();
        let any_positive = (0..n).any(|i| (0..m).any(|j| !rows.is_self(i, j) && reference_labels[j] == labels[i]));
        let any_negative = (0..n).any(|i| reference_labels.iter().any(|&l| l != labels[i]));
        if !any_positive || !any_negative {
            stats.record("empty_batch", 1.0);
            stats.record("pos_pairs", 0.0);
            stats.record("neg_pairs", 0.0);
            return Ok(Tuples::Pairs(out));
        }
        let values = self.config.distance.for_batch(batch);
        let values = values.values();
        // Work in "closeness" c = S for a similarity and c = −d for a distance: then the rule
        // is the similarity one for both.
        let flip = if self.config.distance.is_similarity() { 1.0 } else { -1.0 };
        let eps = self.config.epsilon;
        for (a, &label) in labels.iter().enumerate() {
            let close = |j: usize| flip * f64::from(values.get(a, j));
            let others = || reference_labels.iter().enumerate().filter(|&(j, _)| !rows.is_self(a, j));
            let (mut hardest_neg, mut hardest_pos) = (f64::NEG_INFINITY, f64::INFINITY);
            for (j, &other) in others() {
                if other == label {
                    hardest_pos = hardest_pos.min(close(j));
                } else {
                    hardest_neg = hardest_neg.max(close(j));
                }
            }
            for (j, &other) in others() {
                if other == label {
                    if close(j) - eps < hardest_neg {
                        out.a1.push(a as u32);
                        out.p.push(j as u32);
                    }
                } else if close(j) + eps > hardest_pos {
                    out.a2.push(a as u32);
                    out.n.push(j as u32);
                }
            }
        }
        stats.record("pos_pairs", out.positives() as f64);
        stats.record("neg_pairs", out.negatives() as f64);
        Ok(Tuples::Pairs(out))
    }
}

dmlbench_sdk::export_plugins!(miner: MultiSimilarityMiner);
