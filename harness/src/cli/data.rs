//! `dmlbench data`: write synthetic datasets, download the benchmarks, check datasets on disk.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use dmlbench_datasets::check::{self, CheckOptions, CheckReport, Progress};
use dmlbench_datasets::{Format, synth};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::HostArgs;
use super::download;

const SYNTH_ABOUT: &str = "\
Write a synthetic dataset in the exact on-disk format of a benchmark.

Each class is a distinct procedural composition of shapes, patterns and strokes; its images
vary in pose, scale, colour, background and noise. The class-disjoint split is the same rule
as for the real data (the first half of the classes train, the rest test; In-Shop's test
images alternate query and gallery). A manifest, dmlbench-synth.json, records the expected
counts, which loading and `data check` then verify. The same options always give the same
files.

Formats: cub (CUB-200-2011 text files, a few greyscale images), cars196 (cars_annos.mat,
MATLAB level 5, compressed struct array), sop (Ebay_train.txt / Ebay_test.txt), inshop
(list_eval_partition.txt), folder (root/<class>/<image>).";

const SYNTH_EXAMPLES: &str = "\
Examples:
  # The default: 40 classes x 20 images of 64 px, CUB format
  dmlbench data synth --format cub --out data/synth-cub

  # A larger Cars196-format set at 256 px, as PNG
  dmlbench data synth --format cars196 --out data/cars --classes 96 --per-class 40 --size 256 --png

  # In-Shop format with another seed
  dmlbench data synth --format inshop --out data/inshop --seed 3";

const CHECK_ABOUT: &str = "\
Check a dataset on disk: read its annotation files, decode every image, and compare the
image and class counts of each split with the published ones (or, for synthetic data, with
its manifest).

Reports images and classes per split, the number of greyscale images, and every problem
found: a malformed annotation line, a path escaping the root, a missing, empty, truncated
or corrupt image, a count mismatch. Each problem names the file and, for text files, the
line. Images are decoded in parallel; the report is in index order.

Exit status: 0 when no problem was found, 1 when some were, 2 when the check could not run
(the root does not exist, bad arguments).

With --json, stdout is exactly one JSON object:
  {\"format\": \"cub\",
   \"splits\": {\"train\": {\"images\": 5864, \"classes\": 100}, \"test\": {...}},
   \"greyscale\": 19,
   \"problems\": [{\"file\": \"...\", \"line\": 12, \"message\": \"...\"}],
   \"warnings\": [...]}
In-Shop's splits are train, query and gallery. Warnings hold the count mismatches that
--no-strict tolerated.";

const CHECK_EXAMPLES: &str = "\
Examples:
  # Check a CUB-200-2011 download
  dmlbench data check ~/data/CUB_200_2011 --format cub

  # Machine-readable report of a Cars196 folder
  dmlbench data check ~/data/cars196 --format cars196 --json

  # A 20-class subset of SOP: count mismatches are warnings, not problems
  dmlbench data check ~/data/sop-small --format sop --no-strict";

/// `dmlbench data` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum DataCommand {
    /// Write a synthetic dataset in a benchmark's on-disk format.
    #[command(long_about = SYNTH_ABOUT, after_help = SYNTH_EXAMPLES)]
    Synth(SynthArgs),
    /// Check a dataset: annotations, every image, counts per split.
    #[command(long_about = CHECK_ABOUT, after_help = CHECK_EXAMPLES)]
    Check(CheckArgs),
    /// Download, verify and unpack a benchmark where the recipes read it, then check it.
    #[command(long_about = download::DATA_ABOUT, after_help = download::DATA_EXAMPLES)]
    Download(download::DataDownloadArgs),
}

fn parse_format(s: &str) -> Result<Format, String> {
    s.parse()
}

/// Arguments of `dmlbench data synth`.
#[derive(Debug, clap::Args)]
pub struct SynthArgs {
    /// On-disk format: cub, cars196, sop, inshop or folder.
    #[arg(long, value_parser = parse_format)]
    format: Format,
    /// Directory to write (created; must be empty if it exists).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Number of classes (half train, half test).
    #[arg(long, default_value_t = 40, value_name = "N")]
    classes: usize,
    /// Images per class.
    #[arg(long, default_value_t = 20, value_name = "M")]
    per_class: usize,
    /// Longer image side in pixels.
    #[arg(long, default_value_t = 64, value_name = "S")]
    size: u32,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 0, value_name = "K")]
    seed: u64,
    /// Write PNG files instead of JPEG.
    #[arg(long)]
    png: bool,
}

