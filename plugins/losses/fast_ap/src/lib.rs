//! FastAP (Cakir, He, Xia, Kulis and Sclaroff, "Deep Metric Learning to Rank", CVPR 2019), with
//! the definitions and defaults of pytorch-metric-learning's `FastAPLoss`.
//!
//! Each anchor i ranks the other embeddings by their squared Euclidean distance d_ij between
//! L2-normalised embeddings, which lies in [0, D] with D = 4. The range is cut into B bins
//! (B = num_bins = 10) with B + 1 centres c_b = b·Δ, Δ = D/B, and each distance is spread over
//! the two nearest centres by a triangular kernel; the soft histograms of the anchor's
//! positives (same label, j ≠ i) and negatives give average precision in closed form:
//!
//! ```text
//! δ_b(d)  = [1 − |d − c_b| / Δ]₊                          b = 0..B
//! h⁺_b    = Σ_{j positive} δ_b(d_ij)      h_b = h⁺_b + Σ_{j negative} δ_b(d_ij)
//! H⁺_b    = Σ_{k≤b} h⁺_k                  H_b = Σ_{k≤b} h_k
//! AP_i    = (1/N_i) Σ_b h⁺_b H⁺_b / H_b   over the bins with h⁺_b H⁺_b > 0 and H_b > 0
//! L       = (1/|A|) Σ_{i∈A} w_i (1 − AP_i)
//! ```
//!
//! N_i is the number of positives of anchor i and A the set of anchors with N_i > 0. An anchor
//! without a positive has no precision to measure: as in PML it is left out of the loss and
//! out of the mean (`skipped_anchors` counts it). A batch where no anchor has a positive gives
//! 0 and a zero gradient with `no_positive_pairs` (PML's zero loss).
//!
//! **Tuples.** As in PML, mined tuples do not choose the pairs: every pair of the batch is in
//! the histograms. They weight the anchors: w_i = c_i / max_k c_k, where c_i counts how often
//! row i appears anywhere in the mined a1, p, a2 and n lists (PML's `convert_to_weights`); a
//! row in no tuple gets w = 0 but its anchor still counts in |A|. Without a miner, or when every
//! mined list is empty, w_i = 1.
//!
//! **Gradient.** Exact: the histograms are piecewise linear in the distances, with
//! dδ_b/dd = −sign(d − c_b)/Δ where δ_b > 0 and 0 elsewhere. At a bin centre (d = c_b exactly)
//! the loss has a kink; there the slope of |d − c_b| is taken as 0 and that of [·]₊ at 0 as 0,
//! autograd's conventions, so such a distance gets no gradient. Whether a distance lands exactly
//! on a centre is a matter of rounding, in PML as here (PML's √2² is 2 + 4e-16). The terms left
//! out of AP_i (the masked bins) contribute nothing to the gradient, as in PML.
//!
//! **Pieces.** Between kinks the loss is smooth, and a distance can lie closer to a centre than
//! any finite-difference step (1e-5 in the conformance suite's batch of 16 rows). The loss is
//! declared piecewise smooth and records its piece: the interval [c_b, c_{b+1}) of every
//! distance d_ij, i ≠ j, hashed in row order. Which bins are masked changes only there too (a
//! bin's h⁺_b becomes positive when a positive's distance passes the centre next to it), so
//! on one piece the formula above is one smooth function, and gradient checks compare only
//! differences that stay on it.
//!
//! Defaults, all PML's: num_bins = 10, `LpDistance(power=2)` with normalised embeddings. PML
//! accepts any power of a normalised L2 distance and sets D = 2^power; here the distance may be
//! `squared_euclidean` (D = 4) or `euclidean` (D = 2), normalised, and anything else is refused
//! as PML's `assert_distance_type` refuses it.
//!
//! Difference from PML: mined triplets reach the loss as their pairs (a, p) and (a, n), so an
//! anchor is counted twice per triplet in c_i where PML, given the triplet tuple itself, counts
//! it once; the SDK hands the loss one tuple form, and pairs are the form that keeps a pair
//! miner's tuples exactly as PML sees them. With mined pairs the weights are PML's.

use dmlbench_sdk::checks::positive;
use dmlbench_sdk::distance::DistanceConfig;
use dmlbench_sdk::matrix::Matrix;
use dmlbench_sdk::pairwise::Measure;
use dmlbench_sdk::piece::Piece;
use dmlbench_sdk::{Batch, Context, Error, Loss, Pairs, Plugin, Result, Stats, TupleForm, TupleUse};
use serde::{Deserialize, Serialize};

