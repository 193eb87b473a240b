//! How leaderboard values are written for people, and the escaping and links every text
//! format needs. Shared by the terminal, Markdown and HTML renderers so that a number reads
//! the same in all three.
//!
//! ```
//! use dmlbench::report::stats::Summary;
//! use dmlbench::report::text::{interval, escape_xml};
//!
//! assert_eq!(interval(&Summary::of(&[0.60, 0.62, 0.67]).unwrap()), "63.0 ± 9.0");
//! assert_eq!(interval(&Summary::of(&[0.692]).unwrap()), "69.2");
//! assert_eq!(escape_xml("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
//! ```

use std::path::{Component, Path, PathBuf};

use crate::report::stats::Summary;
use crate::report::table::Row;

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

/// A value that rounds to zero prints without a sign: `-0.0` reads as a negative number.
fn without_negative_zero(text: String) -> String {
    match text.strip_prefix('-') {
        Some(rest) if rest.chars().all(|c| c == '0' || c == '.') => rest.to_string(),
        _ => text,
    }
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

/// A relative URL from the directory `from_dir` to the file `to`, with `/` separators and
/// each segment percent-encoded. Both paths are made absolute against the current directory
/// and `.`/`..` are resolved by name, so `results` and `./results/` give the same links.
pub fn relative_link(from_dir: &Path, to: &Path) -> String {
    relative_segments(from_dir, to).iter().map(|s| percent_encode(s)).collect::<Vec<_>>().join("/")
}

/// The path from the directory `from_dir` to `to`, as text with `/` separators: how a page
/// names a record, whatever spelling of the results directory the records were read with.
pub fn relative_path(from_dir: &Path, to: &Path) -> String {
    relative_segments(from_dir, to).join("/")
}

/// What names a file regardless of spelling: the components of its absolute path with `.`
/// and `..` resolved by name (links are not followed). Equal keys, same file.
pub fn path_key(path: &Path) -> Vec<String> {
    normalise(path)
}

fn relative_segments(from_dir: &Path, to: &Path) -> Vec<String> {
    let from = normalise(from_dir);
    let to = normalise(to);
    let common = from.iter().zip(to.iter()).take_while(|(a, b)| a == b).count();
    let mut segments: Vec<String> = Vec::new();
    for _ in common..from.len() {
        segments.push("..".into());
    }
    segments.extend(to[common..].iter().cloned());
    segments
}

/// The named components of an absolute version of `path`, with `.` dropped and `..` applied.
fn normalise(path: &Path) -> Vec<String> {
    let absolute: PathBuf = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut parts: Vec<String> = Vec::new();
    for component in absolute.components() {
        match component {
            Component::Prefix(p) => parts.push(p.as_os_str().to_string_lossy().into_owned()),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => {
                parts.pop();
            }
            Component::Normal(name) => parts.push(name.to_string_lossy().into_owned()),
        }
    }
    parts
}

/// Percent-encodes one path segment: everything but unreserved characters and a few safe
/// sub-delimiters (`+` is kept, record names use it for loss+miner).
fn percent_encode(segment: &str) -> String {
    let mut out = String::new();
    for byte in segment.bytes() {
        let keep = byte.is_ascii_alphanumeric()
            || matches!(byte, b'-' | b'_' | b'.' | b'~' | b'+' | b'!' | b'$' | b',' | b'=' | b'@');
        if keep {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
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
    }

    #[test]
    fn escaping() {
        assert_eq!(escape_xml("<script>alert('x')</script>"), "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;");
        assert_eq!(escape_md("cross_entropy"), "cross_entropy");
        assert_eq!(escape_md("_x_ a|b *c* [v] <t>\nnext"), "\\_x\\_ a\\|b \\*c\\* \\[v\\] \\<t\\> next");
    }

    #[test]
    fn links_are_relative_and_encoded() {
        assert_eq!(
            relative_link(Path::new("results"), Path::new("results/default/ce-seed0.ron")),
            "default/ce-seed0.ron"
        );
        assert_eq!(
            relative_link(Path::new("./results/"), Path::new("results/./default/../default/a b.ron")),
            "default/a%20b.ron"
        );
        assert_eq!(
            relative_link(Path::new("results"), Path::new("cluster/default/x+y-seed1.ron")),
            "../cluster/default/x+y-seed1.ron"
        );
        assert_eq!(relative_link(Path::new("."), Path::new("results/r.ron")), "results/r.ron");
        assert_eq!(relative_link(Path::new("/a/b"), Path::new("/a/c/d#1.ron")), "../c/d%231.ron");
        assert_eq!(relative_path(Path::new("./results"), Path::new("results/default/a b.ron")), "default/a b.ron");
        assert_eq!(path_key(Path::new("results/./x.ron")), path_key(Path::new("results/default/../x.ron")));
        assert_ne!(path_key(Path::new("results/x.ron")), path_key(Path::new("results/y.ron")));
    }
}
