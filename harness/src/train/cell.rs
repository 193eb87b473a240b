//! One cell, start to finish, in the current process: data, model, plugins, the epoch loop,
//! evaluation, checkpoints and the record.
//!
//! The step for each batch:
//! images → backbone (autodiff) → embeddings → host → miner (if any) → loss plugin (value
//! and dL/dZ) → backward from the embeddings with that gradient → optimiser step (base lr ×
//! schedule factor) → the loss plugin's own `step(factor)`.
//!
//! After each epoch the checkpoint is written, with a copy of the record, then the record file
//! (both atomically). A cell that is run again resumes from the checkpoint if its configuration
//! is unchanged, and takes its finished epochs from the checkpoint's copy of the record; a
//! checkpoint that cannot be restored is set aside with a warning naming it, and the cell starts
//! over.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use dmlbench_datasets::cache::ResizeCache;
use dmlbench_datasets::{ImageBatch, Loader, SplitIndex};
use dmlbench_models::burn::optim::ModuleOptimizer;
use dmlbench_models::burn::prelude::Device;
use dmlbench_models::{EmbeddingModel, load_checkpoint, save_checkpoint};
use serde::{Deserialize, Serialize};

use super::checkpoint::{
    CheckpointDir, CorruptCheckpoint, MEMORY_IN_CHECKPOINT, Plugins, Progress, RECORD_IN_CHECKPOINT, carry_over,
    restore,
};
use super::data::{self, CellData, Evaluation};
use super::device_memory::{self, PeakSampler};
use super::embed::embed_split;
use super::environment;
use super::folds::{self, TestEmbeddings};
use super::memory::CrossBatchMemory;
use super::optimizer::{build, number_parameters};
use super::sampler::epoch_batches;
use super::schedule::lr_factor;
use super::stall::StallWatch;
use super::unix_seconds;
use crate::experiment::spec::SamplerSpec;
use crate::experiment::{Cell, Plan};
use dmlbench_eval::{EvalInput, Metrics, evaluate};
use dmlbench_host::{CreateOptions, LossHandle, MinerHandle, PluginInfo, PluginKind, Registry};
use dmlbench_record::{
    CellRecord, CellStatus, DatasetInfo, EpochRecord, ExperimentRef, MINED_TUPLES_STAT, PluginRef,
    RECORD_FORMAT_VERSION, Selection, Timing, remove_temporaries,
};

/// What a running cell reports, one JSON line each on the cell process's stdout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Training starts (or resumes after `resumed_epochs` finished epochs).
    Started {
        /// Total epochs.
        epochs: usize,
        /// Batches per epoch.
        batches: usize,
        /// Epochs already done (resumed from a checkpoint).
        resumed_epochs: usize,
    },
    /// A batch finished.
    Batch {
        /// 1-based epoch.
        epoch: usize,
        /// Batches done in this epoch.
        batch: usize,
        /// The batch's loss.
        loss: f64,
    },
    /// Evaluation of an epoch starts.
    Evaluating {
        /// 1-based epoch.
        epoch: usize,
    },
    /// An epoch finished.
    Epoch {
        /// 1-based epoch.
        epoch: usize,
        /// Mean training loss.
        loss: f64,
        /// Test Recall@1, when evaluated.
        recall_at_1: Option<f64>,
    },
    /// Another process owns the cell (see [`crate::train::lock`]); this one leaves it alone.
    Busy {
        /// Who owns it.
        owner: String,
    },
    /// Something the user should know that does not stop the cell.
    Warning {
        /// What happened and what was done about it.
        message: String,
    },
}

/// Where a cell's files go.
#[derive(Clone, Debug)]
pub struct CellPaths {
    /// The record.
    pub record: PathBuf,
    /// The checkpoint directory.
    pub checkpoint: CheckpointDir,
    /// The lock of the process that trains the cell ([`super::lock`]).
    pub lock: PathBuf,
}

impl CellPaths {
    /// The files of `cell` under `experiment_dir` (`results/<experiment>`).
    pub fn new(experiment_dir: &Path, cell: &Cell) -> Self {
        let id = cell.key.id();
        let record = experiment_dir.join(format!("{id}.ron"));
        CellPaths {
            lock: super::lock::lock_path(&record),
            record,
            checkpoint: CheckpointDir::new(experiment_dir.join("checkpoints").join(id)),
        }
    }
}

