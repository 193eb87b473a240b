//! Batch easy/hard miner (Xuan, Stylianou and Pless, "Improved Embeddings with Easy Positive
//! Triplet Mining", WACV 2020), as pytorch-metric-learning's `BatchEasyHardMiner`.
//!
//! With a distance d (Euclidean on L2-normalised embeddings by default), each anchor a picks
//! at most one positive among P(a) = {p ≠ a : y_p = y_a, d(a, p) ∈ R⁺} and at most one
//! negative among N(a) = {n : y_n ≠ y_a, d(a, n) ∈ R⁻}, by its strategy:
//!
//! ```text
//!             positive p*(a)                           negative n*(a)
//! easy        argmin_{P(a)} d(a, p)   (closest)        argmax_{N(a)} d(a, n)   (farthest)
//! hard        argmax_{P(a)} d(a, p)   (farthest)       argmin_{N(a)} d(a, n)   (closest)
//! semihard    argmax_{P(a)} d(a, p)                    argmin_{N(a)} d(a, n)
//!               over d(a, p) < d(a, n*(a))               over d(a, n) > d(a, p*(a))
//! all         every pair (a, p), p ≠ a, y_p = y_a      every pair (a, n), y_n ≠ y_a
//! ```
//!
//! pos_strategy = `easy`, neg_strategy = `semihard`, allowed_pos_range = allowed_neg_range =
//! `None` (no restriction): PML's defaults, the paper's easy-positive / semi-hard-negative
//! mining. A range (low, high) is inclusive, low ≤ d ≤ high. A semi-hard side is chosen after
//! the other side, against the value the other side picked; as in PML, at most one side may
//! be `semihard`, and `semihard` cannot be paired with `all` (configuration errors naming
//! both fields). With a similarity measure (cosine, dot) every argmin and argmax swap and the
//! semi-hard inequalities flip: the easy positive is the most similar, the semi-hard negative
//! the most similar one still less similar than p*(a).
//!
//! Output: pairs (a1, p, a2, n), always, as PML. When neither side is `all`, one positive
//! and one negative pair per anchor that has both p*(a) and n*(a), in anchor order, with
//! a1 = a2 = a (a loss taking triplets gets exactly (a, p*(a), n*(a)) back); the others are
//! dropped (and counted). When one side is `all`, that side is every pair of its kind in
//! row-major order (PML's `get_all_pairs_indices`) and its range is ignored, as in PML; the
//! other side keeps its one pair per anchor that has one. Ties go to the lowest index, as
//! `torch.min`/`torch.max` along a row do. A range bound is compared with the distance in f32,
//! as PML compares a Python float with a float32 matrix.
//!
//! Differences from PML: a range with low > high, or a NaN bound, is a configuration error
//! (PML accepts both: an inverted range keeps nothing on its side, a NaN bound restricts
//! nothing), since either is almost surely a typing mistake. PML's recorded extremes
//! (`easiest_pos_pair`, `hardest_triplet`...) are not reported; the counts are.

use dmlbench_sdk::checks::in_range;
use dmlbench_sdk::distance::DistanceConfig;
use dmlbench_sdk::matrix::Matrix;
use dmlbench_sdk::{Batch, Context, Error, Miner, Pairs, Plugin, Result, Stats, TupleForm, Tuples};
use serde::{Deserialize, Serialize};

/// How one side (positives or negatives) is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// The easiest pair of the anchor: the closest positive, the farthest negative.
    Easy,
    /// The hardest pair beyond the other side's choice: a positive closer than the chosen
    /// negative, a negative farther than the chosen positive.
    Semihard,
    /// The hardest pair of the anchor: the farthest positive, the closest negative.
    Hard,
    /// Every pair of that kind.
    All,
}

impl Strategy {
    /// The strategy as written in a configuration.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Easy => "easy",
            Strategy::Semihard => "semihard",
            Strategy::Hard => "hard",
            Strategy::All => "all",
        }
    }
}

/// Configuration (PML's defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// How each anchor's positive is chosen.
    pub pos_strategy: Strategy,
    /// How each anchor's negative is chosen.
    pub neg_strategy: Strategy,
    /// Only positive pairs with low ≤ d ≤ high are candidates (`None`: all of them).
    pub allowed_pos_range: Option<(f64, f64)>,
    /// Only negative pairs with low ≤ d ≤ high are candidates (`None`: all of them).
    pub allowed_neg_range: Option<(f64, f64)>,
    /// How embeddings are compared.
    pub distance: DistanceConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            pos_strategy: Strategy::Easy,
            neg_strategy: Strategy::Semihard,
            allowed_pos_range: None,
            allowed_neg_range: None,
            distance: DistanceConfig::default(),
        }
    }
}

/// The batch easy/hard miner.
pub struct BatchEasyHard {
    config: Config,
}

/// `range` is two numbers (infinite ones allowed) with low ≤ high.
fn check_range(name: &str, range: Option<(f64, f64)>) -> Result<()> {
    if let Some((low, high)) = range {
        in_range(&format!("{name}.0 (low)"), low, f64::NEG_INFINITY..=f64::INFINITY)?;
        in_range(&format!("{name}.1 (high)"), high, low..=f64::INFINITY)?;
    }
    Ok(())
}

impl Plugin for BatchEasyHard {
    type Config = Config;
    const ID: &'static str = "batch_easy_hard";
    const NAME: &'static str = "Batch easy/hard miner";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const SUMMARY: &'static str = "per anchor, one positive and one negative by strategy (easy, semihard, hard) or all of them (Xuan et al. 2020; PML's BatchEasyHardMiner)";

