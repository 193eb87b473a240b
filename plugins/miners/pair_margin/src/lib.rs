//! Pair margin miner, as pytorch-metric-learning's `PairMarginMiner`: the pairs that a
//! contrastive loss with these margins would penalise.
//!
//! With a distance d (Euclidean on L2-normalised embeddings by default), over every ordered
//! pair (i, j), i ≠ j:
//!
//! ```text
//! keep positive pair (i, j), y_i = y_j,  if d(i, j) > m⁺        m⁺ = pos_margin = 0.2
//! keep negative pair (i, j), y_i ≠ y_j,  if d(i, j) < m⁻        m⁻ = neg_margin = 0.8
//! ```
//!
//! With a similarity the inequalities flip as in PML: positives with s < m⁺, negatives with
//! s > m⁻. Defaults are PML's. Output: pairs (a1, p, a2, n) in row-major order (PML's
//! `get_all_pairs_indices` order).
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
    /// m⁺: positive pairs farther than this are kept.
    pub pos_margin: f64,
    /// m⁻: negative pairs closer than this are kept.
    pub neg_margin: f64,
    /// How embeddings are compared.
    pub distance: DistanceConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config { pos_margin: 0.2, neg_margin: 0.8, distance: DistanceConfig::default() }
    }
}

/// The pair margin miner.
pub struct PairMargin {
    config: Config,
}

impl Plugin for PairMargin {
    type Config = Config;
    const ID: &'static str = "pair_margin";
    const NAME: &'static str = "Pair margin miner";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const SUMMARY: &'static str = "positive pairs with d > m⁺ and negative pairs with d < m⁻ (PML's PairMarginMiner)";

    fn new(config: Config, _context: &Context) -> Result<Self> {
        finite("pos_margin", config.pos_margin)?;
        finite("neg_margin", config.neg_margin)?;
        Ok(PairMargin { config })
    }
}

impl Miner for PairMargin {
    const OUTPUT: TupleForm = TupleForm::Pairs;
    const ACCEPTS_REFERENCES: bool = true;

    fn mine(&mut self, batch: &Batch<'_>, stats: &mut Stats) -> Result<Tuples> {
        let distances = self.config.distance.for_batch(batch);
        let values = distances.values();
        let similarity = self.config.distance.is_similarity();
        let (pos_margin, neg_margin) = (self.config.pos_margin, self.config.neg_margin);
        let rows = batch.rows();
        let mut out = Pairs::default();
        let (mut pos_total, mut neg_total) = (0usize, 0usize);
        for (i, &li) in rows.labels.iter().enumerate() {
            for (j, &lj) in rows.reference_labels.iter().enumerate() {
                if rows.is_self(i, j) {
                    continue;
                }
                let v = f64::from(values.get(i, j));
                if li == lj {
                    pos_total += 1;
                    if if similarity { v < pos_margin } else { v > pos_margin } {
                        out.a1.push(i as u32);
                        out.p.push(j as u32);
                    }
                } else {
                    neg_total += 1;
                    if if similarity { v > neg_margin } else { v < neg_margin } {
                        out.a2.push(i as u32);
                        out.n.push(j as u32);
                    }
                }
            }
        }
        stats.record("pos_pairs", out.positives() as f64);
        stats.record("neg_pairs", out.negatives() as f64);
        stats.record("pos_pairs_considered", pos_total as f64);
        stats.record("neg_pairs_considered", neg_total as f64);
        Ok(Tuples::Pairs(out))
    }
}

dmlbench_sdk::export_plugins!(miner: PairMargin);
