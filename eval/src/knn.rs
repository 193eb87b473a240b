//! Exact k-nearest-neighbour search, blocked so that no n×n matrix ever exists.
//!
//! Queries and gallery are cut into blocks of [`BLOCK`] rows. One matrix product per pair of
//! blocks gives a tile of scores that stays in cache, and each query's part of the tile is
//! offered to that query's selector, which keeps its `k` best candidates (at most `2k` at any
//! time). Rayon's threads share out the tiles:
//!
//! * query-vs-gallery: one task per block of queries walks the whole gallery; memory is the
//!   embeddings plus, per thread, one tile and one block of selectors;
//! * self-retrieval: the score matrix is symmetric, so only tiles on and above the diagonal
//!   are computed and each serves both its rows and its columns, halving the products; every
//!   query's selector then lives to the end, `n·2k` candidates of 8 bytes at most.
//!
//! Memory is `O((n_q + n_g)·d + n_q·k)` at most, never `n_q × n_g`.
//!
//! Scores are "larger is closer": the dot product of normalised rows for cosine, and
//! `−‖q − g‖² = 2·q·g − ‖q‖² − ‖g‖²` for Euclidean. Equal scores rank by gallery index,
//! smaller first, whatever order the tiles are processed in, so results do not depend on the
//! thread count.
//!
//! ```
//! use dmlbench_eval::{knn::knn, Distance};
//!
//! // Three points on a line; in self-retrieval nobody finds itself.
//! let points = [0.0, 1.0, 3.0];
//! let found = knn(&points, None, 1, 2, Distance::Euclidean).unwrap();
//! assert_eq!(found.indices_of(0), &[1, 2]);
//! assert_eq!(found.indices_of(2), &[1, 0]);
//! assert_eq!(found.distances_of(2), &[2.0, 3.0]);
//! ```

use std::cmp::Ordering;
use std::sync::{Mutex, MutexGuard, PoisonError};

use rayon::prelude::*;

use super::{Distance, EvalError, linalg};

/// Rows per block of queries and of gallery: a `BLOCK × BLOCK` tile of `f32` is 1 MiB, which
/// stays in a core's L2 cache between the product that writes it and the selection that
/// reads it.
pub const BLOCK: usize = 512;

/// The `k` nearest gallery items of every query, closest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Neighbours {
    /// Neighbours per query: the requested `k`, or fewer when the gallery is smaller.
    pub k: usize,
    /// Gallery indices, `n_q × k` row-major.
    pub indices: Vec<u32>,
    /// The matching distances (cosine distance `1 − cos`, or Euclidean distance).
    pub distances: Vec<f32>,
}

impl Neighbours {
    /// Neighbour indices of query `q`, closest first.
    pub fn indices_of(&self, q: usize) -> &[u32] {
        &self.indices[q * self.k..(q + 1) * self.k]
    }

    /// Neighbour distances of query `q`, in the same order.
    pub fn distances_of(&self, q: usize) -> &[f32] {
        &self.distances[q * self.k..(q + 1) * self.k]
    }
}

