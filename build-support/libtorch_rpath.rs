// Shared by the build scripts of the crates whose binaries link LibTorch (`include!`d).
//
// With the `tch` feature, binaries link the LibTorch of an installed PyTorch, whose libraries
// are not on the system's library path. Recording that directory as the binaries' run path
// lets them start without `LD_LIBRARY_PATH`; `LD_LIBRARY_PATH` still takes precedence (it is
// a RUNPATH), so a binary carried to another machine can be pointed at that machine's
// LibTorch. The directory is found the way the `torch-sys` crate finds it.

use std::path::PathBuf;
use std::process::Command;

fn libtorch_lib_dir() -> Option<PathBuf> {
    for name in ["LIBTORCH", "LIBTORCH_LIB", "LIBTORCH_USE_PYTORCH", "VIRTUAL_ENV"] {
        println!("cargo:rerun-if-env-changed={name}");
    }
    if std::env::var_os("LIBTORCH_USE_PYTORCH").is_some() {
        let python = if std::env::var_os("VIRTUAL_ENV").is_some() { "python" } else { "python3" };
        let output = Command::new(python)
            .args(["-c", "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))"])
            .output()
            .ok()?;
        let dir = String::from_utf8(output.stdout).ok()?;
        return Some(PathBuf::from(dir.trim()));
    }
    let root = std::env::var_os("LIBTORCH_LIB").or_else(|| std::env::var_os("LIBTORCH"))?;
    Some(PathBuf::from(root).join("lib"))
}

fn link_libtorch_run_path() {
    if std::env::var_os("CARGO_FEATURE_TCH").is_none() {
        return;
    }
    if let Some(dir) = libtorch_lib_dir().filter(|dir| dir.is_dir()) {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    }
}
