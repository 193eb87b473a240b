//! The leaderboard as Markdown (GitHub-flavoured tables): what `results/LEADERBOARD.md` holds.
//!
//! The text depends on the records only — no date, no host of the rendering — so a committed
//! file can be checked against its records (`dmlbench leaderboard --check`). Links to the
//! records are relative to the directory the file is written to.

use std::path::Path;

use crate::diff::{BoardDiff, TableDiff, Verdict};
use crate::mining::{COST_HEADINGS, MINING_NOTE, MiningTable, cost_cells, miner_label};
use crate::paths::{relative_link, relative_path};
use crate::table::{BoardTable, Leaderboard};
use crate::term::{diff_title, regression_line};
use crate::text::{self, escape_md};

/// Name of the Markdown leaderboard inside a results directory.
pub const FILE_NAME: &str = "LEADERBOARD.md";

/// Longest failure reason shown in a table cell.
const REASON_CHARS: usize = 80;

/// How to read the tables; shared with the HTML page.
pub const READING_NOTE: &str = "Accuracy columns: mean over seeds ± half-width of the 95% confidence interval of the mean \
(Student t with n − 1 degrees of freedom), in percent; a single seed shows no interval. Marked values: the best mean of \
the column, and every value whose interval overlaps the best one's, since a difference inside the interval is not \
evidence of a better method. Time per epoch and images per second: mean over the seeds that finished an epoch; peak \
memory: the largest over seeds.";

/// Renders the whole leaderboard; links are relative to `base_dir`, the directory of the file.
pub fn render(board: &Leaderboard, base_dir: &Path) -> String {
    let mut out = String::new();
    out.push_str("# Leaderboard\n\n");
    out.push_str(&format!(
        "Rendered by `dmlbench leaderboard` from {} result record{}. {}\n\n",
        board.record_count(),
        if board.record_count() == 1 { "" } else { "s" },
        READING_NOTE.replace("Marked values", "**Bold**")
    ));
    if board.tables.is_empty() {
        out.push_str("No result records.\n");
        return out;
    }
    for table in &board.tables {
        render_table(&mut out, table, base_dir);
    }
    render_reproducibility(&mut out, board, base_dir);
    out
}

