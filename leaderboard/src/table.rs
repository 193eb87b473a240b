//! From result records to leaderboard tables: grouping, summaries over seeds and the marking
//! of the best values. Every output format (terminal, Markdown, HTML, JSON) renders the
//! [`Leaderboard`] built here, so they cannot disagree.
//!
//! **Grouping.** One table per (dataset, recipe) of the records' [`CellKey`]s, one row per
//! method ([`CellKey::method`]: loss, `+miner`, `[variant]`), one cell per seed.
//!
//! **Duplicates.** Two records of the same cell key (e.g. the same results merged from two
//! machines, or a cell re-run after its experiment file changed) are never averaged: the newest
//! (`updated_unix_s`, then the later path) is kept and the others are listed as superseded,
//! with a warning that says whether their experiment fingerprints differ.
//!
//! **Columns.** Recall@K for every K found in the table's metrics, MAP@R, R-precision and NMI:
//! the mean over the completed seeds' `final_metrics` with its 95% Student-t interval
//! ([`Summary`]). Time per epoch and images per second are means over every seed that
//! finished an epoch; peak memory is the maximum over seeds.
//!
//! **Rows** are ordered by mean Recall@1 (the smallest K), best first, then by name; rows with
//! no completed seed come last.
//!
//! **Best values.** In each accuracy column the row with the highest mean is the best, and
//! every row whose interval overlaps the best row's interval is marked too: with a few seeds a
//! difference in the third decimal is noise, and the interval says how much noise. A row with
//! one seed has no interval and counts as the single point of its mean.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use crate::stats::Summary;
use dmlbench_eval::{MetricId, Metrics};
use dmlbench_record::{CellKey, CellRecord, CellStatus, DatasetInfo, Environment, PluginRef, TuningSummary};

/// Every table, built from a set of records.
#[derive(Clone, Debug)]
pub struct Leaderboard {
    /// One per (dataset, recipe), sorted by dataset then recipe.
    pub tables: Vec<BoardTable>,
    /// The records behind the tables (after removing superseded duplicates), sorted by path.
    pub records: Vec<(PathBuf, CellRecord)>,
    /// Records left out because a newer record of the same cell exists, sorted by path.
    pub superseded: Vec<Superseded>,
}

/// A record left out in favour of a newer one of the same cell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Superseded {
    /// The record left out.
    pub path: PathBuf,
    /// The record kept.
    pub kept: PathBuf,
    /// Whether the two came from different versions of the experiment file.
    pub fingerprint_differs: bool,
}

impl Superseded {
    /// A one-line explanation.
    pub fn message(&self) -> String {
        let why =
            if self.fingerprint_differs { "the experiment fingerprints differ" } else { "same experiment fingerprint" };
        format!(
            "{}: superseded by the newer record {} of the same cell ({why})",
            self.path.display(),
            self.kept.display()
        )
    }
}

/// The table of one dataset and recipe.
#[derive(Clone, Debug)]
pub struct BoardTable {
    /// Dataset format of the cells.
    pub dataset: String,
    /// Their recipe.
    pub recipe: String,
    /// The accuracy columns, Recall@K by K first.
    pub columns: Vec<MetricId>,
    /// Rows, best Recall@1 first.
    pub rows: Vec<Row>,
    /// The distinct data the cells ran on.
    pub data: Vec<DatasetInfo>,
    /// k, when the table's cells are cross-validated: each seed's metrics are then those of
    /// its k fold models' concatenated embeddings.
    pub folds: Option<usize>,
}

impl BoardTable {
    /// The Recall@K values of the table.
    pub fn recall_ks(&self) -> Vec<usize> {
        self.columns
            .iter()
            .filter_map(|c| match c {
                MetricId::RecallAt(k) => Some(*k),
                _ => None,
            })
            .collect()
    }

    /// The headline metric: Recall at the smallest K (Recall@1 on every standard dataset).
    pub fn headline(&self) -> Option<MetricId> {
        self.recall_ks().first().map(|&k| MetricId::RecallAt(k))
    }
}

