//! Retrieval and clustering metrics of embeddings: the numbers every leaderboard reports.
//!
//! Definitions follow pytorch-metric-learning's `AccuracyCalculator`, so results are
//! comparable with published tables. For a query with label `y`, let the *relevant* items be
//! the gallery items labelled `y` (in self-retrieval, the other items labelled `y`: a query
//! never retrieves itself) and `R` their number. Neighbours are ranked by distance, closest
//! first; `rel(i)` is 1 when the `i`-th neighbour is relevant.
//!
//! | metric | per query |
//! |---|---|
//! | Recall@K | 1 if a relevant item is among the first K neighbours (K larger than the gallery means all of it) |
//! | precision@1 | `rel(1)` (equal to Recall@1) |
//! | R-precision | relevant items among the first R neighbours, divided by R |
//! | MAP@R | (1/R) Σ_{i≤R} P(i)·rel(i), with P(i) the share of relevant items among the first i |
//!
//! Each is averaged over the queries that have at least one relevant item; queries whose class
//! has no other member (no gallery item, in query-vs-gallery mode) are skipped and counted in
//! [`Metrics::skipped_queries`]. NMI and AMI compare the query labels with a k-means
//! clustering of the query embeddings into as many clusters as there are query classes
//! ([`kmeans`]), scored as scikit-learn's `normalized_mutual_info_score` and
//! `adjusted_mutual_info_score` with their default arithmetic normalisation
//! ([`clustering_scores`]).
//!
//! **Distances.** [`Distance::Cosine`] (the default) ranks by the dot product of L2-normalised
//! embeddings (an all-zero embedding stays zero); [`Distance::Euclidean`] by the Euclidean
//! distance. k-means runs on the same embeddings the distance sees: normalised for cosine.
//!
//! **Ties.** Neighbours at the same computed distance rank by index: the item that comes first
//! in the gallery (in self-retrieval, in the query set) ranks first. The search is exact
//! ([`knn`]), so the ranking, and with it every metric, is the same on any number of threads.
//!
//! ```
//! use dmlbench_eval::{evaluate, Distance, EvalInput, EvalOptions};
//!
//! // Four 2-d embeddings of two classes; each has its class-mate as nearest neighbour.
//! let embeddings = [1.0, 0.0, 0.9, 0.1, 0.0, 1.0, 0.1, 0.9];
//! let labels = [0, 0, 1, 1];
//! let input = EvalInput::self_retrieval(&embeddings, &labels, 2);
//! let options = EvalOptions { k: vec![1, 2], distance: Distance::Cosine, ..EvalOptions::default() };
//! let metrics = evaluate(&input, &options).unwrap();
//! assert_eq!(metrics.recall_at_k[&1], 1.0);
//! assert_eq!(metrics.map_at_r, 1.0);
//! assert_eq!(metrics.nmi, Some(1.0));
//! assert_eq!((metrics.queries, metrics.skipped_queries), (4, 0));
//! ```

use std::collections::BTreeMap;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};

pub mod clustering_scores;
pub mod kmeans;
pub mod knn;
mod linalg;
mod metric_id;
pub mod retrieval;

pub use linalg::l2_normalised;
pub use metric_id::{MetricId, UnknownMetric};

/// How neighbours are ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Distance {
    /// Cosine distance: embeddings are L2-normalised and ranked by dot product.
    #[default]
    Cosine,
    /// Euclidean distance on the embeddings as given.
    Euclidean,
}

impl std::fmt::Display for Distance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Distance::Cosine => "cosine",
            Distance::Euclidean => "euclidean",
        })
    }
}

/// Embeddings to evaluate: row-major `f32` matrices with `dim` columns and one `i64` label per
/// row.
#[derive(Debug, Clone, Copy)]
pub struct EvalInput<'a> {
    /// The query embeddings, `query_labels.len() × dim`.
    pub queries: &'a [f32],
    /// One label per query.
    pub query_labels: &'a [i64],
    /// A separate gallery to search (query-vs-gallery mode, as In-Shop), or `None` to search
    /// the queries themselves (self-retrieval, as CUB, Cars196 and SOP).
    pub gallery: Option<Gallery<'a>>,
    /// Embedding size.
    pub dim: usize,
}

