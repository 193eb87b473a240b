//! `dmlbench run`: every cell of a plan, each in its own process.
//!
//! A cell runs as `dmlbench cell FILE --cell ID` (a hidden command), a child process that
//! trains and writes its own record and checkpoints. A plugin that crashes the process, a NaN
//! loss or an out-of-memory kill therefore costs one failed record (with the reason and the
//! last lines of the cell's log), and the other cells go on. On a cluster node, `dmlbench run
//! FILE --cell ID` trains one cell the same way in its own process (a Slurm array task per
//! cell id, listed by `--list-cells`).
//!
//! Cells whose record is complete for the same configuration are skipped; an interrupted or
//! failed cell resumes from its checkpoint.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context as _;
use dmlbench_datasets::synth::{self, SynthOptions};

use super::cell::{CellPaths, Event, empty_record, run_cell};
use super::lock::{self, Acquired};
use super::with_suffix;
use crate::experiment::{Cell, Plan};
use dmlbench_host::Registry;
use dmlbench_leaderboard::text;
use dmlbench_record::{CellRecord, CellStatus, EXPERIMENT_COPY};

/// How to run a plan.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The results directory (records go to `<results>/<experiment name>/`).
    pub results: PathBuf,
    /// Run only these cell ids (all when empty).
    pub only: Vec<String>,
    /// Project root, passed on to the cell processes.
    pub root: PathBuf,
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct RunSummary {
    /// (cell id, record) of every cell considered, in plan order.
    pub cells: Vec<(String, Option<CellRecord>)>,
    /// Cells skipped because they were complete.
    pub skipped: usize,
    /// (cell id, owner) of cells left alone because another process trains them.
    pub busy: Vec<(String, String)>,
}

/// How one cell ended for this process.
#[derive(Clone, Debug)]
pub enum CellOutcome {
    /// Its record: trained now, or found complete once the cell's lock was held.
    Record(Box<CellRecord>),
    /// Another process owns the cell (who, in words).
    Busy(String),
}

impl RunSummary {
    /// Whether every cell completed.
    pub fn all_completed(&self) -> bool {
        self.cells.iter().all(|(_, r)| r.as_ref().is_some_and(|r| r.status == CellStatus::Completed))
    }
}