/// Exact kNN of `queries` (row-major, `dim` columns) in `gallery`, or in `queries` itself
/// without each query's own row when `gallery` is `None`.
pub fn knn(
    queries: &[f32],
    gallery: Option<&[f32]>,
    dim: usize,
    k: usize,
    distance: Distance,
) -> Result<Neighbours, EvalError> {
    if dim == 0 {
        return Err(EvalError::Shape { what: "dim", message: "embedding size must be at least 1".into() });
    }
    let n_q = queries.len() / dim;
    linalg::check_matrix("queries", queries, n_q, dim)?;
    if let Some(g) = gallery {
        linalg::check_matrix("gallery", g, g.len() / dim, dim)?;
    }
    if distance == Distance::Euclidean {
        linalg::check_norms("queries", queries, dim)?;
        if let Some(g) = gallery {
            linalg::check_norms("gallery", g, dim)?;
        }
    }
    let (normalised_q, normalised_g) = match distance {
        Distance::Cosine => (Some(linalg::l2_normalised(queries, dim)), gallery.map(|g| linalg::l2_normalised(g, dim))),
        Distance::Euclidean => (None, None),
    };
    let queries = normalised_q.as_deref().unwrap_or(queries);
    let gallery = normalised_g.as_deref().or(gallery);
    let search = Search::new(queries, gallery, dim, distance);
    let k = k.min(search.available());
    let rows = search.run(k, false, |_, found| {
        found
            .iter()
            .map(|&(score, index)| {
                let d = match distance {
                    Distance::Cosine => 1.0 - score,
                    Distance::Euclidean => (-score).max(0.0).sqrt(),
                };
                (index, d)
            })
            .collect::<Vec<_>>()
    });
    let mut indices = Vec::with_capacity(n_q * k);
    let mut distances = Vec::with_capacity(n_q * k);
    for row in rows {
        indices.extend(row.iter().map(|p| p.0));
        distances.extend(row.iter().map(|p| p.1));
    }
    Ok(Neighbours { k, indices, distances })
}

/// A prepared search: checked inputs, cosine rows already normalised.
pub(crate) struct Search<'a> {
    queries: &'a [f32],
    /// `None`: search the queries themselves, skipping each query's own row.
    gallery: Option<&'a [f32]>,
    dim: usize,
    /// Squared norms of the query and gallery rows for Euclidean scores; `None` for dot
    /// products.
    squared_norms: Option<(Vec<f32>, Vec<f32>)>,
}

impl<'a> Search<'a> {
    pub(crate) fn new(queries: &'a [f32], gallery: Option<&'a [f32]>, dim: usize, distance: Distance) -> Self {
        let squared_norms = match distance {
            Distance::Cosine => None,
            Distance::Euclidean => Some((
                linalg::squared_norms(queries, dim),
                gallery.map_or_else(Vec::new, |g| linalg::squared_norms(g, dim)),
            )),
        };
        Search { queries, gallery, dim, squared_norms }
    }

    /// How many neighbours a query can have.
    pub(crate) fn available(&self) -> usize {
        match self.gallery {
            Some(g) => g.len() / self.dim,
            None => (self.queries.len() / self.dim).saturating_sub(1),
        }
    }

    /// Runs the search for the `k` best of every query (`k ≤ available()`) and maps each
    /// query's neighbours, given as `(score, gallery index)` best first, through `per_query`.
    /// Results come back in query order whatever the scheduling.
    pub(crate) fn run<T, F>(&self, k: usize, progress: bool, per_query: F) -> Vec<T>
    where
        T: Send,
        F: Fn(usize, &[(f32, u32)]) -> T + Sync,
    {
        assert!(k <= self.available(), "k = {k} exceeds the {} available neighbours", self.available());
        let n_q = self.queries.len() / self.dim;
        let n_g = self.gallery.map_or(n_q, |g| g.len() / self.dim);
        assert!(n_g <= u32::MAX as usize, "a gallery of {n_g} rows exceeds u32 indices");
        if k == 0 {
            return (0..n_q).map(|q| per_query(q, &[])).collect();
        }
        match self.gallery {
            Some(gallery) => self.run_gallery(gallery, k, progress, &per_query),
            None => self.run_symmetric(k, progress, &per_query),
        }
    }

    /// Scores "larger is closer" for a tile of dot products between rows `r0..` of the
    /// queries and rows `c0..` of the gallery: the dot products themselves (cosine), or
    /// `−‖q − g‖² = 2·q·g − ‖q‖² − ‖g‖²` (Euclidean), which is symmetric in `q` and `g` so
    /// that one tile serves both orientations of self-retrieval.
    fn to_scores(&self, tile: &mut [f32], cols: usize, r0: usize, c0: usize) {
        if let Some((query_sq, gallery_sq)) = &self.squared_norms {
            let col_sq = if self.gallery.is_some() { gallery_sq } else { query_sq };
            let col_sq = &col_sq[c0..c0 + cols];
            for (row, &q) in tile.chunks_exact_mut(cols).zip(&query_sq[r0..]) {
                for (s, &g) in row.iter_mut().zip(col_sq) {
                    *s = 2.0 * *s - q - g;
                }
            }
        }
    }

