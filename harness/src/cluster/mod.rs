//! Sweeps on a Slurm cluster: the array job script ([`script`]), what the queue holds
//! ([`queue`]) and where each cell stands ([`status`]). Slurm schedules; dmlbench only writes,
//! submits and reads back, and the cells coordinate through their records and locks as any
//! two `dmlbench run` on one results directory do.

pub mod queue;
pub mod script;
pub mod status;
