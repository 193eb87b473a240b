//! k-means for the clustering scores: k-means++ initialisation, then Lloyd iterations, both
//! built on blocked matrix products so that SOP's 11,316 clusters stay affordable.
//!
//! * **Initialisation** draws exactly from the k-means++ distribution (each new centre with
//!   probability proportional to its squared distance to the nearest centre so far), without
//!   a pass over all points per centre. Squared distances are kept from the last *refresh*;
//!   they can only be too large, so drawing from them and accepting a draw `i` with
//!   probability `D(i) / D_stale(i)` (`D(i)` computed exactly against the centres added since)
//!   is rejection sampling with an exact result. A refresh updates every point against the
//!   new centres in one matrix product, once half as many centres again have been added (at
//!   most [`REFRESH_MAX`]) or draws start being rejected.
//! * **Lloyd iterations** assign every point to its nearest centroid (blocked products and an
//!   arg-min; equal distances go to the lower centroid index) and move each centroid to its
//!   members' mean, cluster by cluster in parallel. They stop after `max_iterations` updates or
//!   when no assignment changes.
//! * **Empty clusters** are repaired before each update, as scikit-learn does: each takes the
//!   point farthest from its centroid among clusters that can spare one.
//!
//! Everything is seeded and reduces in a fixed order: the same seed gives the same clusters on
//! any number of threads.
//!
//! ```
//! use dmlbench_eval::kmeans::{kmeans, KMeansOptions};
//!
//! // Two well separated groups on a line.
//! let points = [0.0, 0.1, 0.2, 10.0, 10.1, 10.2];
//! let result = kmeans(&points, 1, 2, &KMeansOptions::default());
//! let a = &result.assignments;
//! assert!(a[0] == a[1] && a[1] == a[2] && a[3] == a[4] && a[4] == a[5] && a[0] != a[3]);
//! ```

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::linalg;

/// Most points per block. Tall tiles (4096 points × 1024 centroids, 16 MiB) pack each block
/// of centroids for the matrix product once per 4096 points: measured on SOP-sized input,
/// the packing took a fifth of the time with 256-point blocks and a twentieth with these.
const POINT_BLOCK: usize = 4096;
/// Centroids per tile in the assignment step.
const CENTROID_BLOCK: usize = 1024;

/// Rows per block so that blocks are at most `POINT_BLOCK` and their number is a multiple of
/// the thread count: a last lone block would leave the other threads idle.
fn point_block(n: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    let blocks = n.div_ceil(POINT_BLOCK).div_ceil(threads) * threads;
    n.div_ceil(blocks).max(1)
}
/// Most centres added between two refreshes of the initialisation's distances.
pub const REFRESH_MAX: usize = 1024;

/// k-means settings.
#[derive(Debug, Clone, PartialEq)]
pub struct KMeansOptions {
    /// Most Lloyd updates.
    pub max_iterations: usize,
    /// Seed of the initialisation.
    pub seed: u64,
    /// Draw a progress bar on standard error (only when it is a terminal).
    pub progress: bool,
}

impl Default for KMeansOptions {
    fn default() -> Self {
        KMeansOptions { max_iterations: 20, seed: 0, progress: false }
    }
}

/// A clustering.
#[derive(Debug, Clone, PartialEq)]
pub struct KMeansResult {
    /// Cluster of each point, in `0..clusters`, nearest to the final centroids.
    pub assignments: Vec<u32>,
    /// Final centroids, `clusters × dim` row-major.
    pub centroids: Vec<f32>,
    /// Lloyd updates run.
    pub iterations: usize,
    /// Sum of squared distances of the points to their centroids.
    pub inertia: f64,
}