/// Configuration (PML's defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// B ≥ 1: the number of histogram bins over the distance range (B + 1 bin centres).
    pub num_bins: usize,
    /// The distance: squared Euclidean (range [0, 4]) or Euclidean (range [0, 2]), both on
    /// L2-normalised embeddings.
    pub distance: DistanceConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            num_bins: 10,
            distance: DistanceConfig { measure: Measure::SquaredEuclidean, normalize_embeddings: true },
        }
    }
}

/// The FastAP loss.
pub struct FastAp {
    config: Config,
    /// D: the largest distance between unit vectors, 4 squared or 2 plain.
    histogram_max: f64,
}

impl Plugin for FastAp {
    type Config = Config;
    const ID: &'static str = "fast_ap";
    const NAME: &'static str = "FastAP";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const SUMMARY: &'static str = "1 − average precision from triangular soft histograms of distances, mean over anchors with a positive (Cakir et al. 2019; PML defaults)";

    fn new(config: Config, _context: &Context) -> Result<Self> {
        positive("num_bins", config.num_bins as f64)?;
        let histogram_max = match (config.distance.measure, config.distance.normalize_embeddings) {
            (Measure::SquaredEuclidean, true) => 4.0,
            (Measure::Euclidean, true) => 2.0,
            (measure, normalized) => {
                return Err(Error::bad_config(format!(
                    "distance must be euclidean or squared_euclidean with normalize_embeddings: true \
                     (FastAP bins a bounded L2 distance), got {measure:?} with normalize_embeddings: {normalized}"
                )));
            }
        };
        Ok(FastAp { config, histogram_max })
    }
}

/// The anchor weights w_i of mined tuples: occurrences of each row in every list, divided by
/// the largest count; all ones when every list is empty.
pub fn miner_weights(n: usize, pairs: &Pairs) -> Vec<f64> {
    let mut counts = vec![0usize; n];
    for list in [&pairs.a1, &pairs.p, &pairs.a2, &pairs.n] {
        for &i in list {
            counts[i as usize] += 1;
        }
    }
    let max = counts.iter().copied().max().unwrap_or(0);
    if max == 0 {
        return vec![1.0; n];
    }
    counts.iter().map(|&c| c as f64 / max as f64).collect()
}

/// The soft-histogram bins: B + 1 triangular kernels of half-width Δ centred on b·Δ.
struct Bins {
    count: usize,
    max: f64,
    delta: f64,
}

impl Bins {
    /// The smooth piece of a distance matrix: the interval between centres of each d_ij,
    /// i ≠ j, in row order (FastAP's kinks are where one crosses a centre).
    fn piece(&self, distances: &Matrix) -> Piece {
        let mut piece = Piece::default();
        for i in 0..distances.rows {
            for j in (0..distances.cols).filter(|&j| j != i) {
                piece.add((f64::from(distances.get(i, j)) / self.delta).floor().max(0.0) as u64);
            }
        }
        piece
    }

    /// Calls `f(b, δ_b(d), dδ_b/dd)` for the (at most two) bins where δ_b(d) > 0.
    fn each_membership(&self, d: f64, mut f: impl FnMut(usize, f64, f64)) {
        let nearest = (d / self.delta).floor().max(0.0) as usize;
        for b in nearest.saturating_sub(1)..=(nearest + 1).min(self.count) {
            let offset = d - self.max * b as f64 / self.count as f64;
            let membership = 1.0 - offset.abs() / self.delta;
            if membership > 0.0 {
                let slope = if offset > 0.0 {
                    -1.0 / self.delta
                } else if offset < 0.0 {
                    1.0 / self.delta
                } else {
                    0.0
                };
                f(b, membership, slope);
            }
        }
    }
}

impl Loss for FastAp {
    const TUPLES: TupleUse = TupleUse::Optional(TupleForm::Pairs);
    const PIECEWISE_SMOOTH: bool = true;