/// The gallery of query-vs-gallery mode.
#[derive(Debug, Clone, Copy)]
pub struct Gallery<'a> {
    /// Gallery embeddings, `labels.len() × dim`.
    pub embeddings: &'a [f32],
    /// One label per gallery item.
    pub labels: &'a [i64],
}

impl<'a> EvalInput<'a> {
    /// Self-retrieval: every embedding is a query, searched against all the others.
    pub fn self_retrieval(embeddings: &'a [f32], labels: &'a [i64], dim: usize) -> Self {
        EvalInput { queries: embeddings, query_labels: labels, gallery: None, dim }
    }

    /// Query-vs-gallery: each query is searched against the gallery only.
    pub fn query_gallery(
        queries: &'a [f32],
        query_labels: &'a [i64],
        gallery: &'a [f32],
        gallery_labels: &'a [i64],
        dim: usize,
    ) -> Self {
        EvalInput { queries, query_labels, gallery: Some(Gallery { embeddings: gallery, labels: gallery_labels }), dim }
    }
}

/// What to compute and how.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalOptions {
    /// The K of Recall@K, each at least 1. DESIGN.md lists the usual ones per dataset.
    pub k: Vec<usize>,
    /// How neighbours are ranked.
    pub distance: Distance,
    /// Whether to run k-means for NMI and AMI (the slow part on large sets).
    pub cluster: bool,
    /// Seed of the k-means initialisation.
    pub seed: u64,
    /// Most Lloyd iterations of k-means; 20 as pytorch-metric-learning's faiss call.
    pub kmeans_iterations: usize,
    /// Draw progress bars on standard error (only when it is a terminal).
    pub progress: bool,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            k: vec![1, 2, 4, 8],
            distance: Distance::Cosine,
            cluster: true,
            seed: 0,
            kmeans_iterations: 20,
            progress: false,
        }
    }
}

/// The metrics of one evaluation, all fractions in [0, 1].
///
/// Serialised (JSON, RON) with exactly these field names; `nmi` and `ami` are `None` (JSON
/// `null`) when clustering was not asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Recall@K for each requested K.
    pub recall_at_k: BTreeMap<usize, f64>,
    /// Precision@1.
    pub precision_at_1: f64,
    /// R-precision.
    pub r_precision: f64,
    /// Mean average precision at R.
    pub map_at_r: f64,
    /// Normalised mutual information of a k-means clustering of the queries.
    pub nmi: Option<f64>,
    /// Adjusted mutual information of the same clustering.
    pub ami: Option<f64>,
    /// Number of queries the retrieval metrics average over.
    pub queries: usize,
    /// Queries left out because no other item of their class could be retrieved.
    pub skipped_queries: usize,
}

/// Input that cannot be evaluated. Each message names the argument at fault.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EvalError {
    /// Sizes that do not fit together.
    #[error("{what}: {message}")]
    Shape {
        /// The argument at fault (`queries`, `gallery`, `dim` …).
        what: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A NaN or infinite embedding value.
    #[error("{what}: row {row}, column {column} is {value}; embeddings must be finite")]
    NonFinite {
        /// `queries` or `gallery`.
        what: &'static str,
        /// Row of the first bad value.
        row: usize,
        /// Its column.
        column: usize,
        /// The value.
        value: f32,
    },
    /// Values so large that squared distances overflow `f32`.
    #[error(
        "{what}: row {row} has squared norm {squared_norm:e}, too large for Euclidean distances in f32; rescale the embeddings"
    )]
    TooLarge {
        /// `queries` or `gallery`.
        what: &'static str,
        /// The row.
        row: usize,
        /// Its squared norm.
        squared_norm: f64,
    },
    /// A bad option.
    #[error("options.{field}: {message}")]
    Option {
        /// The option at fault.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// No query has anything relevant to retrieve, so no retrieval metric is defined.
    #[error(
        "none of the {queries} queries has another item of its class to retrieve (every class has a single member{gallery}); retrieval metrics are undefined"
    )]
    NoValidQueries {
        /// Number of queries.
        queries: usize,
        /// Extra wording for query-vs-gallery mode.
        gallery: &'static str,
    },
}