    /// Query-vs-gallery: each task owns a block of queries and walks the whole gallery.
    fn run_gallery<T, F>(&self, gallery: &[f32], k: usize, progress: bool, per_query: &F) -> Vec<T>
    where
        T: Send,
        F: Fn(usize, &[(f32, u32)]) -> T + Sync,
    {
        let dim = self.dim;
        let n_q = self.queries.len() / dim;
        let n_g = gallery.len() / dim;
        let blocks = n_q.div_ceil(BLOCK);
        let bar = super::progress_bar(progress, blocks as u64, "nearest neighbours");
        let per_block: Vec<Vec<T>> = (0..blocks)
            .into_par_iter()
            .map_init(
                || vec![0.0f32; BLOCK * BLOCK],
                |tile, b| {
                    let q0 = b * BLOCK;
                    let q1 = (q0 + BLOCK).min(n_q);
                    let mut selectors = Selectors::new(q1 - q0, k);
                    let mut g0 = 0;
                    while g0 < n_g {
                        let g1 = (g0 + BLOCK).min(n_g);
                        let cols = g1 - g0;
                        let tile = &mut tile[..(q1 - q0) * cols];
                        linalg::dot_tile(&self.queries[q0 * dim..q1 * dim], &gallery[g0 * dim..g1 * dim], dim, tile);
                        self.to_scores(tile, cols, q0, g0);
                        selectors.offer_rows(tile, cols, g0 as u32);
                        g0 = g1;
                    }
                    bar.inc(1);
                    (0..q1 - q0).map(|i| per_query(q0 + i, selectors.finish(i))).collect()
                },
            )
            .collect();
        bar.finish_and_clear();
        per_block.into_iter().flatten().collect()
    }

    /// Self-retrieval: the score matrix is symmetric, so only the tiles on and above the
    /// diagonal are computed, each offered to its block of rows and, read by columns, to its
    /// block of columns. This halves the matrix products; the price is that every query's
    /// selector lives until the end (`n·2k` candidates at most) behind a lock per block.
    fn run_symmetric<T, F>(&self, k: usize, progress: bool, per_query: &F) -> Vec<T>
    where
        T: Send,
        F: Fn(usize, &[(f32, u32)]) -> T + Sync,
    {
        let dim = self.dim;
        let n = self.queries.len() / dim;
        let blocks = n.div_ceil(BLOCK);
        let span = |b: usize| (b * BLOCK, ((b + 1) * BLOCK).min(n));
        let selectors: Vec<Mutex<Selectors>> = (0..blocks)
            .map(|b| {
                let (r0, r1) = span(b);
                Mutex::new(Selectors::new(r1 - r0, k))
            })
            .collect();
        let tiles: Vec<(usize, usize)> = (0..blocks).flat_map(|i| (i..blocks).map(move |j| (i, j))).collect();
        let bar = super::progress_bar(progress, tiles.len() as u64, "nearest neighbours");
        tiles.into_par_iter().for_each_init(
            || vec![0.0f32; BLOCK * BLOCK],
            |tile, (i, j)| {
                let (r0, r1) = span(i);
                let (c0, c1) = span(j);
                let cols = c1 - c0;
                let tile = &mut tile[..(r1 - r0) * cols];
                linalg::dot_tile(&self.queries[r0 * dim..r1 * dim], &self.queries[c0 * dim..c1 * dim], dim, tile);
                self.to_scores(tile, cols, r0, c0);
                if i == j {
                    // A query never retrieves itself: below every finite score, and the
                    // selectors' threshold test never admits it.
                    for d in 0..cols {
                        tile[d * cols + d] = f32::NEG_INFINITY;
                    }
                }
                lock(&selectors[i]).offer_rows(tile, cols, c0 as u32);
                if i != j {
                    lock(&selectors[j]).offer_columns(tile, cols, r0 as u32);
                }
                bar.inc(1);
            },
        );
        bar.finish_and_clear();
        selectors
            .into_par_iter()
            .enumerate()
            .flat_map_iter(|(b, block)| {
                let mut block = block.into_inner().unwrap_or_else(PoisonError::into_inner);
                let (r0, r1) = span(b);
                (0..r1 - r0).map(|i| per_query(r0 + i, block.finish(i))).collect::<Vec<T>>()
            })
            .collect()
    }
}

