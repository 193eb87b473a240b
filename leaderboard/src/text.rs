//! How leaderboard values are written for people, and the escaping every text format needs
//! (links between files are in [`super::paths`]). Shared by the terminal, Markdown and HTML renderers so that a number reads
//! the same in all three.
//!
//! ```
//! use dmlbench_leaderboard::stats::Summary;
//! use dmlbench_leaderboard::text::{interval, escape_xml};
//!
//! assert_eq!(interval(&Summary::of(&[0.60, 0.62, 0.67]).unwrap()), "63.0 ± 9.0");
//! assert_eq!(interval(&Summary::of(&[0.692]).unwrap()), "69.2");
//! assert_eq!(escape_xml("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
//! ```

use dmlbench_eval::MetricId;

use crate::diff::{Presence, RowDiff, TableDiff, Verdict};
use crate::stats::Summary;
use crate::table::{BoardTable, Row};

/// Placeholder of a value that does not exist.
pub const MISSING: &str = "—";

/// A fraction as a percentage with one decimal: 0.6923 → `69.2`.
pub fn percent(fraction: f64) -> String {
    without_negative_zero(format!("{:.1}", 100.0 * fraction))
}

/// `mean ± half-width` in percent, or the mean alone for one seed.
pub fn interval(summary: &Summary) -> String {
    match summary.half_width {
        Some(h) => format!("{} ± {}", percent(summary.mean), percent(h)),
        None => percent(summary.mean),
    }
}

/// A positive quantity with three significant digits (at least the units): 0.0123, 1.23,
/// 12.3, 123, 1234.
pub fn significant(value: f64) -> String {
    if !value.is_finite() {
        return MISSING.into();
    }
    let magnitude = if value == 0.0 { 0 } else { value.abs().log10().floor() as i32 };
    let decimals = (2 - magnitude).max(0) as usize;
    without_negative_zero(format!("{:.*}", decimals, value))
}

/// A change of a fraction in percentage points with its sign: 0.051 → `+5.1`, −0.1 → `-10.0`;
/// one that rounds to zero → `0.0`.
pub fn signed_points(difference: f64) -> String {
    let text = format!("{:+.1}", 100.0 * difference);
    without_positive_zero(without_negative_zero(text))
}

/// A relative change as a whole percentage with its sign: 0.1 → `+10%`, −0.25 → `-25%`; one
/// that rounds to zero → `0%`.
pub fn signed_percent(ratio: f64) -> String {
    let text = format!("{:+.0}", 100.0 * ratio);
    format!("{}%", without_positive_zero(without_negative_zero(text)))
}

fn without_positive_zero(text: String) -> String {
    match text.strip_prefix('+') {
        Some(rest) if rest.chars().all(|c| c == '0' || c == '.') => rest.to_string(),
        _ => text,
    }
}

/// One line of a row of a leaderboard diff: what is compared (a metric's label, `s/epoch`,
/// `peak MiB`), its base and head values, the change, and the verdict on a metric.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiffLine {
    /// `R@1`, `s/epoch`, `peak MiB`.
    pub quantity: String,
    /// The base's value, or [`MISSING`].
    pub base: String,
    /// The head's value, or [`MISSING`].
    pub head: String,
    /// Percentage points for a metric, a relative change for a cost; empty when a side is
    /// missing.
    pub change: String,
    /// For a metric, what the change means ([`Verdict::text`]); empty for a cost.
    pub verdict: Option<Verdict>,
}

/// The lines of a row of `table` in a leaderboard diff: [`diff_lines`], or only the headline
/// metric when the whole table is on one side (a new experiment, or one no longer run), whose
/// every number is new or gone and whose own leaderboard has the rest. Shared by the terminal
/// and Markdown renderers.
pub fn table_diff_lines(table: &TableDiff, row: &RowDiff) -> Vec<DiffLine> {
    let mut lines = diff_lines(row);
    if table.presence != Presence::Both {
        let first = table.columns.first().map(MetricId::label);
        let headline = lines.iter().position(|l| Some(&l.quantity) == first.as_ref()).unwrap_or(0);
        lines = lines.into_iter().skip(headline).take(1).collect();
    }
    lines
}

