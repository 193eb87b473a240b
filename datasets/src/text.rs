//! Reading whitespace-separated annotation files line by line, with errors that name the
//! file and the line.

use std::path::{Path, PathBuf};

use crate::error::DatasetError;

/// An annotation file read into memory.
pub(crate) struct TextFile {
    pub path: PathBuf,
    text: String,
}

impl TextFile {
    /// Reads `root/name`; a missing file is an error that names it.
    pub fn read(root: &Path, name: &str) -> Result<Self, DatasetError> {
        Self::read_path(&root.join(name))
    }

    pub fn read_path(path: &Path) -> Result<Self, DatasetError> {
        let bytes = std::fs::read(path).map_err(|e| DatasetError::io(path, e))?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let line = 1 + e.as_bytes()[..e.utf8_error().valid_up_to()].iter().filter(|&&b| b == b'\n').count();
            DatasetError::at_line(path, line, "not valid UTF-8 text")
        })?;
        // Editors on Windows write a byte-order mark first; it is not part of the first field.
        let text = match text.strip_prefix('\u{feff}') {
            Some(rest) => rest.to_string(),
            None => text,
        };
        Ok(TextFile { path: path.to_path_buf(), text })
    }

    /// Every line with its 1-based number, `\r` removed; blank lines skipped.
    pub fn lines(&self) -> impl Iterator<Item = Line<'_>> {
        self.text.lines().enumerate().filter_map(move |(i, raw)| {
            let text = raw.trim_end_matches('\r');
            (!text.trim().is_empty()).then_some(Line { file: &self.path, number: i + 1, text })
        })
    }
}

/// One non-blank line of an annotation file.
#[derive(Clone, Copy)]
pub(crate) struct Line<'a> {
    pub file: &'a Path,
    pub number: usize,
    pub text: &'a str,
}

impl<'a> Line<'a> {
    /// An error on this line.
    pub fn error(&self, message: impl Into<String>) -> DatasetError {
        DatasetError::at_line(self.file, self.number, message)
    }

    /// Exactly `n` whitespace-separated fields, described by `layout` for the message.
    pub fn fields(&self, n: usize, layout: &str) -> Result<Vec<&'a str>, DatasetError> {
        let fields: Vec<&str> = self.text.split_whitespace().collect();
        if fields.len() != n {
            return Err(self.error(format!(
                "expected {n} fields ({layout}), found {}: '{}'",
                fields.len(),
                self.text.trim()
            )));
        }
        Ok(fields)
    }

    /// An id field followed by the rest of the line (which may contain spaces), as in
    /// CUB's `images.txt` and `classes.txt`.
    pub fn id_and_rest(&self, layout: &str) -> Result<(i64, &'a str), DatasetError> {
        let trimmed = self.text.trim();
        let (first, rest) = trimmed
            .split_once(char::is_whitespace)
            .ok_or_else(|| self.error(format!("expected 2 fields ({layout}), found 1: '{trimmed}'")))?;
        Ok((self.int(first, "id")?, rest.trim()))
    }

    /// Parses an integer field.
    pub fn int(&self, field: &str, what: &str) -> Result<i64, DatasetError> {
        field.parse::<i64>().map_err(|_| self.error(format!("{what} '{field}' is not an integer")))
    }

    /// Parses a positive integer id (ids in these formats start at 1).
    pub fn id(&self, field: &str, what: &str) -> Result<i64, DatasetError> {
        let v = self.int(field, what)?;
        if v < 1 {
            return Err(self.error(format!("{what} {v} must be at least 1")));
        }
        Ok(v)
    }

    /// Parses a finite number field.
    pub fn number(&self, field: &str, what: &str) -> Result<f32, DatasetError> {
        match field.parse::<f32>() {
            Ok(v) if v.is_finite() => Ok(v),
            _ => Err(self.error(format!("{what} '{field}' is not a finite number"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_first_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("images.txt"), "\u{feff}1 a/x.jpg\r\n2 b/y.jpg\n").unwrap();
        let file = TextFile::read(dir.path(), "images.txt").unwrap();
        let lines: Vec<(usize, &str)> = file.lines().map(|l| (l.number, l.text)).collect();
        assert_eq!(lines, vec![(1, "1 a/x.jpg"), (2, "2 b/y.jpg")]);
    }
}
