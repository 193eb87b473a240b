//! Batches of transformed images, decoded on worker threads ahead of the consumer.
//!
//! A [`Loader`] takes the batches to produce (lists of item indices, chosen by a sampler)
//! and yields them in that order as [`ImageBatch`]es. Workers take whole batches, at most
//! `prefetch` batches ahead of the one the consumer is waiting for, so memory stays
//! bounded whatever the speed of the consumer. Image `i` of epoch `e` is transformed with
//! the generator [`image_rng`]`(seed, e, i)`: the output depends on the seed, the epoch and
//! the batches only, never on the number of workers or on timing.
//!
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! use std::sync::Arc;
//! use dmlbench_datasets::{index, loader::{sequential_batches, Loader}, synth, transform, Format, LoadOptions, Split};
//! synth::generate(Format::Cub, dir.path(), &synth::SynthOptions { classes: 2, per_class: 3, size: 48, ..Default::default() }).unwrap();
//! let train = Arc::new(index::load(Format::Cub, dir.path(), &LoadOptions::default()).unwrap().into_split(Split::Train).unwrap());
//! let recipe = transform::recipe(Format::Cub, transform::RecipeSizes { resize: 40, crop: 32 }, false);
//! let batches = sequential_batches(train.len(), 2);
//! let loader = Loader::new(train.clone(), recipe.train, batches, 0, 42, 2, 4);
//! for batch in loader {
//!     let batch = batch.unwrap();
//!     assert_eq!(batch.images.len(), batch.len() * 3 * 32 * 32);
//!     assert_eq!(batch.labels, vec![0, 0][..batch.len()].to_vec());
//! }
//! ```

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use crate::cache::ResizeCache;
use crate::decode;
use crate::error::DatasetError;
use crate::split::SplitIndex;
use crate::transform::{Transform, image_rng};

/// A batch of transformed images.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageBatch {
    /// Position of the batch in the list given to the loader.
    pub position: usize,
    /// `len() × 3 × side × side` values: images in CHW order, one after the other.
    pub images: Vec<f32>,
    /// The label of each image.
    pub labels: Vec<i64>,
    /// The item index of each image in the split.
    pub indices: Vec<usize>,
    /// Image side length (images are square).
    pub side: usize,
}

impl ImageBatch {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// Image `k` of the batch, CHW.
    pub fn image(&self, k: usize) -> &[f32] {
        let n = 3 * self.side * self.side;
        &self.images[k * n..(k + 1) * n]
    }
}

/// Consecutive batches of `batch_size` covering `0..n` in order (the last may be
/// shorter): what evaluation uses.
pub fn sequential_batches(n: usize, batch_size: usize) -> Vec<Vec<usize>> {
    assert!(batch_size > 0, "batch size must be positive");
    (0..n).collect::<Vec<_>>().chunks(batch_size).map(<[usize]>::to_vec).collect()
}

/// Everything a worker needs to build a batch.
struct Job {
    split: Arc<SplitIndex>,
    transform: Transform,
    batches: Vec<Vec<usize>>,
    epoch: u64,
    seed: u64,
    cache: Option<Arc<ResizeCache>>,
}

impl Job {
    fn build(&self, position: usize) -> Result<ImageBatch, DatasetError> {
        let indices = self.batches[position].clone();
        let side = self.transform.output_side();
        let per = self.transform.output_len();
        let mut images = vec![0f32; indices.len() * per];
        let mut labels = Vec::with_capacity(indices.len());
        for (k, &i) in indices.iter().enumerate() {
            if i >= self.split.len() {
                return Err(DatasetError::Invalid(format!(
                    "batch {position} names item {i}, but the {} split has {} items",
                    self.split.split,
                    self.split.len()
                )));
            }
            let out = &mut images[k * per..(k + 1) * per];
            let mut rng = image_rng(self.seed, self.epoch, i as u64);
            match &self.cache {
                Some(cache) => {
                    let image = cache.get(&self.split, i).map_err(|e| listed(e, &self.split, i))?;
                    self.transform.apply_prepared(&image, &mut rng, out);
                }
                None => {
                    let decoded = decode::read(&self.split.path(i)).map_err(|e| listed(e, &self.split, i))?;
                    self.transform.apply(&decoded.image, &mut rng, out);
                }
            }
            labels.push(self.split.items[i].label);
        }
        Ok(ImageBatch { position, images, labels, indices, side })
    }
}

/// Adds where an image is listed to an error about reading it.
fn listed(e: DatasetError, split: &SplitIndex, i: usize) -> DatasetError {
    let at = split.listed_at(i);
    match e {
        DatasetError::Io { path, source } => {
            DatasetError::Image { path, message: format!("cannot read ({source}); listed at {at}") }
        }
        DatasetError::Image { path, message } => {
            DatasetError::Image { path, message: format!("{message}; listed at {at}") }
        }
        other => other,
    }
}

