//! The leaderboard as JSON, for scripts: the same tables as the other formats, with raw
//! fractions (not percentages), interval half-widths, the best marks, and every cell's status
//! and record path (relative to the output's directory). Keys are sorted, so the text is deterministic.
//!
//! Shape: `{"format": "dmlbench-leaderboard", "version": 1, "tables": [{"dataset", "recipe",
//! "columns": ["recall_at_1", …], "rows": [{"method", "metrics": {"recall_at_1": {"mean", "sd",
//! "half_width", "n", "best"}, …}, "cells": [{"seed", "status", "reason", "record", …}], …}]}],
//! "experiments": […], "revisions": […], "environments": […], "superseded": […]}`.
//! `sd` and `half_width` are `null` for a single seed; a metric no seed measured is `null`.

use std::path::Path;

use serde_json::{Map, Value, json};

use crate::diff::{BoardDiff, RowDiff, TableDiff};
use crate::paths::relative_path;
use crate::stats::Summary;
use crate::table::{BoardTable, Leaderboard, Row};
use dmlbench_record::CellStatus;

/// Version of the JSON shape.
pub const JSON_VERSION: u32 = 1;

/// Renders the leaderboard as pretty JSON; record paths are relative to `base_dir`.
pub fn render(board: &Leaderboard, base_dir: &Path) -> String {
    let tables: Vec<Value> = board.tables.iter().map(|t| table(t, base_dir)).collect();
    let experiments: Vec<Value> = board
        .experiments()
        .into_iter()
        .map(|((name, file, fingerprint), records)| json!({"name": name, "file": file, "fingerprint": fingerprint, "records": records}))
        .collect();
    let revisions: Vec<Value> = board
        .revisions()
        .into_iter()
        .map(|((git_revision, dmlbench_version), records)| json!({"git_revision": git_revision, "dmlbench_version": dmlbench_version, "records": records}))
        .collect();
    let environments: Vec<Value> = board
        .environments()
        .into_iter()
        .map(|(e, records)| json!({"cpu": e.cpu, "threads": e.threads, "backend": e.backend, "device": e.device, "gpu": e.gpu, "os": e.os, "records": records}))
        .collect();
    let superseded: Vec<Value> = board
        .superseded
        .iter()
        .map(|s| json!({"record": relative_path(base_dir, &s.path), "kept": relative_path(base_dir, &s.kept), "fingerprint_differs": s.fingerprint_differs}))
        .collect();
    let value = json!({
        "format": "dmlbench-leaderboard",
        "version": JSON_VERSION,
        "confidence": crate::stats::CONFIDENCE,
        "records": board.record_count(),
        "tables": tables,
        "experiments": experiments,
        "revisions": revisions,
        "environments": environments,
        "superseded": superseded,
    });
    let mut text = serde_json::to_string_pretty(&value).expect("a JSON value always serialises");
    text.push('\n');
    text
}

fn summary(s: &Summary) -> Value {
    json!({"mean": s.mean, "sd": s.sd, "half_width": s.half_width, "n": s.n})
}