fn render_table(out: &mut String, table: &BoardTable, base_dir: &Path) {
    out.push_str(&format!("## {} · {}\n\n", escape_md(&table.dataset), escape_md(&table.recipe)));
    for d in &table.data {
        out.push_str(&format!(
            "Data: `{}` at `{}` (fingerprint `{}`): {} training images of {} classes, {} test images of {} classes.\n\n",
            d.format.replace('`', "'"),
            d.root.replace('`', "'"),
            d.fingerprint.replace('`', "'"),
            d.train_images,
            d.train_classes,
            d.test_images,
            d.test_classes
        ));
    }
    if let Some(note) = text::folds_note(table) {
        out.push_str(&format!("{}\n\n", escape_md(&note)));
    }
    for note in text::tuning_notes(table) {
        out.push_str(&format!("{}\n\n", escape_md(&note)));
    }
    let mut header = vec!["method".to_string()];
    header.extend(table.columns.iter().map(|c| c.label()));
    header
        .extend(["seeds", "s/epoch", "img/s", "peak MiB", "epochs", "backend", "status", "records"].map(String::from));
    let mut align = vec![":--".to_string()];
    align.extend(table.columns.iter().map(|_| "--:".to_string()));
    align.extend(["--:", "--:", "--:", "--:", "--:", ":--", ":--", ":--"].map(String::from));
    out.push_str(&format!("| {} |\n|{}|\n", header.join(" | "), align.join("|")));
    for row in &table.rows {
        let mut cells = vec![escape_md(&row.method)];
        for (summary, &best) in row.metrics.iter().zip(&row.best) {
            cells.push(match summary {
                Some(s) if best => format!("**{}**", text::interval(s)),
                Some(s) => text::interval(s),
                None => text::MISSING.into(),
            });
        }
        let links: Vec<String> =
            row.cells.iter().map(|c| format!("[{}]({})", c.seed, relative_link(base_dir, &c.path))).collect();
        cells.extend([
            row.completed_seeds().to_string(),
            text::epoch_seconds(row),
            text::images_per_second(row),
            text::peak_memory(row),
            text::epochs(row),
            escape_md(&text::backends(row)),
            escape_md(&row.status_line(Some(REASON_CHARS))),
            links.join(" "),
        ]);
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out.push_str("\nRecords are linked by seed.\n\n");
    for mining in table.mining_tables() {
        render_mining(out, table, &mining);
    }
}

fn render_mining(out: &mut String, table: &BoardTable, mining: &MiningTable) {
    out.push_str(&format!("### Mining strategies: {}\n\n{MINING_NOTE}\n\n", escape_md(mining.loss)));
    let mut header = vec!["miner".to_string()];
    header.extend(table.columns.iter().map(|c| c.label()));
    header.extend(COST_HEADINGS.map(String::from));
    let align: Vec<&str> = std::iter::once(":--").chain(std::iter::repeat_n("--:", header.len() - 1)).collect();
    out.push_str(&format!("| {} |\n|{}|\n", header.join(" | "), align.join("|")));
    for (row, best) in mining.rows.iter().zip(mining.best(table.columns.len())) {
        let mut cells = vec![escape_md(&miner_label(row))];
        for (summary, best) in row.metrics.iter().zip(best) {
            cells.push(match summary {
                Some(s) if best => format!("**{}**", text::interval(s)),
                Some(s) => text::interval(s),
                None => text::MISSING.into(),
            });
        }
        cells.extend(cost_cells(row));
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out.push('\n');
}

fn render_reproducibility(out: &mut String, board: &Leaderboard, base_dir: &Path) {
    out.push_str(
        "## Reproducibility\n\n### Experiments\n\n| experiment | file | fingerprint | records |\n|:--|:--|:--|--:|\n",
    );
    for ((name, file, fingerprint), count) in board.experiments() {
        out.push_str(&format!(
            "| {} | {} | `{}` | {} |\n",
            escape_md(&name),
            escape_md(&file),
            fingerprint.replace('`', "'"),
            count
        ));
    }
    out.push_str("\n### Revisions\n\n| git revision | dmlbench | records |\n|:--|:--|--:|\n");
    for ((revision, version), count) in board.revisions() {
        out.push_str(&format!("| `{}` | {} | {} |\n", revision.replace('`', "'"), escape_md(&version), count));
    }
    out.push_str("\n### Environments\n\n| CPU | threads | backend | device | GPU | OS | records |\n|:--|--:|:--|:--|:--|:--|--:|\n");
    for (env, count) in board.environments() {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            escape_md(&env.cpu),
            env.threads,
            escape_md(&env.backend),
            escape_md(&env.device),
            escape_md(env.gpu.as_deref().unwrap_or(text::MISSING)),
            escape_md(&env.os),
            count
        ));
    }
    if !board.superseded.is_empty() {
        out.push_str(
            "\n### Superseded records\n\nOlder records of a cell that has a newer record; not in the tables.\n\n",
        );
        for s in &board.superseded {
            out.push_str(&format!(
                "- [{}]({}): superseded by [{}]({}){}\n",
                escape_md(&relative_path(base_dir, &s.path)),
                relative_link(base_dir, &s.path),
                escape_md(&relative_path(base_dir, &s.kept)),
                relative_link(base_dir, &s.kept),
                if s.fingerprint_differs { " (the experiment fingerprints differ)" } else { "" }
            ));
        }
    }
}

/// Renders how the leaderboard moved from `base` to `head` (labels naming the two sides), for
/// a pull-request comment: the same tables and lines as the terminal's diff, a verdict that
/// shows a difference in bold.
pub fn render_diff(diff: &BoardDiff, base: &str, head: &str) -> String {
    let code = |label: &str| format!("`{}`", label.replace('`', "'"));
    let mut out = String::from("## Leaderboard changes\n\n");
    out.push_str(&format!(
        "Base: {} ({} records). Head: {} ({} records). {} row{} moved, added or removed.\n\n",
        code(base),
        diff.base_records,
        code(head),
        diff.head_records,
        diff.moved_rows(),
        if diff.moved_rows() == 1 { "" } else { "s" }
    ));
    for table in &diff.tables {
        render_table_diff(&mut out, table);
    }
    out.push_str(
        "Accuracy in percent: mean over seeds ± half-width of the 95% interval (Student t); change in percentage \
points. A change whose intervals overlap is not shown to differ.\n\n",
    );
    out.push_str(&regression_line(diff, escape_md));
    out
}

