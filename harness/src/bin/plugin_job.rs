//! `dmlbench-plugin-job`: the child process that `dmlbench` runs plugin jobs in (creating
//! instances to validate a grid, the conformance suite), reading the job on stdin; see
//! `dmlbench_host::isolated`. It is a program of its own, not only a command of `dmlbench`,
//! because it uses the plugin host alone: built with `--features tch`, `dmlbench` loads
//! LibTorch when it starts (a third of a second), and this program does not.
//!
//! With `--sources` it prints the identity of the sources it was built from instead, which
//! `dmlbench` compares with its own before using it.

use std::io::IsTerminal;
use std::process::ExitCode;

use dmlbench_host::isolated::{BUILD_SOURCES, SOURCES_QUERY, serve};

const HELP: &str = "\
dmlbench-plugin-job: runs plugin jobs for dmlbench, which starts it and writes the job on its
standard input; it is not meant to be run by hand.

Usage:
  dmlbench-plugin-job < JOB.json    what dmlbench does
  dmlbench-plugin-job --sources     print the identity of the sources it was built from

Example (dmlbench runs the conformance suite of a plugin in this program):
  dmlbench plugins check contrastive";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        // A terminal on stdin is a person, not dmlbench: waiting for a job would look like a hang.
        [] if !std::io::stdin().is_terminal() => serve(),
        [query] if *query == SOURCES_QUERY => {
            println!("{BUILD_SOURCES}");
            ExitCode::SUCCESS
        }
        ["--help" | "-h"] => {
            println!("{HELP}");
            ExitCode::SUCCESS
        }
        [] => {
            eprintln!("{HELP}");
            ExitCode::from(2)
        }
        [unknown, ..] => {
            eprintln!("error: unexpected argument '{unknown}'\n\n{HELP}");
            ExitCode::from(2)
        }
    }
}
