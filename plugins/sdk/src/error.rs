//! The error a plugin returns, and the ABI status it maps to.

use std::fmt;

use dmlbench_abi::Status;

/// An error from a plugin: a status for the host and a message for the user.
///
/// The message should name what is at fault (the config field, the tuple index, the state
/// tensor) so that the user can act on it without reading the plugin's source.
///
/// ```
/// use dmlbench_sdk::Error;
/// let e = Error::bad_config("margin must be positive, got -1");
/// assert_eq!(e.to_string(), "bad config: margin must be positive, got -1");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    status: Status,
    message: String,
}

impl Error {
    /// The configuration is invalid ([`Status::BAD_CONFIG`]).
    pub fn bad_config(message: impl Into<String>) -> Self {
        Error { status: Status::BAD_CONFIG, message: message.into() }
    }

    /// The batch, tuples or state bytes are invalid ([`Status::BAD_INPUT`]).
    pub fn bad_input(message: impl Into<String>) -> Self {
        Error { status: Status::BAD_INPUT, message: message.into() }
    }

    /// The computation failed ([`Status::FAILED`]).
    pub fn failed(message: impl Into<String>) -> Self {
        Error { status: Status::FAILED, message: message.into() }
    }

    /// The operation is not supported by this plugin ([`Status::UNSUPPORTED`]).
    pub fn unsupported(message: impl Into<String>) -> Self {
        Error { status: Status::UNSUPPORTED, message: message.into() }
    }

    /// A caught panic ([`Status::PANICKED`]).
    pub fn panicked(message: impl Into<String>) -> Self {
        Error { status: Status::PANICKED, message: message.into() }
    }

    /// The ABI status this error is reported with.
    pub fn status(&self) -> Status {
        self.status
    }

    /// The message alone, without the status prefix.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status.name(), self.message)
    }
}

impl std::error::Error for Error {}

impl From<dmlbench_tuples::TupleError> for Error {
    /// Tuples that do not fit their batch are bad input.
    fn from(error: dmlbench_tuples::TupleError) -> Self {
        Error::bad_input(error.0)
    }
}

/// Result type of plugin functions.
pub type Result<T> = std::result::Result<T, Error>;
