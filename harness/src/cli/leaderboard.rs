//! `dmlbench leaderboard`: tables from result records, for the terminal, Markdown, HTML or
//! JSON, and `--check` of the committed ones; `dmlbench leaderboard diff`: how the tables moved
//! between two results directories.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::ValueEnum;
use dmlbench_leaderboard::diff::BoardDiff;
use dmlbench_leaderboard::table::Leaderboard;
use dmlbench_leaderboard::term::TermOptions;
use dmlbench_leaderboard::{check, html, json, markdown, term};
use dmlbench_record::{load_all, write_atomic};

use super::HostArgs;
use crate::experiment::plan::code_fingerprint;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Tables for the terminal, fitted to its width
    Term,
    /// GitHub-flavoured Markdown (what results/LEADERBOARD.md holds)
    Md,
    /// A static page with tables and SVG charts (what results/index.html holds)
    Html,
    /// Raw fractions with intervals, for scripts
    Json,
}

#[derive(Debug, clap::Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "Examples:
  dmlbench leaderboard
  dmlbench leaderboard results/ cluster-results/ --format json | jq '.tables[].rows[].method'
  dmlbench leaderboard --format md --out results/LEADERBOARD.md
  dmlbench leaderboard --format html --out results/index.html
  dmlbench leaderboard --check
  dmlbench leaderboard --mark-stale           # which records ran with plugins that changed since
  dmlbench leaderboard diff base-results/ results/ --format md   # how the tables moved

Every result record (*.ron) under the directories is read; one table is drawn per dataset and
recipe, one row per method. Accuracy is the mean over seeds with the half-width of its 95%
confidence interval (Student t), in percent. Marked values (bold, or '*' when not on a
terminal): the best mean of a column and every value whose interval overlaps the best one's.
Of two records of the same cell, the newest is kept.

--check renders LEADERBOARD.md and index.html from the records and compares them with the
files in the first directory; the exit code is 1 when they differ (a diff is printed), 0
when they are up to date. Unreadable records are reported and also make the exit code 1."
)]
pub struct LeaderboardArgs {
    #[command(subcommand)]
    command: Option<LeaderboardCommand>,
    /// Directories of result records, searched recursively [default: results]
    #[arg(value_name = "RESULTS_DIR")]
    dirs: Vec<PathBuf>,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Term)]
    format: Format,
    /// Write to this file instead of standard output (links in md, html and json are made
    /// relative to its directory)
    #[arg(long, value_name = "PATH", conflicts_with = "check")]
    out: Option<PathBuf>,
    /// Compare the committed LEADERBOARD.md and index.html of the first directory with what
    /// the records render to
    #[arg(long, conflicts_with = "format")]
    check: bool,
    /// Say, in each row's status, which seeds' records are stale: a plugin they ran with
    /// changed since (compared with the plugins under the project root, built if needed)
    #[arg(long, conflicts_with = "check")]
    mark_stale: bool,
}

#[derive(Debug, clap::Subcommand)]
enum LeaderboardCommand {
    /// Compare two sets of results: how each table and method moved from BASE_DIR to HEAD_DIR
    Diff(DiffArgs),
}

/// Output format of a diff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DiffFormat {
    /// Tables for the terminal
    Term,
    /// GitHub-flavoured Markdown, for a pull-request comment
    Md,
    /// Raw fractions with intervals and verdicts, for scripts
    Json,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  dmlbench leaderboard diff base/results results
  dmlbench leaderboard diff base/results results --format md --out leaderboard-diff.md
  dmlbench leaderboard diff base/results results --format json | jq '.tables[].rows[].method'
  dmlbench leaderboard diff base/results results --fail-on-regression

Both directories are read as `dmlbench leaderboard` reads them; tables are matched by dataset
and recipe, rows by method. Each metric of a row that moved is shown on both sides with its
95% interval: when the intervals overlap (or a side has one seed, hence no interval), the
change is not shown to differ. A row is listed when anything it reports differs: its metrics,
seeds or status, its configuration, its plugins' code, the dmlbench build, time per epoch or
peak memory; rows on one side only are added or removed.

The exit code is 0 whatever moved (1 when a record cannot be read); with --fail-on-regression
it is 1 when some method's Recall@1 is lower with intervals that do not overlap.")]
pub struct DiffArgs {
    /// The results to compare with, e.g. the target branch's committed results
    #[arg(value_name = "BASE_DIR")]
    base: PathBuf,
    /// The results compared, e.g. a pull request's
    #[arg(value_name = "HEAD_DIR")]
    head: PathBuf,
    /// Output format
    #[arg(long, value_enum, default_value_t = DiffFormat::Term)]
    format: DiffFormat,
    /// Write to this file instead of standard output
    #[arg(long, value_name = "PATH")]
    out: Option<PathBuf>,
    /// Exit with 1 when a method's Recall@1 fell with intervals that do not overlap
    #[arg(long)]
    fail_on_regression: bool,
}

