//! The search spaces of an experiment file: every `Tune(...)` written where a value of a grid
//! entry's `loss_config` or `miner_config`, or of `training.optimizer`, would be.
//!
//! ```ron
//! training: (optimizer: Sgd(lr: Tune(LogUniform(1e-3, 0.3)), momentum: 0.9), ...),
//! grid: [
//!     (loss: "contrastive", loss_config: (neg_margin: Tune(Uniform(0.3, 1.5)))),
//!     (loss: "fast_ap", loss_config: (num_bins: Tune(Int(4, 32)))),
//!     (loss: "ntxent", loss_config: (temperature: Tune(Choice([0.05, 0.1, 0.2])))),
//! ],
//! ```
//!
//! The file is scanned as text, with a small RON lexer that follows field names, brackets,
//! strings and comments, so that each `Tune(...)` is known by its field path
//! (`grid[1].loss_config.neg_margin`, `training.optimizer.lr`) and its byte span. A concrete
//! experiment is the file with every span replaced by a value's RON text; the rest of the
//! file, comments included, is left as written.

use std::ops::Range;

use serde::Deserialize;

/// What a tuned field may take.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub enum Space {
    /// A real number in [low, high], uniform.
    Uniform(f64, f64),
    /// A positive real number in [low, high], uniform in its logarithm.
    LogUniform(f64, f64),
    /// An integer in low..=high.
    Int(i64, i64),
    /// One of these values (numbers, strings or booleans).
    Choice(Vec<ron::Value>),
}

#[derive(Deserialize)]
enum TuneCall {
    Tune(Space),
}

/// One `Tune(...)` of a file.
#[derive(Clone, Debug, PartialEq)]
pub struct Tunable {
    /// Its field path: `grid[1].loss_config.neg_margin`, `training.optimizer.lr`.
    pub path: String,
    /// The grid entry it belongs to; `None` for the optimiser's, which every entry tunes.
    pub entry: Option<usize>,
    /// Byte range of `Tune(...)` in the text.
    pub span: Range<usize>,
    /// What it may take.
    pub space: Space,
}

impl Space {
    /// Checks the bounds; `path` names the field in the message.
    fn validate(&self, path: &str) -> Result<(), String> {
        let ok = match self {
            Space::Uniform(low, high) => low.is_finite() && high.is_finite() && low < high,
            Space::LogUniform(low, high) => *low > 0.0 && high.is_finite() && low < high,
            Space::Int(low, high) => low < high,
            Space::Choice(values) => !values.is_empty(),
        };
        if !ok {
            return Err(format!(
                "{path}: {self:?} is empty (Uniform and Int need low < high, LogUniform 0 < low < high, Choice a value)"
            ));
        }
        if let Space::Choice(values) = self
            && let Some(bad) = values
                .iter()
                .find(|v| !matches!(v, ron::Value::Number(_) | ron::Value::String(_) | ron::Value::Bool(_)))
        {
            return Err(format!("{path}: Choice takes numbers, strings or booleans, not {bad:?}"));
        }
        Ok(())
    }

    /// The number of choices of a categorical space.
    pub fn choices(&self) -> Option<usize> {
        match self {
            Space::Choice(values) => Some(values.len()),
            _ => None,
        }
    }

    /// The RON text of a value of this space given as a number: the real number itself, the
    /// integer, or the index of a choice.
    pub fn value_text(&self, x: f64) -> String {
        match self {
            Space::Uniform(..) | Space::LogUniform(..) => format_real(x),
            Space::Int(..) => format!("{}", x.round() as i64),
            Space::Choice(values) => {
                ron::to_string(&values[(x as usize).min(values.len() - 1)]).expect("a RON value prints")
            }
        }
    }

