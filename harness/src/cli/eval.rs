//! `dmlbench eval`: retrieval and clustering metrics of embeddings saved as `.npy` files.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use comfy_table::{CellAlignment, Table, presets::UTF8_FULL_CONDENSED};
use dmlbench_datasets::npy;

use dmlbench_eval::{Distance, EvalInput, EvalOptions, Metrics};

const EXAMPLES: &str = "\
Examples:
  # CUB or Cars196: self-retrieval, Recall@1,2,4,8, NMI and AMI
  dmlbench eval --embeddings test_emb.npy --labels test_labels.npy

  # SOP: the usual K, without the (slow) k-means
  dmlbench eval --embeddings sop_emb.npy --labels sop_labels.npy --k 1,10,100,1000 --no-cluster

  # In-Shop: queries against a gallery, as JSON for scripts
  dmlbench eval --embeddings query.npy --labels query_labels.npy \\
      --gallery-embeddings gallery.npy --gallery-labels gallery_labels.npy \\
      --k 1,10,20,30,40,50 --json

Embeddings are float32 or float64 arrays of shape (n, d) and labels int32 or int64 arrays of
shape (n,), as numpy.save writes them. With --json, standard output holds one JSON object:
  {\"recall_at_k\": {\"1\": 0.61, ...}, \"precision_at_1\": 0.61, \"r_precision\": 0.33,
   \"map_at_r\": 0.22, \"nmi\": 0.67, \"ami\": 0.41, \"queries\": 5924, \"skipped_queries\": 0}
Values are fractions in [0, 1]; nmi and ami are null with --no-cluster. \"queries\" counts the
queries averaged over; \"skipped_queries\" those with no other item of their class to retrieve.";

/// Retrieval metrics (Recall@K, precision@1, R-precision, MAP@R) and k-means clustering
/// scores (NMI, AMI) of saved embeddings, with exact nearest-neighbour search.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct EvalArgs {
    /// Embeddings (.npy, n × d): the queries, and also the gallery unless
    /// --gallery-embeddings is given (self-retrieval: a query never retrieves itself).
    #[arg(long, value_name = "E.npy")]
    embeddings: PathBuf,
    /// Labels of the embeddings (.npy, n integers).
    #[arg(long, value_name = "L.npy")]
    labels: PathBuf,
    /// A separate gallery to search (query-vs-gallery mode, as In-Shop).
    #[arg(long, value_name = "G.npy", requires = "gallery_labels")]
    gallery_embeddings: Option<PathBuf>,
    /// Labels of the gallery.
    #[arg(long, value_name = "GL.npy", requires = "gallery_embeddings")]
    gallery_labels: Option<PathBuf>,
    /// The K of Recall@K, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8", value_name = "K,...")]
    k: Vec<usize>,
    /// Distance: cosine (on L2-normalised embeddings) or euclidean.
    #[arg(long, value_enum, default_value_t = MetricArg::Cosine)]
    metric: MetricArg,
    /// Skip k-means: no NMI or AMI (k-means is the slow part on large sets).
    #[arg(long)]
    no_cluster: bool,
    /// Seed of the k-means initialisation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print one JSON object on standard output instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum MetricArg {
    Cosine,
    Euclidean,
}

/// Runs `dmlbench eval`.
pub fn run(args: EvalArgs) -> anyhow::Result<ExitCode> {
    if let Some(bad) = args.k.iter().find(|&&k| k == 0) {
        bail!("--k: every K must be at least 1, got {bad} in {:?}", args.k);
    }
    let (queries, query_labels) = read(&args.embeddings, &args.labels)?;
    let gallery = match (&args.gallery_embeddings, &args.gallery_labels) {
        (Some(e), Some(l)) => {
            let (g, gl) = read(e, l)?;
            if g.d != queries.d {
                bail!(
                    "{}: gallery embeddings have dimension {}, but the queries in {} have {}",
                    e.display(),
                    g.d,
                    args.embeddings.display(),
                    queries.d
                );
            }
            Some((g, gl))
        }
        _ => None,
    };
    let input = EvalInput {
        queries: &queries.data,
        query_labels: &query_labels,
        gallery: gallery.as_ref().map(|(g, gl)| dmlbench_eval::Gallery { embeddings: &g.data, labels: gl }),
        dim: queries.d,
    };
    let options = EvalOptions {
        k: args.k.clone(),
        distance: match args.metric {
            MetricArg::Cosine => Distance::Cosine,
            MetricArg::Euclidean => Distance::Euclidean,
        },
        cluster: !args.no_cluster,
        seed: args.seed,
        progress: true,
        ..EvalOptions::default()
    };
    let what = match &args.gallery_embeddings {
        Some(g) => format!("{} against {}", args.embeddings.display(), g.display()),
        None => args.embeddings.display().to_string(),
    };
    let metrics = dmlbench_eval::evaluate(&input, &options).with_context(|| format!("cannot evaluate {what}"))?;
    if args.json {
        println!("{}", serde_json::to_string(&metrics)?);
    } else {
        print_table(&args, &options, &metrics, queries.d);
    }
    Ok(ExitCode::SUCCESS)
}

fn read(embeddings: &Path, labels: &Path) -> anyhow::Result<(npy::Embeddings, Vec<i64>)> {
    let (e, l) = npy::read_embeddings_and_labels(embeddings, labels)?;
    if e.n == 0 {
        bail!("{}: no embeddings (the array has 0 rows)", embeddings.display());
    }
    if e.d == 0 {
        bail!("{}: embeddings have dimension 0", embeddings.display());
    }
    Ok((e, l))
}

fn print_table(args: &EvalArgs, options: &EvalOptions, m: &Metrics, dim: usize) {
    let mode = if args.gallery_embeddings.is_some() { "query vs gallery" } else { "self-retrieval" };
    println!(
        "{mode}, {} distance, dimension {dim}: {} queries evaluated, {} skipped (no other item of their class)",
        options.distance, m.queries, m.skipped_queries
    );
    let mut table = Table::new();
    table.load_style(UTF8_FULL_CONDENSED);
    table.set_header(["metric", "%"]);
    let percent = |v: f64| format!("{:.2}", 100.0 * v);
    for (k, v) in &m.recall_at_k {
        table.add_row([format!("Recall@{k}"), percent(*v)]);
    }
    table.add_row(["Precision@1".to_string(), percent(m.precision_at_1)]);
    table.add_row(["R-precision".to_string(), percent(m.r_precision)]);
    table.add_row(["MAP@R".to_string(), percent(m.map_at_r)]);
    let optional = |v: Option<f64>| v.map_or_else(|| "—".to_string(), percent);
    table.add_row(["NMI".to_string(), optional(m.nmi)]);
    table.add_row(["AMI".to_string(), optional(m.ami)]);
    if let Some(column) = table.column_mut(1) {
        column.set_cell_alignment(CellAlignment::Right);
    }
    println!("{table}");
}
