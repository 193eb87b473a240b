//! How a leaderboard moved between two sets of results: a base (say, the committed results of
//! the target branch) and a head (a pull request's). Both are built into [`Leaderboard`]s the
//! usual way, so a row of the diff summarises its seeds exactly as the leaderboard does; the
//! comparison is row against row.
//!
//! **Matching.** Tables by (dataset, recipe), rows by method. A table or row on one side only
//! is added or removed.
//!
//! **Metrics.** Each accuracy column of a row compares the two summaries over seeds
//! ([`Verdict`]): when the 95% intervals overlap, the change is *not shown to differ*, however
//! large the means' difference; only intervals that do not overlap make a metric higher or
//! lower. A side with one seed has no interval, so no change of it is shown to differ either.
//!
//! **Why a row moved.** Beside the metrics, a row says whether the configuration of a seed it
//! ran on both sides changed, which plugins' code changed (their code fingerprints), whether
//! the dmlbench build changed, and how time per epoch and peak memory changed.
//!
//! **Listed rows.** A row is listed when anything it reports differs; the others are named as
//! unchanged. A regression is a row on both sides whose headline metric (Recall@1) is lower
//! with non-overlapping intervals.
//!
//! ```
//! use dmlbench_leaderboard::diff::Verdict;
//! use dmlbench_leaderboard::stats::Summary;
//!
//! // 60, 62, 67 (63.0 ± 9.0) against 55, 56, 57 (56.0 ± 2.5): the intervals overlap.
//! let base = Summary::of(&[0.60, 0.62, 0.67]);
//! let head = Summary::of(&[0.55, 0.56, 0.57]);
//! assert_eq!(Verdict::of(base, head), Verdict::WithinIntervals);
//! ```

use std::collections::{BTreeMap, BTreeSet};

use dmlbench_eval::MetricId;

use crate::stats::Summary;
use crate::table::{BoardTable, Leaderboard, Row};

/// Whether a table or row is on both sides or on one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presence {
    /// On both sides.
    Both,
    /// In the head only.
    Added,
    /// In the base only.
    Removed,
}

impl Presence {
    /// Lowercase name.
    pub fn name(&self) -> &'static str {
        match self {
            Presence::Both => "both",
            Presence::Added => "added",
            Presence::Removed => "removed",
        }
    }

    fn of<T>(base: &Option<T>, head: &Option<T>) -> Presence {
        match (base, head) {
            (Some(_), None) => Presence::Removed,
            (None, Some(_)) => Presence::Added,
            _ => Presence::Both,
        }
    }
}

/// What the two summaries of one metric say about its change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The same mean and interval.
    Unchanged,
    /// The intervals overlap: not shown to differ.
    WithinIntervals,
    /// A side has a single seed, so no interval: not shown to differ.
    NoInterval,
    /// Higher, with intervals that do not overlap.
    Higher,
    /// Lower, with intervals that do not overlap.
    Lower,
    /// Measured in the head only.
    New,
    /// Measured in the base only.
    Gone,
    /// Measured on neither side.
    Missing,
}

impl Verdict {
    /// The verdict on `base` → `head`.
    pub fn of(base: Option<Summary>, head: Option<Summary>) -> Verdict {
        let (base, head) = match (base, head) {
            (None, None) => return Verdict::Missing,
            (Some(_), None) => return Verdict::Gone,
            (None, Some(_)) => return Verdict::New,
            (Some(base), Some(head)) => (base, head),
        };
        if base == head {
            Verdict::Unchanged
        } else if base.half_width.is_none() || head.half_width.is_none() {
            Verdict::NoInterval
        } else if base.overlaps(&head) {
            Verdict::WithinIntervals
        } else if head.mean > base.mean {
            Verdict::Higher
        } else {
            Verdict::Lower
        }
    }