/// The lines of a row of a leaderboard diff: every metric measured on either side, then time
/// per epoch and peak memory.
pub fn diff_lines(row: &RowDiff) -> Vec<DiffLine> {
    let value = |summary: Option<Summary>| summary.map(|s| interval(&s)).unwrap_or_else(|| MISSING.into());
    let mut lines: Vec<DiffLine> = row
        .metrics
        .iter()
        .filter(|m| m.verdict() != Verdict::Missing)
        .map(|m| DiffLine {
            quantity: m.metric.label(),
            base: value(m.base),
            head: value(m.head),
            change: m.difference().map(signed_points).unwrap_or_default(),
            verdict: Some(m.verdict()),
        })
        .collect();
    let side = |row: Option<&Row>, text: fn(&Row) -> String| row.map(text).unwrap_or_else(|| MISSING.into());
    // On a GPU the device's memory is the one that runs out first.
    let memory_change = row.peak_device_change().or(row.peak_rss_change());
    for (quantity, text, change) in [
        ("s/epoch", epoch_seconds as fn(&Row) -> String, row.epoch_seconds_change()),
        ("peak MiB", peak_memory, memory_change),
    ] {
        lines.push(DiffLine {
            quantity: quantity.into(),
            base: side(row.base.as_ref(), text),
            head: side(row.head.as_ref(), text),
            change: change.map(signed_percent).unwrap_or_default(),
            verdict: None,
        });
    }
    lines
}

/// What a row of a leaderboard diff is: `added`, `removed`, or why it moved (see
/// [`RowDiff::notes`]), in one line.
pub fn diff_notes(row: &RowDiff, max_reason: Option<usize>) -> String {
    match row.presence() {
        crate::diff::Presence::Added => "added".into(),
        crate::diff::Presence::Removed => "removed".into(),
        crate::diff::Presence::Both => row.notes(max_reason).join("; "),
    }
}

/// A value that rounds to zero prints without a sign: `-0.0` reads as a negative number.
fn without_negative_zero(text: String) -> String {
    match text.strip_prefix('-') {
        Some(rest) if rest.chars().all(|c| c == '0' || c == '.') => rest.to_string(),
        _ => text,
    }
}

/// What a cross-validated table's metrics are (see `BoardTable::folds`), or `None` for
/// any other table.
pub fn folds_note(table: &BoardTable) -> Option<String> {
    table.folds.map(|k| {
        format!(
            "Cross-validated: {k} fold models per seed, each trained on {} of {k} class-disjoint folds of the \
             training classes; the metrics are those of their concatenated embeddings (MLRC's \"concatenated\"), and \
             each record's `folds.separate` holds the mean of the fold models' own metrics.",
            k - 1
        )
    })
}

/// One line per tuned row of `table`: how many trials, the best, its validation score and
/// the values chosen.
pub fn tuning_notes(table: &BoardTable) -> Vec<String> {
    table
        .rows
        .iter()
        .filter_map(|row| {
            let t = row.tuning.as_ref()?;
            let scored = t.trials.iter().filter(|(_, s)| s.is_some()).count();
            let best = t.trials.iter().find(|(label, _)| *label == t.best).and_then(|(_, s)| *s);
            let chosen: Vec<String> = t.chosen.iter().map(|(field, value)| format!("{field} = {value}")).collect();
            Some(format!(
                "{} (tuned): best of {scored} trials, {} with validation {} {}, chose {} (trials in {}).",
                row.method,
                t.best,
                t.metric,
                best.map_or_else(|| MISSING.to_string(), |b| format!("{b:.4}")),
                chosen.join(", "),
                t.experiment
            ))
        })
        .collect()
}

/// Bytes as whole MiB.
pub fn mib(bytes: u64) -> String {
    format!("{:.0}", bytes as f64 / (1024.0 * 1024.0))
}

/// The row's time per epoch (mean over seeds, seconds).
pub fn epoch_seconds(row: &Row) -> String {
    row.epoch_seconds.map(|s| significant(s.mean)).unwrap_or_else(|| MISSING.into())
}