/// Locks a block's selectors. A panic elsewhere cannot leave them half-updated in a way
/// that matters (the search is abandoned with it), so a poisoned lock is simply taken.
fn lock(m: &Mutex<Selectors>) -> MutexGuard<'_, Selectors> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Order of candidates: higher score first, then lower index. Scores are never NaN here.
fn better(a: &(f32, u32), b: &(f32, u32)) -> Ordering {
    b.0.total_cmp(&a.0).then(a.1.cmp(&b.1))
}

/// Width of the blocks compared against thresholds before looking at single scores.
const LANES: usize = 16;

/// The `k` best `(score, index)` candidates of each query of a block, offered in any order.
///
/// Per query, a buffer of up to `2k` candidates above a threshold: when it fills, a
/// linear-time selection keeps the `k` best and the threshold rises to the `k`-th best.
/// Compared with a binary heap, almost all the work becomes the test `score ≥ threshold`,
/// done [`LANES`] scores at a time, which fails for nearly every gallery item once the
/// thresholds have settled. A score equal to the threshold is taken only with a smaller
/// index than the threshold's own candidate, which keeps the order exact for ties.
pub(crate) struct Selectors {
    k: usize,
    thresholds: Vec<f32>,
    threshold_index: Vec<u32>,
    buffers: Vec<Vec<(f32, u32)>>,
}

impl Selectors {
    pub(crate) fn new(queries: usize, k: usize) -> Self {
        assert!(k >= 1, "Selectors need k ≥ 1");
        // Threshold index 0 with threshold −∞: a −∞ score (a query's own row) never passes.
        Selectors {
            k,
            thresholds: vec![f32::NEG_INFINITY; queries],
            threshold_index: vec![0; queries],
            buffers: (0..queries).map(|_| Vec::new()).collect(),
        }
    }

    /// Offers row `q` of `tile` (`cols` wide) to query `q`, for gallery indices `first..`.
    pub(crate) fn offer_rows(&mut self, tile: &[f32], cols: usize, first: u32) {
        for (q, row) in tile.chunks_exact(cols).enumerate() {
            let mut c = 0;
            for chunk in row.chunks(LANES) {
                let t = self.thresholds[q];
                if chunk.iter().fold(false, |any, &s| any | (s >= t)) {
                    for (j, &s) in chunk.iter().enumerate() {
                        self.consider(q, s, first + (c + j) as u32);
                    }
                }
                c += chunk.len();
            }
        }
    }

    /// Offers column `q` of `tile` (`cols` wide) to query `q`, for gallery indices `first..`
    /// down the rows: the transposed use of a symmetric tile, read row by row.
    pub(crate) fn offer_columns(&mut self, tile: &[f32], cols: usize, first: u32) {
        debug_assert_eq!(cols, self.thresholds.len());
        for (r, row) in tile.chunks_exact(cols).enumerate() {
            let index = first + r as u32;
            let mut c0 = 0;
            while c0 < cols {
                let c1 = (c0 + LANES).min(cols);
                let thresholds = &self.thresholds[c0..c1];
                if row[c0..c1].iter().zip(thresholds).fold(false, |any, (&s, &t)| any | (s >= t)) {
                    for (c, &s) in row.iter().enumerate().take(c1).skip(c0) {
                        self.consider(c, s, index);
                    }
                }
                c0 = c1;
            }
        }
    }