    /// A short key for scripts: `unchanged`, `within_intervals`, `no_interval`, `higher`,
    /// `lower`, `new`, `gone`, `missing`.
    pub fn key(&self) -> &'static str {
        match self {
            Verdict::Unchanged => "unchanged",
            Verdict::WithinIntervals => "within_intervals",
            Verdict::NoInterval => "no_interval",
            Verdict::Higher => "higher",
            Verdict::Lower => "lower",
            Verdict::New => "new",
            Verdict::Gone => "gone",
            Verdict::Missing => "missing",
        }
    }

    /// What it means, for people.
    pub fn text(&self) -> &'static str {
        match self {
            Verdict::Unchanged => "unchanged",
            Verdict::WithinIntervals => "not shown to differ: the intervals overlap",
            Verdict::NoInterval => "not shown to differ: one seed, no interval",
            Verdict::Higher => "higher: the intervals do not overlap",
            Verdict::Lower => "lower: the intervals do not overlap",
            Verdict::New => "new",
            Verdict::Gone => "no longer measured",
            Verdict::Missing => "",
        }
    }
}

/// One metric of a row on both sides.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MetricChange {
    /// The metric.
    pub metric: MetricId,
    /// Its summary over the base's seeds.
    pub base: Option<Summary>,
    /// Its summary over the head's seeds.
    pub head: Option<Summary>,
}

impl MetricChange {
    /// Head mean less base mean, when both exist.
    pub fn difference(&self) -> Option<f64> {
        Some(self.head?.mean - self.base?.mean)
    }

    /// Whether the intervals overlap, when both exist (a single seed is the point of its mean).
    pub fn overlap(&self) -> Option<bool> {
        Some(self.base?.overlaps(&self.head?))
    }

    /// The verdict on the change.
    pub fn verdict(&self) -> Verdict {
        Verdict::of(self.base, self.head)
    }
}

/// One method of a table on both sides.
#[derive(Clone, Debug)]
pub struct RowDiff {
    /// `loss+miner[variant]`.
    pub method: String,
    /// The row in the base, if there.
    pub base: Option<Row>,
    /// The row in the head, if there.
    pub head: Option<Row>,
    /// One per column of the table diff.
    pub metrics: Vec<MetricChange>,
    /// Seeds on both sides whose resolved configuration differs.
    pub configuration_changed: Vec<u64>,
    /// Plugins (`loss:spce`) whose code fingerprint or version differs in a seed on both sides.
    pub plugins_changed: Vec<String>,
    /// Whether a seed on both sides ran another dmlbench build (both fingerprints known).
    pub build_changed: bool,
}

impl RowDiff {
    /// Whether the row is on both sides.
    pub fn presence(&self) -> Presence {
        Presence::of(&self.base, &self.head)
    }

    /// The verdict on `metric`, if the table has that column.
    pub fn verdict(&self, metric: MetricId) -> Option<Verdict> {
        self.metrics.iter().find(|m| m.metric == metric).map(MetricChange::verdict)
    }

    /// Time per epoch, head over base less one (0.1 is 10% slower), when both are known.
    pub fn epoch_seconds_change(&self) -> Option<f64> {
        let base = self.base.as_ref()?.epoch_seconds?.mean;
        let head = self.head.as_ref()?.epoch_seconds?.mean;
        relative(base, head)
    }

    /// Peak resident memory, head over base less one, when both are known.
    pub fn peak_rss_change(&self) -> Option<f64> {
        relative(self.base.as_ref()?.peak_rss_bytes? as f64, self.head.as_ref()?.peak_rss_bytes? as f64)
    }

    /// Peak device memory, head over base less one, when both are known.
    pub fn peak_device_change(&self) -> Option<f64> {
        relative(self.base.as_ref()?.peak_device_bytes? as f64, self.head.as_ref()?.peak_device_bytes? as f64)
    }

    /// The status lines of the two sides (`completed`, `failed: …`), when they differ.
    pub fn status_change(&self, max_reason: Option<usize>) -> Option<(String, String)> {
        let line = |row: &Option<Row>| row.as_ref().map(|r| r.status_line(max_reason)).unwrap_or_default();
        let (base, head) = (line(&self.base), line(&self.head));
        (self.presence() == Presence::Both && base != head).then_some((base, head))
    }