/// Arguments of `dmlbench data check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Dataset root directory.
    root: PathBuf,
    /// On-disk format: cub, cars196, sop, inshop, folder or features.
    #[arg(long, value_parser = parse_format)]
    format: Format,
    /// Print exactly one JSON object on stdout instead of a table.
    #[arg(long)]
    json: bool,
    /// Treat count mismatches as warnings (for subsets of a dataset).
    #[arg(long)]
    no_strict: bool,
}

/// Runs a `dmlbench data` subcommand.
pub fn run(command: DataCommand, host: &HostArgs) -> anyhow::Result<ExitCode> {
    match command {
        DataCommand::Synth(args) => synth_command(args),
        DataCommand::Check(args) => check_and_report(args.format, &args.root, !args.no_strict, args.json),
        DataCommand::Download(args) => download::data_download(args, host),
    }
}

fn synth_command(args: SynthArgs) -> anyhow::Result<ExitCode> {
    let options = synth::SynthOptions {
        classes: args.classes,
        per_class: args.per_class,
        size: args.size,
        seed: args.seed,
        png: args.png,
    };
    let started = Instant::now();
    let summary = synth::generate(args.format, &args.out, &options)
        .with_context(|| format!("cannot write a synthetic {} dataset", args.format))?;
    let splits: Vec<String> = summary
        .manifest
        .splits
        .iter()
        .map(|(split, c)| format!("{split} {} images / {} classes", c.images, c.classes))
        .collect();
    println!(
        "wrote {} images ({} greyscale) in {} format to {} in {:.1} s: {}",
        summary.images,
        summary.greyscale,
        args.format,
        args.out.display(),
        started.elapsed().as_secs_f64(),
        splits.join(", ")
    );
    Ok(ExitCode::SUCCESS)
}

/// A progress bar on stderr, drawn only when stderr is a terminal.
struct Bar(ProgressBar);

impl Progress for Bar {
    fn start(&self, total: u64) {
        self.0.set_length(total);
    }

    fn advance(&self) {
        self.0.inc(1);
    }
}

/// Checks the dataset at `root` and prints the report (a table, or one JSON object); exit
/// status 1 when problems were found.
pub(super) fn check_and_report(format: Format, root: &Path, strict: bool, json: bool) -> anyhow::Result<ExitCode> {
    let target =
        if std::io::stderr().is_terminal() { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
    let bar = ProgressBar::with_draw_target(None, target);
    bar.set_style(
        ProgressStyle::with_template("decoding {bar:40} {pos}/{len} images, {per_sec}, eta {eta}")
            .expect("valid template"),
    );
    let options = CheckOptions { strict };
    let report = check::check(format, root, &options, &Bar(bar.clone()))
        .with_context(|| format!("cannot check {}", root.display()))?;
    bar.finish_and_clear();
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_report(format, root, &report);
    }
    Ok(if report.is_ok() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn print_report(format: Format, root: &Path, report: &CheckReport) {
    println!("{} ({}) at {}", format.title(), format, root.display());
    if !report.splits.is_empty() {
        let mut table = comfy_table::Table::new();
        table.load_style(comfy_table::presets::NOTHING);
        table.set_header(["split", "images", "classes"]);
        for (split, c) in &report.splits {
            table.add_row([split.to_string(), c.images.to_string(), c.classes.to_string()]);
        }
        println!("{table}");
        println!("greyscale images: {}", report.greyscale);
    }
    for w in &report.warnings {
        println!("warning: {w}");
    }
    if report.problems.is_empty() {
        println!("no problems found");
    } else {
        println!("{} problem{}:", report.problems.len(), if report.problems.len() == 1 { "" } else { "s" });
        for p in &report.problems {
            println!("  {p}");
        }
    }
}
