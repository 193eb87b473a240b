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

/// The most bytes of a message from elsewhere (a plugin, a cell's log) that a record or the
/// terminal keeps: enough for any real error, and a runaway message cannot bloat a record.
pub const MESSAGE_LIMIT: usize = 4096;

/// `text` cut to [`MESSAGE_LIMIT`] bytes at a character boundary, saying how much was cut.
pub fn cap_message(text: &str) -> String {
    if text.len() <= MESSAGE_LIMIT {
        return text.to_string();
    }
    let mut end = MESSAGE_LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} more bytes)", &text[..end], text.len() - end)
}

#[cfg(test)]
mod tests {
    use super::{cap_message, describe, MESSAGE_LIMIT};

    #[test]
    fn long_messages_are_capped_at_a_character_boundary() {
        assert_eq!(cap_message("short"), "short");
        let long = "é".repeat(10_000); // 2 bytes each
        let capped = cap_message(&long);
        assert!(capped.ends_with("... (15904 more bytes)"), "{}", &capped[capped.len() - 40..]);
        assert!(capped.len() < MESSAGE_LIMIT + 40);
    }

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
