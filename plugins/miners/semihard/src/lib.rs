//! Triplet margin miner, semi-hard by default (Schroff, Kalenichenko and Philbin, "FaceNet: A
//! Unified Embedding for Face Recognition and Clustering", CVPR 2015), with the definitions of
//! pytorch-metric-learning's `TripletMarginMiner`.
//!
//! Over every triplet (a, p, n) of the batch, with a distance d (Euclidean on L2-normalised
//! embeddings by default) and the triplet's margin t = d(a, n) − d(a, p):
//!
//! ```text
//! semihard:  0 < t ≤ m        the negative is farther than the positive, but within m
//! hard:          t ≤ 0        (and t ≤ m) the negative is no farther than the positive
//! all:           t ≤ m        every triplet that violates the margin
//! easy:          t > m        every triplet that does not
//! ```
//!
//! m = margin = 0.2 (PML's default). With a similarity the margin flips as in PML:
//! t = s(a, p) − s(a, n). `type_of_triplets` defaults to `semihard`, the purpose of this
//! plugin's id (PML's own default is `all`). The output is ordered by anchor, positive,
//! negative, as PML's `get_all_triplets_indices`. Note that FaceNet itself picks, per
//! (anchor, positive), one negative from the semi-hard band; PML (and this plugin) keep every
//! triplet in the band.

use dmlbench_sdk::checks::finite;
use dmlbench_sdk::distance::DistanceConfig;
use dmlbench_sdk::{Batch, Context, Miner, Plugin, Result, Stats, Triplets, TupleForm, Tuples};
use serde::{Deserialize, Serialize};

/// Which triplets to keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TripletType {
    /// 0 < t ≤ m.
    Semihard,
    /// t ≤ 0 (and t ≤ m).
    Hard,
    /// t ≤ m.
    All,
    /// t > m.
    Easy,
}

/// Configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// m.
    pub margin: f64,
    /// Which triplets to keep.
    pub type_of_triplets: TripletType,
    /// How embeddings are compared.
    pub distance: DistanceConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config { margin: 0.2, type_of_triplets: TripletType::Semihard, distance: DistanceConfig::default() }
    }
}

/// The triplet margin miner.
pub struct Semihard {
    config: Config,
}

impl Plugin for Semihard {
    type Config = Config;
    const ID: &'static str = "semihard";
    const NAME: &'static str = "Semi-hard triplet miner";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const SUMMARY: &'static str =
        "triplets with 0 < d(a,n) − d(a,p) ≤ m, or hard / all / easy (Schroff et al. 2015; PML's TripletMarginMiner)";

    fn new(config: Config, _context: &Context) -> Result<Self> {
        finite("margin", config.margin)?;
        Ok(Semihard { config })
    }
}

impl Semihard {
    /// Whether a triplet with margin `t` is kept.
    fn keeps(&self, t: f64) -> bool {
        let m = self.config.margin;
        match self.config.type_of_triplets {
            TripletType::Easy => t > m,
            TripletType::All => t <= m,
            TripletType::Hard => t <= m && t <= 0.0,
            TripletType::Semihard => t <= m && t > 0.0,
        }
    }
}

impl Miner for Semihard {
    const OUTPUT: TupleForm = TupleForm::Triplets;

    fn mine(&mut self, batch: &Batch<'_>, stats: &mut Stats) -> Result<Tuples> {
        let distances = self.config.distance.compute(batch.embeddings);
        let values = distances.values();
        let similarity = self.config.distance.is_similarity();
        let labels = batch.labels;
        let mut out = Triplets::default();
        let mut considered = 0usize;
        for (a, &la) in labels.iter().enumerate() {
            let row = values.row(a);
            for (p, &lp) in labels.iter().enumerate() {
                if p == a || lp != la {
                    continue;
                }
                let ap = f64::from(row[p]);
                for (n, &ln) in labels.iter().enumerate() {
                    if ln == la {
                        continue;
                    }
                    considered += 1;
                    let an = f64::from(row[n]);
                    let t = if similarity { ap - an } else { an - ap };
                    if self.keeps(t) {
                        out.a.push(a as u32);
                        out.p.push(p as u32);
                        out.n.push(n as u32);
                    }
                }
            }
        }
        stats.record("triplets_considered", considered as f64);
        stats.record("triplets", out.len() as f64);
        Ok(Tuples::Triplets(out))
    }
}

dmlbench_sdk::export_plugins!(miner: Semihard);
