//! `dmlbench loss ID --embeddings E.npy --labels L.npy [--miner ID]`.

use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Args;
use serde_json::json;

use super::HostArgs;
use super::batch_input::BatchFiles;
use super::mine::{run_miner, tuples_json, tuples_summary};
use dmlbench_host::{CreateOptions, LossHandle, PluginKind};

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  dmlbench loss contrastive --embeddings e.npy --labels l.npy
  dmlbench loss contrastive --embeddings e.npy --labels l.npy --config '(neg_margin: 0.8)'
  dmlbench loss triplet_margin --embeddings e.npy --labels l.npy --miner batch_hard --json
  dmlbench loss cross_entropy --embeddings e.npy --labels l.npy --state classifier.safetensors
  dmlbench loss contrastive --embeddings e.npy --labels l.npy --ref-embeddings memory.npy --ref-labels memory-labels.npy

With --json, one object on stdout: {\"loss\": x, \"grad\": [[...], ...], \"stats\": {...}}, plus
\"tuples\" (as `dmlbench mine --json` prints them) when a miner ran. Labels are class indices
0..C-1, where C is --num-classes or else the largest label + 1; they are checked before any
plugin is created. --state loads parameters (proxies, a classifier) into the loss before it
runs; `dmlbench plugins show ID` lists the tensors a state holds. --ref-embeddings and
--ref-labels compare the batch with reference embeddings (PML's ref_emb, what a cross-batch
memory holds): pairs join a batch row to a reference row, the gradient is the batch's, and
only losses (and miners) that accept references take them.")]
pub struct LossArgs {
    /// Loss id
    id: String,
    #[command(flatten)]
    batch: BatchFiles,
    /// Loss configuration as RON, e.g. '(pos_margin: 0.1)' [default: the plugin's defaults]
    #[arg(long, value_name = "RON", default_value = "")]
    config: String,
    /// Mine tuples with this miner first and give them to the loss
    #[arg(long, value_name = "ID")]
    miner: Option<String>,
    /// Miner configuration as RON
    #[arg(long, value_name = "RON", default_value = "", requires = "miner")]
    miner_config: String,
    /// Seed for plugins that sample
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Load the loss's parameters from this safetensors file first (names and shapes as
    /// `dmlbench plugins show ID` lists them)
    #[arg(long, value_name = "FILE")]
    state: Option<std::path::PathBuf>,
    /// Print one JSON object instead of a summary
    #[arg(long)]
    json: bool,
}

pub fn run(args: LossArgs, host: &HostArgs) -> anyhow::Result<ExitCode> {
    let batch = args.batch.load()?;
    let registry = host.open_registry();
    let info = registry.get(PluginKind::Loss, &args.id)?;
    // The state file is read and checked before any plugin is created.
    let state = args.state.as_deref().map(super::state::read_state_file).transpose()?;
    if let Some(path) = args.state.as_ref().filter(|_| !info.capabilities.supports_state) {
        bail!("loss '{}' has no state to load from {}", info.id, path.display());
    }
    if args.miner.is_some() && !info.capabilities.accepts_tuples() {
        bail!("loss '{}' does not use mined tuples; run it without --miner", info.id);
    }
    let mined = match &args.miner {
        Some(miner) => {
            Some(run_miner(&registry, miner, &args.miner_config, args.seed, &batch).context("mining failed")?)
        }
        None => None,
    };
    let options = CreateOptions {
        config: args.config.clone(),
        embedding_dim: batch.d,
        num_classes: batch.num_classes,
        seed: args.seed,
        base_lr: 0.0,
    };
    let mut loss = LossHandle::create(info, &options)?;
    if let (Some(bytes), Some(path)) = (&state, &args.state) {
        loss.load_state(bytes).with_context(|| format!("loading {}", path.display()))?;
    }
    let tuples = mined.as_ref().map(|m| &m.tuples);
    let references = batch.references();
    let out = loss.forward_backward_against(&batch.embeddings, batch.d, &batch.labels, references.as_ref(), tuples)?;
    if args.json {
        let grad: Vec<&[f32]> = out.grad.chunks(batch.d).collect();
        let stats: serde_json::Map<String, serde_json::Value> =
            out.stats.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        let mut value = json!({ "loss": out.loss, "grad": grad, "stats": stats });
        if let Some(t) = tuples {
            value["tuples"] = tuples_json(t);
        }
        println!("{}", serde_json::to_string(&value)?);
    } else {
        let norm = out.grad.iter().map(|g| f64::from(*g).powi(2)).sum::<f64>().sqrt();
        println!("{}: loss {:.6}", info.id, out.loss);
        println!("  gradient: {} × {}, Frobenius norm {norm:.6}", batch.labels.len(), batch.d);
        if let (Some(m), Some(miner)) = (&mined, &args.miner) {
            println!("  tuples from {miner}: {}", tuples_summary(&m.tuples));
        }
        for (name, value) in &out.stats {
            println!("  {name}: {value}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