    #[inline]
    fn consider(&mut self, q: usize, score: f32, index: u32) {
        let t = self.thresholds[q];
        if score > t || (score == t && index < self.threshold_index[q]) {
            let buffer = &mut self.buffers[q];
            buffer.push((score, index));
            if buffer.len() >= 2 * self.k {
                self.shrink(q);
            }
        }
    }

    fn shrink(&mut self, q: usize) {
        let k = self.k;
        let buffer = &mut self.buffers[q];
        if buffer.len() >= k {
            if buffer.len() > k {
                buffer.select_nth_unstable_by(k - 1, better);
                buffer.truncate(k);
            }
            // The k-th best after selection is the worst kept.
            let (score, index) = buffer[k - 1];
            self.thresholds[q] = score;
            self.threshold_index[q] = index;
        }
    }

    /// Query `q`'s kept candidates, best first.
    pub(crate) fn finish(&mut self, q: usize) -> &[(f32, u32)] {
        self.shrink(q);
        let buffer = &mut self.buffers[q];
        buffer.sort_unstable_by(better);
        buffer
    }
}

#[cfg(test)]
mod tests {
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    /// Every distance in `f64`, fully sorted by (distance, index).
    fn brute_force(q: &[f32], g: Option<&[f32]>, dim: usize, distance: Distance) -> Vec<Vec<(f64, u32)>> {
        let gal = g.unwrap_or(q);
        let norm = |x: &[f32]| x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>().sqrt();
        q.chunks(dim)
            .enumerate()
            .map(|(i, a)| {
                let mut row: Vec<(f64, u32)> = gal
                    .chunks(dim)
                    .enumerate()
                    .filter(|&(j, _)| g.is_some() || j != i)
                    .map(|(j, b)| {
                        let d = match distance {
                            Distance::Cosine => {
                                let dot: f64 = a.iter().zip(b).map(|(&x, &y)| f64::from(x) * f64::from(y)).sum();
                                1.0 - dot / (norm(a) * norm(b))
                            }
                            Distance::Euclidean => a
                                .iter()
                                .zip(b)
                                .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
                                .sum::<f64>()
                                .sqrt(),
                        };
                        (d, j as u32)
                    })
                    .collect();
                row.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
                row
            })
            .collect()
    }

    fn random(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n * dim).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    /// Compares with the brute force: distances rank by rank within rounding, and indices
    /// wherever the reference distance is clear of its neighbours by more than rounding.
    fn assert_matches(found: &Neighbours, reference: &[Vec<(f64, u32)>], k: usize) {
        assert_eq!(found.k, k);
        for (q, row) in reference.iter().enumerate() {
            for r in 0..k {
                let (d, j) = row[r];
                let got = f64::from(found.distances_of(q)[r]);
                assert!((got - d).abs() < 1e-5, "query {q} rank {r}: distance {got} vs {d}");
                let clear_before = r == 0 || d - row[r - 1].0 > 1e-5;
                let clear_after = r + 1 >= row.len() || row[r + 1].0 - d > 1e-5;
                if clear_before && clear_after {
                    assert_eq!(found.indices_of(q)[r], j, "query {q} rank {r}");
                }
            }
        }
    }

    #[test]
    fn self_retrieval_matches_brute_force_across_block_edges() {
        // More queries than one block and more gallery rows than one tile, so block
        // boundaries and the self-exclusion at every offset are exercised.
        let dim = 5;
        let n = 2 * BLOCK + 37;
        let data = random(n, dim, 1);
        for distance in [Distance::Cosine, Distance::Euclidean] {
            let reference = brute_force(&data, None, dim, distance);
            for k in [1, 7, 300] {
                let found = knn(&data, None, dim, k, distance).unwrap();
                assert_matches(&found, &reference, k);
                for q in 0..n {
                    assert!(!found.indices_of(q).contains(&(q as u32)), "query {q} retrieved itself");
                }
            }
        }
    }

