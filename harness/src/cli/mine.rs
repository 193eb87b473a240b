//! `dmlbench mine ID --embeddings E.npy --labels L.npy`.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use dmlbench_tuples::Tuples;
use serde_json::{Value, json};

use super::HostArgs;
use super::batch_input::{BatchFiles, LoadedBatch};
use dmlbench_host::{CreateOptions, MinerHandle, MinerOutput, PluginKind, Registry};

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  dmlbench mine batch_hard --embeddings e.npy --labels l.npy
  dmlbench mine multi_similarity --embeddings e.npy --labels l.npy --config '(epsilon: 0.2)' --json
  dmlbench mine batch_hard --embeddings e.npy --labels l.npy --ref-embeddings r.npy --ref-labels rl.npy

With --ref-embeddings, anchors (a, a1, a2) are batch rows and p, n are reference rows.

With --json, one object on stdout:
  {\"kind\": \"triplets\", \"a\": [...], \"p\": [...], \"n\": [...]} or
  {\"kind\": \"pairs\", \"a1\": [...], \"p\": [...], \"a2\": [...], \"n\": [...]}")]
pub struct MineArgs {
    /// Miner id
    id: String,
    #[command(flatten)]
    batch: BatchFiles,
    /// Miner configuration as RON, e.g. '(margin: 0.1)' [default: the plugin's defaults]
    #[arg(long, value_name = "RON", default_value = "")]
    config: String,
    /// Seed for miners that sample
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print one JSON object instead of a summary
    #[arg(long)]
    json: bool,
}

/// PML's tuple layout as JSON.
pub fn tuples_json(tuples: &Tuples) -> Value {
    match tuples {
        Tuples::Triplets(t) => json!({ "kind": "triplets", "a": t.a, "p": t.p, "n": t.n }),
        Tuples::Pairs(p) => json!({ "kind": "pairs", "a1": p.a1, "p": p.p, "a2": p.a2, "n": p.n }),
    }
}

/// One line describing tuples.
pub fn tuples_summary(tuples: &Tuples) -> String {
    match tuples {
        Tuples::Triplets(t) => format!("{} triplets", t.len()),
        Tuples::Pairs(p) => format!("{} positive pairs, {} negative pairs", p.positives(), p.negatives()),
    }
}

/// Creates miner `id` and runs it on `batch`.
pub fn run_miner(
    registry: &Registry,
    id: &str,
    config: &str,
    seed: u64,
    batch: &LoadedBatch,
) -> anyhow::Result<MinerOutput> {
    let info = registry.get(PluginKind::Miner, id)?;
    let options = CreateOptions {
        config: config.to_string(),
        embedding_dim: batch.d,
        num_classes: batch.num_classes,
        seed,
        base_lr: 0.0,
    };
    let mut miner = MinerHandle::create(info, &options)?;
    Ok(miner.mine_against(&batch.embeddings, batch.d, &batch.labels, batch.references().as_ref())?)
}

pub fn run(args: MineArgs, host: &HostArgs) -> anyhow::Result<ExitCode> {
    let batch = args.batch.load()?;
    let registry = host.open_registry();
    let out = run_miner(&registry, &args.id, &args.config, args.seed, &batch).context("mining failed")?;
    if args.json {
        println!("{}", serde_json::to_string(&tuples_json(&out.tuples))?);
    } else {
        println!("{}: {}", args.id, tuples_summary(&out.tuples));
        for (name, value) in &out.stats {
            println!("  {name}: {value}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
