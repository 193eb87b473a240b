//! Retrieval metrics from ranked neighbours: Recall@K, precision@1, R-precision and MAP@R.
//!
//! [`score_ranking`] holds the per-query definitions; [`retrieval_metrics`] runs the search
//! with `k` large enough for every query's R and averages. A query's scores are computed as
//! soon as its neighbours are known, so the `n_q × k` neighbour lists are never stored.
//!
//! ```
//! use dmlbench_eval::retrieval::score_ranking;
//!
//! // R = 2 relevant items, found at ranks 1 and 3.
//! let s = score_ranking(&[true, false, true, false], 2);
//! assert_eq!(s.first_relevant, Some(0));
//! assert_eq!(s.r_precision, 0.5);
//! assert_eq!(s.average_precision_at_r, (1.0 / 1.0) / 2.0); // P(1)·1 + P(2)·0, over R
//! ```

use std::collections::{BTreeMap, HashMap};

use super::knn::Search;
use super::{Distance, EvalError, EvalInput, Metrics};

/// The retrieval scores of one query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueryScores {
    /// 0-based rank of the first relevant neighbour, if any was retrieved.
    pub first_relevant: Option<usize>,
    /// Relevant items among the first R neighbours, divided by R.
    pub r_precision: f64,
    /// (1/R) Σ_{i≤R} P(i)·rel(i).
    pub average_precision_at_r: f64,
}

/// Scores one query from the relevance of its neighbours, closest first (`relevant[i]` for
/// rank `i + 1`), and R, the number of relevant items in the gallery (at least 1). The list
/// must hold at least `min(R, gallery size)` entries for R-precision and MAP@R to be exact;
/// Recall@K needs K of them.
pub fn score_ranking(relevant: &[bool], r: usize) -> QueryScores {
    assert!(r >= 1, "score_ranking: a query needs at least one relevant item");
    let mut first_relevant = None;
    let mut hits = 0usize;
    let mut precision_sum = 0.0;
    for (i, &rel) in relevant.iter().enumerate() {
        if rel {
            first_relevant.get_or_insert(i);
            if i < r {
                hits += 1;
                precision_sum += hits as f64 / (i + 1) as f64;
            }
        }
    }
    QueryScores {
        first_relevant,
        r_precision: hits as f64 / r as f64,
        average_precision_at_r: precision_sum / r as f64,
    }
}

/// Recall@K (for each of `ks`), precision@1, R-precision and MAP@R of prepared input (cosine
/// rows already normalised); `nmi` and `ami` are left `None`.
pub(crate) fn retrieval_metrics(
    input: &EvalInput<'_>,
    distance: Distance,
    ks: &[usize],
    progress: bool,
) -> Result<Metrics, EvalError> {
    let self_retrieval = input.gallery.is_none();
    let gallery_labels = input.gallery.map_or(input.query_labels, |g| g.labels);
    let mut class_size: HashMap<i64, usize> = HashMap::new();
    for &label in gallery_labels {
        *class_size.entry(label).or_default() += 1;
    }
    // R of each query: the other members of its class (the query itself is not retrievable
    // in self-retrieval), or the gallery members of its class.
    let r_of = |label: i64| {
        let size = class_size.get(&label).copied().unwrap_or(0);
        if self_retrieval { size - 1 } else { size }
    };
    let n_q = input.query_labels.len();
    let skipped = input.query_labels.iter().filter(|&&l| r_of(l) == 0).count();
    if skipped == n_q {
        return Err(EvalError::NoValidQueries {
            queries: n_q,
            gallery: if self_retrieval { "" } else { " in the gallery" },
        });
    }
    let largest_r = input.query_labels.iter().map(|&l| r_of(l)).max().unwrap_or(0);
    let largest_k = ks.iter().copied().max().unwrap_or(1);

    let search = Search::new(input.queries, input.gallery.map(|g| g.embeddings), input.dim, distance);
    let k = largest_k.max(largest_r).min(search.available());
    let per_query = search.run(k, progress, |q, found| {
        let label = input.query_labels[q];
        let r = r_of(label);
        if r == 0 {
            return None;
        }
        let relevant: Vec<bool> = found.iter().map(|&(_, j)| gallery_labels[j as usize] == label).collect();
        Some(score_ranking(&relevant, r))
    });

    // Averaged in query order, so the result does not depend on the thread count.
    let counted = (n_q - skipped) as f64;
    let mut found_within = vec![0usize; ks.len()];
    let (mut p1, mut rp, mut map) = (0usize, 0.0f64, 0.0f64);
    for s in per_query.iter().flatten() {
        if let Some(rank) = s.first_relevant {
            for (count, &kk) in found_within.iter_mut().zip(ks) {
                if rank < kk {
                    *count += 1;
                }
            }
            if rank == 0 {
                p1 += 1;
            }
        }
        rp += s.r_precision;
        map += s.average_precision_at_r;
    }
    let recall_at_k: BTreeMap<usize, f64> =
        ks.iter().zip(&found_within).map(|(&kk, &c)| (kk, c as f64 / counted)).collect();
    Ok(Metrics {
        recall_at_k,
        precision_at_1: p1 as f64 / counted,
        r_precision: rp / counted,
        map_at_r: map / counted,
        nmi: None,
        ami: None,
        queries: n_q - skipped,
        skipped_queries: skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_rankings() {
        // R = 3, relevant at ranks 2 and 3 and 5: R-precision 2/3,
        // AP@R = (1/3)·(1/2 + 2/3), since rank 5 lies beyond R.
        let s = score_ranking(&[false, true, true, false, true], 3);
        assert_eq!(s.first_relevant, Some(1));
        assert!((s.r_precision - 2.0 / 3.0).abs() < 1e-15);
        assert!((s.average_precision_at_r - (0.5 + 2.0 / 3.0) / 3.0).abs() < 1e-15);
        // Nothing relevant retrieved.
        let s = score_ranking(&[false, false], 1);
        assert_eq!((s.first_relevant, s.r_precision, s.average_precision_at_r), (None, 0.0, 0.0));
        // Perfect ranking.
        let s = score_ranking(&[true, true, false], 2);
        assert_eq!((s.r_precision, s.average_precision_at_r), (1.0, 1.0));
    }
}
