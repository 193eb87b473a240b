//! The leaderboard for a terminal: one comfy-table per dataset and recipe, fitted to the
//! terminal's width. Best values are bold green on a terminal; where colours are off (output
//! piped or written to a file) they carry a trailing `*` instead, so the marking survives.

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Attribute, Cell, CellAlignment, Color, ContentArrangement, Table};
use dmlbench_eval::MetricId;

use crate::diff::{BoardDiff, Presence, TableDiff, Verdict};
use crate::mining::{COST_HEADINGS, MiningTable, cost_cells, miner_label};
use crate::table::{BoardTable, Leaderboard, RowState};
use crate::text;

/// Longest failure reason shown in a terminal cell.
const REASON_CHARS: usize = 60;

/// How to draw.
#[derive(Clone, Copy, Debug, Default)]
pub struct TermOptions {
    /// Whether the output is a terminal: colours on, width taken from the terminal.
    pub tty: bool,
    /// A width to fit, overriding the terminal's.
    pub width: Option<u16>,
}

/// Renders every table, each under a title line, followed by a note on the marking.
pub fn render(board: &Leaderboard, options: TermOptions) -> String {
    if board.tables.is_empty() {
        return "No result records.\n".into();
    }
    let mut out = String::new();
    for table in &board.tables {
        let records: usize = table.rows.iter().map(|r| r.cells.len()).sum();
        let title = format!("{} · {} ({} records)\n", table.dataset, table.recipe, records);
        out.push_str(&dmlbench_abi::escape_terminal(&title));
        for note in text::folds_note(table).into_iter().chain(text::tuning_notes(table)) {
            out.push_str(&dmlbench_abi::escape_terminal(&format!("{note}\n")));
        }
        out.push_str(&render_table(table, options).to_string());
        out.push_str("\n\n");
        for mining in table.mining_tables() {
            let title = format!("{} · {} · mining strategies for {}\n", table.dataset, table.recipe, mining.loss);
            out.push_str(&dmlbench_abi::escape_terminal(&title));
            out.push_str(&render_mining(table, &mining, options).to_string());
            out.push_str("\n\n");
        }
    }
    let mark = if options.tty { "Bold green" } else { "*" };
    // Two short lines, so the note fits any terminal the tables fit.
    out.push_str("Accuracy in %: mean over seeds ± half-width of the 95% interval (Student t).\n");
    out.push_str(&format!("{mark}: the best mean of a column, and every value whose interval overlaps it.\n"));
    out
}

/// An empty comfy-table in the style and width of `options`.
fn new_table(options: TermOptions) -> Table {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED).set_content_arrangement(ContentArrangement::Dynamic);
    if !options.tty {
        t.force_no_tty();
    }
    if let Some(width) = options.width {
        t.set_width(width);
    }
    t
}

/// One table as comfy-table.
pub fn render_table(table: &BoardTable, options: TermOptions) -> Table {
    let mut t = new_table(options);
    let mut header = vec![Cell::new("method")];
    header.extend(table.columns.iter().map(|c| Cell::new(c.label())));
    header.extend(["seeds", "s/epoch", "img/s", "peak MiB", "epochs", "backend", "status"].map(Cell::new));
    t.set_header(header);

    for row in &table.rows {
        let mut cells = vec![Cell::new(dmlbench_abi::escape_terminal(&row.method))];
        for (summary, &best) in row.metrics.iter().zip(&row.best) {
            cells.push(value_cell(
                summary.map(|s| text::interval(&s)).unwrap_or_else(|| text::MISSING.into()),
                best,
                options,
            ));
        }
        let status = Cell::new(dmlbench_abi::escape_terminal(&row.status_line(Some(REASON_CHARS))));
        let status = match (row.state(), options.tty) {
            (RowState::Failed, true) => status.fg(Color::Red),
            (RowState::Running, true) => status.fg(Color::Yellow),
            _ => status,
        };
        cells.extend([
            Cell::new(row.completed_seeds()).set_alignment(CellAlignment::Right),
            Cell::new(text::epoch_seconds(row)).set_alignment(CellAlignment::Right),
            Cell::new(text::images_per_second(row)).set_alignment(CellAlignment::Right),
            Cell::new(text::peak_memory(row)).set_alignment(CellAlignment::Right),
            Cell::new(text::epochs(row)).set_alignment(CellAlignment::Right),
            Cell::new(text::backends(row)),
            status,
        ]);
        t.add_row(cells);
    }
    t
}

