//! `dmlbench plugins list|show|check|new`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::bail;
use clap::{Subcommand, ValueEnum};
use comfy_table::{Cell, Color, ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use serde_json::json;

use super::HostArgs;
use dmlbench_host::check::CheckOutcome;
use dmlbench_host::errors::describe;
use dmlbench_host::isolated::{DEFAULT_CHECK_TIMEOUT, check_in_child, parse_seconds};
use dmlbench_host::scaffold::scaffold;
use dmlbench_host::{CreateOptions, PluginInfo, PluginKind, Registry};

use super::state;

#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// List every loss and miner with its version, summary and origin.
    #[command(after_help = "Examples:
  dmlbench plugins list
  dmlbench plugins list --json | jq '.plugins[].id'
  DMLBENCH_PLUGIN_PATH=/opt/my-plugins dmlbench plugins list

Plugins are the crates under plugins/ (built with cargo when stale) and the libraries in
the directories of DMLBENCH_PLUGIN_PATH. Libraries that cannot be loaded are listed with
the reason, and the exit code is then 1.")]
    List {
        /// Print one JSON object: {\"plugins\": [...], \"problems\": [...]}
        #[arg(long)]
        json: bool,
    },
    /// Describe a plugin, print its default configuration as RON and list its state tensors.
    #[command(after_help = "Examples:
  dmlbench plugins show contrastive
  dmlbench plugins show miner:multi_similarity
  dmlbench plugins show cross_entropy --embedding-dim 512 --num-classes 100

An id shared by a loss and a miner shows both; write loss:ID or miner:ID for one. A plugin
with state (trained parameters, counters) is created with its default configuration for the
given embedding size and class count, and the tensors of its state are listed: the names and
shapes `dmlbench loss ID --state FILE.safetensors` expects.")]
    Show {
        /// Plugin id, or loss:ID / miner:ID
        id: String,
        /// Embedding size to create stateful plugins with
        #[arg(long, value_name = "D", default_value_t = 128)]
        embedding_dim: usize,
        /// Training classes to create stateful plugins with
        #[arg(long, value_name = "C", default_value_t = 100)]
        num_classes: usize,
    },
    /// Run the conformance suite: gradients against finite differences, determinism,
    /// rejection of bad input and configuration, state round trip.
    #[command(after_help = "Examples:
  dmlbench plugins check contrastive
  dmlbench plugins check batch_hard triplet_margin
  dmlbench plugins check --all --json

Every plugin with a given id is checked (a loss and a miner may share one). Each plugin is
checked in a process of its own: a plugin that crashes, exits or hangs fails the check it was
running, and the other plugins are still checked. The exit code is 1 when any check fails.")]
    Check {
        /// Plugin ids (or loss:ID / miner:ID)
        #[arg(required_unless_present = "all")]
        ids: Vec<String>,
        /// Check every plugin
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        /// Print one JSON object: {\"passed\": bool, \"checks\": [...]}
        #[arg(long)]
        json: bool,
        /// Seconds one check may run before its process is killed and the check fails
        /// [default: 60]
        #[arg(long, value_name = "SECONDS", env = "DMLBENCH_CHECK_TIMEOUT", value_parser = parse_seconds)]
        timeout: Option<std::time::Duration>,
    },
    /// Create a new plugin crate under plugins/ that builds, is discovered and passes its tests.
    #[command(after_help = "Examples:
  dmlbench plugins new my_loss --kind loss
  dmlbench plugins new my_miner --kind miner

Then edit plugins/losses/my_loss/src/lib.rs and run:
  cargo test -p dmlbench-loss-my-loss
  dmlbench plugins check my_loss")]
    New {
        /// Plugin id: lowercase letters, digits and '_', starting with a letter
        name: String,
        /// Loss or miner
        #[arg(long, value_enum)]
        kind: KindArg,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KindArg {
    Loss,
    Miner,
}

impl From<KindArg> for PluginKind {
    fn from(k: KindArg) -> Self {
        match k {
            KindArg::Loss => PluginKind::Loss,
            KindArg::Miner => PluginKind::Miner,
        }
    }
}

pub fn run(command: PluginsCommand, host: &HostArgs) -> anyhow::Result<ExitCode> {
    match command {
        PluginsCommand::List { json } => list(&host.open_registry(), json),
        PluginsCommand::Show { id, embedding_dim, num_classes } => {
            show(&host.open_registry(), &id, embedding_dim, num_classes)
        }
        PluginsCommand::Check { ids, all, json, timeout } => {
            check(&host.open_registry(), &ids, all, json, timeout.unwrap_or(DEFAULT_CHECK_TIMEOUT))
        }
        PluginsCommand::New { name, kind } => new(host, &name, kind.into()),
    }
}

fn table() -> Table {
    let mut table = Table::new();
    table.load_style(UTF8_FULL_CONDENSED).set_content_arrangement(ContentArrangement::Dynamic);
    table
}

/// Where a plugin came from, relative to the project root when it is inside it.
fn origin(info: &PluginInfo, root: Option<&Path>) -> String {
    let path = info.source.crate_dir.as_deref().unwrap_or(&info.source.library);
    root.and_then(|r| path.strip_prefix(r).ok()).unwrap_or(path).display().to_string()
}

fn print_problems(registry: &Registry) {
    for problem in registry.problems() {
        eprintln!("warning: skipped {}: {}", problem.path.display(), problem.reason);
    }
}

fn list(registry: &Registry, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        let value = json!({ "plugins": registry.plugins(), "problems": registry.problems() });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        let mut t = table();
        t.set_header(["kind", "id", "version", "summary", "from"]);
        for p in registry.plugins() {
            t.add_row([p.kind.as_str(), &p.id, &p.version, &p.summary, &origin(p, registry.root())]);
        }
        println!("{t}");
        print_problems(registry);
    }
    Ok(if registry.problems().is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Every plugin matching `spec`, or an error listing what exists.
fn matching<'r>(registry: &'r Registry, spec: &str) -> anyhow::Result<Vec<&'r PluginInfo>> {
    let found = registry.matching(spec);
    if found.is_empty() {
        let known: Vec<String> = registry.plugins().iter().map(PluginInfo::qualified_id).collect();
        print_problems(registry);
        bail!(
            "no plugin matches '{spec}'; known plugins: {}",
            if known.is_empty() { "none".into() } else { known.join(", ") }
        );
    }
    Ok(found)
}

fn show(registry: &Registry, spec: &str, embedding_dim: usize, num_classes: usize) -> anyhow::Result<ExitCode> {
    for (i, p) in matching(registry, spec)?.into_iter().enumerate() {
        if i > 0 {
            println!();
        }
        println!("{} {} — {} (version {})", p.kind, p.id, p.name, p.version);
        println!("  {}", p.summary);
        let caps = p.capabilities.names();
        println!("  capabilities: {}", if caps.is_empty() { "none".to_string() } else { caps.join(", ") });
        println!(
            "  from: {} ({}, ABI {}.{})",
            origin(p, registry.root()),
            p.sdk_version,
            p.abi_version.0,
            p.abi_version.1
        );
        println!("  library: {}", p.source.library.display());
        println!("  default config:");
        for line in p.default_config.lines() {
            println!("    {line}");
        }
        if p.capabilities.supports_state {
            let options = CreateOptions { config: String::new(), embedding_dim, num_classes, seed: 0, base_lr: 0.1 };
            match state::initial_state(p, &options).and_then(|bytes| state::tensors(&bytes)) {
                Ok(tensors) => {
                    println!("  state (embedding size {embedding_dim}, {num_classes} classes):");
                    for t in tensors {
                        println!("    {} {:?} {}", t.name, t.shape, t.dtype);
                    }
                }
                Err(e) => println!("  state: not listed, a default instance fails: {}", describe(e.as_ref())),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn check(
    registry: &Registry,
    ids: &[String],
    all: bool,
    json: bool,
    timeout: std::time::Duration,
) -> anyhow::Result<ExitCode> {
    let targets: Vec<&PluginInfo> = if all {
        registry.plugins().iter().collect()
    } else {
        let mut targets = Vec::new();
        for id in ids {
            targets.extend(matching(registry, id)?);
        }
        targets
    };
    if targets.is_empty() {
        bail!("no plugins to check");
    }
    let progress = indicatif::ProgressBar::new(targets.len() as u64).with_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} checking {msg}").expect("valid template"),
    );
    let mut outcomes: Vec<CheckOutcome> = Vec::new();
    for info in &targets {
        progress.set_message(info.qualified_id());
        outcomes.extend(check_in_child(info, timeout));
        progress.inc(1);
    }
    progress.finish_and_clear();
    let passed = outcomes.iter().all(|o| o.passed);
    if json {
        println!("{}", serde_json::to_string_pretty(&json!({ "passed": passed, "checks": outcomes }))?);
    } else {
        let mut t = table();
        t.set_header(["plugin", "check", "result", "detail"]);
        for o in &outcomes {
            let result = if o.passed { Cell::new("pass").fg(Color::Green) } else { Cell::new("FAIL").fg(Color::Red) };
            t.add_row(vec![Cell::new(&o.plugin), Cell::new(&o.check), result, Cell::new(&o.detail)]);
        }
        println!("{t}");
        let failed = outcomes.iter().filter(|o| !o.passed).count();
        println!("{} checks, {} failed", outcomes.len(), failed);
    }
    Ok(if passed { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn new(host: &HostArgs, name: &str, kind: PluginKind) -> anyhow::Result<ExitCode> {
    let root = host.project_root()?;
    let made = scaffold(&root, name, kind)?;
    println!("created {} ({})", made.dir.display(), made.package);
    for f in &made.files {
        println!("  {f}");
    }
    println!("next:\n  cargo test -p {}\n  dmlbench plugins check {kind}:{name}", made.package);
    Ok(ExitCode::SUCCESS)
}
