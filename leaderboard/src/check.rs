//! `--check`: are the committed leaderboards of a results directory what its records render
//! to? A leaderboard edited by hand, or a record changed without regenerating the pages, shows
//! up as a unified diff naming the file.

use std::path::{Path, PathBuf};

use similar::TextDiff;

use crate::table::Leaderboard;
use crate::{html, markdown};

/// Most diff lines printed per file; the first differences are what a reader needs.
const MAX_DIFF_LINES: usize = 60;

/// The files a results directory commits, rendered from `board` with links relative to `dir`.
pub fn committed_files(board: &Leaderboard, dir: &Path) -> Vec<(PathBuf, String)> {
    vec![
        (dir.join(markdown::FILE_NAME), markdown::render(board, dir)),
        (dir.join(html::FILE_NAME), html::render(board, dir)),
    ]
}

/// A committed file that differs from its rendering.
#[derive(Clone, Debug)]
pub struct Difference {
    /// The committed file.
    pub path: PathBuf,
    /// A unified diff (committed → rendered), or why the file could not be compared.
    pub diff: String,
}

/// Compares each (path, rendered text) with the file at path. A missing or unreadable file is
/// a difference.
pub fn compare(files: &[(PathBuf, String)]) -> Vec<Difference> {
    let mut differences = Vec::new();
    for (path, rendered) in files {
        let committed = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                differences.push(Difference {
                    path: path.clone(),
                    diff: format!(
                        "{}: missing; it should hold the rendered leaderboard ({} lines)\n",
                        path.display(),
                        rendered.lines().count()
                    ),
                });
                continue;
            }
            Err(e) => {
                differences.push(Difference {
                    path: path.clone(),
                    diff: format!("{}: cannot be read: {e}\n", path.display()),
                });
                continue;
            }
        };
        if &committed != rendered {
            differences.push(Difference { path: path.clone(), diff: unified_diff(path, &committed, rendered) });
        }
    }
    differences
}

/// A unified diff with 3 lines of context, cut after [`MAX_DIFF_LINES`] lines.
fn unified_diff(path: &Path, committed: &str, rendered: &str) -> String {
    let name = path.display().to_string();
    let full = TextDiff::from_lines(committed, rendered)
        .unified_diff()
        .context_radius(3)
        .header(&format!("{name} (committed)"), &format!("{name} (rendered from the records)"))
        .to_string();
    let lines: Vec<&str> = full.lines().collect();
    if lines.len() <= MAX_DIFF_LINES {
        return full;
    }
    let mut cut = lines[..MAX_DIFF_LINES].join("\n");
    cut.push_str(&format!("\n… {} more diff lines\n", lines.len() - MAX_DIFF_LINES));
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::completed;

    #[test]
    fn identical_files_pass_and_edits_show_as_diffs() {
        let dir = tempfile::tempdir().unwrap();
        let board = Leaderboard::from_records(vec![completed("cub", "default", "cross_entropy", None, 0, &[0.6], 0.3)]);
        let files = committed_files(&board, dir.path());
        // Nothing written yet: both files are missing.
        let missing = compare(&files);
        assert_eq!(missing.len(), 2);
        assert!(missing[0].diff.contains("LEADERBOARD.md: missing"), "{}", missing[0].diff);
        for (path, text) in &files {
            std::fs::write(path, text).unwrap();
        }
        assert!(compare(&files).is_empty());
        // A hand edit of the Markdown: R@1 60.0 → 61.0.
        let md = &files[0].0;
        let edited = std::fs::read_to_string(md).unwrap().replacen(
            "| cross_entropy | **60.0**",
            "| cross_entropy | **61.0**",
            1,
        );
        std::fs::write(md, edited).unwrap();
        let differences = compare(&files);
        assert_eq!(differences.len(), 1);
        let diff = &differences[0].diff;
        assert!(
            diff.contains("LEADERBOARD.md (committed)") && diff.contains("LEADERBOARD.md (rendered from the records)"),
            "{diff}"
        );
        assert!(
            diff.contains("\n-| cross_entropy | **61.0**") && diff.contains("\n+| cross_entropy | **60.0**"),
            "{diff}"
        );
        assert!(diff.contains("@@ "));
    }
}
