//! The leaderboard as one static HTML page: what `results/index.html` holds.
//!
//! The page works offline and from any directory: styles are inline, charts are inline SVG
//! ([`crate::svg`]), there is no script and nothing is fetched. Each table is followed
//! by two charts: Recall@1 against time per epoch (one point per method with its 95% interval,
//! the Pareto front dashed) and Recall@1 after each epoch (one line per method, the mean over
//! the seeds evaluated at that epoch; epoch 0 is the network before training, where measured). Rows link to their record files, relative to the page's
//! directory, and the page ends with what is needed to reproduce it: experiment files (their
//! text, from the copy `dmlbench run` keeps beside the records) and fingerprints, git revisions, environments. Like the Markdown, the page depends on the
//! records only, so it can be committed and checked.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::markdown::READING_NOTE;
use crate::mining::{COST_HEADINGS, MINING_NOTE, MiningTable, cost_cells, miner_label};
use crate::paths::{relative_link, relative_path};
use crate::svg::{self, Axes, PALETTE, Point, Series};
use crate::table::{BoardTable, Leaderboard, Row, short_reason};
use crate::text::{self, escape_xml as esc};
use dmlbench_record::{self, CellStatus, EXPERIMENT_COPY};

/// Name of the HTML leaderboard inside a results directory.
pub const FILE_NAME: &str = "index.html";

/// Longest failure reason shown before the reader opens the details.
const REASON_CHARS: usize = 80;