/// One method of a table.
#[derive(Clone, Debug)]
pub struct Row {
    /// `loss+miner[variant]`.
    pub method: String,
    /// Loss plugin id.
    pub loss: String,
    /// Miner plugin id.
    pub miner: Option<String>,
    /// Variant label.
    pub variant: String,
    /// One per seed, by seed.
    pub cells: Vec<CellView>,
    /// One per column of the table: the summary over completed seeds.
    pub metrics: Vec<Option<Summary>>,
    /// One per column: whether the value is marked as (tied for) the best.
    pub best: Vec<bool>,
    /// Time per epoch in seconds over the seeds that finished an epoch.
    pub epoch_seconds: Option<Summary>,
    /// Training images per second over the seeds that finished an epoch.
    pub images_per_second: Option<Summary>,
    /// Largest peak resident memory over seeds, bytes.
    pub peak_rss_bytes: Option<u64>,
    /// Largest peak device memory over seeds, bytes.
    pub peak_device_bytes: Option<u64>,
    /// Fewest and most epochs of the completed seeds.
    pub epochs: Option<(usize, usize)>,
    /// Distinct compute backends of the seeds.
    pub backends: Vec<String>,
    /// Headline metric after each evaluated epoch (0: before training, when measured): epoch →
    /// summary over the seeds evaluated then.
    pub curve: Vec<(usize, Summary)>,
    /// Share of training time spent in the miner, over the seeds that finished an epoch.
    pub mining_time_share: Option<Summary>,
    /// Tuples the miner returned per batch, over the seeds that recorded it.
    pub mined_tuples: Option<Summary>,
    /// Share of the loss's terms (pairs, triplets, anchors) that were non-zero, over the seeds
    /// whose loss records it.
    pub nonzero_share: Option<Summary>,
    /// The tuning that chose the row's values (`dmlbench tune`), from its records.
    pub tuning: Option<TuningSummary>,
}

/// One seed of a row.
#[derive(Clone, Debug)]
pub struct CellView {
    /// The seed.
    pub seed: u64,
    /// The record file.
    pub path: PathBuf,
    /// Its status.
    pub status: CellStatus,
    /// Epochs it finished.
    pub epochs_done: usize,
    /// Epochs it was configured for, when the configuration says (see [`planned_epochs`]).
    pub epochs_planned: Option<usize>,
    /// Its final metrics, once completed.
    pub final_metrics: Option<Metrics>,
    /// The plugins whose code changed since the record was written, when the leaderboard was
    /// asked to look ([`Leaderboard::mark_stale`]); empty otherwise.
    pub stale: Vec<String>,
    /// Fingerprint of the cell's resolved configuration.
    pub config_fingerprint: String,
    /// The plugins it ran, with their code fingerprints.
    pub plugins: Vec<PluginRef>,
    /// Fingerprint of the dmlbench build that ran it (empty when not recorded).
    pub build: String,
}

impl CellView {
    /// Whether it completed with metrics.
    pub fn completed(&self) -> bool {
        matches!(self.status, CellStatus::Completed) && self.final_metrics.is_some()
    }

    /// Progress of a running cell: `epoch 3/10`, `epoch 3` when the plan is unknown.
    pub fn progress(&self) -> String {
        match self.epochs_planned {
            Some(planned) => format!("epoch {}/{}", self.epochs_done, planned),
            None => format!("epoch {}", self.epochs_done),
        }
    }
}

/// The overall state of a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowState {
    /// Every seed completed.
    Completed,
    /// Some seed still runs, none failed.
    Running,
    /// Some seed failed.
    Failed,
}

impl RowState {
    /// Lowercase name.
    pub fn name(&self) -> &'static str {
        match self {
            RowState::Completed => "completed",
            RowState::Running => "running",
            RowState::Failed => "failed",
        }
    }
}

impl Row {
    /// Seeds that completed.
    pub fn completed_seeds(&self) -> usize {
        self.cells.iter().filter(|c| c.completed()).count()
    }

    /// Failed beats running beats completed: the state a reader must notice first.
    pub fn state(&self) -> RowState {
        if self.cells.iter().any(|c| matches!(c.status, CellStatus::Failed { .. })) {
            RowState::Failed
        } else if self.cells.iter().any(|c| !c.completed()) {
            RowState::Running
        } else {
            RowState::Completed
        }
    }

    /// The status as one line: `completed`; `running: epoch 3/10`; `failed: <reason>`; with
    /// several seeds in different states, `2 completed; seed 3 failed: <reason>`. Reasons are
    /// cut to their first line and, with `max_reason` set, to that many characters.
    pub fn status_line(&self, max_reason: Option<usize>) -> String {
        let texts: Vec<String> = self.status_parts(max_reason).into_iter().map(|part| part.text).collect();
        texts.join("; ")
    }

