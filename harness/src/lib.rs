//! dmlbench: a benchmark harness for deep metric learning.
//!
//! The library behind the `dmlbench` command. Losses and miners are plugins (shared libraries
//! speaking the C ABI of `dmlbench-abi`), which the `dmlbench-host` crate finds, builds, loads
//! and checks and wraps in safe handles. [`eval`] computes retrieval and clustering metrics,
//! [`experiment`] reads and validates experiment files, [`train`] runs their cells, [`report`]
//! writes records and leaderboards, and [`cli`] is the command line.

pub mod cli;
pub mod eval;
pub mod experiment;
pub mod report;
pub mod train;
