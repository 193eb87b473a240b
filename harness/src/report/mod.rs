//! Result records and the leaderboards rendered from them.
//!
//! [`record`] is the one file a benchmark cell writes. Everything else turns a set of records
//! into leaderboards: [`table`] groups them into tables, rows and summaries over seeds
//! ([`stats`]), and marks the best values; [`term`], [`markdown`], [`html`] (with [`svg`]
//! charts) and [`json`] render that one model; [`check`] compares committed leaderboards with
//! their records.

pub mod check;
#[cfg(test)]
mod fixtures;
pub mod html;
pub mod json;
pub mod markdown;
pub mod paths;
pub mod record;
pub mod stats;
pub mod svg;
pub mod table;
pub mod term;
pub mod text;
