//! Helpers shared by the command-line tests: running `dmlbench` on this workspace, writing
//! `.npy` batches, building test-only plugin crates.

#![allow(dead_code)]

pub mod experiment;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("harness/ is inside the workspace").to_path_buf()
}

/// `target/<profile>`, where cargo put the `dmlbench` binary under test.
pub fn profile_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_dmlbench")).parent().expect("binary has a directory").to_path_buf()
}

/// `dmlbench` on this workspace, with plugin libraries in the same target directory as the
/// binary and no plugin path unless a test sets one.
pub fn dmlbench() -> Command {
    dmlbench_at(&root())
}

/// `dmlbench` on the project at `project_root`, otherwise as [`dmlbench`].
pub fn dmlbench_at(project_root: &Path) -> Command {
    dmlbench_program(Path::new(env!("CARGO_BIN_EXE_dmlbench")), project_root)
}

/// The `dmlbench` program at `exe` (a copy of the one under test) on the project at
/// `project_root`, otherwise as [`dmlbench`].
pub fn dmlbench_program(exe: &Path, project_root: &Path) -> Command {
    let mut command = Command::new(exe);
    command
        .arg("--root")
        .arg(project_root)
        .env("CARGO_TARGET_DIR", profile_dir().parent().expect("profile dir has a parent"))
        .env_remove("DMLBENCH_PLUGIN_PATH")
        .env_remove("DMLBENCH_ROOT");
    command
}

/// Runs a command and returns (exit code, stdout, stderr).
pub fn run(command: &mut Command) -> (i32, String, String) {
    let Output { status, stdout, stderr } = command.output().expect("the command starts");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// Builds a workspace cdylib crate in the test's profile and returns its library.
pub fn build_cdylib(package: &str, lib_name: &str) -> PathBuf {
    let profile = profile_dir();
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo.current_dir(root()).args(["build", "-p", package]).env("CARGO_TARGET_DIR", profile.parent().unwrap());
    if profile.file_name().is_some_and(|n| n == "release") {
        cargo.arg("--release");
    }
    let (code, _, stderr) = run(&mut cargo);
    assert_eq!(code, 0, "cargo build -p {package} failed:\n{stderr}");
    let lib = profile.join(format!("{}{lib_name}{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX));
    assert!(lib.is_file(), "{} was not built", lib.display());
    lib
}

/// Writes embeddings and labels as `.npy` files in `dir` and returns their paths.
pub fn write_batch(dir: &Path, z: &[f32], d: usize, labels: &[i64]) -> (PathBuf, PathBuf) {
    let (e, l) = (dir.join("embeddings.npy"), dir.join("labels.npy"));
    dmlbench_datasets::npy::write_embeddings(&e, labels.len(), d, z).unwrap();
    dmlbench_datasets::npy::write_labels(&l, labels).unwrap();
    (e, l)
}

/// Parses one JSON object from a command's stdout.
pub fn json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}):\n{stdout}"))
}

/// Compiles C sources into a shared library with the system C compiler (`CC`, else `cc`),
/// against the ABI header.
pub fn compile_c_plugin(sources: &[&str], out: &Path) {
    compile_c_plugin_with(sources, &[], out);
}

/// As [`compile_c_plugin`], with preprocessor definitions (`NAME` or `NAME=VALUE`, passed as
/// `-D...`).
pub fn compile_c_plugin_with(sources: &[&str], defines: &[&str], out: &Path) {
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let mut cc = Command::new(&compiler);
    cc.args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-O2", "-shared", "-fPIC", "-I"])
        .arg(root().join("plugins/abi/include"))
        .arg("-o")
        .arg(out);
    for define in defines {
        cc.arg(format!("-D{define}"));
    }
    for s in sources {
        cc.arg(root().join("harness/tests/c_plugin").join(s));
    }
    cc.arg("-lm");
    let output = cc.output().unwrap_or_else(|e| panic!("cannot run the C compiler '{compiler}' (set CC): {e}"));
    assert!(output.status.success(), "{compiler} failed:\n{}", String::from_utf8_lossy(&output.stderr));
}