/// Everything a training step touches.
struct Trainer<'a> {
    plan: &'a Plan,
    cell: &'a Cell,
    data: CellData,
    device: Device,
    /// Taken out only while the optimiser steps (burn's step consumes the model).
    model: Option<EmbeddingModel>,
    optimizer: ModuleOptimizer,
    loss: LossHandle,
    miner: Option<MinerHandle>,
    /// The cross-batch memory the loss and miner compare each batch with, if any.
    memory: Option<CrossBatchMemory>,
    cache: Option<Arc<ResizeCache>>,
    record: CellRecord,
    paths: CellPaths,
    progress: Progress,
    /// Whether the epoch just finished is the best so far on validation.
    new_best: bool,
    /// Peak GPU memory of this process, on a GPU backend with NVML.
    device_memory: Option<PeakSampler>,
    /// Told of every finished batch; stops the process when they stop coming.
    stall: &'a StallWatch,
}

/// Tuples of either form: triplets, or positive plus negative pairs.
fn tuple_count(tuples: &dmlbench_tuples::Tuples) -> usize {
    match tuples {
        dmlbench_tuples::Tuples::Triplets(t) => t.len(),
        dmlbench_tuples::Tuples::Pairs(p) => p.positives() + p.negatives(),
    }
}

/// What the steps of one epoch add up.
#[derive(Default)]
struct EpochTotals {
    loss_sum: f64,
    images: usize,
    steps: usize,
    /// Plugin statistic name → (sum, count).
    stat_sums: BTreeMap<String, (f64, usize)>,
    timing: Timing,
}

/// A stopwatch read in laps: each call returns the seconds since the previous one.
struct Lap(Instant);

impl Lap {
    fn lap(&mut self) -> f64 {
        let now = Instant::now();
        let seconds = (now - self.0).as_secs_f64();
        self.0 = now;
        seconds
    }
}

/// Runs `cell` of `plan`, writing its record and checkpoints under `experiment_dir`, and
/// returns the final record (completed or failed). Only errors that prevent writing the
/// record itself are returned as errors.
pub fn run_cell(
    plan: &Plan,
    cell: &Cell,
    registry: &Registry,
    experiment_dir: &Path,
    events: &mut dyn FnMut(Event),
) -> anyhow::Result<CellRecord> {
    // A process killed while writing the record leaves its temporary file; this cell's process
    // is the one that writes this record now.
    let paths = CellPaths::new(experiment_dir, cell);
    remove_temporaries(&paths.record);
    let mut record = empty_record(plan, cell);
    let stall = StallWatch::start(
        Duration::from_secs_f64(plan.spec.training.stall_timeout),
        paths.record.clone(),
        record.clone(),
    );
    // A trainer resumed from the cell's checkpoint when there is one.
    let start = |record: &mut CellRecord| -> anyhow::Result<Trainer> {
        let mut trainer = Trainer::new(plan, cell, registry, paths.clone(), record, &stall)?;
        trainer.resume()?;
        Ok(trainer)
    };
    let mut trainer = start(&mut record);
    if let Err(error) = &trainer
        && let Some(corrupt) = error.downcast_ref::<CorruptCheckpoint>()
    {
        let kept = paths.checkpoint.set_aside()?;
        let message = format!(
            "the checkpoint cannot be restored ({corrupt}); it is kept as {} and the cell starts over",
            kept.display()
        );
        eprintln!("warning: {message}");
        events(Event::Warning { message });
        record = empty_record(plan, cell);
        trainer = start(&mut record);
    }
    let outcome = trainer.and_then(|mut trainer| {
        let result = trainer.train(events);
        trainer.note_peaks();
        record = trainer.record.clone();
        result
    });
    if let Err(error) = outcome {
        record.status = CellStatus::Failed { reason: dmlbench_host::errors::describe(error.as_ref()) };
        record.updated_unix_s = unix_seconds();
        record.peak_rss_bytes = record.peak_rss_bytes.max(environment::peak_rss_bytes());
        record.save(&paths.record)?;
    }
    Ok(record)
}