/// Generates the plan's synthetic dataset if it is configured and not there yet.
pub fn ensure_dataset(plan: &Plan) -> anyhow::Result<()> {
    let spec = &plan.spec.dataset;
    let Some(synthetic) = spec.synthetic else { return Ok(()) };
    if dmlbench_datasets::expected::read_manifest(&plan.dataset_root).ok().flatten().is_some() {
        return Ok(());
    }
    if plan.dataset_root.exists() && std::fs::read_dir(&plan.dataset_root).is_ok_and(|mut d| d.next().is_some()) {
        anyhow::bail!(
            "{} exists but holds no complete synthetic dataset (no manifest); remove it to have it generated again",
            plan.dataset_root.display()
        );
    }
    eprintln!(
        "generating the synthetic {} dataset at {} ({} classes × {} images, {} px)",
        spec.format.name(),
        plan.dataset_root.display(),
        synthetic.classes,
        synthetic.per_class,
        synthetic.size
    );
    let options = SynthOptions {
        classes: synthetic.classes,
        per_class: synthetic.per_class,
        size: synthetic.size,
        seed: synthetic.seed,
        png: false,
    };
    // Generated beside its place and moved in whole, so that two runs starting at once neither
    // mix their files nor read a half-written set: the first to finish puts it in place.
    let partial = with_suffix(&plan.dataset_root, &format!(".partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&partial);
    synth::generate(spec.format, &partial, &options)
        .with_context(|| format!("generating the synthetic dataset at {}", partial.display()))?;
    if let Err(error) = std::fs::rename(&partial, &plan.dataset_root) {
        let _ = std::fs::remove_dir_all(&partial);
        let complete = dmlbench_datasets::expected::read_manifest(&plan.dataset_root).ok().flatten().is_some();
        if !complete {
            return Err(error)
                .with_context(|| format!("moving the generated dataset to {}", plan.dataset_root.display()));
        }
    }
    Ok(())
}

/// What an existing record of a cell means for running it, from one reading of the file.
pub(crate) enum Existing {
    /// A complete result of the cell: completed, of this very configuration, with every epoch
    /// and metric, and (unless `--keep-stale`) run with the plugins' current code.
    Done(Box<CellRecord>),
    /// Completed, but a plugin it ran with changed since: the cell is run again from the
    /// start. The reason names the plugins (`spce changed since this record: re-running`).
    Stale(String),
    /// Anything less: the cell is run (resuming from its checkpoint, which rebuilds the
    /// record). Holds the record as read, if there was one.
    ToRun(Option<Box<CellRecord>>),
}

pub(crate) fn existing(plan: &Plan, cell: &Cell, path: &Path) -> Existing {
    let Ok(record) = CellRecord::load(path) else { return Existing::ToRun(None) };
    if record.status != CellStatus::Completed {
        return Existing::ToRun(Some(Box::new(record)));
    }
    let stale: Vec<&str> = if plan.overrides.keep_stale {
        Vec::new()
    } else {
        record.stale_plugins(&plan.libraries).into_iter().map(|p| p.id.as_str()).collect()
    };
    if !stale.is_empty() {
        return Existing::Stale(format!("{} changed since this record: re-running", stale.join(" and ")));
    }
    if record.config_fingerprint == cell.fingerprint && record.incompleteness(plan.spec.training.epochs).is_none() {
        Existing::Done(Box::new(record))
    } else {
        Existing::ToRun(Some(Box::new(record)))
    }
}

/// One line on how a cell ended, safe to print on a terminal.
pub fn describe(record: &CellRecord) -> String {
    match &record.status {
        CellStatus::Completed => {
            let r1 = record
                .final_metrics
                .as_ref()
                .and_then(|m| m.recall_at_k.get(&1))
                .map_or(text::MISSING.into(), |v| text::percent(*v));
            let seconds = record.mean_epoch_seconds().map_or(text::MISSING.into(), text::significant);
            format!("completed, R@1 {r1}, {seconds} s/epoch")
        }
        CellStatus::Failed { reason } => {
            format!("FAILED: {}", dmlbench_abi::escape_terminal(reason.lines().next().unwrap_or("")))
        }
        CellStatus::Running => "interrupted".into(),
    }
}

/// Runs every (selected) cell of `plan` in a child process, with progress bars.
pub fn run_plan(plan: &Plan, options: &RunOptions) -> anyhow::Result<RunSummary> {
    ensure_dataset(plan)?;
    let dir = plan.results_dir(&options.results);
    std::fs::create_dir_all(dir.join("logs")).with_context(|| format!("creating {}", dir.display()))?;
    copy_experiment(plan, &dir)?;

    let cells: Vec<&Cell> =
        plan.cells.iter().filter(|c| options.only.is_empty() || options.only.contains(&c.key.id())).collect();
    let bars = indicatif::MultiProgress::new();
    let overall = bars.add(indicatif::ProgressBar::new(cells.len() as u64));
    overall.set_style(
        indicatif::ProgressStyle::with_template("cells {bar:30} {pos}/{len} {msg}").expect("valid template"),
    );
    let mut summary = RunSummary::default();
    for cell in cells {
        let id = cell.key.id();
        let paths = CellPaths::new(&dir, cell);
        let found = existing(plan, cell, &paths.record);
        if let Existing::Done(record) = found {
            summary.skipped += 1;
            summary.cells.push((id, Some(*record)));
            overall.inc(1);
            continue;
        }
        if let Some(owner) = lock::live_owner(&paths.lock) {
            summary.busy.push((id, owner.to_string()));
            overall.inc(1);
            continue;
        }
        if let Existing::Stale(reason) = found {
            let _ = bars.println(format!("{id}: {}", dmlbench_abi::escape_terminal(&reason)));
            if bars.is_hidden() {
                eprintln!("{id}: {}", dmlbench_abi::escape_terminal(&reason));
            }
        }
        overall.set_message(id.clone());
        let bar = bars.add(indicatif::ProgressBar::new(0));
        bar.set_style(
            indicatif::ProgressStyle::with_template("  {prefix} {bar:30} {pos}/{len} {msg}").expect("valid template"),
        );
        bar.set_prefix(id.clone());
        if bars.is_hidden() {
            eprintln!("running {id}");
        }
        let record = match run_child(plan, cell, options, &dir, &paths, &bar)? {
            CellOutcome::Record(record) => *record,
            CellOutcome::Busy(owner) => {
                bar.finish_and_clear();
                summary.busy.push((id, owner));
                overall.inc(1);
                continue;
            }
        };
        bar.finish_and_clear();
        if bars.is_hidden() {
            eprintln!("  {id}: {}", describe(&record));
        } else {
            let _ = bars.println(format!("{id}: {}", describe(&record)));
        }
        summary.cells.push((id, Some(record)));
        overall.inc(1);
    }
    overall.finish_and_clear();
    // Cross-validated cells whose folds are all complete now (or were before, in case a
    // process stopped between the last fold and its combined record).
    for record in super::folds::combine_all(plan, &dir)? {
        eprintln!(
            "{}: {} folds combined: {}",
            record.cell.id(),
            record.folds.as_ref().map_or(0, |f| f.count),
            describe(&record)
        );
    }
    Ok(summary)
}

fn run_child(
    plan: &Plan,
    cell: &Cell,
    options: &RunOptions,
    dir: &Path,
    paths: &CellPaths,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<CellOutcome> {
    let exe = std::env::current_exe().context("locating the dmlbench executable")?;
    let log_path = dir.join("logs").join(format!("{}.log", cell.key.id()));
    // Appended to, never truncated: another run's process may be writing this cell's log.
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let mut command = Command::new(&exe);
    dmlbench_host::parent::make_child(&mut command);
    let mut child = command
        .arg("--root")
        .arg(&options.root)
        .arg("--no-build")
        .arg("cell")
        .arg(&plan.file)
        .arg("--results")
        .arg(&options.results)
        .args(["--cell", &cell.key.id()])
        .args(plan_overrides(plan))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut epochs = 0;
    let mut busy = None;
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        let Ok(event) = serde_json::from_str::<Event>(&line) else { continue };
        match event {
            Event::Started { epochs: e, batches, resumed_epochs } => {
                epochs = e;
                bar.set_length(batches as u64);
                if resumed_epochs > 0 {
                    bar.set_message(format!("resumed after epoch {resumed_epochs}"));
                }
            }
            Event::Batch { epoch, batch, loss } => {
                bar.set_position(batch as u64);
                bar.set_message(format!("epoch {epoch}/{epochs} loss {loss:.4}"));
            }
            Event::Evaluating { epoch } => bar.set_message(format!("epoch {epoch}/{epochs} evaluating")),
            Event::Epoch { .. } => bar.set_position(0),
            Event::Busy { owner } => busy = Some(owner),
            // Printed even without a terminal, where the bar (and its println) is hidden.
            Event::Warning { message } => {
                bar.suspend(|| eprintln!("warning: {}: {}", cell.key.id(), dmlbench_abi::escape_terminal(&message)))
            }
        }
    }
    let status = child.wait().context("waiting for the cell's process")?;
    if let Some(owner) = busy.filter(|_| status.success()) {
        return Ok(CellOutcome::Busy(owner));
    }
    let record = CellRecord::load(&paths.record).ok().filter(|r| r.config_fingerprint == cell.fingerprint);
    match record {
        Some(r) if status.success() || matches!(r.status, CellStatus::Failed { .. }) => {
            Ok(CellOutcome::Record(Box::new(r)))
        }
        other => {
            // The process died without recording why: a crash, a kill, running out of memory.
            let how = dmlbench_host::errors::describe_exit(&status);
            let mut r = other.unwrap_or_else(|| empty_record(plan, cell));
            r.status = CellStatus::Failed {
                reason: format!(
                    "the cell's process {how}; from {}:\n{}",
                    log_path.display(),
                    log_excerpt(&log_path, 8)
                ),
            };
            r.save(&paths.record)?;
            Ok(CellOutcome::Record(Box::new(r)))
        }
    }
}

/// The command-line overrides a plan was made with, for its cell processes.
fn plan_overrides(plan: &Plan) -> Vec<String> {
    let mut args = vec![
        "--epochs".into(),
        plan.spec.training.epochs.to_string(),
        "--device".into(),
        plan.spec.training.device.clone(),
    ];
    if plan.overrides.smoke {
        args.push("--smoke".into());
    }
    if plan.overrides.keep_stale {
        args.push("--keep-stale".into());
    }
    if let Some(timeout) = plan.overrides.create_timeout {
        args.extend(["--create-timeout".into(), timeout.as_secs_f64().to_string()]);
    }
    args
}

/// What a failed record keeps of its cell's log: the first line that reports an error or a
/// panic (the cause, with the panic message on the line after it), then the last `lines` lines,
/// with backtrace frames left out and the whole capped at [`MESSAGE_LIMIT`] bytes. The log
/// itself stays complete beside the record.
fn log_excerpt(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let kept: Vec<&str> =
        text.lines().filter(|l| !l.trim().is_empty() && !dmlbench_host::errors::is_backtrace_line(l)).collect();
    let cause = kept.iter().position(|l| l.contains("panicked at") || l.trim_start().starts_with("error"));
    let tail_start = kept.len().saturating_sub(lines);
    let mut excerpt: Vec<&str> = Vec::new();
    if let Some(first) = cause.filter(|&i| i < tail_start) {
        excerpt.extend(&kept[first..(first + 2).min(tail_start)]);
        excerpt.push("...");
    }
    excerpt.extend(&kept[tail_start..]);
    dmlbench_host::errors::cap_message(&excerpt.join("\n"))
}

/// Copies the experiment file beside its records (`dir`), so that the leaderboard page can
/// show it and `dmlbench status DIR` can read it. Copied under a temporary name and renamed:
/// another run may be reading it.
pub fn copy_experiment(plan: &Plan, dir: &Path) -> anyhow::Result<()> {
    let copy = dir.join(EXPERIMENT_COPY);
    let staged = with_suffix(&copy, &format!(".{}.tmp", std::process::id()));
    std::fs::copy(&plan.file, &staged)
        .and_then(|_| std::fs::rename(&staged, &copy))
        .with_context(|| format!("copying {} to {}", plan.file.display(), copy.display()))?;
    Ok(())
}

/// Runs one cell in this process, printing events as JSON lines on stdout when `json_events`
/// is set (the protocol [`run_plan`] reads), or showing a progress bar otherwise. The cell's
/// lock is held throughout; a cell another process owns is left alone.
pub fn run_single(
    plan: &Plan,
    cell: &Cell,
    registry: &Registry,
    results: &Path,
    json_events: bool,
) -> anyhow::Result<CellOutcome> {
    super::allocator::keep_freed_memory_for_reuse();
    ensure_dataset(plan)?;
    let dir = plan.results_dir(results);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    if !json_events {
        // `run --cell`, a cluster task: no `run` of the whole plan copies the file.
        copy_experiment(plan, &dir)?;
    }
    let paths = CellPaths::new(&dir, cell);
    let _lock = match lock::acquire(&paths.lock)? {
        Acquired::Owned(lock) => lock,
        Acquired::Busy(owner) => {
            let owner = owner.to_string();
            if json_events {
                let event = Event::Busy { owner: owner.clone() };
                println!("{}", serde_json::to_string(&event).expect("events serialise"));
            }
            return Ok(CellOutcome::Busy(owner));
        }
    };
    // Another process may have finished the cell between this run's look and the lock.
    match existing(plan, cell, &paths.record) {
        Existing::Done(record) => return Ok(CellOutcome::Record(record)),
        // A plugin changed since the record: its checkpoint was trained with the old code
        // too, so the cell starts over.
        Existing::Stale(reason) => {
            if !json_events {
                eprintln!("{}: {}", cell.key.id(), dmlbench_abi::escape_terminal(&reason));
            }
            paths.checkpoint.clear()?;
        }
        Existing::ToRun(_) => {}
    }
    let bar = indicatif::ProgressBar::new(0);
    if json_events {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_style(
        indicatif::ProgressStyle::with_template("{prefix} {bar:30} {pos}/{len} {msg}").expect("valid template"),
    );
    bar.set_prefix(cell.key.id());
    let stdout = std::io::stdout();
    let mut epochs = 0;
    let mut on_event = |event: Event| {
        if json_events {
            let mut out = stdout.lock();
            let _ = writeln!(out, "{}", serde_json::to_string(&event).expect("events serialise"));
            let _ = out.flush();
        }
        match event {
            Event::Started { epochs: e, batches, .. } => {
                epochs = e;
                bar.set_length(batches as u64);
            }
            Event::Batch { epoch, batch, loss } => {
                bar.set_position(batch as u64);
                bar.set_message(format!("epoch {epoch}/{epochs} loss {loss:.4}"));
            }
            Event::Evaluating { epoch } => bar.set_message(format!("epoch {epoch}/{epochs} evaluating")),
            Event::Epoch { epoch, recall_at_1, .. } => {
                let r1 = recall_at_1.map_or(String::new(), |r| format!(", R@1 {:.1}", r * 100.0));
                bar.println(format!("epoch {epoch}/{epochs}{r1}"));
                bar.set_position(0);
            }
            // The cell's own stderr has printed it already.
            Event::Warning { .. } => {}
            Event::Busy { .. } => {}
        }
    };
    let record = run_cell(plan, cell, registry, &dir, &mut on_event)?;
    bar.finish_and_clear();
    if record.status == CellStatus::Completed && cell.key.fold.is_some() {
        // The last fold to complete writes the cross-validated cell's record (a cluster task
        // may be the only process that sees it complete).
        super::folds::combine_if_complete(plan, &dir, &cell.key.without_fold())?;
    }
    Ok(CellOutcome::Record(Box::new(record)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A panic with `RUST_BACKTRACE=1`: the record keeps the panic and its message, and the
    /// last lines without the frames that used to push the cause out.
    #[test]
    fn the_excerpt_keeps_the_cause_and_drops_backtrace_frames() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("cell.log");
        let mut text = String::from(
            "epoch 1/3\nthread 'main' (7) panicked at plugins/x/src/lib.rs:10:5:\nindex out of bounds: the len is 3 but the index is 9\nstack backtrace:\n",
        );
        for frame in 0..30 {
            text.push_str(&format!("  {frame}: some::function::name\n             at ./src/lib.rs:{frame}:1\n"));
        }
        text.push_str("note: Some details are omitted, run with `RUST_BACKTRACE=full` for a verbose backtrace.\n");
        std::fs::write(&log, text).unwrap();
        let excerpt = log_excerpt(&log, 8);
        assert_eq!(
            excerpt,
            "epoch 1/3\nthread 'main' (7) panicked at plugins/x/src/lib.rs:10:5:\nindex out of bounds: the len is 3 but the index is 9"
        );
        // A long log: the cause first, then the last lines.
        let mut text = String::from("error: cannot read images/0001.jpg\ncaused by: truncated file\n");
        for line in 0..20 {
            text.push_str(&format!("line {line}\n"));
        }
        std::fs::write(&log, text).unwrap();
        let excerpt = log_excerpt(&log, 3);
        assert_eq!(
            excerpt,
            "error: cannot read images/0001.jpg\ncaused by: truncated file\n...\nline 17\nline 18\nline 19"
        );
    }

    #[test]
    fn a_huge_log_line_is_capped() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("cell.log");
        std::fs::write(&log, "x".repeat(10 << 20)).unwrap();
        let excerpt = log_excerpt(&log, 8);
        assert!(
            excerpt.len() < dmlbench_host::errors::MESSAGE_LIMIT + 40 && excerpt.ends_with("more bytes)"),
            "{}",
            excerpt.len()
        );
    }
}