/// Clusters the rows of `data` (row-major, `dim` columns, finite values) into `clusters`
/// groups.
///
/// # Panics
/// If `dim` is 0, `data` is not a whole number of rows, or `clusters` is not in
/// `1..=rows`.
pub fn kmeans(data: &[f32], dim: usize, clusters: usize, options: &KMeansOptions) -> KMeansResult {
    assert!(dim > 0, "kmeans: dim must be at least 1");
    assert_eq!(data.len() % dim, 0, "kmeans: data is not a whole number of rows of {dim}");
    let n = data.len() / dim;
    assert!(
        (1..=n).contains(&clusters),
        "kmeans: clusters = {clusters}, must be between 1 and the number of points ({n})"
    );
    assert!(clusters <= u32::MAX as usize, "kmeans: too many clusters");
    let bar = super::progress_bar(options.progress, options.max_iterations as u64 + 1, "k-means");
    let point_sq = linalg::squared_norms(data, dim);
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);

    let Seeding { mut centroids, mut assignments, mut distances } =
        kmeans_plus_plus(data, &point_sq, dim, clusters, &mut rng);
    bar.inc(1);
    let mut iterations = 0;
    while iterations < options.max_iterations {
        repair_empty_clusters(&mut assignments, &distances, clusters);
        centroids = means(data, dim, &assignments, clusters);
        let (next, next_distances) = assign(data, &point_sq, &centroids, dim);
        iterations += 1;
        bar.inc(1);
        let converged = next == assignments;
        assignments = next;
        distances = next_distances;
        if converged {
            break;
        }
    }
    bar.finish_and_clear();
    let inertia = distances.iter().map(|&d| f64::from(d)).sum();
    KMeansResult { assignments, centroids, iterations, inertia }
}

