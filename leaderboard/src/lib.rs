//! The leaderboards of dmlbench, rendered from result records (`dmlbench-record`) alone.
//!
//! [`table`] groups the records into tables (one per dataset and recipe) and rows (one per
//! method), summarises each metric over seeds ([`stats`]) and marks the best values; [`mining`]
//! picks out the losses that ran with several miners, for a table of mining strategies; [`term`],
//! [`markdown`], [`html`] (with [`svg`] charts) and [`json`] render that one model; [`check`]
//! compares committed leaderboards with their records, and [`diff`] two sets of results (rendered
//! by the same renderers). [`text`] holds the number and escaping
//! rules the renderers share, [`paths`] the links between a page and the records.
//!
//! Nothing here trains or evaluates: the crate depends on the record schema and the metric
//! names of `dmlbench-eval`, so a program that only reads results builds without the trainer.

pub mod check;
pub mod diff;
#[cfg(test)]
mod fixtures;
pub mod html;
pub mod json;
pub mod markdown;
pub mod mining;
pub mod paths;
pub mod stats;
pub mod svg;
pub mod table;
pub mod term;
pub mod text;
