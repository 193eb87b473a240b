//! Write dmlbench loss and miner plugins in safe Rust.
//!
//! A plugin is a `cdylib` crate holding a type that implements [`Loss`] or [`Miner`] and one
//! call to [`export_plugins!`]. The SDK does everything else: it parses the RON
//! configuration (with serde defaults), checks every input before the plugin sees it (null
//! pointers, n·d, label count and range, tuple indices and labels, NaN/Inf) and every output
//! after (finite loss and gradient, valid tuples), converts mined tuples between pairs and
//! triplets, catches panics, and reports errors to the host with the status of `dmlbench-abi`.
//!
//! It also ships the maths most losses share, with exact backward passes: [`normalize`],
//! [`distance`] (a configurable measure, as PML's distance objects, within a batch or against
//! proxies), [`pairwise`] similarity and distance matrices, [`softmax`] helpers, [`tuples`]
//! enumeration, conversion and row weights, [`reduce`] (PML's reducers), [`matrix`] products
//! on a tuned GEMM, [`classifier`] and [`margin_softmax`] (the classification losses' cores);
//! for losses that train parameters of their own, [`trainable`] (values, SGD, state) and
//! [`state`] for checkpoints; [`piece`] for losses with kinks they can name; [`checks`] for
//! configuration values, with one wording; and
//! [`testing`], the finite-difference check and reference helpers every plugin test uses.
//!
//! # A complete loss plugin
//!
//! ```
//! use dmlbench_sdk::{Batch, Context, Loss, Plugin, Result, Stats};
//! use serde::{Deserialize, Serialize};
//!
//! /// Mean squared distance of each embedding to the origin, times `weight`.
//! pub struct Shrink { weight: f64 }
//!
//! #[derive(Serialize, Deserialize)]
//! #[serde(default, deny_unknown_fields)]
//! pub struct Config { weight: f64 }
//! impl Default for Config { fn default() -> Self { Config { weight: 1.0 } } }
//!
//! impl Plugin for Shrink {
//!     type Config = Config;
//!     const ID: &'static str = "shrink";
//!     const NAME: &'static str = "Shrink";
//!     const VERSION: &'static str = "0.1.0";
//!     const SUMMARY: &'static str = "weight · mean_i ‖z_i‖² (an example)";
//!     fn new(config: Config, _: &Context) -> Result<Self> { Ok(Shrink { weight: config.weight }) }
//! }
//!
//! impl Loss for Shrink {
//!     fn forward_backward(&mut self, batch: &Batch<'_>, grad: &mut [f32], _: &mut Stats) -> Result<f64> {
//!         let n = batch.n() as f64;
//!         let z = batch.embeddings.data;
//!         for (g, &v) in grad.iter_mut().zip(z) {
//!             *g = (2.0 * self.weight * f64::from(v) / n) as f32;
//!         }
//!         Ok(self.weight * z.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / n)
//!     }
//! }
//!
//! dmlbench_sdk::export_plugins!(loss: Shrink);
//! ```
//!
//! In the plugin's `Cargo.toml`: `crate-type = ["cdylib", "rlib"]` (the `rlib` lets its own
//! tests and benchmarks call it directly) and a dependency on `dmlbench-sdk` and `serde`.

pub mod checks;
pub mod classifier;
pub mod distance;
pub mod error;
pub mod export;
pub mod instance;
pub mod margin_softmax;
pub mod matrix;
pub mod normalize;
pub mod pairwise;
pub mod piece;
pub mod plugin;
pub mod reduce;
pub mod rng;
pub mod softmax;
pub mod state;
pub mod testing;
pub mod trainable;
/// Mined tuples: the two forms, conversion, enumeration and checks (`dmlbench-tuples`).
pub mod tuples {
    pub use dmlbench_tuples::*;
}

pub use dmlbench_abi as abi;
pub use error::{Error, Result};
pub use instance::{Instance, LossValue, RawReferences};
pub use plugin::{Batch, Context, Loss, Miner, Plugin, References, Stats, TupleUse};
pub use tuples::{Pairs, Triplets, TupleForm, Tuples};