    /// The parts of [`status_line`](Self::status_line), each with the whole reason of a
    /// failure, for renderers that show it in full (the HTML page's disclosures).
    pub fn status_parts(&self, max_reason: Option<usize>) -> Vec<StatusPart<'_>> {
        let part = |text: String| StatusPart { text, reason: None };
        let stale: Vec<StatusPart<'_>> = self
            .cells
            .iter()
            .filter(|c| !c.stale.is_empty())
            .map(|c| part(format!("seed {} stale: {} changed since", c.seed, c.stale.join(" and "))))
            .collect();
        if self.state() == RowState::Completed {
            return std::iter::once(part("completed".into())).chain(stale).collect();
        }
        let single = self.cells.len() == 1;
        let mut parts = Vec::new();
        let completed = self.completed_seeds();
        if completed > 0 {
            parts.push(part(format!("{completed} completed")));
        }
        for cell in &self.cells {
            let who = if single { String::new() } else { format!("seed {} ", cell.seed) };
            match &cell.status {
                CellStatus::Completed if cell.completed() => {}
                CellStatus::Completed => parts.push(part(format!("{who}completed without metrics"))),
                CellStatus::Running => parts.push(part(format!("{who}running: {}", cell.progress()))),
                CellStatus::Failed { reason } => parts.push(StatusPart {
                    text: format!("{who}failed: {}", short_reason(reason, max_reason)),
                    reason: Some(reason),
                }),
            }
        }
        parts.extend(stale);
        parts
    }
}

/// One part of a row's status: its text and, for a failure, the whole reason.
pub struct StatusPart<'a> {
    /// What the status line says, e.g. `seed 1 running: epoch 3/10`.
    pub text: String,
    /// The failure's full reason, for a failed seed.
    pub reason: Option<&'a str>,
}

/// First line of `reason`, cut to `max` characters (with an ellipsis) when given.
pub fn short_reason(reason: &str, max: Option<usize>) -> String {
    let first = reason.trim().lines().next().unwrap_or("").trim();
    match max {
        Some(max) if first.chars().count() > max => {
            let cut: String = first.chars().take(max.saturating_sub(1)).collect();
            format!("{}…", cut.trim_end())
        }
        _ => first.to_string(),
    }
}