    fn forward_backward(&mut self, batch: &Batch<'_>, grad: &mut [f32], stats: &mut Stats) -> Result<f64> {
        let n = batch.n();
        let labels = batch.labels;
        let distances = self.config.distance.compute(batch.embeddings);
        let values = distances.values();
        let bins = Bins {
            count: self.config.num_bins,
            max: self.histogram_max,
            delta: self.histogram_max / self.config.num_bins as f64,
        };
        // Every call names its piece, a degenerate batch's too (the SDK requires it).
        bins.piece(values).record(stats);
        let positives: Vec<usize> =
            (0..n).map(|i| (0..n).filter(|&j| j != i && labels[j] == labels[i]).count()).collect();
        let anchors: Vec<usize> = (0..n).filter(|&i| positives[i] > 0).collect();
        stats.record("skipped_anchors", (n - anchors.len()) as f64);
        if anchors.is_empty() {
            stats.record("no_positive_pairs", 1.0);
            return Ok(0.0);
        }
        let weights = match batch.mined_pairs() {
            Some(pairs) => miner_weights(n, &pairs),
            None => vec![1.0; n],
        };
        stats.record("zero_weight_anchors", anchors.iter().filter(|&&i| weights[i] == 0.0).count() as f64);

        let edges = bins.count + 1;
        let (mut h_pos, mut h_all) = (vec![0.0f64; edges], vec![0.0f64; edges]);
        let (mut c_pos, mut c_all) = (vec![0.0f64; edges], vec![0.0f64; edges]);
        let (mut g_pos, mut g_neg) = (vec![0.0f64; edges], vec![0.0f64; edges]);
        let inv_anchors = 1.0 / anchors.len() as f64;
        let mut dvalues = Matrix::zeros(n, n);
        let mut total = 0.0;
        let mut any_term = false;
        for &i in &anchors {
            h_pos.fill(0.0);
            h_all.fill(0.0);
            for j in (0..n).filter(|&j| j != i) {
                let positive = labels[j] == labels[i];
                bins.each_membership(f64::from(values.get(i, j)), |b, m, _| {
                    h_all[b] += m;
                    if positive {
                        h_pos[b] += m;
                    }
                });
            }
            // Forward: cumulative histograms and the precision sum over the kept bins.
            let (mut run_pos, mut run_all, mut precision) = (0.0, 0.0, 0.0);
            let kept = |b: usize, c_pos: &[f64], c_all: &[f64]| h_pos[b] * c_pos[b] > 0.0 && c_all[b] > 0.0;
            for b in 0..edges {
                run_pos += h_pos[b];
                run_all += h_all[b];
                c_pos[b] = run_pos;
                c_all[b] = run_all;
                if kept(b, &c_pos, &c_all) {
                    precision += h_pos[b] * c_pos[b] / c_all[b];
                    any_term = true;
                }
            }
            let n_pos = positives[i] as f64;
            let w = weights[i];
            total += w * (1.0 - precision / n_pos);
            if w == 0.0 {
                continue;
            }
            // Backward: t_b = h⁺_b H⁺_b / H_b depends on h⁺_b directly and on every h⁺_k,
            // h⁻_k with k ≤ b through H⁺_b and H_b; accumulate those from the last bin down.
            let scale = -w * inv_anchors / n_pos;
            let (mut through_pos, mut through_all) = (0.0, 0.0);
            for b in (0..edges).rev() {
                let direct = if kept(b, &c_pos, &c_all) {
                    let ratio = c_pos[b] / c_all[b];
                    through_pos += h_pos[b] / c_all[b];
                    through_all -= h_pos[b] * ratio / c_all[b];
                    ratio
                } else {
                    0.0
                };
                g_pos[b] = scale * (direct + through_pos + through_all);
                g_neg[b] = scale * through_all;
            }
            let row = dvalues.row_mut(i);
            for j in (0..n).filter(|&j| j != i) {
                let g = if labels[j] == labels[i] { &g_pos } else { &g_neg };
                let mut slope = 0.0;
                bins.each_membership(f64::from(values.get(i, j)), |b, _, s| slope += s * g[b]);
                row[j] = slope as f32;
            }
        }
        if !any_term {
            // No positive fell in any bin (possible only outside [0, D]): PML's zero loss.
            stats.record("no_positive_pairs", 1.0);
            return Ok(0.0);
        }
        grad.copy_from_slice(&distances.backward(batch.embeddings, dvalues.view()).data);
        Ok(total * inv_anchors)
    }
}

dmlbench_sdk::export_plugins!(loss: FastAp);
