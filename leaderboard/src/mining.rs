//! Mining strategies compared loss by loss: when a table holds one loss with several miners (or
//! with and without one), the renderers add a table per such loss with one row per miner, its
//! accuracy beside what the mining cost and did: the share of training time spent mining, the
//! tuples returned per batch, and the share of the loss's terms that were non-zero.
//!
//! The figures come from the records (`timing.miner_s` and the per-epoch plugin statistics;
//! see `dmlbench_record::CellRecord::mining_time_share` and its neighbours) and are summarised
//! over seeds like the accuracy.

use crate::table::{BoardTable, Row, best_marks};
use crate::text;

/// The rows of one loss, one per miner (no miner first, then by miner id and variant).
#[derive(Debug)]
pub struct MiningTable<'t> {
    /// The loss plugin id.
    pub loss: &'t str,
    /// Its rows.
    pub rows: Vec<&'t Row>,
}

impl BoardTable {
    /// A mining table for every loss of this table that ran with at least two miners (no miner
    /// counting as one), by loss id.
    pub fn mining_tables(&self) -> Vec<MiningTable<'_>> {
        let mut losses: Vec<&str> = self.rows.iter().map(|r| r.loss.as_str()).collect();
        losses.sort_unstable();
        losses.dedup();
        losses
            .into_iter()
            .filter_map(|loss| {
                let mut rows: Vec<&Row> = self.rows.iter().filter(|r| r.loss == loss).collect();
                let mut miners: Vec<Option<&str>> = rows.iter().map(|r| r.miner.as_deref()).collect();
                miners.sort_unstable();
                miners.dedup();
                if miners.len() < 2 {
                    return None;
                }
                rows.sort_by(|a, b| (&a.miner, &a.variant).cmp(&(&b.miner, &b.variant)));
                Some(MiningTable { loss, rows })
            })
            .collect()
    }
}

impl MiningTable<'_> {
    /// Per accuracy column of the table, per row: whether the value is marked best among
    /// this loss's miners.
    pub fn best(&self, columns: usize) -> Vec<Vec<bool>> {
        let marks: Vec<Vec<bool>> =
            (0..columns).map(|c| best_marks(&self.rows.iter().map(|r| r.metrics[c]).collect::<Vec<_>>())).collect();
        (0..self.rows.len()).map(|r| marks.iter().map(|column| column[r]).collect()).collect()
    }
}

/// The headings of a mining table's columns after the miner and the accuracy columns.
pub const COST_HEADINGS: [&str; 3] = ["mining time %", "tuples/batch", "non-zero losses %"];

/// What one row of a mining table says, as text, beside its accuracy: the [`COST_HEADINGS`].
pub fn cost_cells(row: &Row) -> [String; 3] {
    [text::share(row.mining_time_share), text::mined_tuples(row), text::share(row.nonzero_share)]
}

/// How to read a mining table; shared by the renderers.
pub const MINING_NOTE: &str = "One row per miner of the same loss. Mining time: the share of training time (each epoch \
less its evaluation) spent in the miner; tuples/batch: the tuples it returned per batch; non-zero losses: the share of the \
loss's pairs, triplets or anchors that were active. Means over seeds, with the 95% interval where there are several; \
accuracy marked as in the table above, among these rows.";

/// The row's miner as a table shows it: its id with the variant, or `no miner`.
pub fn miner_label(row: &Row) -> String {
    let miner = row.miner.as_deref().unwrap_or("no miner");
    if row.variant.is_empty() { miner.to_string() } else { format!("{miner} [{}]", row.variant) }
}

#[cfg(test)]
mod tests {
    use crate::fixtures::completed;
    use crate::table::Leaderboard;

    #[test]
    fn a_loss_with_several_miners_gets_a_table_and_one_with_one_does_not() {
        let mut records = vec![
            completed("cub", "r", "contrastive", None, 0, &[0.5], 0.2),
            completed("cub", "r", "contrastive", Some("batch_hard"), 0, &[0.6], 0.2),
            completed("cub", "r", "contrastive", Some("semihard"), 0, &[0.55], 0.2),
            completed("cub", "r", "triplet_margin", Some("batch_hard"), 0, &[0.4], 0.2),
            completed("cub", "r", "cross_entropy", None, 0, &[0.7], 0.2),
        ];
        // Mining took 1 s of each 300 s epoch for batch_hard.
        for (_, record) in &mut records {
            if record.cell.miner.as_deref() == Some("batch_hard") {
                record.epochs.iter_mut().for_each(|e| e.timing.miner_s = 3.0);
            }
        }
        let board = Leaderboard::from_records(records);
        let tables = board.tables[0].mining_tables();
        assert_eq!(tables.len(), 1);
        assert_eq!(tables[0].loss, "contrastive");
        let miners: Vec<String> = tables[0].rows.iter().map(|r| super::miner_label(r)).collect();
        assert_eq!(miners, ["no miner", "batch_hard", "semihard"]);
        assert_eq!(tables[0].rows[1].mining_time_share.map(|s| s.mean), Some(0.01));
        assert_eq!(tables[0].rows[0].mining_time_share.map(|s| s.mean), Some(0.0));

        // Every renderer shows the one mining table, with the miners in order and the cost.
        let md = crate::markdown::render(&board, std::path::Path::new("results"));
        let section = &md[md.find("### Mining strategies: contrastive").expect("a Markdown section")..];
        assert_eq!(md.matches("### Mining strategies").count(), 1);
        let lines: Vec<&str> = section.lines().filter(|l| l.starts_with("| ")).collect();
        assert!(
            lines[0].starts_with("| miner | R@1 | R@2 |")
                && lines[0].ends_with("| mining time % | tuples/batch | non-zero losses % |"),
            "{}",
            lines[0]
        );
        assert!(lines[1].starts_with("| no miner | 50.0 |") && lines[1].contains("| 0.0 | — | — |"), "{}", lines[1]);
        assert!(
            lines[2].starts_with("| batch_hard | **60.0** |") && lines[2].contains("| 1.0 | — | — |"),
            "{}",
            lines[2]
        );
        assert!(lines[3].starts_with("| semihard | 55.0 |"), "{}", lines[3]);
        let term = crate::term::render(&board, crate::term::TermOptions::default());
        assert!(term.contains("mining strategies for contrastive") && term.contains("no miner"), "{term}");
        let html = crate::html::render(&board, std::path::Path::new("results"));
        assert_eq!(html.matches("<table class=\"mining\" data-loss=\"contrastive\">").count(), 1);
        let json: serde_json::Value =
            serde_json::from_str(&crate::json::render(&board, std::path::Path::new("results"))).unwrap();
        assert_eq!(
            json["tables"][0]["mining"][0]["methods"],
            serde_json::json!(["contrastive", "contrastive+batch_hard", "contrastive+semihard"])
        );
    }
}
