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
}