fn table(table: &BoardTable, base_dir: &Path) -> Value {
    json!({
        "dataset": table.dataset,
        "recipe": table.recipe,
        "columns": table.columns.iter().map(|c| c.key()).collect::<Vec<_>>(),
        "folds": table.folds,
        "data": table.data.iter().map(|d| json!({
            "format": d.format, "root": d.root, "fingerprint": d.fingerprint,
            "train_images": d.train_images, "train_classes": d.train_classes,
            "test_images": d.test_images, "test_classes": d.test_classes,
        })).collect::<Vec<_>>(),
        "rows": table.rows.iter().map(|r| row(table, r, base_dir)).collect::<Vec<_>>(),
        "mining": table.mining_tables().iter().map(|m| json!({
            "loss": m.loss,
            "methods": m.rows.iter().map(|r| r.method.clone()).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

fn row(table: &BoardTable, row: &Row, base_dir: &Path) -> Value {
    let mut metrics = Map::new();
    for ((column, s), best) in table.columns.iter().zip(&row.metrics).zip(&row.best) {
        let value = match s {
            Some(s) => {
                let mut v = summary(s);
                v["best"] = json!(best);
                v
            }
            None => Value::Null,
        };
        metrics.insert(column.key(), value);
    }
    let cells: Vec<Value> = row
        .cells
        .iter()
        .map(|c| {
            let (status, reason) = match &c.status {
                CellStatus::Completed => ("completed", None),
                CellStatus::Running => ("running", None),
                CellStatus::Failed { reason } => ("failed", Some(reason.clone())),
            };
            json!({
                "seed": c.seed,
                "status": status,
                "reason": reason,
                "record": relative_path(base_dir, &c.path),
                "epochs_done": c.epochs_done,
                "epochs_planned": c.epochs_planned,
                "final_metrics": c.final_metrics,
            })
        })
        .collect();
    json!({
        "method": row.method,
        "loss": row.loss,
        "miner": row.miner,
        "variant": row.variant,
        "status": row.state().name(),
        "status_line": row.status_line(None),
        "seeds": row.completed_seeds(),
        "metrics": metrics,
        "epoch_seconds": row.epoch_seconds.as_ref().map(summary),
        "images_per_second": row.images_per_second.as_ref().map(summary),
        "peak_rss_bytes": row.peak_rss_bytes,
        "peak_device_bytes": row.peak_device_bytes,
        "epochs": row.epochs.map(|(min, max)| json!({"min": min, "max": max})),
        "backends": row.backends,
        "mining_time_share": row.mining_time_share.as_ref().map(summary),
        "mined_tuples": row.mined_tuples.as_ref().map(summary),
        "nonzero_share": row.nonzero_share.as_ref().map(summary),
        "curve": row.curve.iter().map(|(epoch, s)| json!({"epoch": epoch, "mean": s.mean, "n": s.n})).collect::<Vec<_>>(),
        "cells": cells,
    })
}

/// Version of the diff's JSON shape.
pub const DIFF_JSON_VERSION: u32 = 1;

/// Renders how the leaderboard moved from `base` to `head` as pretty JSON (labels naming the
/// two sides). Shape: `{"format": "dmlbench-leaderboard-diff", "version": 1, "base": {"label",
/// "records"}, "head": {…}, "regressions": [{"dataset", "recipe", "method"}], "tables":
/// [{"dataset", "recipe", "presence", "columns", "unchanged": [method, …], "rows": [{"method",
/// "presence", "metrics": {"recall_at_1": {"base", "head", "difference", "overlap",
/// "verdict"}, …}, "configuration_changed": [seed, …], "plugins_changed": ["loss:spce"],
/// "build_changed", "status": {"base", "head"}, "epoch_seconds": {"base", "head", "change"},
/// "peak_rss_bytes": {…}, "peak_device_bytes": {…}}]}]}`. Summaries are raw fractions as in
/// the leaderboard's JSON; `overlap` is `null` when a side is missing, `change` is head over
/// base less one.
pub fn render_diff(diff: &BoardDiff, base: &str, head: &str) -> String {
    let regressions: Vec<Value> = diff
        .regressions()
        .iter()
        .map(|(t, r)| json!({"dataset": t.dataset, "recipe": t.recipe, "method": r.method}))
        .collect();
    let value = json!({
        "format": "dmlbench-leaderboard-diff",
        "version": DIFF_JSON_VERSION,
        "confidence": crate::stats::CONFIDENCE,
        "base": {"label": base, "records": diff.base_records},
        "head": {"label": head, "records": diff.head_records},
        "regressions": regressions,
        "tables": diff.tables.iter().map(table_diff).collect::<Vec<_>>(),
    });
    let mut text = serde_json::to_string_pretty(&value).expect("a JSON value always serialises");
    text.push('\n');
    text
}

fn table_diff(table: &TableDiff) -> Value {
    json!({
        "dataset": table.dataset,
        "recipe": table.recipe,
        "presence": table.presence.name(),
        "columns": table.columns.iter().map(|c| c.key()).collect::<Vec<_>>(),
        "rows": table.rows.iter().map(row_diff).collect::<Vec<_>>(),
        "unchanged": table.unchanged,
    })
}

fn row_diff(row: &RowDiff) -> Value {
    let mut metrics = Map::new();
    for m in &row.metrics {
        metrics.insert(
            m.metric.key(),
            json!({
                "base": m.base.as_ref().map(summary),
                "head": m.head.as_ref().map(summary),
                "difference": m.difference(),
                "overlap": m.overlap(),
                "verdict": m.verdict().key(),
            }),
        );
    }
    let sides = |figure: fn(&Row) -> Value| {
        (row.base.as_ref().map(figure).unwrap_or(Value::Null), row.head.as_ref().map(figure).unwrap_or(Value::Null))
    };
    let (base_seconds, head_seconds) = sides(|r| json!(r.epoch_seconds.map(|s| s.mean)));
    let (base_rss, head_rss) = sides(|r| json!(r.peak_rss_bytes));
    let (base_device, head_device) = sides(|r| json!(r.peak_device_bytes));
    let (base_status, head_status) = sides(|r| json!(r.status_line(None)));
    json!({
        "method": row.method,
        "presence": row.presence().name(),
        "metrics": metrics,
        "configuration_changed": row.configuration_changed,
        "plugins_changed": row.plugins_changed,
        "build_changed": row.build_changed,
        "status": {"base": base_status, "head": head_status},
        "epoch_seconds": {"base": base_seconds, "head": head_seconds, "change": row.epoch_seconds_change()},
        "peak_rss_bytes": {"base": base_rss, "head": head_rss, "change": row.peak_rss_change()},
        "peak_device_bytes": {"base": base_device, "head": head_device, "change": row.peak_device_change()},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{completed, failed};

    #[test]
    fn raw_fractions_intervals_and_reasons() {
        let board = Leaderboard::from_records(vec![
            completed("cub", "default", "cross_entropy", None, 0, &[0.60], 0.31),
            completed("cub", "default", "cross_entropy", None, 1, &[0.62], 0.31),
            completed("cub", "default", "cross_entropy", None, 2, &[0.67], 0.31),
            failed("cub", "default", "triplet_margin", Some("semihard"), 0, "first\nsecond"),
        ]);
        let v: Value = serde_json::from_str(&render(&board, Path::new("results"))).unwrap();
        let rows = &v["tables"][0]["rows"];
        let r1 = &rows[0]["metrics"]["recall_at_1"];
        // 0.60, 0.62, 0.67: mean 0.63, s = 0.0360555, h = 4.302653 · s / √3 = 0.0895669.
        assert!((r1["mean"].as_f64().unwrap() - 0.63).abs() < 1e-12);
        assert!((r1["sd"].as_f64().unwrap() - 0.036_055_5).abs() < 1e-7);
        assert!((r1["half_width"].as_f64().unwrap() - 0.089_566_9).abs() < 1e-6);
        assert_eq!((r1["n"].as_u64(), r1["best"].as_bool()), (Some(3), Some(true)));
        assert_eq!(rows[1]["method"], "triplet_margin+semihard");
        assert_eq!(rows[1]["metrics"]["recall_at_1"], Value::Null);
        assert_eq!(rows[1]["cells"][0]["reason"], "first\nsecond");
        assert_eq!(rows[1]["cells"][0]["record"], "default/triplet_margin+semihard-seed0.ron");
        assert_eq!(v["tables"][0]["columns"], json!(["recall_at_1", "recall_at_2", "map_at_r", "r_precision", "nmi"]));
    }

    #[test]
    fn a_diff_as_json() {
        let (base, head) = crate::fixtures::moved_loss();
        let v: Value = serde_json::from_str(&render_diff(&BoardDiff::between(&base, &head), "results", "new")).unwrap();
        assert_eq!(v["format"], "dmlbench-leaderboard-diff");
        assert_eq!(v["regressions"], json!([{"dataset": "cub", "recipe": "default", "method": "spce"}]));
        let table = &v["tables"][0];
        assert_eq!((table["presence"].as_str(), &table["unchanged"]), (Some("both"), &json!(["cross_entropy"])));
        let rows = table["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0]["plugins_changed"], json!(["loss:spce"]));
        let r1 = &rows[0]["metrics"]["recall_at_1"];
        // 0.63 → 0.41; half-widths 0.0895669 and 4.302653 · 0.01 / √3 = 0.0248414.
        assert!((r1["difference"].as_f64().unwrap() + 0.22).abs() < 1e-12);
        assert!((r1["base"]["half_width"].as_f64().unwrap() - 0.089_566_9).abs() < 1e-6);
        assert!((r1["head"]["half_width"].as_f64().unwrap() - 0.024_841_4).abs() < 1e-6);
        assert_eq!((r1["overlap"].as_bool(), r1["verdict"].as_str()), (Some(false), Some("lower")));
        assert_eq!(rows[0]["epoch_seconds"], json!({"base": 300.0, "head": 300.0, "change": 0.0}));
    }
}