/// A value cell, marked when it is the best (see [`render`]).
fn value_cell(value: String, best: bool, options: TermOptions) -> Cell {
    let cell = if best && options.tty {
        Cell::new(value).fg(Color::Green).add_attribute(Attribute::Bold)
    } else if best {
        Cell::new(format!("{value} *"))
    } else {
        Cell::new(value)
    };
    cell.set_alignment(CellAlignment::Right)
}

/// The mining strategies of one loss as comfy-table.
fn render_mining(table: &BoardTable, mining: &MiningTable, options: TermOptions) -> Table {
    let mut t = new_table(options);
    let mut header = vec![Cell::new("miner")];
    header.extend(table.columns.iter().map(|c| Cell::new(c.label())));
    header.extend(COST_HEADINGS.map(Cell::new));
    t.set_header(header);
    for (row, best) in mining.rows.iter().zip(mining.best(table.columns.len())) {
        let mut cells = vec![Cell::new(dmlbench_abi::escape_terminal(&miner_label(row)))];
        for (summary, best) in row.metrics.iter().zip(best) {
            cells.push(value_cell(
                summary.map(|s| text::interval(&s)).unwrap_or_else(|| text::MISSING.into()),
                best,
                options,
            ));
        }
        cells.extend(cost_cells(row).map(|c| Cell::new(c).set_alignment(CellAlignment::Right)));
        t.add_row(cells);
    }
    t
}

/// Renders how the leaderboard moved from `base` to `head` (the labels name the two sides,
/// e.g. their directories): per table a title with counts, a table of the rows that moved (a
/// line per metric and cost), and the unchanged methods; then the regressions, if any.
pub fn render_diff(diff: &BoardDiff, base: &str, head: &str, options: TermOptions) -> String {
    let mut out = dmlbench_abi::escape_terminal(&format!(
        "Base: {base} ({} records). Head: {head} ({} records).\n\n",
        diff.base_records, diff.head_records
    ));
    if diff.tables.is_empty() {
        out.push_str("No result records on either side.\n");
        return out;
    }
    for table in &diff.tables {
        out.push_str(&dmlbench_abi::escape_terminal(&format!("{}\n", diff_title(table))));
        if !table.rows.is_empty() {
            out.push_str(&render_table_diff(table, options).to_string());
            out.push('\n');
        }
        if !table.unchanged.is_empty() {
            out.push_str(&dmlbench_abi::escape_terminal(&format!("Unchanged: {}.\n", table.unchanged.join(", "))));
        }
        out.push('\n');
    }
    out.push_str("Accuracy in %: mean over seeds ± half-width of the 95% interval (Student t); change in\n");
    out.push_str("percentage points. A change whose intervals overlap is not shown to differ.\n");
    out.push_str(&regression_line(diff, dmlbench_abi::escape_terminal));
    out
}