/// Epochs a cell was configured for: the value of the outermost field named `epochs` with a
/// whole number in the record's configuration RON, the first in the text among equals (so a
/// training-level `epochs` wins over one nested in a plugin's configuration). Text inside
/// strings is skipped. `None` when the configuration has no such field.
///
/// The text is scanned rather than parsed into a value, because a parsed RON map forgets the
/// order of its fields.
pub fn planned_epochs(config: &str) -> Option<usize> {
    let bytes = config.as_bytes();
    let mut depth = 0usize;
    let mut in_string = false;
    let mut best: Option<(usize, usize)> = None; // (depth, value)
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if in_string {
            match c {
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        match c {
            b'"' => in_string = true,
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            b'e' if config[i..].starts_with("epochs") && (i == 0 || !is_ident(bytes[i - 1])) => {
                let rest = &config[i + "epochs".len()..];
                if let Some(value) = rest.trim_start().strip_prefix(':') {
                    let digits: String = value.trim_start().chars().take_while(char::is_ascii_digit).collect();
                    let whole = value.trim_start()[digits.len()..]
                        .chars()
                        .next()
                        .is_none_or(|n| !is_ident(n as u8) && n != '.');
                    if let (Ok(n), true) = (digits.parse::<usize>(), whole)
                        && best.is_none_or(|(d, _)| depth < d)
                    {
                        best = Some((depth, n));
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    best.map(|(_, n)| n)
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

impl Leaderboard {
    /// Marks the seeds whose records are stale against `current`, each plugin's current code
    /// fingerprint by qualified id (see `CellRecord::stale_plugins`): their rows' status says
    /// which plugin changed since. Committed pages are rendered without it, so that they
    /// depend on the records only.
    pub fn mark_stale(&mut self, current: &BTreeMap<String, String>) {
        let stale: BTreeMap<&PathBuf, Vec<String>> = self
            .records
            .iter()
            .map(|(path, record)| (path, record.stale_plugins(current).into_iter().map(|p| p.id.clone()).collect()))
            .collect();
        for cell in self.tables.iter_mut().flat_map(|t| t.rows.iter_mut()).flat_map(|r| r.cells.iter_mut()) {
            cell.stale = stale.get(&cell.path).cloned().unwrap_or_default();
        }
    }

    /// Builds every table from `records` (path, record), as [`dmlbench_record::load_all`]
    /// returns them. The result does not depend on the order of `records`.
    pub fn from_records(mut records: Vec<(PathBuf, CellRecord)>) -> Leaderboard {
        records.sort_by(|a, b| a.0.cmp(&b.0));
        // Overlapping directories (`results` and `results/default`) list a file twice: it is
        // one record, not a duplicate cell.
        let mut seen = std::collections::HashSet::new();
        records.retain(|(path, _)| seen.insert(crate::paths::path_key(path)));

        // Keep one record per cell key: the newest, then the later path.
        let mut by_key: BTreeMap<CellKey, Vec<(PathBuf, CellRecord)>> = BTreeMap::new();
        for (path, record) in records {
            by_key.entry(record.cell.clone()).or_default().push((path, record));
        }
        let mut kept = Vec::new();
        let mut superseded = Vec::new();
        for (_, mut group) in by_key {
            group.sort_by(|a, b| a.1.updated_unix_s.cmp(&b.1.updated_unix_s).then_with(|| a.0.cmp(&b.0)));
            let newest = group.pop().expect("a group has a record");
            for (path, record) in group {
                superseded.push(Superseded {
                    path,
                    kept: newest.0.clone(),
                    fingerprint_differs: record.experiment.fingerprint != newest.1.experiment.fingerprint,
                });
            }
            kept.push(newest);
        }
        superseded.sort_by(|a, b| a.path.cmp(&b.path));

        // A cross-validated cell's fold runs are behind its combined record; until that is
        // written, they stand in for it as unfinished seeds (one per fold), so that the row
        // shows progress but no fold's metrics pass for the cell's.
        let combined: std::collections::HashSet<&CellKey> =
            kept.iter().filter(|(_, r)| r.folds.is_some()).map(|(_, r)| &r.cell).collect();
        let pending_folds: Vec<(PathBuf, CellRecord)> = kept
            .iter()
            .filter(|(_, r)| r.cell.fold.is_some() && !r.validation_only && !combined.contains(&r.cell.without_fold()))
            .map(|(path, record)| {
                let mut record = record.clone();
                if record.status == CellStatus::Completed {
                    record.status = CellStatus::Running;
                }
                record.final_metrics = None;
                (path.clone(), record)
            })
            .collect();

        // Tables by (dataset, recipe); rows by (loss, miner, variant); cells by seed.
        type RowKey = (String, Option<String>, String);
        type Rows<'a> = BTreeMap<RowKey, Vec<&'a (PathBuf, CellRecord)>>;
        let mut grouped: BTreeMap<(String, String), Rows> = BTreeMap::new();
        // Validation-only records (tuning trials) have no test metrics to rank: the tuned
        // rows show their objectives instead.
        for entry in kept.iter().filter(|(_, r)| r.cell.fold.is_none() && !r.validation_only).chain(&pending_folds) {
            let key = &entry.1.cell;
            grouped
                .entry((key.dataset.clone(), key.recipe.clone()))
                .or_default()
                .entry((key.loss.clone(), key.miner.clone(), key.variant.clone()))
                .or_default()
                .push(entry);
        }
        let tables = grouped
            .into_iter()
            .map(|((dataset, recipe), rows)| build_table(dataset, recipe, rows.into_values().collect()))
            .collect();

        kept.sort_by(|a, b| a.0.cmp(&b.0));
        Leaderboard { tables, records: kept, superseded }
    }

    /// Number of records behind the tables.
    pub fn record_count(&self) -> usize {
        self.records.len()
    }

    /// The distinct experiments of the records: (name, file, fingerprint) → records.
    pub fn experiments(&self) -> BTreeMap<(String, String, String), usize> {
        count_by(&self.records, |r| {
            (r.experiment.name.clone(), r.experiment.file.clone(), r.experiment.fingerprint.clone())
        })
    }

    /// The distinct revisions: (git revision, dmlbench version) → records.
    pub fn revisions(&self) -> BTreeMap<(String, String), usize> {
        count_by(&self.records, |r| (r.environment.git_revision.clone(), r.environment.dmlbench_version.clone()))
    }

    /// The distinct environments (host name left out) → records.
    pub fn environments(&self) -> BTreeMap<EnvironmentKey, usize> {
        count_by(&self.records, |r| EnvironmentKey::of(&r.environment))
    }
}

/// What describes where a record ran, for the reproducibility listing.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct EnvironmentKey {
    /// CPU model.
    pub cpu: String,
    /// Threads.
    pub threads: usize,
    /// Compute backend.
    pub backend: String,
    /// Device.
    pub device: String,
    /// GPU name, if any.
    pub gpu: Option<String>,
    /// Operating system.
    pub os: String,
}

impl EnvironmentKey {
    fn of(env: &Environment) -> Self {
        EnvironmentKey {
            cpu: env.cpu.clone(),
            threads: env.threads,
            backend: env.backend.clone(),
            device: env.device.clone(),
            gpu: env.gpu.clone(),
            os: env.os.clone(),
        }
    }
}

fn count_by<K: Ord>(records: &[(PathBuf, CellRecord)], key: impl Fn(&CellRecord) -> K) -> BTreeMap<K, usize> {
    let mut counts = BTreeMap::new();
    for (_, record) in records {
        *counts.entry(key(record)).or_insert(0) += 1;
    }
    counts
}

fn build_table(dataset: String, recipe: String, groups: Vec<Vec<&(PathBuf, CellRecord)>>) -> BoardTable {
    // Recall@K columns: every K measured in the table, final or per epoch.
    let mut ks = BTreeSet::new();
    let mut data = BTreeMap::new();
    for (_, record) in groups.iter().flatten() {
        for metrics in record.final_metrics.iter().chain(record.epochs.iter().filter_map(|e| e.test.as_ref())) {
            ks.extend(metrics.recall_at_k.keys().copied());
        }
        let d = &record.dataset;
        data.insert(
            (
                d.format.clone(),
                d.root.clone(),
                d.fingerprint.clone(),
                d.train_images,
                d.train_classes,
                d.test_images,
                d.test_classes,
            ),
            d.clone(),
        );
    }
    let mut columns: Vec<MetricId> = ks.into_iter().map(MetricId::RecallAt).collect();
    columns.extend([MetricId::MapAtR, MetricId::RPrecision, MetricId::Nmi]);
    let headline = columns.first().copied().filter(|c| matches!(c, MetricId::RecallAt(_)));

    let folds = groups.iter().flatten().filter_map(|(_, r)| r.folds.as_ref().map(|f| f.count)).max();
    let mut rows: Vec<Row> = groups.into_iter().map(|group| build_row(group, &columns, headline)).collect();

    // Best Recall@1 first; rows without it last; ties and the rest by name.
    let headline_mean =
        |row: &Row| row.metrics.first().copied().flatten().filter(|_| headline.is_some()).map(|s| s.mean);
    rows.sort_by(|a, b| match (headline_mean(a), headline_mean(b)) {
        (Some(x), Some(y)) => y.total_cmp(&x).then_with(|| a.method.cmp(&b.method)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.method.cmp(&b.method),
    });

    mark_best(&mut rows, columns.len());
    BoardTable { dataset, recipe, columns, rows, data: data.into_values().collect(), folds }
}

fn build_row(group: Vec<&(PathBuf, CellRecord)>, columns: &[MetricId], headline: Option<MetricId>) -> Row {
    let first = &group[0].1.cell;
    let mut cells: Vec<CellView> = group
        .iter()
        .map(|(path, record)| CellView {
            seed: record.cell.seed,
            path: path.clone(),
            status: record.status.clone(),
            epochs_done: record.epochs.len(),
            epochs_planned: planned_epochs(&record.config),
            final_metrics: record.final_metrics.clone(),
            stale: Vec::new(),
            config_fingerprint: record.config_fingerprint.clone(),
            plugins: record.plugins.clone(),
            build: record.environment.dmlbench_build.clone(),
        })
        .collect();
    cells.sort_by_key(|c| c.seed);

    let completed: Vec<&Metrics> =
        cells.iter().filter(|c| c.completed()).filter_map(|c| c.final_metrics.as_ref()).collect();
    let metrics = columns
        .iter()
        .map(|column| {
            let values: Vec<f64> = completed.iter().filter_map(|m| column.get(m)).collect();
            Summary::of(&values)
        })
        .collect();

    let with_epochs: Vec<&CellRecord> = group.iter().map(|(_, r)| r).filter(|r| !r.epochs.is_empty()).collect();
    let epoch_seconds = Summary::of(&with_epochs.iter().filter_map(|r| r.mean_epoch_seconds()).collect::<Vec<_>>());
    let images_per_second =
        Summary::of(&with_epochs.iter().filter_map(|r| r.mean_images_per_second()).collect::<Vec<_>>());
    let over_seeds = |figure: fn(&CellRecord) -> Option<f64>| {
        Summary::of(&with_epochs.iter().filter_map(|r| figure(r)).collect::<Vec<_>>())
    };
    let mining_time_share = over_seeds(CellRecord::mining_time_share);
    let mined_tuples = over_seeds(CellRecord::mined_tuples_per_batch);
    let nonzero_share = over_seeds(CellRecord::nonzero_loss_share);
    let peak_rss_bytes = group.iter().map(|(_, r)| r.peak_rss_bytes).filter(|&b| b > 0).max();
    let peak_device_bytes = group.iter().filter_map(|(_, r)| r.peak_device_bytes).max();
    let completed_epochs: Vec<usize> =
        group.iter().filter(|(_, r)| matches!(r.status, CellStatus::Completed)).map(|(_, r)| r.epochs.len()).collect();
    let epochs = completed_epochs.iter().min().zip(completed_epochs.iter().max()).map(|(a, b)| (*a, *b));
    let backends: BTreeSet<String> =
        group.iter().map(|(_, r)| r.environment.backend.clone()).filter(|b| !b.is_empty()).collect();

    let mut per_epoch: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    if let Some(headline) = headline {
        for (_, record) in &group {
            // The untrained network's test metrics, where measured, are epoch 0 of the curve.
            let evaluated = record
                .initial_test
                .iter()
                .map(|m| (0, m))
                .chain(record.epochs.iter().filter_map(|e| e.test.as_ref().map(|m| (e.epoch, m))));
            for (epoch, metrics) in evaluated {
                if let Some(value) = headline.get(metrics) {
                    per_epoch.entry(epoch).or_default().push(value);
                }
            }
        }
    }
    let curve = per_epoch.into_iter().filter_map(|(epoch, values)| Summary::of(&values).map(|s| (epoch, s))).collect();

    Row {
        method: first.method(),
        loss: first.loss.clone(),
        miner: first.miner.clone(),
        variant: first.variant.clone(),
        cells,
        best: vec![false; columns.len()],
        metrics,
        epoch_seconds,
        images_per_second,
        peak_rss_bytes,
        peak_device_bytes,
        epochs,
        backends: backends.into_iter().collect(),
        curve,
        mining_time_share,
        mined_tuples,
        nonzero_share,
        tuning: group.iter().find_map(|(_, r)| r.tuning.clone()),
    }
}

/// Marks, per column, the row with the highest mean and every row whose interval overlaps
/// that row's interval ([`best_marks`]).
fn mark_best(rows: &mut [Row], columns: usize) {
    for column in 0..columns {
        let summaries: Vec<Option<Summary>> = rows.iter().map(|r| r.metrics[column]).collect();
        for (row, best) in rows.iter_mut().zip(best_marks(&summaries)) {
            row.best[column] = best;
        }
    }
}

/// Which of `summaries` are marked best: the highest mean, and every value whose interval
/// overlaps its interval ([`Summary::overlaps`]).
pub fn best_marks(summaries: &[Option<Summary>]) -> Vec<bool> {
    let best = summaries.iter().flatten().max_by(|a, b| a.mean.total_cmp(&b.mean));
    summaries.iter().map(|s| best.is_some_and(|best| s.is_some_and(|s| s.overlaps(best)))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{completed, failed, running};

    #[test]
    fn groups_by_dataset_recipe_and_method_and_orders_rows_by_recall() {
        let records = vec![
            completed("cub", "default", "cross_entropy", None, 0, &[0.60], 0.3),
            completed("cub", "default", "cross_entropy", None, 1, &[0.62], 0.3),
            completed("cub", "default", "contrastive", Some("batch_hard"), 0, &[0.70], 0.3),
            completed("cars196", "default", "cross_entropy", None, 0, &[0.80], 0.3),
            completed("cub", "paper", "cross_entropy", None, 0, &[0.50], 0.3),
            running("cub", "default", "snca", None, 0, 2, 4),
        ];
        // An experiment has one dataset: the Cars196 run lives in a directory of its own.
        let mut records = records;
        records[3].0 = PathBuf::from("results/default-cars196/cross_entropy-seed0.ron");
        let board = Leaderboard::from_records(records);
        let names: Vec<(String, String)> = board.tables.iter().map(|t| (t.dataset.clone(), t.recipe.clone())).collect();
        assert_eq!(
            names,
            [
                ("cars196".to_string(), "default".to_string()),
                ("cub".into(), "default".into()),
                ("cub".into(), "paper".into())
            ]
        );
        let cub = &board.tables[1];
        let methods: Vec<&str> = cub.rows.iter().map(|r| r.method.as_str()).collect();
        // 0.70 > mean(0.60, 0.62) = 0.61; the running row has no Recall@1 and goes last.
        assert_eq!(methods, ["contrastive+batch_hard", "cross_entropy", "snca"]);
        assert_eq!(cub.rows[1].completed_seeds(), 2);
        assert_eq!(cub.rows[1].cells.iter().map(|c| c.seed).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(
            cub.columns,
            [MetricId::RecallAt(1), MetricId::RecallAt(2), MetricId::MapAtR, MetricId::RPrecision, MetricId::Nmi]
        );
        assert_eq!(board.record_count(), 6);
    }

    #[test]
    fn best_marking_follows_the_interval_rule() {
        // Column R@1 (fraction):
        //   a: 0.60, 0.62, 0.67 → mean 0.63, h = 4.302653 · 0.0360555 / √3 = 0.0895669,
        //      interval [0.5404, 0.7196] — the best mean.
        //   b: 0.55, 0.56, 0.57 → mean 0.56, s = 0.01, h = 4.302653 · 0.01 / √3 = 0.0248414,
        //      interval [0.5352, 0.5848]: reaches 0.5404, so it is marked too.
        //   c: 0.40, 0.41, 0.42 → interval [0.3852, 0.4348]: below 0.5404, not marked.
        //   d: one seed at 0.54: a point below 0.5404, not marked.
        //   e: one seed at 0.55: a point inside a's interval, marked.
        let mut records = Vec::new();
        for (method, values) in [("a", [0.60, 0.62, 0.67]), ("b", [0.55, 0.56, 0.57]), ("c", [0.40, 0.41, 0.42])] {
            for (seed, v) in values.into_iter().enumerate() {
                records.push(completed("cub", "default", method, None, seed as u64, &[v], 0.3));
            }
        }
        records.push(completed("cub", "default", "d", None, 0, &[0.54], 0.3));
        records.push(completed("cub", "default", "e", None, 0, &[0.55], 0.3));
        let board = Leaderboard::from_records(records);
        let table = &board.tables[0];
        let marked: BTreeMap<&str, bool> = table.rows.iter().map(|r| (r.method.as_str(), r.best[0])).collect();
        assert_eq!(marked, BTreeMap::from([("a", true), ("b", true), ("c", false), ("d", false), ("e", true)]));
        let b = table.rows.iter().find(|r| r.method == "b").unwrap().metrics[0].unwrap();
        assert!((b.half_width.unwrap() - 0.024_841_4).abs() < 1e-7);
    }

    #[test]
    fn equal_single_seed_values_are_both_best() {
        let board = Leaderboard::from_records(vec![
            completed("cub", "default", "x", None, 0, &[0.5], 0.3),
            completed("cub", "default", "y", None, 0, &[0.5], 0.3),
            completed("cub", "default", "z", None, 0, &[0.499], 0.3),
        ]);
        let marks: Vec<(String, bool)> = board.tables[0].rows.iter().map(|r| (r.method.clone(), r.best[0])).collect();
        assert_eq!(marks, [("x".to_string(), true), ("y".into(), true), ("z".into(), false)]);
    }

    #[test]
    fn duplicates_keep_the_newest_record() {
        let mut old = completed("cub", "default", "cross_entropy", None, 0, &[0.60], 0.3);
        old.1.updated_unix_s = 100;
        old.0 = PathBuf::from("b/old.ron");
        let mut new = completed("cub", "default", "cross_entropy", None, 0, &[0.70], 0.3);
        new.1.updated_unix_s = 200;
        new.1.experiment.fingerprint = "0123456789abcdef".into();
        new.0 = PathBuf::from("a/new.ron");
        let mut copy = new.clone();
        copy.0 = PathBuf::from("c/copy.ron");
        copy.1.updated_unix_s = 150;
        copy.1.experiment.fingerprint = old.1.experiment.fingerprint.clone();
        let board = Leaderboard::from_records(vec![old, copy, new]);
        assert_eq!(board.records.len(), 1);
        assert_eq!(board.records[0].0, PathBuf::from("a/new.ron"));
        let row = &board.tables[0].rows[0];
        assert_eq!(row.metrics[0].unwrap().mean, 0.70);
        assert_eq!(
            board.superseded,
            [
                Superseded { path: "b/old.ron".into(), kept: "a/new.ron".into(), fingerprint_differs: true },
                Superseded { path: "c/copy.ron".into(), kept: "a/new.ron".into(), fingerprint_differs: true },
            ]
        );
        assert!(board.superseded[0].message().contains("fingerprints differ"));
    }

    #[test]
    fn a_file_read_twice_is_one_record() {
        let record = completed("cub", "default", "m", None, 0, &[0.5], 0.3);
        let mut again = record.clone();
        again.0 = PathBuf::from("results/default/../default/m-seed0.ron");
        let board = Leaderboard::from_records(vec![record, again]);
        assert_eq!((board.records.len(), board.superseded.len()), (1, 0));
    }

    #[test]
    fn status_lines_say_what_happened() {
        let board = Leaderboard::from_records(vec![
            completed("cub", "default", "m", None, 0, &[0.5], 0.3),
            failed("cub", "default", "m", None, 1, "loss plugin m: non-finite gradient\nat batch 3 of epoch 2"),
            running("cub", "default", "m", None, 2, 3, 10),
            running("cub", "default", "r", None, 0, 1, 4),
            failed("cub", "default", "f", None, 0, "out of memory"),
        ]);
        let rows = &board.tables[0].rows;
        let line = |m: &str| rows.iter().find(|r| r.method == m).unwrap().status_line(Some(20));
        assert_eq!(line("m"), "1 completed; seed 1 failed: loss plugin m: non-…; seed 2 running: epoch 3/10");
        assert_eq!(line("r"), "running: epoch 1/4");
        assert_eq!(line("f"), "failed: out of memory");
        assert_eq!(rows.iter().find(|r| r.method == "m").unwrap().state(), RowState::Failed);
        assert_eq!(rows.iter().find(|r| r.method == "r").unwrap().state(), RowState::Running);
        // The completed seed alone makes the row's metrics (n = 1).
        assert_eq!(rows.iter().find(|r| r.method == "m").unwrap().metrics[0].unwrap().n, 1);
    }

    #[test]
    fn planned_epochs_come_from_the_configuration() {
        assert_eq!(planned_epochs("(seed: 1, training: (epochs: 12, lr: 0.1), loss: (epochs: 3))"), Some(12));
        assert_eq!(planned_epochs("(epochs: 5)"), Some(5));
        assert_eq!(planned_epochs("(seed: 1)"), None);
        assert_eq!(planned_epochs("not ron at all ((("), None);
        assert_eq!(planned_epochs("(training: Some((epochs: 7)))"), Some(7));
        // Deeper first in the text, shallower later: the shallower wins.
        assert_eq!(planned_epochs("(loss: (config: (epochs: 3)), training: (epochs: 9))"), Some(9));
        // Not a field: inside a string, part of a longer name, or not a whole number.
        assert_eq!(
            planned_epochs(r#"(note: "epochs: 4", warmup_epochs: 2, epochs_x: 1, training: (epochs: 2.5))"#),
            None
        );
    }

    #[test]
    fn time_memory_and_curves_aggregate_over_seeds() {
        let mut a = completed("cub", "default", "m", None, 0, &[0.5, 0.6], 0.3);
        let mut b = completed("cub", "default", "m", None, 1, &[0.7], 0.3);
        // Only seed 1 was evaluated before training: Recall@1 0.2.
        b.1.initial_test = Some(crate::fixtures::metrics(0.2, 0.1));
        // Seed 0: epochs of 10 s and 12 s (mean 11); seed 1: one of 14 s. Mean of means: 12.5.
        a.1.epochs[0].timing.total_s = 10.0;
        a.1.epochs[1].timing.total_s = 12.0;
        b.1.epochs[0].timing.total_s = 14.0;
        a.1.peak_rss_bytes = 100 << 20;
        b.1.peak_rss_bytes = 300 << 20;
        let board = Leaderboard::from_records(vec![a, b]);
        let row = &board.tables[0].rows[0];
        assert_eq!(row.epoch_seconds.unwrap().mean, 12.5);
        assert_eq!(row.peak_rss_bytes, Some(300 << 20));
        assert_eq!(row.epochs, Some((1, 2)));
        // Epoch 0: seed 1 only (0.2); epoch 1: seeds 0 and 1 (0.5, 0.7) → 0.6; epoch 2: seed 0
        // only (0.6).
        let curve: Vec<(usize, usize, f64)> = row.curve.iter().map(|(e, s)| (*e, s.n, s.mean)).collect();
        assert_eq!(curve.len(), 3);
        assert_eq!(curve[0], (0, 1, 0.2));
        assert_eq!((curve[1].0, curve[1].1), (1, 2));
        assert!((curve[1].2 - 0.6).abs() < 1e-12);
        assert_eq!(curve[2], (2, 1, 0.6));
    }

    #[test]
    fn stale_seeds_are_named_in_the_status_only_when_asked() {
        let mut records = vec![
            completed("cub", "r", "spce", None, 0, &[0.5], 0.2),
            completed("cub", "r", "spce", None, 1, &[0.6], 0.2),
        ];
        for (_, record) in &mut records {
            record.plugins[0].library = "aaaa".into();
        }
        records[1].1.plugins[0].library = "bbbb".into();
        let mut board = Leaderboard::from_records(records);
        assert_eq!(board.tables[0].rows[0].status_line(None), "completed");
        board.mark_stale(&[("loss:spce".to_string(), "aaaa".to_string())].into_iter().collect());
        assert_eq!(board.tables[0].rows[0].status_line(None), "completed; seed 1 stale: spce changed since");
    }
}
