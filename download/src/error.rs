//! Everything that can go wrong while downloading, verifying or unpacking. Every variant
//! names the URL, file or archive member at fault, so that a message stands alone.

use std::path::PathBuf;

/// An error of this crate.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The request could not be sent or its answer not received (no connection, TLS, a
    /// malformed answer), after every attempt.
    #[error("cannot download {url}")]
    Http {
        /// The URL requested.
        url: String,
        /// What the HTTP client reported.
        #[source]
        source: Box<ureq::Error>,
    },
    /// The server answered with a status other than 200 or 206.
    #[error("{url} answered HTTP {status}")]
    Status {
        /// The URL requested.
        url: String,
        /// The HTTP status code.
        status: u16,
    },
    /// The connection kept breaking off before the whole file arrived. What did arrive is
    /// kept in `part`, so that running the command again resumes from there.
    #[error(
        "{url}: the connection broke off after {received} bytes{}, {attempts} times; \
         the partial file {} is kept and the next run resumes from it",
        total.map(|t| format!(" of {t}")).unwrap_or_default(),
        part.display()
    )]
    Interrupted {
        /// The URL requested.
        url: String,
        /// The partial file.
        part: PathBuf,
        /// Bytes in `part`.
        received: u64,
        /// Bytes in the whole file, when the server said.
        total: Option<u64>,
        /// How many requests were made.
        attempts: u32,
        /// The last read error.
        #[source]
        source: std::io::Error,
    },
    /// The server's answer to a range request does not continue the partial file.
    #[error("{url}: asked for bytes from {asked}, the server sent {answer:?}")]
    BadRange {
        /// The URL requested.
        url: String,
        /// The first byte asked for.
        asked: u64,
        /// The server's Content-Range header (or its absence).
        answer: Option<String>,
    },
    /// A local file or directory could not be created, read, written or renamed (a full
    /// disk, a read-only directory).
    #[error("{}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file's SHA-256 is not the one expected.
    #[error(
        "{}: checksum mismatch: expected SHA-256 {expected}{}, found {actual}{}",
        file.display(),
        if *prefix { "…" } else { "" },
        moved_to.as_ref().map(|p| format!("; the file was moved to {} and not used", p.display())).unwrap_or_default()
    )]
    Checksum {
        /// The file checked (where it was when checked).
        file: PathBuf,
        /// The expected hash, lowercase hex: the whole of it or, when `prefix`, its start.
        expected: String,
        /// Whether `expected` is only the start of the hash (torchvision's file names).
        prefix: bool,
        /// The file's SHA-256, lowercase hex.
        actual: String,
        /// Where a downloaded file was moved so that it is never used; `None` for a file the
        /// user gave, which stays where it is.
        moved_to: Option<PathBuf>,
    },
    /// An archive member would land outside the destination, or is a kind of member this
    /// crate does not unpack (links, devices). Nothing is unpacked.
    #[error("{}: member '{member}' {reason}; nothing was unpacked", archive.display())]
    UnsafeMember {
        /// The archive.
        archive: PathBuf,
        /// The member's name as stored.
        member: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// An archive is truncated, corrupt, or not what was expected. Nothing is left unpacked.
    #[error("{}: {message}; nothing was unpacked", archive.display())]
    Archive {
        /// The archive.
        archive: PathBuf,
        /// What is wrong (with the member at fault, where one is).
        message: String,
    },
    /// The destination exists already; it is never overwritten.
    #[error("{} already exists; remove it or choose another --to directory", path.display())]
    Exists {
        /// The destination.
        path: PathBuf,
    },
    /// No checksum is known for a file and the caller did not waive verification.
    #[error(
        "no SHA-256 is known for {what}: {why}. Give --sha256 HEX (the hash of a copy you trust), \
         or --no-verify to use it unchecked"
    )]
    NoChecksum {
        /// The file or source.
        what: String,
        /// Why none is recorded.
        why: String,
    },
    /// A value given by the caller is malformed (a checksum that is not 64 hex digits,
    /// contradictory options).
    #[error("{0}")]
    Invalid(String),
}

impl DownloadError {
    /// An [`DownloadError::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DownloadError::Io { path: path.into(), source }
    }
}
