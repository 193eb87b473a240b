//! Triplet margin loss (Weinberger and Saul, "Distance Metric Learning for Large Margin
//! Nearest Neighbor Classification", JMLR 2009; Schroff et al., "FaceNet", CVPR 2015), with
//! the definitions and defaults of pytorch-metric-learning's `TripletMarginLoss`.
//!
//! With a distance d (Euclidean on L2-normalised embeddings by default) and triplets
//! (a, p, n) — positive p ≠ a of a's class, negative n of another class:
//!
//! ```text
//! v(a, p, n) = d(a, p) − d(a, n) + m           m = margin = 0.05
//! ℓ(a, p, n) = [v]₊                            (softplus(v) with smooth_loss)
//! L = mean of ℓ over the triplets with ℓ > 0   (PML's AvgNonZeroReducer)
//! ```
//!
//! With a similarity (cosine, dot) the difference flips as in PML's `distance.margin`:
//! v = s(a, n) − s(a, p) + m. With `swap` (Balntas et al., BMVC 2016) d(a, n) is replaced
//! by the smaller of d(a, n) and d(p, n) (the larger similarity). The triplets are the
//! mined ones when a miner ran (pairs are joined per anchor into triplets, PML's
//! `convert_to_triplets`), and otherwise every triplet of the batch (PML's
//! `triplets_per_anchor = "all"`). A batch with no triplet, or none with ℓ > 0, gives 0 and a
//! zero gradient; at a hinge (ℓ = 0 exactly) the gradient is taken as 0.
//!
//! Defaults, all PML's: margin 0.05, `LpDistance(normalize_embeddings=True, p=2)`,
//! swap = false, smooth_loss = false. Not offered: PML's `triplets_per_anchor` as a number
//! (random triplet sampling inside the loss); use a miner instead.
//!
//! With reference embeddings (a cross-batch memory), anchors are batch rows and positives
//! and negatives reference rows, as PML's `ref_emb`; the gradient is the batch's only. `swap`
//! is refused with references: it needs positive-to-negative distances between references.

use dmlbench_sdk::checks::finite;
use dmlbench_sdk::distance::DistanceConfig;
use dmlbench_sdk::matrix::Matrix;
use dmlbench_sdk::tuples::Rows;
use dmlbench_sdk::{Batch, Context, Error, Loss, Plugin, Result, Stats, Triplets, TupleForm, TupleUse};
use serde::{Deserialize, Serialize};

/// Configuration (PML's defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// m: the gap wanted between negative and positive distances.
    pub margin: f64,
    /// How embeddings are compared.
    pub distance: DistanceConfig,
    /// Use the positive–negative distance when it is smaller than the anchor–negative one.
    pub swap: bool,
    /// softplus(v) instead of the hinge max(v, 0).
    pub smooth_loss: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config { margin: 0.05, distance: DistanceConfig::default(), swap: false, smooth_loss: false }
    }
}

/// The triplet margin loss.
pub struct TripletMargin {
    config: Config,
}

impl Plugin for TripletMargin {
    type Config = Config;
    const ID: &'static str = "triplet_margin";
    const NAME: &'static str = "Triplet margin loss";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const SUMMARY: &'static str =
        "[d(a,p) − d(a,n) + m]₊ averaged over non-zero triplets (Weinberger and Saul 2009; PML defaults)";

    fn new(config: Config, _context: &Context) -> Result<Self> {
        finite("margin", config.margin)?;
        Ok(TripletMargin { config })
    }
}

/// Calls `f(a, p, n)` for the given triplets, or for every triplet of the batch (by anchor,
/// then positive, then negative) without building the list.
fn each_triplet(rows: Rows<'_>, given: Option<&Triplets>, mut f: impl FnMut(usize, usize, usize)) {
    match given {
        Some(t) => {
            for i in 0..t.len() {
                f(t.a[i] as usize, t.p[i] as usize, t.n[i] as usize);
            }
        }
        None => {
            let (mut positives, mut negatives) = (Vec::new(), Vec::new());
            for a in 0..rows.labels.len() {
                split_references(rows, a, &mut positives, &mut negatives);
                for &p in &positives {
                    for &n in &negatives {
                        f(a, p, n);
                    }
                }
            }
        }
    }
}

/// The reference rows that are positives of anchor `a` (same label, not `a` itself) and those
/// that are its negatives, in row order.
fn split_references(rows: Rows<'_>, a: usize, positives: &mut Vec<usize>, negatives: &mut Vec<usize>) {
    positives.clear();
    negatives.clear();
    for (j, &label) in rows.reference_labels.iter().enumerate() {
        if label != rows.labels[a] {
            negatives.push(j);
        } else if !rows.is_self(a, j) {
            positives.push(j);
        }
    }
}