/// A record of `cell` with no epoch yet, status `Running`.
pub fn empty_record(plan: &Plan, cell: &Cell) -> CellRecord {
    let selection = match plan.selection {
        None => Selection::Last,
        Some(metric) => Selection::Best { metric, epoch: None },
    };
    CellRecord {
        tuning: cell.tuned.clone(),
        validation_only: !plan.spec.evaluation.test,
        folds: None,
        format_version: RECORD_FORMAT_VERSION,
        experiment: ExperimentRef {
            name: plan.spec.name.clone(),
            file: plan.shown(&plan.file),
            fingerprint: plan.file_fingerprint.clone(),
        },
        cell: cell.key.clone(),
        config: cell.config.clone(),
        config_fingerprint: cell.fingerprint.clone(),
        dataset: Default::default(),
        plugins: Vec::new(),
        status: CellStatus::Running,
        initial_test: None,
        epochs: Vec::new(),
        final_metrics: None,
        selection,
        peak_rss_bytes: 0,
        peak_device_bytes: None,
        environment: Default::default(),
        started_unix_s: unix_seconds(),
        updated_unix_s: unix_seconds(),
        resumed: 0,
    }
}

/// An `MPerClass(m)` batch holds `m` images of each of `batch_size / m` classes, so with fewer
/// training classes than that it comes out smaller and an epoch is no longer one pass over the
/// images. The training classes are known only once the dataset is read, hence here.
fn check_batch_fills(sampler: SamplerSpec, batch_size: usize, classes: usize) -> anyhow::Result<()> {
    if let SamplerSpec::MPerClass { m } = sampler {
        let largest = classes * m;
        if batch_size > largest {
            bail!(
                "training.batch_size: {batch_size} cannot be filled by MPerClass(m: {m}) from {classes} training classes, \
                 so an epoch would not be one pass over the images; the largest batch is {largest}"
            );
        }
    }
    Ok(())
}

fn plugin_ref(plan: &Plan, info: &PluginInfo, config: &str) -> PluginRef {
    PluginRef {
        kind: info.kind.to_string(),
        id: info.id.clone(),
        version: info.version.clone(),
        sdk_version: info.sdk_version.clone(),
        config: config.to_string(),
        library: plan.libraries.get(&info.qualified_id()).cloned().unwrap_or_default(),
    }
}

impl<'a> Trainer<'a> {
    /// A trainer of `cell` from its first epoch: data, model, optimiser and plugins, with the
    /// data, environment and plugins written into `record`.
    fn new(
        plan: &'a Plan,
        cell: &'a Cell,
        registry: &Registry,
        paths: CellPaths,
        record: &mut CellRecord,
        stall: &'a StallWatch,
    ) -> anyhow::Result<Self> {
        let spec = &plan.spec;
        let data = data::load(&spec.dataset, &plan.dataset_root, cell.key.fold)?;
        record.dataset = DatasetInfo { root: plan.shown(&plan.dataset_root), ..data.info.clone() };
        check_batch_fills(spec.training.sampler, spec.training.batch_size, data.train.num_classes())?;
        let backend = plan.backend;
        let device = backend.training_device().context("opening the training device")?;
        device.seed(cell.key.seed);
        let model_config = dmlbench_models::ModelConfig { weights: plan.weights.clone(), ..spec.model.clone() };
        let (model, load_report) = model_config.init(&device, cell.key.seed).context("building the model")?;
        if let Some(report) = load_report {
            eprintln!("{report}");
        }
        let model = number_parameters(model);
        record.environment =
            environment::capture(&plan.root, &backend.label(), &spec.training.device, rayon::current_num_threads());
        let device_memory = backend.gpu_index().and_then(|index| match device_memory::nvml_source(index) {
            Ok((source, gpu)) => {
                record.environment.gpu = Some(gpu);
                Some(PeakSampler::start(source, device_memory::SAMPLE_INTERVAL))
            }
            Err(why) => {
                eprintln!("warning: peak GPU memory will not be recorded: {why}");
                None
            }
        });

        let embedding_dim = model.embedding_size();
        let options = |config: &str| CreateOptions {
            config: config.to_string(),
            embedding_dim,
            num_classes: data.train.num_classes(),
            seed: cell.key.seed,
            base_lr: cell.optimizer.lr(),
        };
        let loss_info = registry.get(PluginKind::Loss, &cell.loss.id)?;
        let loss = LossHandle::create(loss_info, &options(&cell.loss.config))?;
        record.plugins = vec![plugin_ref(plan, loss_info, &cell.loss.config)];
        let miner = match &cell.miner {
            Some(choice) => {
                let info = registry.get(PluginKind::Miner, &choice.id)?;
                record.plugins.push(plugin_ref(plan, info, &choice.config));
                Some(MinerHandle::create(info, &options(&choice.config))?)
            }
            None => None,
        };
        let optimizer = build(&cell.optimizer);
        let memory = cell.memory.map(|m| CrossBatchMemory::new(m.size, embedding_dim));

        let progress =
            Progress { fingerprint: cell.fingerprint.clone(), epochs_done: 0, iterations_done: 0, best: None };
        let cache =
            spec.training.cache_images.then(|| Arc::new(ResizeCache::in_memory(data.recipe.train.resize, 8 << 30)));
        Ok(Trainer {
            plan,
            cell,
            data,
            device,
            model: Some(model),
            optimizer,
            loss,
            miner,
            memory,
            cache,
            record: record.clone(),
            paths,
            progress,
            new_best: false,
            device_memory,
            stall,
        })
    }

