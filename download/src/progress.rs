//! Progress callbacks, so that the command line can draw a bar and tests can stay quiet.

/// What an operation reports as it goes. Every method has an empty default.
pub trait Progress: Sync {
    /// A phase starts: `what` says which ("downloading https://…", "verifying CUB_200_2011.tgz"),
    /// `total` is its length in bytes when known, `done` what was already there (a resumed
    /// download).
    fn start(&self, _what: &str, _total: Option<u64>, _done: u64) {}
    /// `n` more bytes were handled.
    fn advance(&self, _n: u64) {}
    /// The phase ended (successfully or not).
    fn finish(&self) {}
}

/// No progress reporting.
impl Progress for () {}