/// `cub · default: 1 moved, 1 added, 3 unchanged`, or a table on one side only.
pub fn diff_title(table: &TableDiff) -> String {
    let name = format!("{} · {}", table.dataset, table.recipe);
    let rows = table.rows.len();
    match table.presence {
        Presence::Added | Presence::Removed => {
            let what = if table.presence == Presence::Added { "a new table" } else { "no longer in the results" };
            let headline = table.columns.first().map_or_else(|| "one metric".to_string(), MetricId::label);
            format!("{name}: {what} ({rows} rows; {headline} here, the rest in its own leaderboard)")
        }
        Presence::Both => {
            let count = |p: Presence| table.rows.iter().filter(|r| r.presence() == p).count();
            let parts: Vec<String> = [
                (count(Presence::Both), "moved"),
                (count(Presence::Added), "added"),
                (count(Presence::Removed), "removed"),
                (table.unchanged.len(), "unchanged"),
            ]
            .into_iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!("{n} {what}"))
            .collect();
            format!("{name}: {}", parts.join(", "))
        }
    }
}

/// The closing line of a diff: the regressions (headline lower, intervals apart), or none;
/// names go through `escape` for the output format.
pub fn regression_line(diff: &BoardDiff, escape: fn(&str) -> String) -> String {
    let regressions: Vec<String> = diff
        .regressions()
        .iter()
        .map(|(t, r)| escape(&format!("{} ({} · {})", r.method, t.dataset, t.recipe)))
        .collect();
    if regressions.is_empty() {
        "No regression: no Recall@1 is lower with intervals apart.\n".into()
    } else {
        format!("Regressions (Recall@1 lower, intervals apart): {}.\n", regressions.join(", "))
    }
}