    /// Continues from the checkpoint when one of this very configuration exists, and clears
    /// any other. Everything a resumed cell continues from comes out of the checkpoint, the
    /// record's finished epochs included, so what the record file holds (lagging, cut short,
    /// missing) never shapes the result. A checkpoint that cannot be restored is a
    /// [`CorruptCheckpoint`] error, after which this trainer must not be used.
    fn resume(&mut self) -> anyhow::Result<()> {
        match self.paths.checkpoint.progress().map_err(CorruptCheckpoint)? {
            Some(saved) if saved.fingerprint == self.cell.fingerprint => {
                let model = self.model.take().expect("the model is only taken during a step");
                let optimizer = std::mem::replace(&mut self.optimizer, build(&self.cell.optimizer));
                let dir = self.paths.checkpoint.dir();
                let plugins =
                    Plugins { loss: &mut self.loss, miner: self.miner.as_mut(), memory: self.memory.as_mut() };
                let (model, optimizer) =
                    restore(dir, &saved, model, optimizer, plugins, &mut self.record).map_err(CorruptCheckpoint)?;
                self.model = Some(model);
                self.optimizer = optimizer;
                self.progress = saved;
            }
            _ => self.paths.checkpoint.clear()?,
        }
        Ok(())
    }

    /// Folds this process's peak host and device memory so far into the record.
    fn note_peaks(&mut self) {
        self.record.peak_rss_bytes = self.record.peak_rss_bytes.max(environment::peak_rss_bytes());
        let device_peak = self.device_memory.as_ref().and_then(PeakSampler::peak);
        self.record.peak_device_bytes = device_memory::combined_peak(self.record.peak_device_bytes, device_peak);
    }

    fn model(&self) -> &EmbeddingModel {
        self.model.as_ref().expect("the model is only taken during a step")
    }

    fn train(&mut self, events: &mut dyn FnMut(Event)) -> anyhow::Result<()> {
        let training = &self.plan.spec.training;
        let labels = self.data.train.labels();
        let batches_per_epoch =
            epoch_batches(training.sampler, &labels, training.batch_size, self.cell.key.seed, 0).len();
        events(Event::Started {
            epochs: training.epochs,
            batches: batches_per_epoch,
            resumed_epochs: self.progress.epochs_done,
        });
        if self.progress.epochs_done == 0 && self.plan.spec.evaluation.test {
            // The untrained network's metrics: the baseline every trained number is read
            // against.
            events(Event::Evaluating { epoch: 0 });
            self.record.initial_test = Some(self.evaluate_test()?);
        }
        for epoch in self.progress.epochs_done..training.epochs {
            let epoch_record = self.train_epoch(epoch, &labels, batches_per_epoch, events)?;
            events(Event::Epoch {
                epoch: epoch + 1,
                loss: epoch_record.loss,
                recall_at_1: epoch_record.test.as_ref().and_then(|m| m.recall_at_k.get(&1).copied()),
            });
            self.record.epochs.push(epoch_record);
            self.progress.epochs_done = epoch + 1;
            if epoch + 1 == training.epochs {
                self.finish()?;
            }
            self.record.updated_unix_s = unix_seconds();
            self.note_peaks();
            // Checkpoint (which keeps its own copy of the record) first, then the record file: a
            // crash in between leaves the record one epoch behind, and the next run rebuilds it
            // from the checkpoint.
            self.save_checkpoint()?;
            self.record.save(&self.paths.record)?;
        }
        if self.record.status == CellStatus::Running {
            // Every epoch was already done (the run stopped after the last checkpoint).
            self.finish()?;
            self.record.save(&self.paths.record)?;
        }
        Ok(())
    }

