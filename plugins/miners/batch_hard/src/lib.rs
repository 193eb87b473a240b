//! Batch-hard miner (Hermans, Beyer and Leibe, "In Defense of the Triplet Loss for Person
//! Re-Identification", 2017), as pytorch-metric-learning's `BatchHardMiner`.
//!
//! For every anchor a, with a distance d (Euclidean on L2-normalised embeddings by default):
//!
//! ```text
//! p*(a) = argmax_{p ≠ a, y_p = y_a} d(a, p)     the hardest positive
//! n*(a) = argmin_{y_n ≠ y_a}         d(a, n)     the hardest negative
//! ```
//!
//! and outputs the triplet (a, p*(a), n*(a)). Anchors lacking a positive or a negative are
//! dropped (and counted). With a similarity measure the hardest positive is the least
//! similar and the hardest negative the most similar. Ties go to the lowest index, so the
//! output is deterministic.
//!
//! Against reference embeddings (a cross-batch memory) anchors are batch rows and positives
//! and negatives reference rows, as PML's miners given `ref_emb`; a row's own copy in the
//! memory is then an ordinary positive here, and removed from the output afterwards (PML's
//! `remove_self_comparisons`).

use dmlbench_sdk::distance::DistanceConfig;
use dmlbench_sdk::{Batch, Context, Miner, Plugin, Result, Stats, Triplets, TupleForm, Tuples};
use serde::{Deserialize, Serialize};

/// Configuration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// How embeddings are compared.
    pub distance: DistanceConfig,
}

/// The batch-hard miner.
pub struct BatchHard {
    config: Config,
}

impl Plugin for BatchHard {
    type Config = Config;
    const ID: &'static str = "batch_hard";
    const NAME: &'static str = "Batch-hard miner";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const SUMMARY: &'static str =
        "per anchor, the farthest positive and the closest negative (Hermans et al. 2017; PML's BatchHardMiner)";

    fn new(config: Config, _context: &Context) -> Result<Self> {
        Ok(BatchHard { config })
    }
}

impl Miner for BatchHard {
    const OUTPUT: TupleForm = TupleForm::Triplets;
    const ACCEPTS_REFERENCES: bool = true;

    fn mine(&mut self, batch: &Batch<'_>, stats: &mut Stats) -> Result<Tuples> {
        let values = self.config.distance.for_batch(batch);
        let values = values.values();
        // "Harder" means farther for a positive and closer for a negative; with a
        // similarity both flip. Comparing `key` = ±value turns both into a maximum.
        let flip = if self.config.distance.is_similarity() { -1.0f32 } else { 1.0 };
        let rows = batch.rows();
        let mut out = Triplets::default();
        let mut dropped = 0usize;
        for a in 0..batch.n() {
            let mut hardest_pos: Option<(usize, f32)> = None;
            let mut hardest_neg: Option<(usize, f32)> = None;
            for (j, &v) in values.row(a).iter().enumerate() {
                if rows.is_self(a, j) {
                    continue;
                }
                if rows.reference_labels[j] == rows.labels[a] {
                    let key = flip * v;
                    if hardest_pos.is_none_or(|(_, best)| key > best) {
                        hardest_pos = Some((j, key));
                    }
                } else {
                    let key = -flip * v;
                    if hardest_neg.is_none_or(|(_, best)| key > best) {
                        hardest_neg = Some((j, key));
                    }
                }
            }
            match (hardest_pos, hardest_neg) {
                (Some((p, _)), Some((n, _))) => {
                    out.a.push(a as u32);
                    out.p.push(p as u32);
                    out.n.push(n as u32);
                }
                _ => dropped += 1,
            }
        }
        stats.record("triplets", out.len() as f64);
        stats.record("dropped_anchors", dropped as f64);
        Ok(Tuples::Triplets(out))
    }
}

dmlbench_sdk::export_plugins!(miner: BatchHard);
