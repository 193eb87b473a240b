//! dmlbench: a benchmark harness for deep metric learning.
//!
//! The library behind the `dmlbench` command. Losses and miners are plugins (shared libraries
//! speaking the C ABI of `dmlbench-abi`); [`plugin`] finds, builds, loads and checks them and
//! wraps them in safe handles. [`eval`] computes retrieval and clustering metrics, and [`cli`]
//! is the command line.

pub mod cli;
pub mod errors;
pub mod eval;
pub mod experiment;
pub mod parent;
pub mod plugin;
pub mod report;
pub mod train;