    fn train_epoch(
        &mut self,
        epoch: usize,
        labels: &[i64],
        batches_per_epoch: usize,
        events: &mut dyn FnMut(Event),
    ) -> anyhow::Result<EpochRecord> {
        let epoch_start = Instant::now();
        let mut totals = EpochTotals::default();
        let mut clock = Lap(Instant::now());
        for batch in self.loader(epoch, labels) {
            let batch = batch.context("reading training images")?;
            totals.timing.data_s += clock.lap();
            let loss = self.train_step(batch, batches_per_epoch, &mut totals, &mut clock)?;
            self.stall.progress();
            events(Event::Batch { epoch: epoch + 1, batch: totals.steps, loss });
        }
        if totals.steps == 0 {
            bail!("epoch {} had no batch of at least 2 images; the training split is too small", epoch + 1);
        }
        let train_seconds = epoch_start.elapsed().as_secs_f64();
        let (test, validation) = self.evaluate_epoch(epoch, &mut totals.timing, events)?;
        self.note_best(epoch, validation.as_ref())?;
        let EpochTotals { loss_sum, images, steps, stat_sums, mut timing } = totals;
        timing.total_s = epoch_start.elapsed().as_secs_f64();
        Ok(EpochRecord {
            epoch: epoch + 1,
            loss: loss_sum / steps as f64,
            images,
            images_per_second: images as f64 / train_seconds.max(1e-9),
            timing,
            test,
            validation,
            plugin_stats: stat_sums.into_iter().map(|(k, (sum, count))| (k, sum / count as f64)).collect(),
        })
    }

    /// The batches of `epoch`, loaded and augmented in the background.
    fn loader(&self, epoch: usize, labels: &[i64]) -> Loader {
        let training = &self.plan.spec.training;
        let mut batches = epoch_batches(training.sampler, labels, training.batch_size, self.cell.key.seed, epoch);
        // A last batch of one image cannot form a pair, and batch norm cannot normalise it.
        batches.retain(|b| b.len() >= 2);
        let loader = Loader::new(
            self.data.train.clone(),
            self.data.recipe.train.clone(),
            batches,
            epoch as u64,
            self.cell.key.seed,
            training.workers,
            training.prefetch,
        );
        match &self.cache {
            Some(cache) => loader.with_cache(cache.clone()),
            None => loader,
        }
    }