impl TripletMargin {
    /// v for one triplet, with the (row, column) of the negative value used (a or p, n).
    fn violation(&self, values: &Matrix, a: usize, p: usize, n: usize) -> (f64, usize) {
        let similarity = self.config.distance.is_similarity();
        let ap = f64::from(values.get(a, p));
        let mut an = f64::from(values.get(a, n));
        let mut neg_row = a;
        if self.config.swap {
            let pn = f64::from(values.get(p, n));
            // "Smallest distance": the closer of the two, which is the larger similarity.
            let closer = if similarity { pn > an } else { pn < an };
            if closer {
                an = pn;
                neg_row = p;
            }
        }
        let gap = if similarity { an - ap } else { ap - an };
        (gap + self.config.margin, neg_row)
    }

    /// ℓ(v) and dℓ/dv.
    fn term(&self, v: f64) -> (f64, f64) {
        if self.config.smooth_loss {
            // softplus(v) = max(v, 0) + ln(1 + e^{−|v|}), stable for large |v|.
            let value = v.max(0.0) + (-v.abs()).exp().ln_1p();
            (value, 1.0 / (1.0 + (-v).exp()))
        } else if v > 0.0 {
            (v, 1.0)
        } else {
            (0.0, 0.0)
        }
    }
}

impl Loss for TripletMargin {
    const TUPLES: TupleUse = TupleUse::Optional(TupleForm::Triplets);
    const ACCEPTS_REFERENCES: bool = true;

    fn forward_backward(&mut self, batch: &Batch<'_>, grad: &mut [f32], stats: &mut Stats) -> Result<f64> {
        if self.config.swap && batch.references.is_some() {
            // The swap compares positive and negative, two reference rows, which a batch-by-
            // references matrix does not hold.
            return Err(Error::bad_input("triplet_margin: swap cannot be used with reference embeddings"));
        }
        let given = batch.mined_triplets();
        let rows = batch.rows();
        let distances = self.config.distance.for_batch(batch);
        let values = distances.values();

        // One pass: sum the active terms and their slopes; every active term has weight
        // 1/count in the mean, known only at the end, so the slopes are scaled afterwards.
        let (pos_sign, neg_sign) = if self.config.distance.is_similarity() { (-1.0, 1.0) } else { (1.0, -1.0) };
        let (n, m) = (batch.n(), batch.reference_count());
        let mut slopes = vec![0.0f64; n * m];
        let (mut total, mut active, mut count) = (0.0, 0usize, 0usize);
        if given.is_none() && !self.config.swap && !self.config.smooth_loss {
            // The default case, every triplet with a hinge, in tight loops over row a of the
            // matrix: v = σ·(v_ap − v_an) + m with σ = +1 for a distance, −1 for a similarity.
            let sigma = pos_sign;
            let (mut positives, mut negatives) = (Vec::with_capacity(m), Vec::with_capacity(m));
            for a in 0..n {
                split_references(rows, a, &mut positives, &mut negatives);
                let row = values.row(a);
                let slope_row = &mut slopes[a * m..(a + 1) * m];
                for &p in &positives {
                    let offset = sigma * f64::from(row[p]) + self.config.margin;
                    let mut active_here = 0usize;
                    for &x in &negatives {
                        let v = offset - sigma * f64::from(row[x]);
                        if v > 0.0 {
                            total += v;
                            active_here += 1;
                            slope_row[x] += neg_sign;
                        }
                    }
                    count += negatives.len();
                    active += active_here;
                    slope_row[p] += pos_sign * active_here as f64;
                }
            }
        } else {
            each_triplet(rows, given.as_deref(), |a, p, x| {
                count += 1;
                let (v, neg_row) = self.violation(values, a, p, x);
                let (loss, slope) = self.term(v);
                if loss > 0.0 {
                    total += loss;
                    active += 1;
                    slopes[a * m + p] += slope * pos_sign;
                    slopes[neg_row * m + x] += slope * neg_sign;
                }
            });
        }
        stats.record("triplets", count as f64);
        stats.record("active_triplets", active as f64);
        if active == 0 {
            stats.record(if count == 0 { "no_triplets" } else { "all_triplets_inactive" }, 1.0);
            return Ok(0.0);
        }
        let weight = 1.0 / active as f64;
        let dvalues = Matrix::from_vec(n, m, slopes.iter().map(|&g| (g * weight) as f32).collect());
        let dz = distances.backward(batch, dvalues.view());
        grad.copy_from_slice(&dz.data);
        Ok(total * weight)
    }
}

dmlbench_sdk::export_plugins!(loss: TripletMargin);
