//! Training cells: samplers, schedules, the optimiser, the loop, checkpoints, and the runner
//! that gives each cell its own process.

pub mod cell;
pub mod checkpoint;
pub mod data;
pub mod device_memory;
pub mod embed;
pub mod environment;
pub mod lock;
pub mod optimizer;
pub mod periodic;
pub mod runner;
pub mod sampler;
pub mod schedule;
pub mod stall;