/// The window shared by the consumer and the workers.
struct Window {
    state: Mutex<WindowState>,
    changed: Condvar,
}

struct WindowState {
    /// The next batch a worker should build.
    next_job: usize,
    /// Batches handed to the consumer so far.
    delivered: usize,
    stop: bool,
}

/// An iterator over transformed batches, built on worker threads. See the module docs.
pub struct Loader {
    job: Arc<Job>,
    workers: usize,
    prefetch: usize,
    window: Arc<Window>,
    threads: Vec<JoinHandle<()>>,
    results: Option<Receiver<(usize, Result<ImageBatch, DatasetError>)>>,
    pending: BTreeMap<usize, Result<ImageBatch, DatasetError>>,
    next: usize,
}

impl Loader {
    /// A loader that yields `batches` (item indices into `split`) in order, transformed by
    /// `transform` with the randomness of (`seed`, `epoch`, item index), decoded by
    /// `workers` threads (at least one) with at most `prefetch` batches (at least one)
    /// built ahead of the consumer. Use `prefetch ≥ workers` to keep every worker busy.
    /// Threads start on the first call to `next`.
    pub fn new(
        split: Arc<SplitIndex>,
        transform: Transform,
        batches: Vec<Vec<usize>>,
        epoch: u64,
        seed: u64,
        workers: usize,
        prefetch: usize,
    ) -> Self {
        Loader {
            job: Arc::new(Job { split, transform, batches, epoch, seed, cache: None }),
            workers: workers.max(1),
            prefetch: prefetch.max(1),
            window: Arc::new(Window {
                state: Mutex::new(WindowState { next_job: 0, delivered: 0, stop: false }),
                changed: Condvar::new(),
            }),
            threads: Vec::new(),
            results: None,
            pending: BTreeMap::new(),
            next: 0,
        }
    }

    /// Reads images through `cache` (decoded and resized once, then only cropped).
    ///
    /// # Panics
    /// If the cache's resize differs from the transform's, or after iteration started.
    pub fn with_cache(mut self, cache: Arc<ResizeCache>) -> Self {
        assert_eq!(cache.resize(), self.job.transform.resize, "the cache's resize must equal the transform's");
        let job = Arc::get_mut(&mut self.job).expect("with_cache must be called before iterating");
        job.cache = Some(cache);
        self
    }

    /// Number of batches this loader yields in total.
    pub fn batches(&self) -> usize {
        self.job.batches.len()
    }

    fn start(&mut self) {
        let (tx, rx) = channel();
        for _ in 0..self.workers.min(self.job.batches.len()) {
            let (job, window, tx): (_, _, Sender<_>) = (self.job.clone(), self.window.clone(), tx.clone());
            let prefetch = self.prefetch;
            self.threads.push(std::thread::spawn(move || {
                loop {
                    let position = {
                        let mut s = window.state.lock().expect("loader lock");
                        while !s.stop && s.next_job < job.batches.len() && s.next_job >= s.delivered + prefetch {
                            s = window.changed.wait(s).expect("loader lock");
                        }
                        if s.stop || s.next_job >= job.batches.len() {
                            return;
                        }
                        s.next_job += 1;
                        s.next_job - 1
                    };
                    // A panic while building (a bug) must not leave the consumer waiting.
                    let result = catch_unwind(AssertUnwindSafe(|| job.build(position))).unwrap_or_else(|panic| {
                        let why = panic
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default();
                        Err(DatasetError::Invalid(format!("worker panicked while building batch {position}: {why}")))
                    });
                    if tx.send((position, result)).is_err() {
                        return;
                    }
                }
            }));
        }
        self.results = Some(rx);
    }

    fn shut_down(&mut self) {
        if let Ok(mut s) = self.window.state.lock() {
            s.stop = true;
        }
        self.window.changed.notify_all();
        self.results = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Iterator for Loader {
    type Item = Result<ImageBatch, DatasetError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.job.batches.len() {
            if !self.threads.is_empty() {
                self.shut_down();
            }
            return None;
        }
        if self.results.is_none() && self.threads.is_empty() {
            self.start();
        }
        loop {
            if let Some(result) = self.pending.remove(&self.next) {
                self.next += 1;
                self.window.state.lock().expect("loader lock").delivered = self.next;
                self.window.changed.notify_all();
                return Some(result);
            }
            match self.results.as_ref().map(Receiver::recv) {
                Some(Ok((position, result))) => {
                    self.pending.insert(position, result);
                }
                _ => {
                    let position = self.next;
                    self.next = self.job.batches.len();
                    self.shut_down();
                    return Some(Err(DatasetError::Invalid(format!("loader workers stopped before batch {position}"))));
                }
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.job.batches.len() - self.next;
        (left, Some(left))
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.shut_down();
    }
}