    /// Why the row moved, beside its numbers: `loss:spce code changed`, `configuration changed
    /// (seeds 0, 1)`, `dmlbench build changed`, `status: completed → failed: …`.
    pub fn notes(&self, max_reason: Option<usize>) -> Vec<String> {
        let mut notes: Vec<String> = self.plugins_changed.iter().map(|p| format!("{p} code changed")).collect();
        if !self.configuration_changed.is_empty() {
            let seeds: Vec<String> = self.configuration_changed.iter().map(u64::to_string).collect();
            let s = if seeds.len() == 1 { "" } else { "s" };
            notes.push(format!("configuration changed (seed{s} {})", seeds.join(", ")));
        }
        if self.build_changed {
            notes.push("dmlbench build changed".into());
        }
        if let Some((base, head)) = self.status_change(max_reason) {
            notes.push(format!("status: {base} → {head}"));
        }
        notes
    }

    /// Whether anything the row reports differs between the sides.
    pub fn moved(&self) -> bool {
        let (Some(base), Some(head)) = (&self.base, &self.head) else {
            return true;
        };
        self.metrics.iter().any(|m| m.base != m.head)
            || !self.configuration_changed.is_empty()
            || !self.plugins_changed.is_empty()
            || self.build_changed
            || base.completed_seeds() != head.completed_seeds()
            || base.status_line(None) != head.status_line(None)
            || base.epoch_seconds.map(|s| s.mean) != head.epoch_seconds.map(|s| s.mean)
            || base.peak_rss_bytes != head.peak_rss_bytes
            || base.peak_device_bytes != head.peak_device_bytes
    }
}

/// One table on both sides.
#[derive(Clone, Debug)]
pub struct TableDiff {
    /// Dataset format of the cells.
    pub dataset: String,
    /// Their recipe.
    pub recipe: String,
    /// Whether the table is on both sides.
    pub presence: Presence,
    /// Accuracy columns of either side, in the leaderboard's order.
    pub columns: Vec<MetricId>,
    /// Rows that moved ([`RowDiff::moved`]): the head's in its order, then the removed ones.
    pub rows: Vec<RowDiff>,
    /// Methods on both sides with nothing different, in the head's order.
    pub unchanged: Vec<String>,
}

impl TableDiff {
    /// The headline metric: Recall at the smallest K of either side.
    pub fn headline(&self) -> Option<MetricId> {
        self.columns.first().copied().filter(|c| matches!(c, MetricId::RecallAt(_)))
    }

    /// Rows whose headline metric is lower with intervals that do not overlap.
    pub fn regressions(&self) -> Vec<&RowDiff> {
        let Some(headline) = self.headline() else { return Vec::new() };
        self.rows.iter().filter(|r| r.verdict(headline) == Some(Verdict::Lower)).collect()
    }
}

/// Every table on both sides.
#[derive(Clone, Debug)]
pub struct BoardDiff {
    /// Sorted by dataset then recipe.
    pub tables: Vec<TableDiff>,
    /// Records behind the base's tables.
    pub base_records: usize,
    /// Records behind the head's tables.
    pub head_records: usize,
}

impl BoardDiff {
    /// Compares `base` with `head`.
    pub fn between(base: &Leaderboard, head: &Leaderboard) -> BoardDiff {
        type Sides<'a> = (Option<&'a BoardTable>, Option<&'a BoardTable>);
        let mut sides: BTreeMap<(&str, &str), Sides> = BTreeMap::new();
        for table in &base.tables {
            sides.entry((&table.dataset, &table.recipe)).or_default().0 = Some(table);
        }
        for table in &head.tables {
            sides.entry((&table.dataset, &table.recipe)).or_default().1 = Some(table);
        }
        let tables = sides
            .into_iter()
            .map(|((dataset, recipe), (base, head))| compare_tables(dataset, recipe, base, head))
            .collect();
        BoardDiff { tables, base_records: base.record_count(), head_records: head.record_count() }
    }

    /// Every regression: (table, row).
    pub fn regressions(&self) -> Vec<(&TableDiff, &RowDiff)> {
        self.tables.iter().flat_map(|t| t.regressions().into_iter().map(move |r| (t, r))).collect()
    }