const STYLE: &str = "body { font-family: system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; color: #222; margin: 1.5rem; line-height: 1.4; }
h1 { margin-bottom: 0.2rem; }
h2 { margin-top: 2.5rem; border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; }
h3 { margin-top: 1.5rem; font-size: 1rem; }
p.note, p.data { color: #444; max-width: 70rem; }
nav a { margin-right: 1rem; }
div.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.8rem; margin: 0.6rem 0 1rem; }
th, td { border: 1px solid #ddd; padding: 0.15rem 0.3rem; vertical-align: top; }
th { background: #f3f3f3; text-align: left; }
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
td.best { background: #e3f1e6; }
td.method { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
td.status { min-width: 5rem; max-width: 16rem; }
tr.failed td.status { color: #a40000; }
tr.running td.status { color: #8a5a00; }
td.status summary { cursor: pointer; }
td.status details pre { white-space: pre-wrap; font-size: 0.8rem; background: #faf3f3; padding: 0.4rem; margin: 0.3rem 0 0; }
td.records { white-space: nowrap; }
td.records a { margin-right: 0.3rem; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 0.85em; }
div.charts { display: flex; flex-wrap: wrap; gap: 1rem; }
figure { margin: 0; }
figcaption { color: #555; font-size: 0.85rem; max-width: 780px; }
p.no-chart { color: #777; font-style: italic; }
";

/// Renders the page; links are relative to `base_dir`, the directory of the page.
pub fn render(board: &Leaderboard, base_dir: &Path) -> String {
    let mut s = String::new();
    s.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    s.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    s.push_str("<title>dmlbench leaderboard</title>\n<style>\n");
    s.push_str(STYLE);
    s.push_str("</style>\n</head>\n<body>\n<h1>dmlbench leaderboard</h1>\n");
    let n = board.record_count();
    let _ = writeln!(
        s,
        "<p class=\"note\">Rendered by <code>dmlbench leaderboard</code> from {n} result record{}. {}</p>",
        if n == 1 { "" } else { "s" },
        esc(&READING_NOTE.replace("Marked values", "Highlighted bold values"))
    );
    if board.tables.is_empty() {
        s.push_str("<p>No result records.</p>\n</body>\n</html>\n");
        return s;
    }
    s.push_str("<nav>");
    for (i, table) in board.tables.iter().enumerate() {
        let _ = write!(s, "<a href=\"#{}\">{} · {}</a>", anchor(i, table), esc(&table.dataset), esc(&table.recipe));
    }
    s.push_str("<a href=\"#reproducibility\">reproducibility</a></nav>\n");
    for (i, table) in board.tables.iter().enumerate() {
        render_table(&mut s, i, table, base_dir);
    }
    render_reproducibility(&mut s, board, base_dir);
    s.push_str("</body>\n</html>\n");
    s
}

/// A fragment id for table `index`: its position keeps it unique, the names keep it readable.
fn anchor(index: usize, table: &BoardTable) -> String {
    let name: String = format!("{}-{}", table.dataset, table.recipe)
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c.to_ascii_lowercase() } else { '-' })
        .collect();
    format!("t{}-{}", index + 1, name)
}

fn render_table(s: &mut String, index: usize, table: &BoardTable, base_dir: &Path) {
    let _ = writeln!(
        s,
        "<section class=\"board\" id=\"{}\">\n<h2>{} · {}</h2>",
        anchor(index, table),
        esc(&table.dataset),
        esc(&table.recipe)
    );
    for d in &table.data {
        let _ = writeln!(
            s,
            "<p class=\"data\">Data: <code>{}</code> at <code>{}</code> (fingerprint <code>{}</code>): {} training images of {} classes, {} test images of {} classes.</p>",
            esc(&d.format),
            esc(&d.root),
            esc(&d.fingerprint),
            d.train_images,
            d.train_classes,
            d.test_images,
            d.test_classes
        );
    }
    for note in text::folds_note(table).into_iter().chain(text::tuning_notes(table)) {
        let _ = writeln!(s, "<p class=\"note\">{}</p>", esc(&note));
    }
    let _ = writeln!(
        s,
        "<div class=\"scroll\">\n<table class=\"leaderboard\" data-dataset=\"{}\" data-recipe=\"{}\">",
        esc(&table.dataset),
        esc(&table.recipe)
    );
    s.push_str("<thead><tr><th>method</th>");
    for column in &table.columns {
        let _ = write!(s, "<th title=\"{}\">{}</th>", esc(&column.key()), esc(&column.label()));
    }
    s.push_str("<th>seeds</th><th>s/epoch</th><th>img/s</th><th>peak MiB</th><th>epochs</th><th>backend</th><th>status</th><th>records (seed)</th></tr></thead>\n<tbody>\n");
    for row in &table.rows {
        render_row(s, row, base_dir);
    }
    s.push_str("</tbody>\n</table>\n</div>\n");
    for mining in table.mining_tables() {
        render_mining(s, table, &mining);
    }
    render_charts(s, table);
    s.push_str("</section>\n");
}

fn render_mining(s: &mut String, table: &BoardTable, mining: &MiningTable) {
    let _ = writeln!(
        s,
        "<h3>Mining strategies: <code>{}</code></h3>\n<p class=\"note\">{}</p>",
        esc(mining.loss),
        esc(MINING_NOTE)
    );
    let _ = write!(
        s,
        "<div class=\"scroll\">\n<table class=\"mining\" data-loss=\"{}\">\n<thead><tr><th>miner</th>",
        esc(mining.loss)
    );
    for column in &table.columns {
        let _ = write!(s, "<th title=\"{}\">{}</th>", esc(&column.key()), esc(&column.label()));
    }
    for heading in COST_HEADINGS {
        let _ = write!(s, "<th>{}</th>", esc(heading));
    }
    s.push_str("</tr></thead>\n<tbody>\n");
    for (row, best) in mining.rows.iter().zip(mining.best(table.columns.len())) {
        let _ = write!(s, "<tr><td class=\"method\">{}</td>", esc(&miner_label(row)));
        for (summary, best) in row.metrics.iter().zip(best) {
            let class = if best { "num best" } else { "num" };
            let value = summary.map(|v| text::interval(&v)).unwrap_or_else(|| text::MISSING.into());
            let _ = write!(s, "<td class=\"{class}\">{}</td>", esc(&value));
        }
        for cell in cost_cells(row) {
            let _ = write!(s, "<td class=\"num\">{}</td>", esc(&cell));
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</tbody>\n</table>\n</div>\n");
}

/// A method name, escaped, that a narrow column may wrap after its `+` (between loss and
/// miner) and nowhere else.
fn breakable(method: &str) -> String {
    esc(method).replace('+', "+<wbr>")
}

fn render_row(s: &mut String, row: &Row, base_dir: &Path) {
    let _ = write!(
        s,
        "<tr class=\"{}\" data-method=\"{}\"><td class=\"method\">{}</td>",
        row.state().name(),
        esc(&row.method),
        breakable(&row.method)
    );
    for (summary, &best) in row.metrics.iter().zip(&row.best) {
        match summary {
            Some(summary) if best => {
                let _ = write!(s, "<td class=\"num best\"><strong>{}</strong></td>", esc(&text::interval(summary)));
            }
            Some(summary) => {
                let _ = write!(s, "<td class=\"num\">{}</td>", esc(&text::interval(summary)));
            }
            None => {
                let _ = write!(s, "<td class=\"num\">{}</td>", text::MISSING);
            }
        }
    }
    for value in [
        row.completed_seeds().to_string(),
        text::epoch_seconds(row),
        text::images_per_second(row),
        text::peak_memory(row),
        text::epochs(row),
    ] {
        let _ = write!(s, "<td class=\"num\">{}</td>", esc(&value));
    }
    let _ = write!(
        s,
        "<td>{}</td><td class=\"status\">{}</td><td class=\"records\">",
        esc(&text::backends(row)),
        status_html(row)
    );
    for cell in &row.cells {
        let _ = write!(
            s,
            "<a href=\"{}\" title=\"record of seed {}\">{}</a>",
            esc(&relative_link(base_dir, &cell.path)),
            cell.seed,
            cell.seed
        );
    }
    s.push_str("</td></tr>\n");
}

/// The status cell: the state, progress of running seeds, and each failure's first line with
/// the full reason under a disclosure (no script needed).
fn status_html(row: &Row) -> String {
    let parts: Vec<String> = row
        .status_parts(Some(REASON_CHARS))
        .into_iter()
        .map(|part| match part.reason {
            None => esc(&part.text),
            Some(reason) => {
                format!(
                    "<details><summary>{}</summary><pre>{}</pre></details>",
                    esc(&part.text),
                    esc(reason.trim_end())
                )
            }
        })
        .collect();
    parts.join("<br>")
}

/// The colour of the `i`-th series of a chart.
fn color(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

fn render_charts(s: &mut String, table: &BoardTable) {
    let Some(headline) = table.headline() else {
        s.push_str("<p class=\"no-chart\">No Recall@K measured yet: no charts.</p>\n");
        return;
    };
    let metric = headline.label();
    s.push_str("<div class=\"charts\">\n");

    let points: Vec<Point> = table
        .rows
        .iter()
        .enumerate()
        .filter_map(|(i, row)| {
            let accuracy = row.metrics.first().copied().flatten()?;
            let time = row.epoch_seconds?;
            Some(Point {
                label: row.method.clone(),
                color: color(i),
                x: time.mean,
                y: 100.0 * accuracy.mean,
                y_low: 100.0 * accuracy.low(),
                y_high: 100.0 * accuracy.high(),
                tooltip: format!(
                    "{}: {} {} %, {} s per epoch, {} seed(s)",
                    row.method,
                    metric,
                    text::interval(&accuracy),
                    text::significant(time.mean),
                    accuracy.n
                ),
            })
        })
        .collect();
    if points.is_empty() {
        s.push_str("<p class=\"no-chart\">No completed cell yet: no accuracy against time chart.</p>\n");
    } else {
        let axes = Axes {
            title: format!("{} · {}: {} against time per epoch", table.dataset, table.recipe, metric),
            x_label: "time per epoch (s)".into(),
            y_label: format!("{metric} (%)"),
        };
        s.push_str("<figure class=\"pareto\">\n");
        s.push_str(&svg::scatter(&axes, &points, true));
        let _ = writeln!(
            s,
            "<figcaption>One point per method: mean {} over completed seeds with its 95% interval, against mean time per epoch. The dashed line joins the methods no other method beats on both (faster and more accurate).</figcaption>\n</figure>",
            esc(&metric)
        );
    }

    let series: Vec<Series> = table
        .rows
        .iter()
        .enumerate()
        .filter(|(_, row)| !row.curve.is_empty())
        .map(|(i, row)| Series {
            label: row.method.clone(),
            color: color(i),
            points: row.curve.iter().map(|(epoch, summary)| (*epoch as f64, 100.0 * summary.mean)).collect(),
        })
        .collect();
    if series.is_empty() {
        s.push_str("<p class=\"no-chart\">No evaluated epoch yet: no per-epoch chart.</p>\n");
    } else {
        let axes = Axes {
            title: format!("{} · {}: test {} per epoch", table.dataset, table.recipe, metric),
            x_label: "epoch".into(),
            y_label: format!("{metric} (%)"),
        };
        s.push_str("<figure class=\"curves\">\n");
        s.push_str(&svg::line_chart(&axes, &series, true));
        let _ = writeln!(
            s,
            "<figcaption>Test {} after each epoch (epoch 0: before training, where measured), one line per method: the mean over the seeds evaluated at that epoch (running and failed seeds included).</figcaption>\n</figure>",
            esc(&metric)
        );
    }
    render_tuning_chart(s, table);
    s.push_str("</div>\n");
}

/// The objective of every trial of the table's tuned rows, one line per row, trial by trial.
fn render_tuning_chart(s: &mut String, table: &BoardTable) {
    let tuned: Vec<(&Row, &dmlbench_record::TuningSummary)> =
        table.rows.iter().filter_map(|row| row.tuning.as_ref().map(|t| (row, t))).collect();
    let Some((_, first)) = tuned.first() else { return };
    let series: Vec<Series> = tuned
        .iter()
        .enumerate()
        .map(|(i, (row, t))| Series {
            label: row.method.clone(),
            color: color(i),
            points: t.trials.iter().enumerate().filter_map(|(n, (_, score))| score.map(|v| (n as f64, v))).collect(),
        })
        .collect();
    let axes = Axes {
        title: format!("{} · {}: tuning objective per trial", table.dataset, table.recipe),
        x_label: "trial".into(),
        y_label: format!("validation {}", first.metric),
    };
    s.push_str("<figure class=\"tuning\">\n");
    s.push_str(&svg::line_chart(&axes, &series, true));
    let _ = writeln!(
        s,
        "<figcaption>Each tuned method's trials in the order proposed: the mean validation {} over the trial's folds (failed trials left out). Its row's values are the best trial's.</figcaption>\n</figure>",
        esc(&first.metric)
    );
}

/// The experiment file `dmlbench run` copied next to the records of experiment `name`, when
/// its fingerprint shows it is the file those records came from.
fn experiment_text(board: &Leaderboard, name: &str, fingerprint: &str) -> Option<(PathBuf, String)> {
    board.records.iter().filter(|(_, r)| r.experiment.name == name && r.experiment.fingerprint == fingerprint).find_map(
        |(path, _)| {
            let copy = path.parent()?.join(EXPERIMENT_COPY);
            let text = std::fs::read_to_string(&copy).ok()?;
            (dmlbench_record::fingerprint(text.as_bytes()) == fingerprint).then_some((copy, text))
        },
    )
}

fn render_reproducibility(s: &mut String, board: &Leaderboard, base_dir: &Path) {
    s.push_str("<section id=\"reproducibility\">\n<h2>Reproducibility</h2>\n<h3>Experiments</h3>\n");
    s.push_str("<table class=\"experiments\"><thead><tr><th>experiment</th><th>file</th><th>fingerprint</th><th>records</th></tr></thead>\n<tbody>\n");
    for ((name, file, fingerprint), count) in board.experiments() {
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td><code>{}</code></td><td><code>{}</code></td><td class=\"num\">{count}</td></tr>",
            esc(&name),
            esc(&file),
            esc(&fingerprint)
        );
    }
    s.push_str("</tbody></table>\n");
    for ((name, _, fingerprint), _) in board.experiments() {
        if let Some((path, text)) = experiment_text(board, &name, &fingerprint) {
            let _ = writeln!(
                s,
                "<details class=\"experiment\"><summary>Experiment file of <code>{}</code> (<a href=\"{}\">{}</a>)</summary><pre>{}</pre></details>",
                esc(&name),
                esc(&relative_link(base_dir, &path)),
                esc(&relative_path(base_dir, &path)),
                esc(&text)
            );
        }
    }
    s.push_str("<h3>Revisions</h3>\n");
    s.push_str("<table class=\"revisions\"><thead><tr><th>git revision</th><th>dmlbench</th><th>records</th></tr></thead>\n<tbody>\n");
    for ((revision, version), count) in board.revisions() {
        let _ = writeln!(
            s,
            "<tr><td><code>{}</code></td><td>{}</td><td class=\"num\">{count}</td></tr>",
            esc(&revision),
            esc(&version)
        );
    }
    s.push_str("</tbody></table>\n<h3>Environments</h3>\n");
    s.push_str("<table class=\"environments\"><thead><tr><th>CPU</th><th>threads</th><th>backend</th><th>device</th><th>GPU</th><th>OS</th><th>records</th></tr></thead>\n<tbody>\n");
    for (env, count) in board.environments() {
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{count}</td></tr>",
            esc(&env.cpu),
            env.threads,
            esc(&env.backend),
            esc(&env.device),
            esc(env.gpu.as_deref().unwrap_or(text::MISSING)),
            esc(&env.os)
        );
    }
    s.push_str("</tbody></table>\n");
    let _ = writeln!(s, "<details class=\"records\"><summary>All {} records</summary>", board.record_count());
    s.push_str("<table class=\"records\"><thead><tr><th>record</th><th>status</th><th>config fingerprint</th><th>git revision</th></tr></thead>\n<tbody>\n");
    for (path, record) in &board.records {
        let status = match &record.status {
            CellStatus::Completed => "completed".to_string(),
            CellStatus::Running => format!("running: epoch {}", record.epochs.len()),
            CellStatus::Failed { reason } => format!("failed: {}", short_reason(reason, Some(REASON_CHARS))),
        };
        let _ = writeln!(
            s,
            "<tr><td><a href=\"{}\">{}</a></td><td>{}</td><td><code>{}</code></td><td><code>{}</code></td></tr>",
            esc(&relative_link(base_dir, path)),
            esc(&relative_path(base_dir, path)),
            esc(&status),
            esc(&record.config_fingerprint),
            esc(&record.environment.git_revision)
        );
    }
    s.push_str("</tbody></table>\n</details>\n");
    if !board.superseded.is_empty() {
        s.push_str("<h3>Superseded records</h3>\n<p class=\"note\">Older records of a cell that has a newer record; not in the tables.</p>\n<ul>\n");
        for sup in &board.superseded {
            let _ = writeln!(
                s,
                "<li><a href=\"{}\">{}</a>: superseded by <a href=\"{}\">{}</a>{}</li>",
                esc(&relative_link(base_dir, &sup.path)),
                esc(&relative_path(base_dir, &sup.path)),
                esc(&relative_link(base_dir, &sup.kept)),
                esc(&relative_path(base_dir, &sup.kept)),
                if sup.fingerprint_differs { " (the experiment fingerprints differ)" } else { "" }
            );
        }
        s.push_str("</ul>\n");
    }
    s.push_str("</section>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{completed, failed, running};

    fn board() -> Leaderboard {
        Leaderboard::from_records(vec![
            completed("cub", "default", "cross_entropy", None, 0, &[0.50, 0.60], 0.31),
            completed("cub", "default", "cross_entropy", None, 1, &[0.52, 0.62], 0.31),
            completed("cub", "default", "contrastive", Some("batch_hard"), 0, &[0.40, 0.55], 0.3),
            running("cub", "default", "snca", None, 0, 1, 4),
            failed(
                "cub",
                "default",
                "triplet_margin",
                Some("semihard"),
                0,
                "plugin <triplet_margin>: NaN & worse\nstack line 2",
            ),
        ])
    }

    #[test]
    fn page_is_self_contained_and_escaped() {
        let page = render(&board(), Path::new("results"));
        assert!(page.starts_with("<!DOCTYPE html>") && page.ends_with("</html>\n"));
        for external in ["<script", "src=", "http://", "https://", "@import", "url("] {
            assert!(!page.contains(external), "the page references something external: {external}");
        }
        // The failure reason is escaped, with its full text in the details.
        assert!(page.contains("plugin &lt;triplet_margin&gt;: NaN &amp; worse\nstack line 2</pre>"));
        assert!(!page.contains("<triplet_margin>"));
        // One scatter and one line chart for the table.
        assert_eq!(page.matches("<svg").count(), 2);
        assert!(page.contains("<tr class=\"running\" data-method=\"snca\">"));
        assert!(page.contains("<a href=\"default/cross_entropy-seed1.ron\" title=\"record of seed 1\">1</a>"));
        assert!(page.contains("running: epoch 1/4"));
    }

    #[test]
    fn rendering_is_deterministic_and_independent_of_input_order() {
        let mut records = board().records;
        let forward = render(&Leaderboard::from_records(records.clone()), Path::new("results"));
        records.reverse();
        assert_eq!(forward, render(&Leaderboard::from_records(records), Path::new("results")));
    }
}