    /// A value inside the space, for checking a file before any trial: the midpoint (the
    /// geometric one for `LogUniform`), or the first choice.
    pub fn representative(&self) -> f64 {
        match *self {
            Space::Uniform(low, high) => (low + high) / 2.0,
            Space::LogUniform(low, high) => (low * high).sqrt(),
            Space::Int(low, high) => ((low + high) / 2) as f64,
            Space::Choice(_) => 0.0,
        }
    }
}

/// A real number as RON reads it back: the shortest text that parses to the same f64, with a
/// decimal point or exponent so that it stays a float.
pub fn format_real(x: f64) -> String {
    let text = format!("{x:?}");
    if text.contains(['.', 'e', 'E']) || !x.is_finite() { text } else { format!("{text}.0") }
}

/// A token-level walk over RON text, enough to know each value's field path.
struct Scanner<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    /// Skips whitespace and comments (`//`, nested `/* */`).
    fn skip_blank(&mut self) {
        let bytes = self.text.as_bytes();
        loop {
            while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
                self.at += 1;
            }
            if bytes[self.at..].starts_with(b"//") {
                while self.peek().is_some_and(|b| b != b'\n') {
                    self.at += 1;
                }
            } else if bytes[self.at..].starts_with(b"/*") {
                let mut depth = 0;
                while self.at < bytes.len() {
                    if bytes[self.at..].starts_with(b"/*") {
                        depth += 1;
                        self.at += 2;
                    } else if bytes[self.at..].starts_with(b"*/") {
                        depth -= 1;
                        self.at += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        self.at += 1;
                    }
                }
            } else {
                return;
            }
        }
    }

    /// Skips a string (`"..."` with escapes, or raw `r#"..."#`) starting here.
    fn skip_string(&mut self) {
        let bytes = self.text.as_bytes();
        if bytes[self.at] == b'r' {
            let hashes = bytes[self.at + 1..].iter().take_while(|&&b| b == b'#').count();
            let close: Vec<u8> = std::iter::once(b'"').chain(std::iter::repeat_n(b'#', hashes)).collect();
            self.at += 2 + hashes;
            while self.at < bytes.len() && !bytes[self.at..].starts_with(&close) {
                self.at += 1;
            }
            self.at = (self.at + close.len()).min(bytes.len());
            return;
        }
        self.at += 1;
        while let Some(b) = self.peek() {
            self.at += 1;
            match b {
                b'\\' => self.at += 1,
                b'"' => return,
                _ => {}
            }
        }
    }

    fn identifier(&mut self) -> &'a str {
        let start = self.at;
        while self.peek().is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_') {
            self.at += 1;
        }
        &self.text[start..self.at]
    }

    /// Whether a raw string (`r"..."`, `r#"..."#`) starts here.
    fn at_raw_string(&self) -> bool {
        let bytes = &self.text.as_bytes()[self.at..];
        bytes.first() == Some(&b'r') && bytes[1..].iter().find(|&&b| b != b'#') == Some(&b'"')
    }

    /// The end of the bracketed group opening at `self.at` (just past its closing bracket).
    fn group_end(&mut self) -> Result<usize, String> {
        let mut depth = 0usize;
        loop {
            self.skip_blank();
            match self.peek() {
                None => return Err("a `Tune(` is never closed".into()),
                Some(b'"') => self.skip_string(),
                Some(_) if self.at_raw_string() => self.skip_string(),
                Some(b'(' | b'[' | b'{') => {
                    depth += 1;
                    self.at += 1;
                }
                Some(b')' | b']' | b'}') => {
                    depth -= 1;
                    self.at += 1;
                    if depth == 0 {
                        return Ok(self.at);
                    }
                }
                Some(_) => self.at += 1,
            }
        }
    }
}

/// One open bracket: the field it is the value of, and for a list the element index.
struct Frame {
    name: Option<String>,
    list: Option<usize>,
}

fn path_of(frames: &[Frame], field: Option<&str>) -> String {
    let mut path = String::new();
    for frame in frames {
        if let Some(name) = &frame.name {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(name);
        }
        if let Some(index) = frame.list {
            path.push_str(&format!("[{index}]"));
        }
    }
    if let Some(field) = field {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(field);
    }
    path
}

