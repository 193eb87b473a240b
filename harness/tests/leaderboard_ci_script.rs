//! `scripts/leaderboard-ci.sh`, the steps of the README's "Leaderboards in CI", run with a
//! stand-in `dmlbench` that logs each call: every invocation the README shows (its shell
//! steps and its GitHub Actions workflow) runs regenerate, render, diff and check in that
//! order with the right directories, and the script stops at the first failing step.
//! `.ci/run` runs the same script with the real binary at smoke size.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::{root, run};

/// A `dmlbench` that appends its arguments (one call per line) to `$FAKE_LOG`, creates the
/// file after `--out`, and exits 1 on the subcommand named by `$FAKE_FAIL` (`run` or
/// `regression`, the latter being a diff with `--fail-on-regression`).
const FAKE_DMLBENCH: &str = r#"#!/usr/bin/env bash
echo "$*" >> "$FAKE_LOG"
previous=""
for arg in "$@"; do
    [ "$previous" = --out ] && : > "$arg"
    previous="$arg"
done
case "$FAKE_FAIL:$1:$*" in
    run:run:*) exit 1 ;;
    regression:leaderboard:*--fail-on-regression*) exit 1 ;;
esac
exit 0
"#;

/// A working directory holding `scripts/` (a link to the project's) and the stand-in.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(root().join("scripts"), dir.path().join("scripts")).unwrap();
        let fake = dir.path().join("fake-dmlbench");
        std::fs::write(&fake, FAKE_DMLBENCH).unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        // The directories the README's steps name, as its earlier steps would leave them.
        std::fs::create_dir_all(dir.path().join("base/results")).unwrap();
        std::fs::create_dir_all(dir.path().join("results")).unwrap();
        Sandbox { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs a command line as a shell would, with the stand-in as `DMLBENCH`; returns the
    /// exit code, stderr and the logged calls.
    fn run(&self, line: &str, fail: &str) -> (i32, String, Vec<String>) {
        let log = self.path().join("calls.log");
        let _ = std::fs::remove_file(&log);
        let mut bash = Command::new("bash");
        bash.current_dir(self.path())
            .arg("-c")
            .arg(line)
            .env("DMLBENCH", self.path().join("fake-dmlbench"))
            .env("FAKE_LOG", &log)
            .env("FAKE_FAIL", fail);
        let (code, stdout, stderr) = run(&mut bash);
        let calls = std::fs::read_to_string(&log).unwrap_or_default().lines().map(str::to_string).collect();
        (code, format!("{stdout}\n{stderr}"), calls)
    }
}

/// The lines of the README's "Leaderboards in CI" section that call the script, without
/// their indentation.
fn readme_invocations() -> Vec<String> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let section = readme.split("### Leaderboards in CI").nth(1).expect("the README has the section");
    let section = section.split("\n## ").next().unwrap();
    section
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("scripts/leaderboard-ci.sh "))
        .map(str::to_string)
        .collect()
}

/// The calls the script should make: regenerate into `results`, render there, diff the base
/// (`base/results`) against `head` into `out`, check `head`.
fn expected_calls(run_args: &str, results: &str, head: &str, out: &str) -> Vec<String> {
    let base = "base/results";
    vec![
        format!("run {run_args}"),
        format!("leaderboard {results}"),
        format!("leaderboard {results} --format md --out {results}/LEADERBOARD.md"),
        format!("leaderboard {results} --format html --out {results}/index.html"),
        format!("leaderboard {results} --format json --out {results}/leaderboard.json"),
        format!("leaderboard diff {base} {head} --format md --out {out}/leaderboard-diff.md"),
        format!("leaderboard diff {base} {head} --format json --out {out}/leaderboard-diff.json"),
        format!("leaderboard diff {base} {head}"),
        format!("leaderboard {head} --check"),
    ]
}

#[test]
fn the_readme_shows_each_invocation_in_its_shell_steps_and_its_workflow() {
    let lines = readme_invocations();
    let full = "scripts/leaderboard-ci.sh --base base/results --results results -- --device tch-cuda:0";
    let smoke = "scripts/leaderboard-ci.sh --base base/results --results smoke --smoke --head results";
    // Each twice: once in the plain shell steps, once in the workflow.
    assert_eq!(lines.iter().filter(|l| *l == full).count(), 2, "{lines:#?}");
    assert_eq!(lines.iter().filter(|l| *l == smoke).count(), 2, "{lines:#?}");
    assert_eq!(lines.len(), 4, "{lines:#?}");
}

#[test]
fn every_readme_invocation_regenerates_renders_diffs_and_checks() {
    for line in readme_invocations() {
        let sandbox = Sandbox::new();
        let (code, output, calls) = sandbox.run(&line, "");
        assert_eq!(code, 0, "{line}\n{output}");
        let want = if line.contains("--smoke") {
            expected_calls("--smoke --results smoke", "smoke", "results", "leaderboard-ci")
        } else {
            expected_calls("--results results --device tch-cuda:0", "results", "results", "leaderboard-ci")
        };
        assert_eq!(calls, want, "{line}");
        for file in ["leaderboard-diff.md", "leaderboard-diff.json"] {
            assert!(sandbox.path().join("leaderboard-ci").join(file).is_file(), "{line}: {file}");
        }
    }
}

#[test]
fn the_options_reach_the_steps_they_belong_to() {
    let sandbox = Sandbox::new();
    let line = "scripts/leaderboard-ci.sh --base base/results --experiment experiments/mining.ron --out diff \
                --fail-on-regression -- --keep-stale";
    let (code, output, calls) = sandbox.run(line, "");
    assert_eq!(code, 0, "{output}");
    let mut want =
        expected_calls("experiments/mining.ron --results results --keep-stale", "results", "results", "diff");
    want[7].push_str(" --fail-on-regression");
    assert_eq!(calls, want);
}

#[test]
fn the_script_stops_at_the_first_failing_step() {
    let sandbox = Sandbox::new();
    let line = "scripts/leaderboard-ci.sh --base base/results --fail-on-regression";

    // A failed cell: nothing is rendered or compared.
    let (code, output, calls) = sandbox.run(line, "run");
    assert_ne!(code, 0, "{output}");
    assert_eq!(calls, ["run --results results"], "{output}");

    // A regression: the diff files are written, the check does not run.
    let (code, output, calls) = sandbox.run(line, "regression");
    assert_ne!(code, 0, "{output}");
    assert_eq!(calls.last().unwrap(), "leaderboard diff base/results results --fail-on-regression", "{calls:#?}");
    assert_eq!(calls.len(), 8, "{calls:#?}");
}

#[test]
fn mistakes_on_its_command_line_are_named() {
    let sandbox = Sandbox::new();
    let (code, output, calls) = sandbox.run("scripts/leaderboard-ci.sh --results results", "");
    assert_eq!(code, 2, "{output}");
    assert!(output.contains("--base BASE_RESULTS is required"), "{output}");
    assert!(calls.is_empty(), "{calls:?}");

    let (code, output, calls) = sandbox.run("scripts/leaderboard-ci.sh --base base/results --smok", "");
    assert_eq!(code, 2, "{output}");
    assert!(output.contains("unknown option '--smok'"), "{output}");
    assert!(calls.is_empty(), "{calls:?}");

    let (code, output, _) = sandbox.run("scripts/leaderboard-ci.sh --help", "");
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("--fail-on-regression") && !output.contains("set -euo"), "{output}");
}
