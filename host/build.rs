//! Gives the host an identity of the sources it is built from (`DMLBENCH_HOST_SOURCES`): a hash
//! of its own sources, the SDK's and the ABI's, and the workspace's lock file. `dmlbench` runs
//! plugin jobs in the `dmlbench-plugin-job` beside it only when that program reports the same
//! identity, so a copy left from another build is never used (see `src/isolated.rs`).

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = manifest.parent().expect("the crate lies in the workspace").to_path_buf();
    let inputs = [
        manifest.join("Cargo.toml"),
        manifest.join("src"),
        workspace.join("Cargo.lock"),
        workspace.join("plugins/abi"),
        workspace.join("plugins/sdk"),
    ];
    let mut files = Vec::new();
    for input in &inputs {
        println!("cargo:rerun-if-changed={}", input.display());
        collect_files(input, &mut files);
    }
    files.sort();
    // Each file's path (relative to the workspace) and contents. Both programs are built by the
    // same toolchain, so std's hasher gives them the same value for the same sources.
    let mut hasher = DefaultHasher::new();
    for file in &files {
        file.strip_prefix(&workspace).unwrap_or(file).hash(&mut hasher);
        std::fs::read(file).unwrap_or_default().hash(&mut hasher);
    }
    println!("cargo:rustc-env=DMLBENCH_HOST_SOURCES={:016x}", hasher.finish());
}

/// `path` if it is a file, else every file under it, skipping build output (`target/`).
fn collect_files(path: &Path, files: &mut Vec<PathBuf>) {
    if path.is_file() {
        files.push(path.to_path_buf());
        return;
    }
    let Ok(entries) = std::fs::read_dir(path) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.file_name().is_some_and(|name| name == "target") {
            continue;
        }
        collect_files(&path, files);
    }
}
