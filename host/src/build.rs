//! Building stale plugin crates with cargo.
//!
//! A crate is stale when its library is missing or older than any of its own files, the
//! SDK's and the crates the SDK builds on (ABI, tuples, test kit), or the workspace manifest
//! and lock file. Stale crates are built in one
//! `cargo build --keep-going` (so one broken crate does not stop the others), in the profile
//! the host was built with, so a debug host loads debug plugins and shares their compiled
//! dependencies with `cargo test`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use walkdir::WalkDir;

use super::discover::PluginCrate;

/// What a build did.
#[derive(Clone, Debug, Default)]
pub struct BuildReport {
    /// Packages cargo was asked to build.
    pub attempted: Vec<String>,
    /// Cargo's failure output, when the build failed (the last lines of it).
    pub failure: Option<String>,
}

/// `debug` or `release`: the profile directory matching this host's build.
pub fn profile_dir() -> &'static str {
    if cfg!(debug_assertions) { "debug" } else { "release" }
}

/// The cargo target directory: `CARGO_TARGET_DIR` (relative to `root` when relative), else
/// `root/target`.
pub fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
}

/// Where the library of `krate` is after a build.
pub fn library_path(root: &Path, krate: &PluginCrate) -> PathBuf {
    target_dir(root).join(profile_dir()).join(&krate.library_file)
}

fn newest_mtime(paths: &[PathBuf]) -> Option<SystemTime> {
    paths
        .iter()
        .flat_map(|p| {
            WalkDir::new(p)
                .into_iter()
                .filter_entry(|e| e.file_name() != "target")
                .flatten()
                .filter(|e| e.file_type().is_file())
                .filter_map(|e| e.metadata().ok()?.modified().ok())
        })
        .max()
}

/// The sources a plugin crate in `crate_dir` is built from: its own directory and the
/// workspace crates every plugin depends on (the SDK and what it builds on).
pub fn plugin_sources(root: &Path, crate_dir: &Path) -> Vec<PathBuf> {
    let mut sources = vec![crate_dir.to_path_buf()];
    sources.extend(["plugins/sdk", "plugins/abi", "plugins/tuples", "plugins/testkit"].map(|p| root.join(p)));
    sources
}

/// Every file under `dirs` (outside `target/`), sorted: what a code fingerprint reads.
pub fn source_files(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = dirs
        .iter()
        .flat_map(|d| {
            WalkDir::new(d)
                .into_iter()
                .filter_entry(|e| e.file_name() != "target")
                .flatten()
                .filter(|e| e.file_type().is_file())
                .map(|e| e.into_path())
        })
        .collect();
    files.sort();
    files
}

/// Whether `krate`'s library is missing or older than what it is built from: its sources
/// ([`plugin_sources`]), or the workspace manifest and lock file.
pub fn is_stale(root: &Path, krate: &PluginCrate) -> bool {
    let Some(built) = std::fs::metadata(library_path(root, krate)).and_then(|m| m.modified()).ok() else {
        return true;
    };
    let mut inputs = plugin_sources(root, &krate.dir);
    inputs.extend([root.join("Cargo.toml"), root.join("Cargo.lock")]);
    newest_mtime(&inputs).is_some_and(|newest| newest > built)
}

/// Builds `crates` with cargo, showing progress on a terminal.
pub fn build(root: &Path, crates: &[&PluginCrate]) -> BuildReport {
    let mut report = BuildReport { attempted: crates.iter().map(|c| c.package.clone()).collect(), failure: None };
    if crates.is_empty() {
        return report;
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(&cargo);
    command.current_dir(root).args(["build", "--keep-going", "--message-format=short"]);
    if profile_dir() == "release" {
        command.arg("--release");
    }
    for krate in crates {
        command.args(["-p", &krate.package]);
    }
    let progress = indicatif::ProgressBar::new_spinner();
    progress.set_style(
        indicatif::ProgressStyle::with_template("{spinner} building plugins: {wide_msg}").expect("valid template"),
    );
    progress.enable_steady_tick(std::time::Duration::from_millis(120));
    if progress.is_hidden() {
        eprintln!("building {} plugin crate(s) with cargo: {}", crates.len(), report.attempted.join(", "));
    }
    let child = command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            progress.finish_and_clear();
            report.failure = Some(format!("cannot run {}: {e}", PathBuf::from(&cargo).display()));
            return report;
        }
    };
    let mut tail: Vec<String> = Vec::new();
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            progress.set_message(line.trim().to_string());
            tail.push(line);
            if tail.len() > 40 {
                tail.remove(0);
            }
        }
    }
    let status = child.wait();
    progress.finish_and_clear();
    match status {
        Ok(s) if s.success() => {
            // Cargo leaves a fresh library untouched when only an unrelated input changed;
            // mark it as checked now so the next run does not ask cargo again.
            for krate in crates {
                if let Ok(file) = std::fs::File::open(library_path(root, krate)) {
                    let _ = file.set_modified(SystemTime::now());
                }
            }
        }
        Ok(_) => report.failure = Some(tail.join("\n")),
        Err(e) => report.failure = Some(format!("waiting for cargo failed: {e}")),
    }
    report
}