/// The code fingerprint of every plugin the host finds, by qualified id.
fn current_plugin_code(host: &HostArgs) -> anyhow::Result<BTreeMap<String, String>> {
    let registry = host.open_registry();
    let root = registry.root().context("no project root found to compare the plugins with; pass --root")?.to_path_buf();
    Ok(registry
        .plugins()
        .iter()
        .filter_map(|p| {
            code_fingerprint(p.source.crate_dir.as_deref(), &p.source.library, &root)
                .map(|code| (p.qualified_id(), code))
        })
        .collect())
}

/// Runs the command.
pub fn run(args: LeaderboardArgs, host: &HostArgs) -> anyhow::Result<ExitCode> {
    if let Some(LeaderboardCommand::Diff(diff)) = args.command {
        return run_diff(diff);
    }
    let dirs = if args.dirs.is_empty() { vec![PathBuf::from("results")] } else { args.dirs };
    for dir in &dirs {
        if !dir.is_dir() {
            bail!("{}: no such results directory", dir.display());
        }
    }
    let (mut board, read_failures) = read_board(&dirs);
    if args.mark_stale {
        board.mark_stale(&current_plugin_code(host)?);
    }

    if args.check {
        let differences = check::compare(&check::committed_files(&board, &dirs[0]));
        for difference in &differences {
            print!("{}", difference.diff);
        }
        if differences.is_empty() {
            println!(
                "{} and {} in {} are up to date with {} records",
                markdown::FILE_NAME,
                html::FILE_NAME,
                dirs[0].display(),
                board.record_count()
            );
        } else {
            let names: Vec<String> = differences.iter().map(|d| d.path.display().to_string()).collect();
            eprintln!(
                "error: {} out of date; regenerate with `dmlbench leaderboard --format md --out {}` and `--format html --out {}`",
                names.join(" and "),
                dirs[0].join(markdown::FILE_NAME).display(),
                dirs[0].join(html::FILE_NAME).display()
            );
        }
        return Ok(exit_code(!differences.is_empty() || read_failures));
    }

    // Links are relative to where the output goes: the file's directory, or the current one.
    let base: PathBuf = match &args.out {
        Some(out) => out
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(".")),
        None => PathBuf::from("."),
    };
    let text = match args.format {
        Format::Term => {
            let tty = args.out.is_none() && std::io::stdout().is_terminal();
            term::render(&board, TermOptions { tty, width: None })
        }
        Format::Md => markdown::render(&board, &base),
        Format::Html => html::render(&board, &base),
        Format::Json => json::render(&board, &base),
    };
    match &args.out {
        Some(out) => {
            write_atomic(out, text.as_bytes())
                .with_context(|| format!("{}: cannot write the leaderboard", out.display()))?;
            eprintln!("wrote {} ({} records, {} tables)", out.display(), board.record_count(), board.tables.len());
        }
        None => print!("{text}"),
    }
    Ok(exit_code(read_failures))
}

/// The leaderboard of the records under `dirs`, warning about records that cannot be read
/// (and saying whether there were any) and about superseded ones.
fn read_board(dirs: &[PathBuf]) -> (Leaderboard, bool) {
    let (records, errors) = load_all(dirs);
    for error in &errors {
        eprintln!("warning: skipped {}", dmlbench_host::errors::describe(error));
    }
    let board = Leaderboard::from_records(records);
    for superseded in &board.superseded {
        eprintln!("warning: {}", superseded.message());
    }
    (board, !errors.is_empty())
}

/// `dmlbench leaderboard diff`.
fn run_diff(args: DiffArgs) -> anyhow::Result<ExitCode> {
    for dir in [&args.base, &args.head] {
        if !dir.is_dir() {
            bail!("{}: no such results directory", dir.display());
        }
    }
    let (base, base_failures) = read_board(std::slice::from_ref(&args.base));
    let (head, head_failures) = read_board(std::slice::from_ref(&args.head));
    let diff = BoardDiff::between(&base, &head);
    let (base_label, head_label) = (args.base.display().to_string(), args.head.display().to_string());
    let text = match args.format {
        DiffFormat::Term => {
            let tty = args.out.is_none() && std::io::stdout().is_terminal();
            term::render_diff(&diff, &base_label, &head_label, TermOptions { tty, width: None })
        }
        DiffFormat::Md => markdown::render_diff(&diff, &base_label, &head_label),
        DiffFormat::Json => json::render_diff(&diff, &base_label, &head_label),
    };
    match &args.out {
        Some(out) => {
            write_atomic(out, text.as_bytes()).with_context(|| format!("{}: cannot write the diff", out.display()))?;
            eprintln!("wrote {} ({} rows moved, added or removed)", out.display(), diff.moved_rows());
        }
        None => print!("{text}"),
    }
    let regressions = diff.regressions();
    if args.fail_on_regression && !regressions.is_empty() {
        let names: Vec<String> =
            regressions.iter().map(|(t, r)| format!("{} ({} · {})", r.method, t.dataset, t.recipe)).collect();
        eprintln!(
            "error: Recall@1 fell with intervals that do not overlap: {}",
            dmlbench_abi::escape_terminal(&names.join(", "))
        );
        return Ok(ExitCode::from(1));
    }
    Ok(exit_code(base_failures || head_failures))
}

fn exit_code(failed: bool) -> ExitCode {
    if failed { ExitCode::from(1) } else { ExitCode::SUCCESS }
}