    /// Rows listed (moved, added or removed), over every table.
    pub fn moved_rows(&self) -> usize {
        self.tables.iter().map(|t| t.rows.len()).sum()
    }
}

fn compare_tables(dataset: &str, recipe: &str, base: Option<&BoardTable>, head: Option<&BoardTable>) -> TableDiff {
    let columns: Vec<MetricId> = base
        .iter()
        .chain(head.iter())
        .flat_map(|t| t.columns.iter().copied())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let base_rows: Vec<&Row> = base.map(|t| t.rows.iter().collect()).unwrap_or_default();
    let head_rows: Vec<&Row> = head.map(|t| t.rows.iter().collect()).unwrap_or_default();
    let removed = base_rows.iter().filter(|b| !head_rows.iter().any(|h| h.method == b.method));
    let pairs = head_rows
        .iter()
        .map(|h| (base_rows.iter().find(|b| b.method == h.method).copied(), Some(*h)))
        .chain(removed.map(|b| (Some(*b), None)));

    let mut rows = Vec::new();
    let mut unchanged = Vec::new();
    for (b, h) in pairs {
        let row = compare_rows(b, h, base, head, &columns);
        if row.moved() {
            rows.push(row);
        } else {
            unchanged.push(row.method);
        }
    }
    TableDiff {
        dataset: dataset.to_string(),
        recipe: recipe.to_string(),
        presence: Presence::of(&base, &head),
        columns,
        rows,
        unchanged,
    }
}

fn compare_rows(
    base: Option<&Row>,
    head: Option<&Row>,
    base_table: Option<&BoardTable>,
    head_table: Option<&BoardTable>,
    columns: &[MetricId],
) -> RowDiff {
    let summary = |row: Option<&Row>, table: Option<&BoardTable>, metric: MetricId| {
        let index = table?.columns.iter().position(|c| *c == metric)?;
        row?.metrics[index]
    };
    let metrics = columns
        .iter()
        .map(|&metric| MetricChange {
            metric,
            base: summary(base, base_table, metric),
            head: summary(head, head_table, metric),
        })
        .collect();

    // What the records say they ran, compared seed by seed where a seed is on both sides.
    let mut configuration_changed = Vec::new();
    let mut plugins_changed = BTreeSet::new();
    let mut build_changed = false;
    if let (Some(base), Some(head)) = (base, head) {
        for b in &base.cells {
            let Some(h) = head.cells.iter().find(|h| h.seed == b.seed) else { continue };
            if b.config_fingerprint != h.config_fingerprint {
                configuration_changed.push(b.seed);
            }
            for p in &b.plugins {
                let Some(q) = h.plugins.iter().find(|q| q.qualified_id() == p.qualified_id()) else { continue };
                let code_changed = !p.library.is_empty() && !q.library.is_empty() && p.library != q.library;
                if code_changed || p.version != q.version {
                    plugins_changed.insert(p.qualified_id());
                }
            }
            build_changed |= !b.build.is_empty() && !h.build.is_empty() && b.build != h.build;
        }
    }
    RowDiff {
        method: head.or(base).map(|r| r.method.clone()).unwrap_or_default(),
        base: base.cloned(),
        head: head.cloned(),
        metrics,
        configuration_changed,
        plugins_changed: plugins_changed.into_iter().collect(),
        build_changed,
    }
}