/// The moved rows of one table as comfy-table: a line per metric and cost.
fn render_table_diff(table: &TableDiff, options: TermOptions) -> Table {
    let mut t = new_table(options);
    t.set_header(["method", "changed", "", "base", "head", "change", "verdict"].map(Cell::new));
    for row in &table.rows {
        let notes = text::diff_notes(row, Some(REASON_CHARS));
        for (i, line) in text::table_diff_lines(table, row).into_iter().enumerate() {
            let (method, notes) = if i == 0 { (row.method.as_str(), notes.as_str()) } else { ("", "") };
            let verdict = Cell::new(line.verdict.map(|v| v.text()).unwrap_or(""));
            let verdict = match (line.verdict, options.tty) {
                (Some(Verdict::Lower), true) => verdict.fg(Color::Red).add_attribute(Attribute::Bold),
                (Some(Verdict::Higher), true) => verdict.fg(Color::Green).add_attribute(Attribute::Bold),
                _ => verdict,
            };
            t.add_row(vec![
                Cell::new(dmlbench_abi::escape_terminal(method)),
                Cell::new(dmlbench_abi::escape_terminal(notes)),
                Cell::new(line.quantity),
                Cell::new(line.base).set_alignment(CellAlignment::Right),
                Cell::new(line.head).set_alignment(CellAlignment::Right),
                Cell::new(line.change).set_alignment(CellAlignment::Right),
                verdict,
            ]);
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{completed, failed};

    #[test]
    fn plain_output_marks_best_values_and_fits_the_width() {
        let board = Leaderboard::from_records(vec![
            completed("cub", "default", "cross_entropy", None, 0, &[0.60], 0.31),
            completed("cub", "default", "cross_entropy", None, 1, &[0.62], 0.31),
            completed("cub", "default", "cross_entropy", None, 2, &[0.67], 0.31),
            completed("cub", "default", "contrastive", Some("batch_hard"), 0, &[0.40], 0.2),
            failed(
                "cub",
                "default",
                "triplet_margin",
                Some("semihard"),
                0,
                &format!("{}\nsecond line", "q".repeat(100)),
            ),
        ]);
        let out = render(&board, TermOptions { tty: false, width: Some(160) });
        assert!(out.starts_with("cub · default (5 records)\n"), "{out}");
        // 0.60, 0.62, 0.67 → 63.0 ± 9.0 (see stats.rs), the best; 40.0 is outside its interval.
        assert!(out.contains("63.0 ± 9.0 *"), "{out}");
        assert!(out.contains("40.0") && !out.contains("40.0 *"), "{out}");
        assert!(!out.contains("second line"));
        assert!(out.lines().all(|l| l.chars().count() <= 160), "wider than 160 columns:\n{out}");
        // The reason is cut at 60 characters: 59 q's and an ellipsis, wrapped over lines.
        assert_eq!(out.matches('q').count(), 59, "{out}");
        assert!(out.contains('…'));
        // A narrow terminal wraps cells rather than overflowing.
        let narrow = render(&board, TermOptions { tty: false, width: Some(90) });
        assert!(narrow.lines().all(|l| l.chars().count() <= 90), "wider than 90 columns:\n{narrow}");
    }

    /// Names and reasons come from files anyone can write; escape sequences in them must not
    /// reach the terminal.
    #[test]
    fn control_characters_in_names_and_reasons_are_escaped() {
        let (path, mut record) = completed("cub", "default", "cross_entropy", None, 0, &[0.6], 0.3);
        record.cell.variant = "a\u{1b}[2Jb".into();
        let board = Leaderboard::from_records(vec![
            (path, record),
            failed("cub", "default", "contrastive", None, 0, "bad \u{1b}]0;title\u{7} plugin"),
        ]);
        let out = render(&board, TermOptions { tty: false, width: Some(200) });
        assert!(!out.contains('\u{1b}') && !out.contains('\u{7}'), "{out:?}");
        assert!(out.contains("a\\u{1b}[2Jb") && out.contains("bad \\u{1b}]0;title\\u{7} plugin"), "{out}");
    }

    #[test]
    fn a_diff_lists_the_moved_row_with_both_intervals() {
        let (base, head) = crate::fixtures::moved_loss();
        let diff = BoardDiff::between(&base, &head);
        let out = render_diff(&diff, "results", "new", TermOptions { tty: false, width: Some(200) });
        assert!(out.starts_with("Base: results (6 records). Head: new (6 records).\n"), "{out}");
        assert!(out.contains("cub · default: 1 moved, 1 unchanged\n"), "{out}");
        // 0.41 − 0.63 = −22.0 points; the intervals [54.0, 72.0] and [38.5, 43.5] are apart.
        let line = out.lines().find(|l| l.contains("R@1")).unwrap();
        for part in [
            "spce",
            "loss:spce code changed",
            "63.0 ± 9.0",
            "41.0 ± 2.5",
            "-22.0",
            "lower: the intervals do not overlap",
        ] {
            assert!(line.contains(part), "{part} not in {line}");
        }
        assert!(out.contains("Unchanged: cross_entropy.\n"), "{out}");
        assert!(!out.lines().any(|l| l.contains("│ cross_entropy")), "{out}");
        assert!(out.ends_with("Regressions (Recall@1 lower, intervals apart): spce (cub · default).\n"), "{out}");
    }

    /// A table on one side only (an experiment added or no longer run) lists each row with
    /// its headline metric alone: every other number is new or gone as a whole.
    #[test]
    fn a_table_on_one_side_shows_one_line_per_row() {
        let (base, _) = crate::fixtures::moved_loss();
        let empty = Leaderboard::from_records(Vec::new());
        for (diff, what) in [
            (BoardDiff::between(&base, &empty), "no longer in the results"),
            (BoardDiff::between(&empty, &base), "a new table"),
        ] {
            let out = render_diff(&diff, "a", "b", TermOptions { tty: false, width: Some(200) });
            let title = format!("cub · default: {what} (2 rows; R@1 here, the rest in its own leaderboard)\n");
            assert!(out.contains(&title), "{out}");
            let rows: Vec<&str> = out.lines().filter(|l| l.starts_with('│') && !l.contains("method")).collect();
            assert_eq!(rows.len(), 2, "{out}");
            assert!(rows.iter().all(|l| l.contains("R@1")), "{out}");
            for method in ["spce", "cross_entropy"] {
                assert!(rows.iter().any(|l| l.contains(method)), "{method}: {out}");
            }
        }
    }
}
