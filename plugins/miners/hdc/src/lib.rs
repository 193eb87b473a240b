//! Hard-aware deeply cascaded (HDC) miner (Yuan, Yang and Zhang, "Hard-Aware Deeply Cascaded
//! Embedding", ICCV 2017), as pytorch-metric-learning's `HDCMiner`.
//!
//! With a distance d (Euclidean on L2-normalised embeddings by default), over the ordered
//! positive pairs P = {(a, p) : p ≠ a, y_p = y_a} and negative pairs N = {(a, n) : y_n ≠ y_a}
//! of the batch:
//!
//! ```text
//! k⁺ = ⌈f · |P|⌉    keep the k⁺ positive pairs with the largest d(a, p)    (the hardest)
//! k⁻ = ⌈f · |N|⌉    keep the k⁻ negative pairs with the smallest d(a, n)   (the hardest)
//! ```
//!
//! f = filter_percentage = 0.5 (PML's default), in (0, 1]. The product f · |P| is taken in
//! f64 and rounded up, exactly as PML's `math.ceil(filter_percentage * num_pairs)`, so a
//! product that lands a rounding error above an integer keeps one more pair (0.14 · 50 is
//! 7.000000000000001 in f64, so 8 pairs are kept). With a similarity measure (cosine, dot)
//! the hardest positives are the least similar and the hardest negatives the most similar.
//!
//! Output: pairs (a1, p, a2, n), each kind ordered from the hardest, as PML's `torch.topk`
//! (sorted). Ties, which `torch.topk` leaves in no documented order, are broken by the pairs'
//! row-major order (lower anchor, then lower index first): the kept set and its order are a
//! deterministic function of the batch. Every pair has a tie, its mirror: d(a, p) = d(p, a).
//! Both are read from the upper triangle of the matrix, so that they are the same number (a
//! matrix product need not round them alike) and the rule above decides: (i, j) with i < j
//! comes just before (j, i), and when k is odd the cut keeps (i, j). A batch without
//! positive (or negative) pairs keeps none of that kind.
//!
//! Difference from PML: PML's `HDCMiner` can also filter a tuple set handed to it by an
//! earlier miner (`set_idx_externally`, the cascade of the paper, where each stage mines from
//! the previous stage's pairs). A dmlbench miner sees only the batch, so this plugin always
//! starts from every pair of the batch, as PML does when nothing was set externally.

use std::cmp::Ordering;
use std::ops::Bound;

use dmlbench_sdk::checks::in_range;
use dmlbench_sdk::distance::DistanceConfig;
use dmlbench_sdk::{Batch, Context, Miner, Pairs, Plugin, Result, Stats, TupleForm, Tuples};
use serde::{Deserialize, Serialize};

/// Configuration (PML's defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// f: the fraction of each kind of pair kept, in (0, 1].
    pub filter_percentage: f64,
    /// How embeddings are compared.
    pub distance: DistanceConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config { filter_percentage: 0.5, distance: DistanceConfig::default() }
    }
}

/// The HDC miner.
pub struct Hdc {
    config: Config,
}

impl Plugin for Hdc {
    type Config = Config;
    const ID: &'static str = "hdc";
    const NAME: &'static str = "Hard-aware deeply cascaded miner";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const SUMMARY: &'static str =
        "the hardest ⌈f·|P|⌉ positive and ⌈f·|N|⌉ negative pairs of the batch (Yuan et al. 2017; PML's HDCMiner)";

    fn new(config: Config, _context: &Context) -> Result<Self> {
        in_range("filter_percentage", config.filter_percentage, (Bound::Excluded(0.0), Bound::Included(1.0)))?;
        Ok(Hdc { config })
    }
}

/// The number of pairs kept out of `total`: ⌈f · total⌉ in f64, as PML.
pub fn kept_count(filter_percentage: f64, total: usize) -> usize {
    ((filter_percentage * total as f64).ceil() as usize).min(total)
}

/// The `k` hardest of `pairs` (anchor, other, value), hardest first; `largest` says whether
/// a larger value is harder. The sort is stable, so ties keep the pairs' given order.
fn hardest(mut pairs: Vec<(u32, u32, f32)>, k: usize, largest: bool) -> (Vec<u32>, Vec<u32>) {
    pairs.sort_by(|x, y| {
        let order = x.2.partial_cmp(&y.2).unwrap_or(Ordering::Equal);
        if largest { order.reverse() } else { order }
    });
    pairs.truncate(k);
    pairs.into_iter().map(|(a, j, _)| (a, j)).unzip()
}

impl Miner for Hdc {
    const OUTPUT: TupleForm = TupleForm::Pairs;

    fn mine(&mut self, batch: &Batch<'_>, stats: &mut Stats) -> Result<Tuples> {
        let distances = self.config.distance.compute(batch.embeddings);
        let values = distances.values();
        let labels = batch.labels;
        let (mut positives, mut negatives) = (Vec::new(), Vec::new());
        for (a, &la) in labels.iter().enumerate() {
            for (j, &lj) in labels.iter().enumerate() {
                if j == a {
                    continue;
                }
                // The upper triangle, so that a pair and its mirror tie exactly.
                let v = values.get(a.min(j), a.max(j));
                let list = if lj == la { &mut positives } else { &mut negatives };
                list.push((a as u32, j as u32, v));
            }
        }
        let (pos_total, neg_total) = (positives.len(), negatives.len());
        let f = self.config.filter_percentage;
        // Hardest: the farthest positives and the closest negatives; a similarity swaps both.
        let similarity = self.config.distance.is_similarity();
        let (a1, p) = hardest(positives, kept_count(f, pos_total), !similarity);
        let (a2, n) = hardest(negatives, kept_count(f, neg_total), similarity);
        let out = Pairs { a1, p, a2, n };
        stats.record("pos_pairs", out.positives() as f64);
        stats.record("neg_pairs", out.negatives() as f64);
        stats.record("pos_pairs_considered", pos_total as f64);
        stats.record("neg_pairs_considered", neg_total as f64);
        Ok(Tuples::Pairs(out))
    }
}

dmlbench_sdk::export_plugins!(miner: Hdc);
