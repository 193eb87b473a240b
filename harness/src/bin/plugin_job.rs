//! `dmlbench-plugin-job`: the child process that `dmlbench` runs plugin jobs in (creating
//! instances to validate a grid, the conformance suite), reading the job on stdin; see
//! `dmlbench_host::isolated`. It is a program of its own, not only a command of `dmlbench`,
//! because it uses the plugin host alone: built with `--features tch`, `dmlbench` loads
//! LibTorch when it starts (a third of a second), and this program does not.
//!
//! With `--sources` it prints the identity of the sources it was built from instead, which
//! `dmlbench` compares with its own before using it.

use dmlbench_host::isolated::{BUILD_SOURCES, SOURCES_QUERY, serve};

fn main() -> std::process::ExitCode {
    if std::env::args().nth(1).as_deref() == Some(SOURCES_QUERY) {
        println!("{BUILD_SOURCES}");
        return std::process::ExitCode::SUCCESS;
    }
    serve()
}