fn render_table_diff(out: &mut String, table: &TableDiff) {
    out.push_str(&format!("### {}\n\n", escape_md(&diff_title(table))));
    if !table.rows.is_empty() {
        out.push_str("| method | changed | | base | head | change | verdict |\n|:--|:--|:--|--:|--:|--:|:--|\n");
        for row in &table.rows {
            let notes = text::diff_notes(row, Some(REASON_CHARS));
            for (i, line) in text::table_diff_lines(table, row).into_iter().enumerate() {
                let (method, notes) =
                    if i == 0 { (escape_md(&row.method), escape_md(&notes)) } else { Default::default() };
                let verdict = match line.verdict {
                    Some(v @ (Verdict::Higher | Verdict::Lower)) => format!("**{}**", v.text()),
                    Some(v) => v.text().to_string(),
                    None => String::new(),
                };
                out.push_str(&format!(
                    "| {method} | {notes} | {} | {} | {} | {} | {verdict} |\n",
                    escape_md(&line.quantity),
                    line.base,
                    line.head,
                    line.change
                ));
            }
        }
        out.push('\n');
    }
    if !table.unchanged.is_empty() {
        let names: Vec<String> = table.unchanged.iter().map(|m| escape_md(m)).collect();
        out.push_str(&format!("Unchanged: {}.\n\n", names.join(", ")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{completed, running};

    #[test]
    fn tables_links_and_marks() {
        let board = Leaderboard::from_records(vec![
            completed("cub", "default", "cross_entropy", None, 0, &[0.60], 0.31),
            completed("cub", "default", "cross_entropy", None, 1, &[0.62], 0.31),
            completed("cub", "default", "cross_entropy", None, 2, &[0.67], 0.31),
            running("cub", "default", "snca", None, 0, 2, 4),
        ]);
        let md = render(&board, Path::new("results"));
        // Header: 2 Recall@K columns, then MAP@R, R-prec, NMI.
        assert!(md.contains("| method | R@1 | R@2 | MAP@R | R-prec | NMI | seeds |"), "{md}");
        // 0.60, 0.62, 0.67 → 63.0 ± 9.0 (hand computation in stats.rs); R@2 adds 0.1 to each.
        assert!(md.contains("| cross_entropy | **63.0 ± 9.0** | **73.0 ± 9.0** |"), "{md}");
        assert!(md.contains("[0](default/cross_entropy-seed0.ron) [1](default/cross_entropy-seed1.ron) [2](default/cross_entropy-seed2.ron)"));
        assert!(md.contains("| snca | — | — | — | — | — | 0 |"), "{md}");
        assert!(md.contains("running: epoch 2/4"));
        assert!(md.contains("| default | experiments/default.ron |"));
        assert!(md.contains("| AMD EPYC 7B13 | 2 | flex | cpu | — | linux x86_64 | 4 |"), "{md}");
        // Rendering twice gives the same text.
        assert_eq!(md, render(&board, Path::new("results")));
    }

    #[test]
    fn a_diff_for_a_pull_request() {
        let (base, head) = crate::fixtures::moved_loss();
        let md = render_diff(&BoardDiff::between(&base, &head), "results", "new");
        assert!(md.starts_with("## Leaderboard changes\n\nBase: `results` (6 records). Head: `new` (6 records). 1 row moved, added or removed.\n"), "{md}");
        assert!(md.contains("### cub · default: 1 moved, 1 unchanged\n"), "{md}");
        // 0.41 − 0.63 = −22.0 points, intervals apart; R@2 is 10 points above R@1 on both sides.
        assert!(
            md.contains("| spce | loss:spce code changed | R@1 | 63.0 ± 9.0 | 41.0 ± 2.5 | -22.0 | **lower: the intervals do not overlap** |\n"),
            "{md}"
        );
        assert!(
            md.contains("|  |  | R@2 | 73.0 ± 9.0 | 51.0 ± 2.5 | -22.0 | **lower: the intervals do not overlap** |\n"),
            "{md}"
        );
        // Costs are the same: 300 s an epoch, 512 MiB.
        assert!(md.contains("|  |  | s/epoch | 300 | 300 | 0% |  |\n"), "{md}");
        assert!(md.contains("|  |  | peak MiB | 512 | 512 | 0% |  |\n"), "{md}");
        assert!(md.contains("Unchanged: cross_entropy.\n"), "{md}");
        assert!(md.ends_with("Regressions (Recall@1 lower, intervals apart): spce (cub · default).\n"), "{md}");
    }
}
