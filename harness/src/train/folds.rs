//! Cross-validated cells (`dataset.validation: KFold(folds: k)`, MLRC's protocol): each seed
//! of a grid entry trains once per fold, on the other folds' classes, validating on its own.
//! A fold run that completes leaves its selected model's test embeddings beside its record
//! (`embeddings/<fold id>.npy`); once every fold has, the record of the cell itself
//! (`<cell id>.ron`) is written from them:
//!
//! - `final_metrics`, and `folds.concatenated`: the test metrics of the k models' embeddings,
//!   each row L2-normalised per model, then concatenated (k·d dimensions; MLRC's
//!   "concatenated" numbers). Normalising first gives each model the same weight in the
//!   distance whatever the scale of its embeddings.
//! - `folds.separate`: the mean of the k models' own test metrics (MLRC's "separate").
//! - epochs: the mean over the folds of each epoch's loss, timing and metrics, so the
//!   leaderboard's time per epoch and curves read as for any cell.
//!
//! Writing the combined record is idempotent (the same fold records give the same bytes), so
//! both the process that completes the last fold (a cluster task) and every later
//! `dmlbench run` may do it; a combined record as new as its folds' is kept as it is, so the
//! embeddings (working files, left out of version control) are needed only once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use dmlbench_datasets::npy;
use dmlbench_eval::{EvalInput, EvalOptions, Metrics, evaluate, l2_normalised};
use dmlbench_record::{
    CellKey, CellRecord, CellStatus, EpochRecord, FoldSummary, Selection, Timing, fingerprint, write_atomic,
};

use crate::experiment::plan::Plan;

/// A model's test embeddings: the test split (or In-Shop's queries) and, for query/gallery
/// data, the gallery; row-major, `dim` columns.
pub struct TestEmbeddings {
    /// Embedding size.
    pub dim: usize,
    /// Test (query) rows.
    pub query: Vec<f32>,
    /// Their labels.
    pub query_labels: Vec<i64>,
    /// Gallery rows and labels, for query/gallery data.
    pub gallery: Option<(Vec<f32>, Vec<i64>)>,
}

/// The files of a fold run's test embeddings under `experiment_dir`: embeddings and labels of
/// the queries, then of the gallery.
fn embedding_files(experiment_dir: &Path, key: &CellKey) -> [PathBuf; 4] {
    let base = experiment_dir.join("embeddings").join(key.id());
    let with = |suffix: &str| PathBuf::from(format!("{}{suffix}", base.display()));
    [with(".npy"), with(".labels.npy"), with(".gallery.npy"), with(".gallery-labels.npy")]
}