/// Every `Tune(...)` of an experiment file's `text`, in file order. Errors name the field (or
/// the byte offset) at fault: a space that does not parse or is empty, or a `Tune` outside a
/// grid entry's `loss_config`/`miner_config` and `training.optimizer`.
pub fn find_tunables(text: &str) -> Result<Vec<Tunable>, Vec<String>> {
    let mut scanner = Scanner { text, at: 0 };
    let mut frames: Vec<Frame> = Vec::new();
    let mut field: Option<String> = None;
    let mut found = Vec::new();
    let mut errors = Vec::new();
    loop {
        scanner.skip_blank();
        let Some(b) = scanner.peek() else { break };
        match b {
            b'"' => scanner.skip_string(),
            _ if scanner.at_raw_string() => scanner.skip_string(),
            b'(' | b'[' | b'{' => {
                let in_list = frames.last().is_some_and(|f| f.list.is_some());
                let name = field.take();
                let name = if name.is_none() && in_list { None } else { name };
                frames.push(Frame { name, list: (b == b'[').then_some(0) });
                scanner.at += 1;
            }
            b')' | b']' | b'}' => {
                frames.pop();
                field = None;
                scanner.at += 1;
            }
            b',' => {
                field = None;
                if let Some(Frame { list: Some(index), .. }) = frames.last_mut() {
                    *index += 1;
                }
                scanner.at += 1;
            }
            _ if b.is_ascii_alphabetic() || b == b'_' => {
                let start = scanner.at;
                let word = scanner.identifier();
                scanner.skip_blank();
                if scanner.peek() == Some(b':') {
                    field = Some(word.to_string());
                    scanner.at += 1;
                } else if word == "Tune" && scanner.peek() == Some(b'(') {
                    let end = match scanner.group_end() {
                        Ok(end) => end,
                        Err(e) => {
                            errors.push(format!("byte {start}: {e}"));
                            break;
                        }
                    };
                    let path = path_of(&frames, field.as_deref());
                    match tunable(&text[start..end], &path, start..end) {
                        Ok(t) => found.push(t),
                        Err(e) => errors.push(e),
                    }
                }
            }
            _ => scanner.at += 1,
        }
    }
    if errors.is_empty() { Ok(found) } else { Err(errors) }
}

/// The `Tune(...)` text at `path`, parsed and placed.
fn tunable(call: &str, path: &str, span: Range<usize>) -> Result<Tunable, String> {
    let TuneCall::Tune(space) = ron::from_str::<TuneCall>(call).map_err(|e| {
        format!(
            "{path}: {call} is not a search space (Uniform(a, b), LogUniform(a, b), Int(a, b) or Choice([...])): {e}"
        )
    })?;
    space.validate(path)?;
    let entry = if path.starts_with("training.optimizer.") {
        None
    } else {
        let rest = path.strip_prefix("grid[").ok_or_else(|| outside(path))?;
        let (index, rest) = rest.split_once(']').ok_or_else(|| outside(path))?;
        if !(rest.starts_with(".loss_config.") || rest.starts_with(".miner_config.")) {
            return Err(outside(path));
        }
        Some(index.parse().map_err(|_| outside(path))?)
    };
    Ok(Tunable { path: path.to_string(), entry, span, space })
}

fn outside(path: &str) -> String {
    format!(
        "{path}: Tune(...) may stand only for a field of a grid entry's loss_config or miner_config, or of training.optimizer"
    )
}

