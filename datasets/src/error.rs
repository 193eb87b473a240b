//! Errors and problems: every one names the file at fault and, for text files, the line.
//!
//! A [`DatasetError`] stops an operation (loading an index, decoding an image). A
//! [`Problem`] is the same information as plain data, so that `data check` can collect many
//! of them, count them and print them as JSON, and so that a non-strict load can hand back
//! the count mismatches it tolerated.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::npy::NpyError;

/// Anything that goes wrong while reading a dataset.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// A file or directory could not be opened, read or written.
    #[error("{}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An annotation file (or a `.mat` file) does not say what the format requires: a
    /// malformed line, a bad or duplicate id, a label out of range, a path escaping the
    /// root, a count that differs from the known one.
    #[error("{}{}: {message}", path.display(), LineSuffix(*line))]
    Format {
        /// The annotation file.
        path: PathBuf,
        /// 1-based line number, where the file is text and the fault is on one line.
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// An image file is empty, truncated or not a decodable JPEG/PNG.
    #[error("{}: {message}", path.display())]
    Image {
        /// The image file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A feature file could not be read.
    #[error(transparent)]
    Npy(#[from] NpyError),
    /// An option passed by the caller is out of range (no file is at fault).
    #[error("{0}")]
    Invalid(String),
}

/// `error` followed by its sources, `outer: inner: ...`: the whole of what went wrong, for
/// a message that stands alone.
pub fn with_sources(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// Formats `:LINE` when there is a line.
struct LineSuffix(Option<usize>);

impl fmt::Display for LineSuffix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(line) => write!(f, ":{line}"),
            None => Ok(()),
        }
    }
}

impl DatasetError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        DatasetError::Io { path: path.to_path_buf(), source }
    }

    /// A format error at `path`, optionally on a line.
    pub fn format(path: &Path, line: Option<usize>, message: impl Into<String>) -> Self {
        DatasetError::Format { path: path.to_path_buf(), line, message: message.into() }
    }

    /// A format error on line `line` of `path`.
    pub fn at_line(path: &Path, line: usize, message: impl Into<String>) -> Self {
        Self::format(path, Some(line), message)
    }

    /// An undecodable image.
    pub fn image(path: &Path, message: impl Into<String>) -> Self {
        DatasetError::Image { path: path.to_path_buf(), message: message.into() }
    }

    /// The file at fault, when one is.
    pub fn file(&self) -> Option<&Path> {
        match self {
            DatasetError::Io { path, .. } | DatasetError::Format { path, .. } | DatasetError::Image { path, .. } => {
                Some(path)
            }
            DatasetError::Npy(NpyError::Io { path, .. })
            | DatasetError::Npy(NpyError::Malformed { path, .. })
            | DatasetError::Npy(NpyError::Unsupported { path, .. })
            | DatasetError::Npy(NpyError::NonFinite { path, .. }) => Some(path),
            DatasetError::Invalid(_) => None,
        }
    }

    /// The 1-based line at fault, when the file is text and one line is.
    pub fn line(&self) -> Option<usize> {
        match self {
            DatasetError::Format { line, .. } => *line,
            _ => None,
        }
    }

    /// The message without the file and line prefix.
    pub fn message(&self) -> String {
        match self {
            DatasetError::Io { source, .. } => source.to_string(),
            DatasetError::Format { message, .. } | DatasetError::Image { message, .. } => message.clone(),
            DatasetError::Npy(e) => {
                let full = with_sources(e);
                match self.file().map(|p| format!("{}: ", p.display())) {
                    Some(prefix) if full.starts_with(&prefix) => full[prefix.len()..].to_string(),
                    _ => full,
                }
            }
            DatasetError::Invalid(message) => message.clone(),
        }
    }
}

/// A problem found in a dataset, as data: what `data check` reports and what a non-strict
/// load returns as a warning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The file at fault (an annotation file or an image).
    pub file: PathBuf,
    /// 1-based line in `file`, when it is text and one line is at fault.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl Problem {
    /// A problem at `file`.
    pub fn new(file: &Path, line: Option<usize>, message: impl Into<String>) -> Self {
        Problem { file: file.to_path_buf(), line, message: message.into() }
    }
}

impl From<&DatasetError> for Problem {
    fn from(e: &DatasetError) -> Self {
        Problem { file: e.file().map(Path::to_path_buf).unwrap_or_default(), line: e.line(), message: e.message() }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}: {}", self.file.display(), LineSuffix(self.line), self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_file_and_line() {
        let e = DatasetError::at_line(Path::new("root/images.txt"), 7, "expected 2 fields, found 1");
        assert_eq!(e.to_string(), "root/images.txt:7: expected 2 fields, found 1");
        assert_eq!(e.line(), Some(7));
        let p = Problem::from(&e);
        assert_eq!(p.to_string(), e.to_string());
        assert_eq!(p.message, "expected 2 fields, found 1");

        let e = DatasetError::image(Path::new("a.jpg"), "empty file (0 bytes)");
        assert_eq!(e.to_string(), "a.jpg: empty file (0 bytes)");
        assert_eq!(e.line(), None);
    }

    #[test]
    fn an_io_error_is_the_source_not_part_of_the_message() {
        let io = || std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = DatasetError::io(Path::new("root/images.txt"), io());
        assert_eq!(e.to_string(), "root/images.txt");
        assert_eq!(std::error::Error::source(&e).map(ToString::to_string).as_deref(), Some("no such file"));
        assert_eq!(Problem::from(&e).to_string(), "root/images.txt: no such file");
        let npy = DatasetError::Npy(NpyError::Io { path: "e.npy".into(), source: io() });
        assert_eq!(npy.message(), "no such file");
    }
}