    /// One optimisation step on `batch`, timed phase by phase into `totals`; returns the
    /// batch's loss.
    fn train_step(
        &mut self,
        batch: ImageBatch,
        batches_per_epoch: usize,
        totals: &mut EpochTotals,
        clock: &mut Lap,
    ) -> anyhow::Result<f64> {
        let training = &self.plan.spec.training;
        let (n, side) = (batch.len(), batch.side);
        let pass =
            self.model().forward_host(&self.device, &batch.images, [n, 3, side, side]).context("forward pass")?;
        let d = pass.shape().1;
        totals.timing.forward_s += clock.lap();
        // PML's order: the batch joins the memory first, so its references include it.
        if let Some(memory) = self.memory.as_mut() {
            memory.enqueue(pass.embeddings(), &batch.labels);
        }
        let references = self.memory.as_ref().map(CrossBatchMemory::references);
        let mined = match self.miner.as_mut() {
            Some(miner) => Some(miner.mine_against(pass.embeddings(), d, &batch.labels, references.as_ref())?),
            None => None,
        };
        totals.timing.miner_s += clock.lap();
        let tuples = mined.as_ref().map(|m| &m.tuples);
        let out =
            self.loss.forward_backward_against(pass.embeddings(), d, &batch.labels, references.as_ref(), tuples)?;
        totals.timing.loss_s += clock.lap();
        let grads = pass.backward(&out.grad, self.model()).context("backward pass")?;
        totals.timing.backward_s += clock.lap();
        let total_iterations = training.epochs * batches_per_epoch;
        let factor = lr_factor(training.schedule, self.progress.iterations_done, total_iterations, batches_per_epoch);
        let model = self.model.take().expect("the model is only taken during a step");
        self.model = Some(self.optimizer.step(self.cell.optimizer.lr() * factor, model, grads));
        self.loss.step(factor)?;
        totals.timing.optimizer_s += clock.lap();

        self.progress.iterations_done += 1;
        totals.loss_sum += out.loss;
        totals.images += n;
        totals.steps += 1;
        let miner_stats = mined.iter().flat_map(|m| m.stats.iter().map(|(k, v)| (format!("miner.{k}"), *v)));
        // What every miner returned, counted the same way whatever its own statistics say.
        let tuples = mined.iter().map(|m| (MINED_TUPLES_STAT.to_string(), tuple_count(&m.tuples) as f64));
        for (name, value) in out.stats.iter().map(|(k, v)| (format!("loss.{k}"), *v)).chain(miner_stats).chain(tuples) {
            let entry = totals.stat_sums.entry(name).or_insert((0.0, 0));
            entry.0 += value;
            entry.1 += 1;
        }
        let loss = out.loss;
        self.loss.recycle(out.grad);
        Ok(loss)
    }

    /// Test (and validation) metrics after `epoch`, when it is due for evaluation or the last.
    fn evaluate_epoch(
        &mut self,
        epoch: usize,
        timing: &mut Timing,
        events: &mut dyn FnMut(Event),
    ) -> anyhow::Result<(Option<Metrics>, Option<Metrics>)> {
        let evaluation = &self.plan.spec.evaluation;
        let last = epoch + 1 == self.plan.spec.training.epochs;
        let due = evaluation.every > 0 && (epoch + 1).is_multiple_of(evaluation.every);
        if !(last || due) {
            return Ok((None, None));
        }
        events(Event::Evaluating { epoch: epoch + 1 });
        let eval_start = Instant::now();
        // A validation-only cell (a tuning trial) never embeds the test split.
        let test = if self.plan.spec.evaluation.test { Some(self.evaluate_test()?) } else { None };
        let validation = match self.data.validation.clone() {
            Some(split) => Some(self.evaluate_split(&split)?),
            None => None,
        };
        timing.eval_s = eval_start.elapsed().as_secs_f64();
        Ok((test, validation))
    }

    /// Remembers `epoch` as the best so far when its validation value of the selection metric
    /// beats the best before it.
    fn note_best(&mut self, epoch: usize, validation: Option<&Metrics>) -> anyhow::Result<()> {
        self.new_best = false;
        if let (Some(metric), Some(v)) = (self.plan.selection, validation) {
            let value = metric.get(v).with_context(|| format!("the validation metrics lack '{metric}'"))?;
            if self.progress.best.is_none_or(|(_, best)| value > best) {
                self.progress.best = Some((epoch + 1, value));
                self.new_best = true;
            }
        }
        Ok(())
    }

    fn embed(&self, model: &EmbeddingModel, split: &Arc<SplitIndex>) -> anyhow::Result<Vec<f32>> {
        let batch_size = self.plan.spec.evaluation.batch_size;
        embed_split(
            model,
            &self.device,
            split,
            &self.data.recipe.eval,
            batch_size,
            self.plan.spec.training.workers,
            |_, _| self.stall.progress(),
        )
    }

    fn evaluate_split(&self, split: &Arc<SplitIndex>) -> anyhow::Result<Metrics> {
        let embeddings = self.embed(self.model(), split)?;
        let labels = split.labels();
        let d = self.model().embedding_size();
        let options = folds::eval_options(self.plan, self.cell.key.seed);
        Ok(evaluate(&EvalInput::self_retrieval(&embeddings, &labels, d), &options)?)
    }

