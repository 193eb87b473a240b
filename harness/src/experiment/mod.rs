//! Experiment files: what to compare, on what data, trained how. A file is parsed
//! ([`spec`]), then validated into a [`Plan`] of cells, each a (dataset, model, loss, miner,
//! seed) that trains and tests on its own ([`crate::train`]).
//!
//! ```ron
//! (
//!     name: "default",
//!     dataset: (format: cub, root: "data/synthetic-cub",
//!               synthetic: Some((classes: 40, per_class: 20, size: 64)),
//!               transforms: (resize: 64, crop: 56, jitter: false)),
//!     model: (backbone: SmallCnn(channels: [32, 64, 128]), embedding_dim: Some(64)),
//!     training: (epochs: 8, batch_size: 64, sampler: MPerClass(m: 4),
//!                optimizer: Sgd(lr: 0.05, momentum: 0.9, weight_decay: 5e-4),
//!                schedule: WarmupCosine(warmup_iterations: 20)),
//!     grid: [
//!         (loss: "cross_entropy"),
//!         (loss: "contrastive", miner: Some("batch_hard")),
//!     ],
//!     seeds: [0, 1, 2],
//! )
//! ```

mod checks;
pub mod device;
pub mod plan;
pub mod spec;

pub use plan::{Cell, FieldError, Overrides, Plan, PlanError, PluginChoice, load};
pub use spec::ExperimentSpec;
