//! Datasets for dmlbench: loaders for the deep-metric-learning benchmarks with their
//! class-disjoint splits, the image pipeline, feature files and the synthetic generator.
//!
//! The pieces, in the order data flows through them:
//!
//! - [`index::load`] reads a dataset's annotation files ([`cub`](Format::Cub),
//!   [`cars196`](Format::Cars196), [`sop`](Format::Sop), [`inshop`](Format::Inshop),
//!   [`folder`](Format::Folder)) into a [`DatasetIndex`]: per split, image paths relative
//!   to the root, labels 0..C−1, class ids and names, bounding boxes. Counts are compared
//!   with the published ones ([`expected`]). [`features::load`] reads `.npy` embeddings
//!   instead, for frozen-backbone screening.
//! - [`decode`] turns a JPEG or PNG into RGB; [`transform`] resizes, crops, flips, jitters
//!   and normalises it into a CHW tensor; [`transform::recipe`] gives the literature's
//!   per-dataset recipes.
//! - [`loader::Loader`] runs decoding and transforms on worker threads and yields batches
//!   in order, deterministically for a (seed, epoch); [`cache::ResizeCache`] avoids decoding
//!   each JPEG every epoch.
//! - [`synth::generate`] writes synthetic datasets in each format: the project's default
//!   data and every test fixture. [`check::check`] validates a dataset on disk.
//!
//! Errors are [`DatasetError`]s naming the file (and line) at fault.
//!
//! Design choices:
//! - The splits are the DML ones, class-disjoint: CUB classes 1–100 train / 101–200 test,
//!   Cars196 1–98 / 99–196, SOP's two files, In-Shop's train / query / gallery. For CUB and
//!   Cars196 the rule is "the first half of the class ids", which is the published split
//!   on the real files and extends to synthetic ones.
//! - Expected counts are checked by default ([`LoadOptions::strict`]): the published counts
//!   for real data, the manifest's for synthetic data.
//! - Paths from annotation files never leave the dataset root (`..`, absolute paths and
//!   symlinks out are errors), because annotation files come from the internet.

pub mod cache;
pub mod check;
pub mod decode;
pub mod error;
pub mod expected;
pub mod features;
pub mod format;
pub mod index;
pub mod loader;
pub mod mat;
pub mod npy;
pub mod split;
pub mod synth;
pub mod transform;

mod cars196;
mod cub;
mod folder;
mod inshop;
mod mat73;
mod paths;
mod sop;
mod text;

pub use error::{DatasetError, Problem};
pub use format::{Format, Split};
pub use index::LoadOptions;
pub use loader::{ImageBatch, Loader};
pub use split::{BBox, ClassInfo, DatasetIndex, Item, SplitIndex};

/// File names the loaders read, for documentation and messages.
pub mod files {
    pub use crate::cars196::ANNOTATIONS as CARS196_ANNOTATIONS;
    pub use crate::folder::{SPLIT_FILE as FOLDER_SPLIT_FILE, is_image_name};
    pub use crate::inshop::PARTITION as INSHOP_PARTITION;
}