/// Writes a fold run's test embeddings (each file through a temporary name, so a killed
/// process never leaves a partial one under the final name).
pub fn save_test_embeddings(experiment_dir: &Path, key: &CellKey, embeddings: &TestEmbeddings) -> anyhow::Result<()> {
    let [query, query_labels, gallery, gallery_labels] = embedding_files(experiment_dir, key);
    let d = embeddings.dim;
    let rows = |data: &[f32]| npy::embeddings_bytes(data.len() / d.max(1), d, data);
    let mut files = vec![(query, rows(&embeddings.query)), (query_labels, npy::labels_bytes(&embeddings.query_labels))];
    if let Some((data, labels)) = &embeddings.gallery {
        files.extend([(gallery, rows(data)), (gallery_labels, npy::labels_bytes(labels))]);
    }
    for (path, bytes) in files {
        write_atomic(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Reads what [`save_test_embeddings`] wrote.
pub fn load_test_embeddings(experiment_dir: &Path, key: &CellKey) -> anyhow::Result<TestEmbeddings> {
    let [query, query_labels, gallery, gallery_labels] = embedding_files(experiment_dir, key);
    let (rows, labels) = npy::read_embeddings_and_labels(&query, &query_labels)?;
    let gallery = if gallery.exists() {
        let (g, gl) = npy::read_embeddings_and_labels(&gallery, &gallery_labels)?;
        anyhow::ensure!(g.d == rows.d, "{}: {} columns, the queries have {}", gallery.display(), g.d, rows.d);
        Some((g.data, gl))
    } else {
        None
    };
    Ok(TestEmbeddings { dim: rows.d, query: rows.data, query_labels: labels, gallery })
}

/// The evaluation settings of `plan` for a cell of `seed` (the seed drives k-means).
pub fn eval_options(plan: &Plan, seed: u64) -> EvalOptions {
    let spec = &plan.spec.evaluation;
    EvalOptions { k: plan.k.clone(), distance: spec.distance, cluster: spec.cluster, seed, ..EvalOptions::default() }
}

/// Test metrics of `embeddings` with `plan`'s settings.
pub fn evaluate_embeddings(plan: &Plan, seed: u64, embeddings: &TestEmbeddings) -> anyhow::Result<Metrics> {
    let d = embeddings.dim;
    let input = match &embeddings.gallery {
        None => EvalInput::self_retrieval(&embeddings.query, &embeddings.query_labels, d),
        Some((gallery, gallery_labels)) => {
            EvalInput::query_gallery(&embeddings.query, &embeddings.query_labels, gallery, gallery_labels, d)
        }
    };
    Ok(evaluate(&input, &eval_options(plan, seed))?)
}

/// Each model's rows L2-normalised, then side by side: row i of the result is row i of every
/// model in turn.
fn concatenate(parts: &[&[f32]], dims: &[usize]) -> Vec<f32> {
    let rows = parts.first().map_or(0, |p| p.len() / dims[0].max(1));
    let normalised: Vec<Vec<f32>> = parts.iter().zip(dims).map(|(part, &d)| l2_normalised(part, d)).collect();
    let mut out = Vec::with_capacity(rows * dims.iter().sum::<usize>());
    for i in 0..rows {
        for (part, &d) in normalised.iter().zip(dims) {
            out.extend_from_slice(&part[i * d..(i + 1) * d]);
        }
    }
    out
}

/// The concatenated embeddings of the fold models ([`concatenate`], gallery too).
pub fn concatenate_models(models: &[TestEmbeddings]) -> anyhow::Result<TestEmbeddings> {
    let first = models.first().context("no fold model to combine")?;
    let dims: Vec<usize> = models.iter().map(|m| m.dim).collect();
    for (f, m) in models.iter().enumerate() {
        anyhow::ensure!(
            m.query_labels == first.query_labels && m.query.len() == m.query_labels.len() * m.dim,
            "fold {f}'s test embeddings are of other images than fold 0's"
        );
        anyhow::ensure!(
            m.gallery.as_ref().map(|g| &g.1) == first.gallery.as_ref().map(|g| &g.1),
            "fold {f}'s gallery embeddings are of other images than fold 0's"
        );
    }
    let query: Vec<&[f32]> = models.iter().map(|m| m.query.as_slice()).collect();
    let gallery = match &first.gallery {
        None => None,
        Some((_, labels)) => {
            let parts: Vec<&[f32]> =
                models.iter().map(|m| m.gallery.as_ref().expect("checked above").0.as_slice()).collect();
            Some((concatenate(&parts, &dims), labels.clone()))
        }
    };
    Ok(TestEmbeddings {
        dim: dims.iter().sum(),
        query: concatenate(&query, &dims),
        query_labels: first.query_labels.clone(),
        gallery,
    })
}

/// The mean of several runs' metrics (at least one): every rate averaged; NMI and AMI when
/// all have them.
pub fn mean_metrics(all: &[&Metrics]) -> Metrics {
    let n = all.len().max(1) as f64;
    let mean = |get: &dyn Fn(&Metrics) -> f64| all.iter().map(|m| get(m)).sum::<f64>() / n;
    let optional = |get: &dyn Fn(&Metrics) -> Option<f64>| {
        all.iter().map(|m| get(m)).collect::<Option<Vec<f64>>>().map(|v| v.iter().sum::<f64>() / n)
    };
    let first = *all.first().expect("the mean of at least one run's metrics");
    Metrics {
        recall_at_k: first
            .recall_at_k
            .keys()
            .map(|&k| (k, mean(&|m| m.recall_at_k.get(&k).copied().unwrap_or(0.0))))
            .collect(),
        precision_at_1: mean(&|m| m.precision_at_1),
        r_precision: mean(&|m| m.r_precision),
        map_at_r: mean(&|m| m.map_at_r),
        nmi: optional(&|m| m.nmi),
        ami: optional(&|m| m.ami),
        queries: first.queries,
        skipped_queries: first.skipped_queries,
    }
}

/// Each epoch's mean over the folds (those that recorded it).
fn mean_epochs(folds: &[CellRecord]) -> Vec<EpochRecord> {
    let epochs = folds.iter().map(|r| r.epochs.len()).min().unwrap_or(0);
    (0..epochs)
        .map(|e| {
            let all: Vec<&EpochRecord> = folds.iter().map(|r| &r.epochs[e]).collect();
            let n = all.len() as f64;
            let mean = |get: &dyn Fn(&EpochRecord) -> f64| all.iter().map(|r| get(r)).sum::<f64>() / n;
            let metrics = |get: &dyn Fn(&EpochRecord) -> Option<&Metrics>| {
                all.iter().map(|r| get(r)).collect::<Option<Vec<&Metrics>>>().map(|m| mean_metrics(&m))
            };
            let mut plugin_stats = BTreeMap::new();
            for key in all[0].plugin_stats.keys() {
                if all.iter().all(|r| r.plugin_stats.contains_key(key)) {
                    plugin_stats.insert(key.clone(), mean(&|r| r.plugin_stats[key]));
                }
            }
            EpochRecord {
                epoch: all[0].epoch,
                loss: mean(&|r| r.loss),
                images: all[0].images,
                images_per_second: mean(&|r| r.images_per_second),
                timing: Timing {
                    data_s: mean(&|r| r.timing.data_s),
                    forward_s: mean(&|r| r.timing.forward_s),
                    miner_s: mean(&|r| r.timing.miner_s),
                    loss_s: mean(&|r| r.timing.loss_s),
                    backward_s: mean(&|r| r.timing.backward_s),
                    optimizer_s: mean(&|r| r.timing.optimizer_s),
                    eval_s: mean(&|r| r.timing.eval_s),
                    total_s: mean(&|r| r.timing.total_s),
                },
                test: metrics(&|r| r.test.as_ref()),
                validation: metrics(&|r| r.validation.as_ref()),
                plugin_stats,
            }
        })
        .collect()
}

/// The record of the cross-validated cell `key` (without a fold) from its fold runs'
/// `records` (fold 0 first, all completed) and their test embeddings `models`.
pub fn combined_record(
    plan: &Plan,
    key: &CellKey,
    records: &[CellRecord],
    models: &[TestEmbeddings],
) -> anyhow::Result<CellRecord> {
    let first = records.first().context("no fold record to combine")?;
    let finals: Vec<&Metrics> = records
        .iter()
        .map(|r| r.final_metrics.as_ref().context("a completed fold without metrics"))
        .collect::<Result<_, _>>()?;
    let concatenated = evaluate_embeddings(plan, key.seed, &concatenate_models(models)?)?;
    let initial: Option<Vec<&Metrics>> = records.iter().map(|r| r.initial_test.as_ref()).collect();
    let fingerprints: Vec<&str> = records.iter().map(|r| r.config_fingerprint.as_str()).collect();
    let mut dataset = first.dataset.clone();
    dataset.validation_classes.clear();
    // Fold 0's configuration, less its fold: what every fold shares.
    let config: String = first
        .config
        .lines()
        .filter(|line| !line.trim_start().starts_with("fold: Some("))
        .map(|line| format!("{line}\n"))
        .collect();
    Ok(CellRecord {
        cell: key.clone(),
        config: config.trim_end().to_string(),
        config_fingerprint: fingerprint(fingerprints.join("\n").as_bytes()),
        dataset,
        status: CellStatus::Completed,
        initial_test: initial.map(|m| mean_metrics(&m)),
        epochs: mean_epochs(records),
        final_metrics: Some(concatenated.clone()),
        // Each fold chose its own epoch.
        selection: match &first.selection {
            Selection::Best { metric, .. } => Selection::Best { metric: *metric, epoch: None },
            Selection::Last => Selection::Last,
        },
        peak_rss_bytes: records.iter().map(|r| r.peak_rss_bytes).max().unwrap_or(0),
        peak_device_bytes: records.iter().filter_map(|r| r.peak_device_bytes).max(),
        started_unix_s: records.iter().map(|r| r.started_unix_s).min().unwrap_or(0),
        updated_unix_s: records.iter().map(|r| r.updated_unix_s).max().unwrap_or(0),
        resumed: records.iter().map(|r| r.resumed).sum(),
        folds: Some(FoldSummary {
            count: records.len(),
            cells: records.iter().map(|r| r.cell.id()).collect(),
            separate: mean_metrics(&finals),
            concatenated,
        }),
        ..first.clone()
    })
}

/// Writes the record of the cross-validated cell `key` (without a fold) when every one of
/// its fold runs in `plan` has completed; returns it, or `None` while some fold has not.
pub fn combine_if_complete(plan: &Plan, experiment_dir: &Path, key: &CellKey) -> anyhow::Result<Option<CellRecord>> {
    let mut fold_keys: Vec<&CellKey> =
        plan.cells.iter().map(|c| &c.key).filter(|k| k.fold.is_some() && k.without_fold() == *key).collect();
    fold_keys.sort_by_key(|k| k.fold);
    if fold_keys.is_empty() {
        return Ok(None);
    }
    let mut records = Vec::new();
    for fold_key in &fold_keys {
        let path = experiment_dir.join(format!("{}.ron", fold_key.id()));
        match CellRecord::load(&path) {
            Ok(record) if record.status == CellStatus::Completed && record.final_metrics.is_some() => {
                records.push(record)
            }
            _ => return Ok(None),
        }
    }
    // A combined record already written from these very fold records stays: the embeddings
    // behind it are working files, which a copy of the results (a commit) may not hold.
    let path = experiment_dir.join(format!("{}.ron", key.id()));
    let newest = records.iter().map(|r| r.updated_unix_s).max();
    let ids: Vec<String> = fold_keys.iter().map(|k| k.id()).collect();
    if let Ok(existing) = CellRecord::load(&path)
        && existing.folds.as_ref().is_some_and(|f| f.cells == ids)
        && Some(existing.updated_unix_s) == newest
    {
        return Ok(Some(existing));
    }
    let models = fold_keys
        .iter()
        .map(|k| load_test_embeddings(experiment_dir, k).with_context(|| format!("the test embeddings of {}", k.id())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let record = combined_record(plan, key, &records, &models)?;
    record.save(&path)?;
    Ok(Some(record))
}

/// [`combine_if_complete`] for every cross-validated cell of `plan`.
pub fn combine_all(plan: &Plan, experiment_dir: &Path) -> anyhow::Result<Vec<CellRecord>> {
    let mut keys: Vec<CellKey> =
        plan.cells.iter().filter(|c| c.key.fold.is_some()).map(|c| c.key.without_fold()).collect();
    keys.dedup();
    let mut combined = Vec::new();
    for key in keys {
        combined.extend(combine_if_complete(plan, experiment_dir, &key)?);
    }
    Ok(combined)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_normalised_per_model_then_put_side_by_side() {
        // Two models, two rows: d = 2 and d = 1.
        let a = [3.0f32, 4.0, 0.0, 2.0];
        let b = [-5.0f32, 0.5];
        let got = concatenate(&[&a, &b], &[2, 1]);
        assert_eq!(got, vec![0.6, 0.8, -1.0, 0.0, 1.0, 1.0]);
    }

    #[test]
    fn the_mean_of_metrics_averages_every_rate() {
        let m = |r1: f64, map: f64, nmi: Option<f64>| Metrics {
            recall_at_k: [(1, r1), (2, r1 + 0.1)].into(),
            precision_at_1: r1,
            r_precision: map + 0.1,
            map_at_r: map,
            nmi,
            ami: nmi,
            queries: 10,
            skipped_queries: 0,
        };
        let mean = mean_metrics(&[&m(0.2, 0.1, Some(0.5)), &m(0.4, 0.3, Some(0.7))]);
        assert!((mean.recall_at_k[&1] - 0.3).abs() < 1e-12 && (mean.recall_at_k[&2] - 0.4).abs() < 1e-12);
        assert!((mean.map_at_r - 0.2).abs() < 1e-12 && (mean.r_precision - 0.3).abs() < 1e-12);
        assert!((mean.nmi.unwrap() - 0.6).abs() < 1e-12);
        assert_eq!(mean_metrics(&[&m(0.2, 0.1, Some(0.5)), &m(0.4, 0.3, None)]).nmi, None);
    }
}