/// Computes the retrieval metrics and, if asked, NMI and AMI.
///
/// The search is exact and holds at most `O((n_q + n_g)·d + threads·block·k)` memory, with
/// `k` the largest of the requested K and of the class sizes, so that R-precision and MAP@R
/// are exact. Runs on all of rayon's threads.
pub fn evaluate(input: &EvalInput<'_>, options: &EvalOptions) -> Result<Metrics, EvalError> {
    check_options(options)?;
    let dim = input.dim;
    if dim == 0 {
        return Err(EvalError::Shape { what: "dim", message: "embedding size must be at least 1".into() });
    }
    linalg::check_matrix("queries", input.queries, input.query_labels.len(), dim)?;
    if input.query_labels.is_empty() {
        return Err(EvalError::Shape { what: "queries", message: "no queries to evaluate".into() });
    }
    if let Some(g) = &input.gallery {
        linalg::check_matrix("gallery", g.embeddings, g.labels.len(), dim)?;
        if g.labels.is_empty() {
            return Err(EvalError::Shape { what: "gallery", message: "the gallery is empty".into() });
        }
    }
    if options.distance == Distance::Euclidean {
        linalg::check_norms("queries", input.queries, dim)?;
        if let Some(g) = &input.gallery {
            linalg::check_norms("gallery", g.embeddings, dim)?;
        }
    }

    // Cosine ranks by the dot product of normalised rows: normalise once, up front.
    let (normalised_queries, normalised_gallery) = match options.distance {
        Distance::Cosine => (
            Some(linalg::l2_normalised(input.queries, dim)),
            input.gallery.map(|g| linalg::l2_normalised(g.embeddings, dim)),
        ),
        Distance::Euclidean => (None, None),
    };
    let queries = normalised_queries.as_deref().unwrap_or(input.queries);
    let gallery = input
        .gallery
        .map(|g| Gallery { embeddings: normalised_gallery.as_deref().unwrap_or(g.embeddings), labels: g.labels });
    let prepared = EvalInput { queries, query_labels: input.query_labels, gallery, dim };

    let mut metrics = retrieval::retrieval_metrics(&prepared, options.distance, &options.k, options.progress)?;
    if options.cluster {
        let (nmi, ami) = cluster_scores(queries, input.query_labels, dim, options);
        metrics.nmi = Some(nmi);
        metrics.ami = Some(ami);
    }
    Ok(metrics)
}

fn check_options(options: &EvalOptions) -> Result<(), EvalError> {
    if options.k.is_empty() {
        return Err(EvalError::Option { field: "k", message: "give at least one K for Recall@K".into() });
    }
    if options.k.contains(&0) {
        return Err(EvalError::Option {
            field: "k",
            message: format!("every K must be at least 1, got {:?}", options.k),
        });
    }
    if options.cluster && options.kmeans_iterations == 0 {
        return Err(EvalError::Option {
            field: "kmeans_iterations",
            message: "k-means needs at least one iteration".into(),
        });
    }
    Ok(())
}

/// k-means of the (prepared) queries with one cluster per query class, scored against the
/// labels.
fn cluster_scores(queries: &[f32], labels: &[i64], dim: usize, options: &EvalOptions) -> (f64, f64) {
    let classes = clustering_scores::distinct_count(labels);
    let result = kmeans::kmeans(
        queries,
        dim,
        classes,
        &kmeans::KMeansOptions {
            max_iterations: options.kmeans_iterations,
            seed: options.seed,
            progress: options.progress,
        },
    );
    let nmi = clustering_scores::nmi(labels, &result.assignments);
    let ami = clustering_scores::ami(labels, &result.assignments);
    (nmi, ami)
}

/// A progress bar on standard error, hidden unless asked for and stderr is a terminal.
pub(crate) fn progress_bar(show: bool, len: u64, message: &'static str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("{msg:>18} [{bar:40}] {pos}/{len} ({elapsed} elapsed, eta {eta})")
        .expect("the progress template is valid")
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(message);
    bar
}

#[cfg(test)]
mod tests;