/// The row's training images per second (mean over seeds).
pub fn images_per_second(row: &Row) -> String {
    row.images_per_second.map(|s| significant(s.mean)).unwrap_or_else(|| MISSING.into())
}

/// A share (0.25) as a percentage with its interval over seeds, or [`MISSING`].
pub fn share(summary: Option<Summary>) -> String {
    summary.map(|s| interval(&s)).unwrap_or_else(|| MISSING.into())
}

/// The row's tuples mined per batch (mean over seeds).
pub fn mined_tuples(row: &Row) -> String {
    row.mined_tuples.map(|s| significant(s.mean)).unwrap_or_else(|| MISSING.into())
}

/// The row's peak memory: host RSS in MiB, with the device's when a GPU was used.
pub fn peak_memory(row: &Row) -> String {
    match (row.peak_rss_bytes, row.peak_device_bytes) {
        (Some(host), Some(device)) => format!("{} (GPU {})", mib(host), mib(device)),
        (Some(host), None) => mib(host),
        (None, Some(device)) => format!("GPU {}", mib(device)),
        (None, None) => MISSING.into(),
    }
}

/// The row's epochs: `10`, or `8–10` when completed seeds differ.
pub fn epochs(row: &Row) -> String {
    match row.epochs {
        Some((a, b)) if a == b => a.to_string(),
        Some((a, b)) => format!("{a}–{b}"),
        None => MISSING.into(),
    }
}

/// The row's backends, comma-separated.
pub fn backends(row: &Row) -> String {
    if row.backends.is_empty() { MISSING.into() } else { row.backends.join(", ") }
}

/// Escapes text for HTML and SVG, in element content and in quoted attributes alike.
pub fn escape_xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Escapes text for a Markdown table cell: characters that would end the cell or start
/// markup are backslash-escaped, and line breaks become spaces. An underscore inside a word
/// (`cross_entropy`) starts no emphasis in CommonMark, so it is left as it is, keeping the
/// committed file readable.
pub fn escape_md(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    for (i, &c) in chars.iter().enumerate() {
        match c {
            '\\' | '|' | '*' | '`' | '[' | ']' | '<' | '>' => {
                out.push('\\');
                out.push(c);
            }
            '_' => {
                let inside =
                    i > 0 && chars[i - 1].is_alphanumeric() && chars.get(i + 1).is_some_and(|n| n.is_alphanumeric());
                if !inside {
                    out.push('\\');
                }
                out.push('_');
            }
            '\n' | '\r' => out.push(' '),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_intended() {
        assert_eq!(percent(0.6923), "69.2");
        assert_eq!(percent(-0.0001), "0.0");
        assert_eq!(percent(1.0), "100.0");
        // Mean 0.56, h = 4.302653 · 0.01 / √3 = 0.0248414 → 2.5.
        assert_eq!(interval(&Summary::of(&[0.55, 0.56, 0.57]).unwrap()), "56.0 ± 2.5");
        assert_eq!(significant(0.012345), "0.0123");
        assert_eq!(significant(1.2345), "1.23");
        assert_eq!(significant(12.345), "12.3");
        assert_eq!(significant(123.45), "123");
        assert_eq!(significant(12345.6), "12346");
        assert_eq!(significant(0.0), "0.00");
        assert_eq!(mib(512 << 20), "512");
        assert_eq!(mib(3 << 19), "2");
        assert_eq!(signed_points(0.051), "+5.1");
        assert_eq!(signed_points(-0.1), "-10.0");
        assert_eq!(signed_points(0.0001), "0.0");
        assert_eq!(signed_points(-0.0001), "0.0");
        assert_eq!(signed_percent(0.1), "+10%");
        assert_eq!(signed_percent(-0.25), "-25%");
        assert_eq!(signed_percent(0.001), "0%");
    }

    #[test]
    fn escaping() {
        assert_eq!(escape_xml("<script>alert('x')</script>"), "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;");
        assert_eq!(escape_md("cross_entropy"), "cross_entropy");
        assert_eq!(escape_md("_x_ a|b *c* [v] <t>\nnext"), "\\_x\\_ a\\|b \\*c\\* \\[v\\] \\<t\\> next");
    }
}