/// Squared Euclidean distance, accumulated directly (exact where the expanded form
/// `‖x‖² + ‖c‖² − 2x·c` cancels badly, as for a point and itself).
fn squared_distance(a: &[f32], b: &[f32]) -> f32 {
    // Sixteen independent partial sums: without them the sum is one long dependency chain
    // the compiler may not reorder, and the rejection test below runs it a million times.
    let mut lanes = [0.0f32; 16];
    let (a_chunks, b_chunks) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = a_chunks.remainder().iter().zip(b_chunks.remainder()).map(|(x, y)| (x - y) * (x - y)).sum();
    for (x, y) in a_chunks.zip(b_chunks) {
        for i in 0..16 {
            let d = x[i] - y[i];
            lanes[i] += d * d;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// The k-means++ centres with every point's nearest one, which the seeding has to compute
/// anyway and which saves the first assignment pass.
struct Seeding {
    centroids: Vec<f32>,
    assignments: Vec<u32>,
    distances: Vec<f32>,
}

/// k-means++ seeding by rejection sampling against stale distances (see the module docs).
fn kmeans_plus_plus(data: &[f32], point_sq: &[f32], dim: usize, clusters: usize, rng: &mut ChaCha8Rng) -> Seeding {
    let n = point_sq.len();
    let row = |i: usize| &data[i * dim..(i + 1) * dim];
    let mut chosen: Vec<usize> = Vec::with_capacity(clusters);
    let first = rng.random_range(0..n);
    chosen.push(first);
    // Squared distance of each point to its nearest centre, and that centre, as of the last
    // refresh. The centres chosen since are `chosen[refreshed..]`.
    let mut stale: Vec<f32> = data.par_chunks_exact(dim).map(|x| squared_distance(x, row(first))).collect();
    let mut nearest = vec![0u32; n];
    stale[first] = 0.0;
    let mut refreshed = 1;
    let mut cumulative = prefix_sums(&stale);
    let mut rejected = 0;
    while chosen.len() < clusters {
        let pending = chosen.len() - refreshed;
        // Doubling batches keep the refreshes few and the rejection tests cheap.
        if pending > 0 && (pending >= refreshed.min(REFRESH_MAX) || rejected >= 4) {
            refresh(data, point_sq, dim, &chosen, refreshed, &mut stale, &mut nearest);
            refreshed = chosen.len();
            cumulative = prefix_sums(&stale);
            rejected = 0;
            continue;
        }
        let total = *cumulative.last().expect("at least one point");
        if total <= 0.0 {
            // Every point coincides with a centre (fewer distinct points than clusters):
            // the remaining centres are duplicates, taken among the points not chosen yet.
            let mut is_chosen = vec![false; n];
            for &c in &chosen {
                is_chosen[c] = true;
            }
            let mut rest: Vec<usize> = (0..n).filter(|&i| !is_chosen[i]).collect();
            while chosen.len() < clusters {
                let pick = rng.random_range(0..rest.len());
                chosen.push(rest.swap_remove(pick));
            }
            break;
        }
        let u = rng.random::<f64>() * total;
        let candidate = cumulative.partition_point(|&c| c <= u).min(n - 1);
        let proposal = f64::from(stale[candidate]);
        if proposal <= 0.0 {
            continue;
        }
        let x = row(candidate);
        let current =
            chosen[refreshed..].iter().map(|&c| f64::from(squared_distance(x, row(c)))).fold(proposal, f64::min);
        if rng.random::<f64>() * proposal < current {
            chosen.push(candidate);
            rejected = 0;
        } else {
            rejected += 1;
        }
    }
    if refreshed < chosen.len() {
        refresh(data, point_sq, dim, &chosen, refreshed, &mut stale, &mut nearest);
    }
    let mut centroids = Vec::with_capacity(clusters * dim);
    for &c in &chosen {
        centroids.extend_from_slice(row(c));
    }
    Seeding { centroids, assignments: nearest, distances: stale }
}

fn prefix_sums(values: &[f32]) -> Vec<f64> {
    let mut sum = 0.0f64;
    values
        .iter()
        .map(|&v| {
            sum += f64::from(v);
            sum
        })
        .collect()
}

/// Lowers every point's stale squared distance to its distance to the centres
/// `chosen[from..]` (centroid indices `from..`), updating its nearest centre; equal distances
/// keep the lower index. Each new centre itself is set to distance 0, which the expanded
/// form would only approximate.
fn refresh(
    data: &[f32],
    point_sq: &[f32],
    dim: usize,
    chosen: &[usize],
    from: usize,
    stale: &mut [f32],
    nearest: &mut [u32],
) {
    let rows = point_block(point_sq.len());
    for c0 in (from..chosen.len()).step_by(CENTROID_BLOCK) {
        let block = &chosen[c0..(c0 + CENTROID_BLOCK).min(chosen.len())];
        let mut centres = Vec::with_capacity(block.len() * dim);
        for &c in block {
            centres.extend_from_slice(&data[c * dim..(c + 1) * dim]);
        }
        let centre_sq: Vec<f32> = block.iter().map(|&c| point_sq[c]).collect();
        let m = block.len();
        data.par_chunks(rows * dim)
            .zip(point_sq.par_chunks(rows))
            .zip(stale.par_chunks_mut(rows).zip(nearest.par_chunks_mut(rows)))
            .for_each_init(Vec::new, |tile, ((points, sq), (stale, nearest))| {
                tile.resize(sq.len() * m, 0.0);
                linalg::dot_tile(points, &centres, dim, tile);
                for (((row, &x_sq), s), near) in tile.chunks_exact(m).zip(sq).zip(stale).zip(nearest) {
                    for (j, (&dot, &c_sq)) in row.iter().zip(&centre_sq).enumerate() {
                        let d = (x_sq + c_sq - 2.0 * dot).max(0.0);
                        if d < *s {
                            *s = d;
                            *near = (c0 + j) as u32;
                        }
                    }
                }
            });
    }
    for (index, &c) in chosen.iter().enumerate().skip(from) {
        // A duplicate of an earlier centre keeps that one: distance 0 either way.
        if stale[c] > 0.0 {
            stale[c] = 0.0;
            nearest[c] = index as u32;
        }
    }
}

/// Nearest centroid of every point and the squared distance to it.
fn assign(data: &[f32], point_sq: &[f32], centroids: &[f32], dim: usize) -> (Vec<u32>, Vec<f32>) {
    let k = centroids.len() / dim;
    let rows = point_block(point_sq.len());
    // Minimising ‖c‖²/2 − x·c is minimising ‖x − c‖²; the halving saves a multiply per entry.
    let half_sq: Vec<f32> = linalg::squared_norms(centroids, dim).into_iter().map(|v| 0.5 * v).collect();
    let per_block: Vec<(Vec<u32>, Vec<f32>)> = data
        .par_chunks(rows * dim)
        .zip(point_sq.par_chunks(rows))
        .map_init(
            || vec![0.0f32; rows * CENTROID_BLOCK.min(k)],
            |tile, (points, sq)| {
                let rows = sq.len();
                let mut best = vec![f32::INFINITY; rows];
                let mut best_index = vec![0u32; rows];
                let mut c0 = 0;
                while c0 < k {
                    let c1 = (c0 + CENTROID_BLOCK).min(k);
                    let cols = c1 - c0;
                    let tile = &mut tile[..rows * cols];
                    linalg::dot_tile(points, &centroids[c0 * dim..c1 * dim], dim, tile);
                    for (i, row) in tile.chunks_exact(cols).enumerate() {
                        // Strict `<` over increasing indices: ties go to the lower centroid.
                        let (mut b, mut bi) = (best[i], best_index[i]);
                        for (j, (&dot, &h)) in row.iter().zip(&half_sq[c0..c1]).enumerate() {
                            let v = h - dot;
                            if v < b {
                                b = v;
                                bi = (c0 + j) as u32;
                            }
                        }
                        best[i] = b;
                        best_index[i] = bi;
                    }
                    c0 = c1;
                }
                let distances = best.iter().zip(sq).map(|(&b, &x)| (x + 2.0 * b).max(0.0)).collect();
                (best_index, distances)
            },
        )
        .collect();
    let mut assignments = Vec::with_capacity(point_sq.len());
    let mut distances = Vec::with_capacity(point_sq.len());
    for (a, d) in per_block {
        assignments.extend(a);
        distances.extend(d);
    }
    (assignments, distances)
}

/// Gives every empty cluster one point: the farthest from its centroid among clusters with
/// more than one member (ties: lower point index first).
fn repair_empty_clusters(assignments: &mut [u32], distances: &[f32], clusters: usize) {
    let mut counts = vec![0usize; clusters];
    for &a in assignments.iter() {
        counts[a as usize] += 1;
    }
    let empty: Vec<usize> = (0..clusters).filter(|&c| counts[c] == 0).collect();
    if empty.is_empty() {
        return;
    }
    let mut order: Vec<usize> = (0..assignments.len()).collect();
    order.sort_by(|&a, &b| distances[b].total_cmp(&distances[a]).then(a.cmp(&b)));
    let mut donors = order.into_iter();
    for e in empty {
        // There are at least as many points as clusters, so some cluster can always spare one.
        let p = donors.find(|&p| counts[assignments[p] as usize] > 1).expect("a cluster with a spare point");
        counts[assignments[p] as usize] -= 1;
        assignments[p] = e as u32;
        counts[e] = 1;
    }
}

/// Mean of each cluster's members (in `f64`, then rounded), in parallel over clusters.
fn means(data: &[f32], dim: usize, assignments: &[u32], clusters: usize) -> Vec<f32> {
    // Counting sort of the points by cluster, so each cluster's members are one slice.
    let mut start = vec![0usize; clusters + 1];
    for &a in assignments {
        start[a as usize + 1] += 1;
    }
    for c in 0..clusters {
        start[c + 1] += start[c];
    }
    let mut next = start.clone();
    let mut members = vec![0usize; assignments.len()];
    for (p, &a) in assignments.iter().enumerate() {
        members[next[a as usize]] = p;
        next[a as usize] += 1;
    }
    let mut centroids = vec![0.0f32; clusters * dim];
    centroids.par_chunks_mut(dim).enumerate().for_each_init(
        || vec![0.0f64; dim],
        |sum, (c, centroid)| {
            let mine = &members[start[c]..start[c + 1]];
            sum.iter_mut().for_each(|s| *s = 0.0);
            for &p in mine {
                for (s, &v) in sum.iter_mut().zip(&data[p * dim..(p + 1) * dim]) {
                    *s += f64::from(v);
                }
            }
            // Repair leaves no cluster empty; the guard keeps a centroid finite regardless.
            let count = mine.len().max(1) as f64;
            for (out, s) in centroid.iter_mut().zip(sum.iter()) {
                *out = (s / count) as f32;
            }
        },
    );
    centroids
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_assign(data: &[f32], centroids: &[f32], dim: usize) -> Vec<u32> {
        data.chunks(dim)
            .map(|x| {
                let mut best = (f64::INFINITY, 0u32);
                for (j, c) in centroids.chunks(dim).enumerate() {
                    let d: f64 = x.iter().zip(c).map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2)).sum();
                    if d < best.0 {
                        best = (d, j as u32);
                    }
                }
                best.1
            })
            .collect()
    }

    fn blobs(per: usize, centres: &[[f32; 2]], seed: u64) -> (Vec<f32>, Vec<u32>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut data = Vec::new();
        let mut truth = Vec::new();
        for (c, centre) in centres.iter().enumerate() {
            for _ in 0..per {
                data.push(centre[0] + rng.random_range(-0.5f32..0.5));
                data.push(centre[1] + rng.random_range(-0.5f32..0.5));
                truth.push(c as u32);
            }
        }
        (data, truth)
    }

    #[test]
    fn separated_blobs_are_recovered_and_assignments_are_nearest_centroids() {
        let centres = [[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0], [5.0, 20.0]];
        let (data, truth) = blobs(40, &centres, 3);
        let result = kmeans(&data, 2, 5, &KMeansOptions { max_iterations: 50, seed: 7, progress: false });
        assert_eq!(result.assignments, naive_assign(&data, &result.centroids, 2));
        // Same partition as the truth, up to renaming.
        for i in 0..truth.len() {
            for j in 0..truth.len() {
                assert_eq!(truth[i] == truth[j], result.assignments[i] == result.assignments[j]);
            }
        }
        assert!(result.iterations < 50, "separated blobs converge");
    }

    #[test]
    fn same_seed_same_clusters() {
        let (data, _) = blobs(30, &[[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]], 4);
        let options = KMeansOptions { max_iterations: 10, seed: 11, progress: false };
        assert_eq!(kmeans(&data, 2, 7, &options), kmeans(&data, 2, 7, &options));
    }

    #[test]
    fn fewer_distinct_points_than_clusters() {
        // Five clusters for five points of which three coincide: seeding runs out of points
        // at a positive distance, and the distinct points must still never share a cluster.
        let data = [0.0, 0.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 9.0, 9.0];
        let result = kmeans(&data, 2, 5, &KMeansOptions { max_iterations: 5, seed: 1, progress: false });
        let a = &result.assignments;
        assert!(a[0] != a[1] && a[0] != a[4] && a[1] != a[4], "distinct points share a cluster: {a:?}");
        assert!(a[1] == a[2] && a[2] == a[3], "coinciding points go to the same (lowest) centroid: {a:?}");
        assert!(result.centroids.iter().all(|v| v.is_finite()));
        assert!(result.inertia.abs() < 1e-9, "every point sits on a centroid, inertia {}", result.inertia);
    }

    #[test]
    fn seeding_assigns_every_point_to_its_nearest_centre() {
        // Enough centres for several refreshes, so the assignment handed to the first Lloyd
        // update is assembled from many batches.
        let (data, _) = blobs(60, &[[0.0, 0.0], [4.0, 0.0], [0.0, 4.0], [4.0, 4.0]], 6);
        let sq = linalg::squared_norms(&data, 2);
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let seeding = kmeans_plus_plus(&data, &sq, 2, 40, &mut rng);
        assert_eq!(seeding.assignments, naive_assign(&data, &seeding.centroids, 2));
        for (i, x) in data.chunks(2).enumerate() {
            let c = seeding.assignments[i] as usize;
            let want = squared_distance(x, &seeding.centroids[c * 2..c * 2 + 2]);
            assert!((seeding.distances[i] - want).abs() < 1e-5, "point {i}: {} vs {want}", seeding.distances[i]);
        }
    }

    #[test]
    fn repair_moves_the_farthest_spare_point() {
        let mut assignments = vec![0, 0, 1, 0];
        let distances = [0.1, 0.9, 5.0, 0.4];
        repair_empty_clusters(&mut assignments, &distances, 3);
        // Point 2 is farthest but alone in cluster 1; point 1 is the farthest spare one.
        assert_eq!(assignments, vec![0, 2, 1, 0]);
    }

    #[test]
    fn initialisation_draws_from_the_k_means_plus_plus_distribution() {
        // Points 0 and 1 coincide; after the first centre, the second is drawn with
        // probability proportional to squared distance. With centre 0 (or 1) first, point 2
        // (distance 1) and point 3 (distance 3) have probabilities 1/10 and 9/10.
        let data = [0.0, 0.0, 1.0, 3.0];
        let sq = linalg::squared_norms(&data, 1);
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let (mut far, mut total) = (0, 0);
        for _ in 0..4000 {
            let centres = kmeans_plus_plus(&data, &sq, 1, 2, &mut rng).centroids;
            if centres[0] == 0.0 {
                total += 1;
                if centres[1] == 3.0 {
                    far += 1;
                }
                assert_ne!(centres[1], 0.0, "a point at distance 0 was drawn");
            }
        }
        let share = f64::from(far) / f64::from(total);
        // 4000 draws, about 2000 with centre 0 first: the standard error of 0.9 is 0.007.
        assert!((share - 0.9).abs() < 0.035, "share of the far point {share} over {total}");
    }
}
