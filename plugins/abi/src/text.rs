//! Text that came through the boundary: plugin ids, error messages and statistic names are
//! written by code the host does not control, and end up on terminals and in records.

use alloc::string::String;

/// `text` with every control character but the newline written as an escape (`\u{1b}`,
/// `\t`), so that a plugin's message cannot move the cursor, recolour or clear the terminal it
/// is printed on.
///
/// ```
/// assert_eq!(dmlbench_abi::escape_terminal("a\u{1b}[2Jb\nc"), "a\\u{1b}[2Jb\nc");
/// ```
pub fn escape_terminal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() && c != '\n' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape_terminal;

    #[test]
    fn a_terminal_never_receives_control_characters() {
        assert_eq!(escape_terminal("a\u{1b}[31mred\tb\nc\u{7f}\u{9b}"), "a\\u{1b}[31mred\\tb\nc\\u{7f}\\u{9b}");
        assert_eq!(escape_terminal("cross_entropy[β]"), "cross_entropy[β]");
    }
}
