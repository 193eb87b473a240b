//! The `dmlbench` command. Everything it does lives in the library; see `dmlbench::cli`.

fn main() -> std::process::ExitCode {
    dmlbench::cli::main()
}