    #[test]
    fn query_gallery_matches_brute_force_and_caps_k_at_the_gallery() {
        let dim = 4;
        let queries = random(70, dim, 2);
        let gallery = random(40, dim, 3);
        for distance in [Distance::Cosine, Distance::Euclidean] {
            let reference = brute_force(&queries, Some(&gallery), dim, distance);
            let found = knn(&queries, Some(&gallery), dim, 1000, distance).unwrap();
            assert_matches(&found, &reference, 40);
        }
    }

    #[test]
    fn equal_distances_rank_by_index() {
        // Every gallery row is at distance 1 from the query at the origin, and the products
        // are exact in f32, so the order can come from the index only.
        let gallery = [0.0, 1.0, 1.0, 0.0, 0.0, -1.0, -1.0, 0.0, 0.0, 1.0];
        let found = knn(&[0.0, 0.0], Some(&gallery), 2, 5, Distance::Euclidean).unwrap();
        assert_eq!(found.indices_of(0), &[0, 1, 2, 3, 4]);
        // Duplicates under cosine: rows 1, 3 and 4 are identical, so their scores are too.
        let gallery = [0.0, 1.0, 0.6, 0.8, 1.0, 0.0, 0.6, 0.8, 0.6, 0.8];
        let found = knn(&[0.6, 0.8], Some(&gallery), 2, 5, Distance::Cosine).unwrap();
        assert_eq!(&found.indices_of(0)[..3], &[1, 3, 4]);
    }

    #[test]
    fn ties_across_blocks_rank_by_index_in_self_retrieval() {
        // Identical rows spanning three blocks: every score ties, so each query's neighbours
        // are the lowest other indices, although tiles reach the selectors of later blocks
        // through their columns and in any order.
        let n = 2 * BLOCK + 100;
        let data: Vec<f32> = (0..n).flat_map(|_| [0.25f32, -0.5]).collect();
        for distance in [Distance::Cosine, Distance::Euclidean] {
            let found = knn(&data, None, 2, 3, distance).unwrap();
            for q in [0, 1, 2, BLOCK, n - 1] {
                let want: Vec<u32> = (0..n as u32).filter(|&j| j != q as u32).take(3).collect();
                assert_eq!(found.indices_of(q), &want[..], "{distance} query {q}");
            }
        }
    }

    #[test]
    fn selectors_survive_many_shrinks_and_ties_in_any_order() {
        // Scores 0, 1, 2, 0, 1, 2, …: after each shrink many equal the threshold. Offered in
        // reverse chunks and by columns, the result must still be the lowest indices of the
        // best score.
        let scores: Vec<f32> = (0..1000).map(|i| (i % 3) as f32).collect();
        let mut by_rows = Selectors::new(1, 5);
        for (c, chunk) in scores.chunks(64).enumerate().rev() {
            by_rows.offer_rows(chunk, chunk.len(), (c * 64) as u32);
        }
        let got: Vec<u32> = by_rows.finish(0).iter().map(|p| p.1).collect();
        assert_eq!(got, vec![2, 5, 8, 11, 14]);
        // The same scores as one column of a 1-wide tile, offered in reverse halves.
        let mut by_columns = Selectors::new(1, 5);
        by_columns.offer_columns(&scores[500..], 1, 500);
        by_columns.offer_columns(&scores[..500], 1, 0);
        let got: Vec<u32> = by_columns.finish(0).iter().map(|p| p.1).collect();
        assert_eq!(got, vec![2, 5, 8, 11, 14]);
    }

    #[test]
    fn non_finite_input_is_an_error_naming_the_argument() {
        let err = knn(&[0.0, f32::INFINITY], Some(&[1.0, 1.0]), 2, 1, Distance::Cosine).unwrap_err();
        assert!(err.to_string().starts_with("queries: row 0, column 1 is inf"), "{err}");
        let err = knn(&[0.0, 1.0], Some(&[1.0, f32::NAN]), 2, 1, Distance::Cosine).unwrap_err();
        assert!(err.to_string().starts_with("gallery: row 0, column 1 is NaN"), "{err}");
    }
}
