//! How errors read when they reach a person: the command line and failed records.

/// An error and its causes on one line, `outer: inner: ...`. Every error type of the
/// workspace keeps its source out of its own message, so each cause appears once. (An
/// `anyhow::Error` is passed as `error.as_ref()`.)
pub fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
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

/// The last [`MESSAGE_LIMIT`] bytes of `text`, cut at a character boundary, saying how much
/// was left out before them: the end of a crashed process's output is where its cause is.
pub fn cap_message_tail(text: &str) -> String {
    if text.len() <= MESSAGE_LIMIT {
        return text.to_string();
    }
    let mut start = text.len() - MESSAGE_LIMIT;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("({} earlier bytes) ...{}", start, &text[start..])
}

/// The conventional name of a Unix signal (Linux numbering; the numbers that differ on the BSDs
/// and macOS follow those systems there).
pub fn signal_name(signal: i32) -> Option<&'static str> {
    let name = match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        #[cfg(any(target_os = "linux", target_os = "android"))]
        7 => "SIGBUS",
        #[cfg(any(target_os = "linux", target_os = "android"))]
        10 => "SIGUSR1",
        #[cfg(any(target_os = "linux", target_os = "android"))]
        12 => "SIGUSR2",
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        10 => "SIGBUS",
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        12 => "SIGSYS",
        _ => return None,
    };
    Some(name)
}

/// How a child process ended, for a message: `exited with code 3`, `crashed (signal 11,
/// SIGSEGV)`.
pub fn describe_exit(status: &std::process::ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exited with code {code}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            let name = signal_name(signal);
            let named = name.map_or(format!("signal {signal}"), |name| format!("signal {signal}, {name}"));
            return match name {
                // What sends SIGKILL: a person, a scheduler at its time limit, the kernel out of memory.
                Some("SIGKILL") => format!("was killed ({named}: by hand, by a scheduler, or for lack of memory)"),
                Some("SIGSEGV" | "SIGBUS" | "SIGILL" | "SIGFPE" | "SIGABRT") => format!("crashed ({named})"),
                _ => format!("was stopped by a signal ({named})"),
            };
        }
    }
    "ended without an exit code".into()
}

/// Lines of a Rust backtrace: its header, numbered frames, their `at file:line` lines, and the
/// hint about `RUST_BACKTRACE`.
pub fn is_backtrace_line(line: &str) -> bool {
    let trimmed = line.trim_start();
    let frame = trimmed.split_once(':').is_some_and(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
    frame
        || trimmed.starts_with("at ")
        || trimmed == "stack backtrace:"
        || trimmed.starts_with("note: run with `RUST_BACKTRACE")
        || trimmed.starts_with("note: Some details are omitted")
}

#[cfg(test)]
mod tests {
    use super::{MESSAGE_LIMIT, cap_message, cap_message_tail, describe, signal_name};

    #[test]
    fn the_tail_of_long_output_is_kept() {
        assert_eq!(cap_message_tail("short"), "short");
        let long = format!("{}the cause", "é".repeat(10_000));
        let tail = cap_message_tail(&long);
        assert!(tail.starts_with("(15914 earlier bytes) ...é") && tail.ends_with("éthe cause"), "{}", &tail[..40]);
        assert!(tail.len() <= MESSAGE_LIMIT + 40);
    }

    #[cfg(unix)]
    #[test]
    fn exits_are_described_with_their_cause() {
        use std::os::unix::process::ExitStatusExt;
        use std::process::ExitStatus;
        assert_eq!(super::describe_exit(&ExitStatus::from_raw(3 << 8)), "exited with code 3");
        assert_eq!(super::describe_exit(&ExitStatus::from_raw(11)), "crashed (signal 11, SIGSEGV)");
        let killed = super::describe_exit(&ExitStatus::from_raw(9));
        assert!(killed.starts_with("was killed (signal 9, SIGKILL") && killed.contains("lack of memory"), "{killed}");
    }

    #[test]
    fn signals_have_their_names() {
        assert_eq!(signal_name(11), Some("SIGSEGV"));
        assert_eq!(signal_name(9), Some("SIGKILL"));
        assert_eq!(signal_name(99), None);
    }

    #[test]
    fn long_messages_are_capped_at_a_character_boundary() {
        assert_eq!(cap_message("short"), "short");
        let long = "é".repeat(10_000); // 2 bytes each
        let capped = cap_message(&long);
        assert!(capped.ends_with("... (15904 more bytes)"), "{}", &capped[capped.len() - 40..]);
        assert!(capped.len() < MESSAGE_LIMIT + 40);
    }

    #[test]
    fn every_cause_is_listed_in_order() {
        #[derive(Debug, thiserror::Error)]
        #[error("data.npy")]
        struct Wrapped {
            source: std::io::Error,
        }
        #[derive(Debug, thiserror::Error)]
        #[error("reading the embeddings")]
        struct Outer(#[source] Wrapped);
        let io = || std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        assert_eq!(describe(&Outer(Wrapped { source: io() })), "reading the embeddings: data.npy: no such file");
        assert_eq!(describe(&io()), "no such file");
    }
}