/// `text` with the span of each tunable replaced by its value's RON text (`values` in the
/// order of `tunables`, each as [`Space::value_text`] reads it).
pub fn substitute(text: &str, tunables: &[Tunable], values: &[f64]) -> String {
    let mut out = text.to_string();
    let mut order: Vec<usize> = (0..tunables.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(tunables[i].span.start));
    for i in order {
        out.replace_range(tunables[i].span.clone(), &tunables[i].space.value_text(values[i]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"// Tune( in a comment is text
(
    name: "t",
    description: "a \"Tune(Uniform(0.0, 1.0))\" in a string is text too",
    training: (epochs: 1, optimizer: Sgd(lr: Tune(LogUniform(0.001, 0.3)), momentum: 0.9)),
    grid: [
        (loss: "contrastive", loss_config: (neg_margin: Tune(Uniform(0.3, 1.5)), pos_margin: 0.0)),
        (loss: "fast_ap"),
        (loss: "x", miner: "y", miner_config: (/* (nested) */ epsilon: Tune(Choice([0.1, "a", true]))), loss_config: (n: Tune(Int(2, 8)))),
    ],
)"#;

    #[test]
    fn every_tune_is_found_with_its_field_path() {
        let found = find_tunables(FILE).unwrap();
        let paths: Vec<(&str, Option<usize>)> = found.iter().map(|t| (t.path.as_str(), t.entry)).collect();
        assert_eq!(
            paths,
            vec![
                ("training.optimizer.lr", None),
                ("grid[0].loss_config.neg_margin", Some(0)),
                ("grid[2].miner_config.epsilon", Some(2)),
                ("grid[2].loss_config.n", Some(2)),
            ]
        );
        assert_eq!(&FILE[found[1].span.clone()], "Tune(Uniform(0.3, 1.5))");
        assert_eq!(found[0].space, Space::LogUniform(0.001, 0.3));
        assert_eq!(found[3].space, Space::Int(2, 8));
        assert_eq!(found[2].space.choices(), Some(3));
    }

    #[test]
    fn substitution_writes_values_as_ron_reads_them() {
        let found = find_tunables(FILE).unwrap();
        let text = substitute(FILE, &found, &[0.01, 1.0, 1.0, 4.4]);
        assert!(text.contains("Sgd(lr: 0.01, momentum: 0.9)"), "{text}");
        assert!(text.contains("(neg_margin: 1.0, pos_margin: 0.0)"), "{text}");
        assert!(text.contains("epsilon: \"a\")"), "{text}");
        assert!(text.contains("(n: 4)"), "{text}");
        assert!(text.contains("a \\\"Tune(Uniform(0.0, 1.0))\\\" in a string"), "strings are left alone");
        assert!(find_tunables(&text).unwrap().is_empty());
        assert_eq!(format_real(2.0), "2.0");
        assert_eq!(format_real(1e-7), "1e-7");
    }

    #[test]
    fn misplaced_or_malformed_spaces_name_their_field() {
        let errors = |text: &str| find_tunables(text).unwrap_err().join("\n");
        let e = errors(r#"(training: (epochs: Tune(Int(1, 3))), grid: [])"#);
        assert!(e.contains("training.epochs: Tune(...) may stand only for"), "{e}");
        let e = errors(r#"(grid: [(loss: "x", loss_config: (m: Tune(Uniform(1.0, 0.5))))])"#);
        assert!(e.contains("grid[0].loss_config.m: Uniform(1.0, 0.5) is empty"), "{e}");
        let e = errors(r#"(grid: [(loss: "x", loss_config: (m: Tune(Normal(0.0, 1.0))))])"#);
        assert!(e.contains("grid[0].loss_config.m: Tune(Normal(0.0, 1.0)) is not a search space"), "{e}");
        let e = errors(r#"(grid: [(loss: "x", loss_config: (m: Tune(LogUniform(0.0, 1.0))))])"#);
        assert!(e.contains("LogUniform 0 < low < high"), "{e}");
        let e = errors(r#"(grid: [(loss: "x", loss_config: (m: Tune(Uniform(0.0, 1.0)"#);
        assert!(e.contains("never closed"), "{e}");
    }
}
