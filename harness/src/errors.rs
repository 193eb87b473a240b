//! How errors read when they reach a person: the command line and failed records.

/// An error and its causes on one line, `outer: inner: ...`. A cause whose text the line
/// already ends with is left out: several error types print their source in their own
/// message, and the plain chain would say it twice.
pub fn describe(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.ends_with(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::describe;

    #[test]
    fn causes_are_listed_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("data.npy: {source}")]
        struct Wrapped {
            source: std::io::Error,
        }
        let io = || std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let error = anyhow::Error::new(Wrapped { source: io() }).context("reading the embeddings");
        assert_eq!(describe(&error), "reading the embeddings: data.npy: no such file");
        let plain = anyhow::Error::new(io()).context("opening data.npy");
        assert_eq!(describe(&plain), "opening data.npy: no such file");
    }
}