    fn new(config: Config, _context: &Context) -> Result<Self> {
        use Strategy::{All, Semihard};
        match (config.pos_strategy, config.neg_strategy) {
            (Semihard, Semihard) => {
                return Err(Error::bad_config("pos_strategy and neg_strategy cannot both be semihard"));
            }
            (Semihard, All) | (All, Semihard) => {
                return Err(Error::bad_config(format!(
                    "pos_strategy {} and neg_strategy {}: semihard cannot be combined with all",
                    config.pos_strategy.name(),
                    config.neg_strategy.name()
                )));
            }
            _ => {}
        }
        check_range("allowed_pos_range", config.allowed_pos_range)?;
        check_range("allowed_neg_range", config.allowed_neg_range)?;
        Ok(BatchEasyHard { config })
    }
}

/// Which end of a row's candidates is taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Smallest,
    Largest,
}

/// One side's rule for a row: which end, the range, and the other side's choice when
/// semi-hard.
struct Rule {
    positive: bool,
    end: End,
    range: Option<(f32, f32)>,
}

impl Rule {
    /// The candidate of row `a` at the rule's end (lowest index on ties), among the pairs of
    /// its kind inside the range and, given a `bound`, strictly beyond it: above it when the
    /// smallest is taken, below it when the largest is.
    fn pick(&self, values: &Matrix, labels: &[i64], a: usize, bound: Option<f32>) -> Option<(usize, f32)> {
        let mut best: Option<(usize, f32)> = None;
        for (j, &v) in values.row(a).iter().enumerate() {
            let same = labels[j] == labels[a];
            if j == a || same != self.positive {
                continue;
            }
            if let Some((low, high)) = self.range
                && (v < low || v > high)
            {
                continue;
            }
            let better = |w: f32, than: f32| if self.end == End::Smallest { w < than } else { w > than };
            if let Some(t) = bound
                && !better(t, v)
            {
                continue;
            }
            if best.is_none_or(|(_, b)| better(v, b)) {
                best = Some((j, v));
            }
        }
        best
    }
}

impl BatchEasyHard {
    /// The rule of one side; `None` for `all`.
    fn rule(&self, positive: bool) -> Option<Rule> {
        let (strategy, range) = if positive {
            (self.config.pos_strategy, self.config.allowed_pos_range)
        } else {
            (self.config.neg_strategy, self.config.allowed_neg_range)
        };
        // In distance terms: the hard or semi-hard positive is the largest, the easy one the
        // smallest; negatives the other way round. A similarity swaps both.
        let hard = match strategy {
            Strategy::All => return None,
            Strategy::Easy => false,
            Strategy::Hard | Strategy::Semihard => true,
        };
        let largest = (hard == positive) != self.config.distance.is_similarity();
        let end = if largest { End::Largest } else { End::Smallest };
        Some(Rule { positive, end, range: range.map(|(l, h)| (l as f32, h as f32)) })
    }
}

impl Miner for BatchEasyHard {
    const OUTPUT: TupleForm = TupleForm::Pairs;

    fn mine(&mut self, batch: &Batch<'_>, stats: &mut Stats) -> Result<Tuples> {
        let distances = self.config.distance.compute(batch.embeddings);
        let values = distances.values();
        let labels = batch.labels;
        let n = batch.n();
        let (pos_rule, neg_rule) = (self.rule(true), self.rule(false));
        let pos_semihard = self.config.pos_strategy == Strategy::Semihard;
        let neg_semihard = self.config.neg_strategy == Strategy::Semihard;
        let mut out = Pairs::default();
        let mut dropped = 0usize;
        match (&pos_rule, &neg_rule) {
            (Some(pos_rule), Some(neg_rule)) => {
                for a in 0..n {
                    // The semi-hard side (at most one) waits for the other side's choice, and
                    // has none without it.
                    let (p, neg) = if pos_semihard {
                        let neg = neg_rule.pick(values, labels, a, None);
                        (neg.and_then(|(_, v)| pos_rule.pick(values, labels, a, Some(v))), neg)
                    } else if neg_semihard {
                        let p = pos_rule.pick(values, labels, a, None);
                        (p, p.and_then(|(_, v)| neg_rule.pick(values, labels, a, Some(v))))
                    } else {
                        (pos_rule.pick(values, labels, a, None), neg_rule.pick(values, labels, a, None))
                    };
                    match (p, neg) {
                        (Some((p, _)), Some((neg, _))) => {
                            out.a1.push(a as u32);
                            out.p.push(p as u32);
                            out.a2.push(a as u32);
                            out.n.push(neg as u32);
                        }
                        _ => dropped += 1,
                    }
                }
            }
            _ => {
                // At least one side is `all` (so neither is semi-hard): that side takes every
                // pair of its kind, the other its one pick per anchor.
                for a in 0..n {
                    for (positive, rule) in [(true, &pos_rule), (false, &neg_rule)] {
                        let (anchors, others) =
                            if positive { (&mut out.a1, &mut out.p) } else { (&mut out.a2, &mut out.n) };
                        match rule {
                            Some(rule) => match rule.pick(values, labels, a, None) {
                                Some((j, _)) => {
                                    anchors.push(a as u32);
                                    others.push(j as u32);
                                }
                                None => dropped += 1,
                            },
                            None => {
                                for j in (0..n).filter(|&j| j != a && (labels[j] == labels[a]) == positive) {
                                    anchors.push(a as u32);
                                    others.push(j as u32);
                                }
                            }
                        }
                    }
                }
            }
        }
        stats.record("pos_pairs", out.positives() as f64);
        stats.record("neg_pairs", out.negatives() as f64);
        stats.record("dropped_anchors", dropped as f64);
        Ok(Tuples::Pairs(out))
    }
}

dmlbench_sdk::export_plugins!(miner: BatchEasyHard);