/// `head / base − 1`, when the base is positive.
fn relative(base: f64, head: f64) -> Option<f64> {
    (base > 0.0).then(|| head / base - 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::completed;
    use std::path::PathBuf;

    use dmlbench_record::CellRecord;

    /// Three seeds of `method` on CUB with these Recall@1 values (MAP@R 0.3).
    fn seeds(method: &str, r1: [f64; 3]) -> Vec<(PathBuf, CellRecord)> {
        (0..3).map(|seed| completed("cub", "default", method, None, seed, &[r1[seed as usize]], 0.3)).collect()
    }

    fn board(records: Vec<Vec<(PathBuf, CellRecord)>>) -> Leaderboard {
        Leaderboard::from_records(records.into_iter().flatten().collect())
    }

    fn row<'a>(diff: &'a BoardDiff, method: &str) -> &'a RowDiff {
        diff.tables[0].rows.iter().find(|r| r.method == method).unwrap_or_else(|| panic!("{method} not listed"))
    }

    #[test]
    fn verdicts_follow_the_intervals() {
        // 0.60, 0.62, 0.67: mean 0.63, h = 0.0895669 → [0.5404, 0.7196] (see stats.rs).
        let a = Summary::of(&[0.60, 0.62, 0.67]);
        // 0.55, 0.56, 0.57: mean 0.56, h = 0.0248414 → [0.5352, 0.5848]: reaches 0.5404.
        let b = Summary::of(&[0.55, 0.56, 0.57]);
        // 0.40, 0.41, 0.42: [0.3852, 0.4348]: below 0.5404.
        let c = Summary::of(&[0.40, 0.41, 0.42]);
        assert_eq!(Verdict::of(a, a), Verdict::Unchanged);
        assert_eq!(Verdict::of(a, b), Verdict::WithinIntervals);
        assert_eq!(Verdict::of(a, c), Verdict::Lower);
        assert_eq!(Verdict::of(c, a), Verdict::Higher);
        // One seed: no interval, whatever the distance.
        assert_eq!(Verdict::of(Summary::of(&[0.9]), c), Verdict::NoInterval);
        assert_eq!(Verdict::of(None, c), Verdict::New);
        assert_eq!(Verdict::of(c, None), Verdict::Gone);
        assert_eq!(Verdict::of(None, None), Verdict::Missing);
    }

    #[test]
    fn rows_are_matched_by_method_and_only_moved_ones_are_listed() {
        let base = board(vec![
            seeds("a", [0.60, 0.62, 0.67]),
            seeds("b", [0.50, 0.51, 0.52]),
            seeds("c", [0.40, 0.41, 0.42]),
            seeds("gone", [0.30, 0.30, 0.30]),
        ]);
        let head = board(vec![
            seeds("a", [0.60, 0.62, 0.67]),
            // b: mean 0.51 → 0.56. Base h = 4.302653 · 0.01 / √3 = 0.0248414, so [0.4852,
            // 0.5348] against [0.5352, 0.5848]: apart by 0.0004, higher.
            seeds("b", [0.55, 0.56, 0.57]),
            // c: 0.41 → 0.42, [0.3852, 0.4348] against [0.3952, 0.4448]: overlapping.
            seeds("c", [0.41, 0.42, 0.43]),
            seeds("new", [0.20, 0.20, 0.20]),
        ]);
        let diff = BoardDiff::between(&base, &head);
        assert_eq!(diff.tables.len(), 1);
        let table = &diff.tables[0];
        assert_eq!(table.presence, Presence::Both);
        // Head order (best Recall@1 first), then the removed row.
        let listed: Vec<(&str, Presence)> = table.rows.iter().map(|r| (r.method.as_str(), r.presence())).collect();
        assert_eq!(
            listed,
            [("b", Presence::Both), ("c", Presence::Both), ("new", Presence::Added), ("gone", Presence::Removed)]
        );
        assert_eq!(table.unchanged, ["a"]);

        let r1 = MetricId::RecallAt(1);
        let b = row(&diff, "b");
        assert_eq!(b.verdict(r1), Some(Verdict::Higher));
        let change = b.metrics[0];
        assert!((change.difference().unwrap() - 0.05).abs() < 1e-12);
        assert_eq!(change.overlap(), Some(false));
        assert!((change.base.unwrap().half_width.unwrap() - 0.024_841_4).abs() < 1e-7);
        let c = row(&diff, "c");
        assert_eq!((c.verdict(r1), c.metrics[0].overlap()), (Some(Verdict::WithinIntervals), Some(true)));
        assert_eq!(row(&diff, "new").verdict(r1), Some(Verdict::New));
        assert_eq!(row(&diff, "gone").verdict(r1), Some(Verdict::Gone));
        // Nothing fell with intervals apart.
        assert!(diff.regressions().is_empty());
        assert_eq!((diff.base_records, diff.head_records, diff.moved_rows()), (12, 12, 4));
    }

    #[test]
    fn a_fall_with_intervals_apart_is_a_regression() {
        let base = board(vec![seeds("a", [0.60, 0.62, 0.67]), seeds("b", [0.50, 0.51, 0.52])]);
        // a: [0.5404, 0.7196] → [0.3852, 0.4348], apart: a regression. b: single seeds are
        // not shown to differ, so a fall of b is none.
        let head =
            board(vec![seeds("a", [0.40, 0.41, 0.42]), vec![completed("cub", "default", "b", None, 0, &[0.10], 0.3)]]);
        let diff = BoardDiff::between(&base, &head);
        let regressions: Vec<&str> = diff.regressions().iter().map(|(_, r)| r.method.as_str()).collect();
        assert_eq!(regressions, ["a"]);
        assert_eq!(row(&diff, "b").verdict(MetricId::RecallAt(1)), Some(Verdict::NoInterval));
    }

    #[test]
    fn code_configuration_build_and_cost_changes_are_named() {
        let mut base_records = seeds("spce", [0.60, 0.62, 0.67]);
        for (_, record) in &mut base_records {
            record.plugins[0].library = "aaaa".into();
        }
        let mut head_records = base_records.clone();
        // Seed 1 ran new plugin code and a new build; seed 2 another configuration; every seed
        // took 330 s an epoch instead of 300 and seed 0 peaked at 768 MiB instead of 512.
        head_records[1].1.plugins[0].library = "bbbb".into();
        head_records[1].1.environment.dmlbench_build = "ffff".into();
        head_records[2].1.config_fingerprint = "cccc".into();
        for (_, record) in &mut head_records {
            record.epochs[0].timing.total_s = 330.0;
        }
        head_records[0].1.peak_rss_bytes = 768 << 20;
        let diff = BoardDiff::between(&board(vec![base_records.clone()]), &board(vec![head_records]));
        let spce = row(&diff, "spce");
        assert_eq!(spce.plugins_changed, ["loss:spce"]);
        assert_eq!(spce.configuration_changed, [2]);
        assert!(spce.build_changed);
        // 330 / 300 − 1 = 0.1; 768 / 512 − 1 = 0.5.
        assert!((spce.epoch_seconds_change().unwrap() - 0.1).abs() < 1e-12);
        assert_eq!(spce.peak_rss_change(), Some(0.5));
        assert_eq!(spce.peak_device_change(), None);
        assert_eq!(
            spce.notes(None),
            ["loss:spce code changed", "configuration changed (seed 2)", "dmlbench build changed"]
        );
        // The metrics did not move.
        assert!(spce.metrics.iter().all(|m| m.verdict() == Verdict::Unchanged));

        // An unknown fingerprint (a record from before dmlbench kept it) is no change.
        let mut old = base_records.clone();
        for (_, record) in &mut old {
            record.plugins[0].library = String::new();
            record.environment.dmlbench_build = String::new();
        }
        let diff = BoardDiff::between(&board(vec![old]), &board(vec![base_records]));
        assert!(diff.tables[0].rows.is_empty());
        assert_eq!(diff.tables[0].unchanged, ["spce"]);
    }

    #[test]
    fn tables_on_one_side_are_added_or_removed_whole() {
        let base = board(vec![seeds("a", [0.6, 0.6, 0.6])]);
        let mut head_records = seeds("a", [0.6, 0.6, 0.6]);
        for (_, record) in &mut head_records {
            record.cell.recipe = "default-smoke".into();
        }
        let diff = BoardDiff::between(&base, &board(vec![head_records]));
        let tables: Vec<(&str, Presence, usize)> =
            diff.tables.iter().map(|t| (t.recipe.as_str(), t.presence, t.rows.len())).collect();
        assert_eq!(tables, [("default", Presence::Removed, 1), ("default-smoke", Presence::Added, 1)]);
        assert!(diff.regressions().is_empty());
    }
}
