//! The plugin host of dmlbench: finds, builds, loads and checks loss and miner plugins, and
//! wraps them in safe handles. It depends on no deep learning engine, so the child process that
//! runs plugin jobs (`dmlbench-plugin-job`, see [`isolated`]) starts without one.
//!
//! Plugins come from two places:
//! - **crates under `plugins/`** of the project root (any crate whose `[lib]` has
//!   `crate-type = ["cdylib", ...]`, at any depth, outside `target/`). A crate whose library
//!   is missing or older than its sources (or the SDK's) is built with cargo, in the profile
//!   the host itself was built with, so a user who drops a new crate in just runs dmlbench;
//! - **prebuilt libraries** (`.so`, `.dylib`, `.dll`) in the directories listed in
//!   `DMLBENCH_PLUGIN_PATH`, for plugins built elsewhere or written in another language.
//!
//! Every library is loaded once and never unloaded (descriptors and vtables point into it).
//! A library that is not a plugin, speaks another ABI major version, fails to load or
//! declares an invalid plugin is reported with its path and the reason, and skipped; the
//! others load. Two plugins of the same kind with the same id are both rejected, naming both
//! libraries.
//!
//! Commands that only need to know whether a plugin works (validating an experiment, the
//! conformance suite) call it in a child process ([`isolated`]), so a plugin that crashes or
//! hangs is reported, not fatal.

mod build;
mod callbacks;
pub mod check;
mod discover;
pub mod errors;
mod handle;
pub mod isolated;
mod library;
pub mod parent;
mod probe;
mod registry;
pub mod scaffold;

pub use build::{BuildReport, plugin_sources, source_files};
pub use discover::{DirectoryError, ManifestError, PluginCrate, plugin_path_dirs};
pub use handle::{CreateOptions, LossHandle, LossOutput, MinerHandle, MinerOutput, PluginError, References};
pub use library::{Capabilities, LoadError, PluginInfo, PluginKind, Source};
pub use registry::{HostOptions, Problem, Registry, UnknownPlugin, resolve_root};