    /// `model`'s embeddings of the test split (In-Shop: queries and gallery).
    fn test_embeddings(&self, model: &EmbeddingModel) -> anyhow::Result<TestEmbeddings> {
        let dim = model.embedding_size();
        Ok(match &self.data.test {
            Evaluation::SelfRetrieval(split) => {
                TestEmbeddings { dim, query: self.embed(model, split)?, query_labels: split.labels(), gallery: None }
            }
            Evaluation::QueryGallery { query, gallery } => TestEmbeddings {
                dim,
                query: self.embed(model, query)?,
                query_labels: query.labels(),
                gallery: Some((self.embed(model, gallery)?, gallery.labels())),
            },
        })
    }

    fn evaluate_test(&self) -> anyhow::Result<Metrics> {
        folds::evaluate_embeddings(self.plan, self.cell.key.seed, &self.test_embeddings(self.model())?)
    }

    /// A fold run keeps its selected model's test embeddings for the cross-validated cell's
    /// concatenated metrics ([`folds`]): the current model's, or with `Best` selection of an
    /// earlier epoch, those of the best weights the checkpoint holds.
    fn save_fold_embeddings(&self) -> anyhow::Result<()> {
        let earlier_best = matches!(self.record.selection, Selection::Best { .. }) && !self.new_best;
        let embeddings = if earlier_best {
            let best = self.paths.checkpoint.dir().join("best.safetensors");
            let model = load_checkpoint(self.model().clone(), &best)
                .with_context(|| format!("loading the best weights {}", best.display()))?;
            self.test_embeddings(&model)?
        } else {
            self.test_embeddings(self.model())?
        };
        let experiment_dir = self.paths.record.parent().expect("a record lies in the experiment directory");
        folds::save_test_embeddings(experiment_dir, &self.cell.key, &embeddings)
    }

    /// Sets the final metrics and the completed status, once every epoch and the untrained
    /// baseline are in the record.
    fn finish(&mut self) -> anyhow::Result<()> {
        if let Some(missing) = self.record.incompleteness(self.plan.spec.training.epochs) {
            bail!("the cell cannot be completed: {missing}");
        }
        if self.record.validation_only {
            if let Selection::Best { epoch, .. } = &mut self.record.selection {
                *epoch = Some(self.progress.best.context("no validation result to select from")?.0);
            }
            self.record.status = CellStatus::Completed;
            return Ok(());
        }
        let chosen = match &mut self.record.selection {
            Selection::Last => self.record.epochs.last().and_then(|e| e.test.clone()),
            Selection::Best { epoch, .. } => {
                let (best_epoch, _) = self.progress.best.context("no validation result to select from")?;
                *epoch = Some(best_epoch);
                self.record.epochs.iter().find(|e| e.epoch == best_epoch).and_then(|e| e.test.clone())
            }
        };
        self.record.final_metrics = Some(chosen.context("the selected epoch has no test metrics")?);
        if self.cell.key.fold.is_some() {
            self.save_fold_embeddings()?;
        }
        self.record.status = CellStatus::Completed;
        Ok(())
    }

    fn save_checkpoint(&mut self) -> anyhow::Result<()> {
        let staged = self.paths.checkpoint.begin()?;
        save_checkpoint(self.model(), &staged.join("model.safetensors"))?;
        let model_config = ron::ser::to_string_pretty(&self.plan.spec.model, ron::ser::PrettyConfig::new())?;
        std::fs::write(staged.join("model.ron"), model_config)?;
        let optimizer_file = staged.join("optimizer.bin");
        self.optimizer
            .to_record()
            .save(&optimizer_file)
            .map_err(|e| anyhow::anyhow!("{}: {e:?}", optimizer_file.display()))?;
        if self.loss.info().capabilities.supports_state {
            std::fs::write(staged.join("loss.state"), self.loss.save_state()?)?;
        }
        if let Some(miner) = self.miner.as_mut().filter(|m| m.info().capabilities.supports_state) {
            std::fs::write(staged.join("miner.state"), miner.save_state()?)?;
        }
        if let Some(memory) = &self.memory {
            std::fs::write(staged.join(MEMORY_IN_CHECKPOINT), memory.to_bytes()?)?;
        }
        if self.new_best {
            save_checkpoint(self.model(), &staged.join("best.safetensors"))?;
        } else {
            carry_over(&self.paths.checkpoint.dir().join("best.safetensors"), &staged.join("best.safetensors"))?;
        }
        self.record.save(&staged.join(RECORD_IN_CHECKPOINT))?;
        self.paths.checkpoint.commit(&self.progress)
    }
}
