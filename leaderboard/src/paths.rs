//! How a page names and links the files it is rendered from: paths relative to the page's
//! directory, whatever spelling of a directory the records were read with, and one key per
//! file however its path was written.

use std::path::{Component, Path, PathBuf};

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
