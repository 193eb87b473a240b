//! dmlbench: a benchmark harness for deep metric learning.
//!
//! The library behind the `dmlbench` command. Losses and miners are plugins (shared libraries
//! speaking the C ABI of `dmlbench-abi`), which the `dmlbench-host` crate finds, builds, loads
//! and checks and wraps in safe handles. `dmlbench-eval` computes retrieval and clustering
//! metrics, `dmlbench-record` defines the result record of a cell and `dmlbench-leaderboard`
//! renders leaderboards from records. This crate holds the rest: [`experiment`] reads and
//! validates experiment files, [`train`] runs their cells, and [`cli`] is the command line.

pub mod cli;
pub mod cluster;
pub mod experiment;
pub mod train;
pub mod tune;
