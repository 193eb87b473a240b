// Shared by the build scripts of the crates whose binaries link LibTorch (`include!`d).
//
// With the `tch` feature, binaries link the LibTorch of an installed PyTorch, whose libraries
// are not on the system's library path. Recording that directory as the binaries' run path
// lets them start without `LD_LIBRARY_PATH`; `LD_LIBRARY_PATH` still takes precedence (it is
// a RUNPATH), so a binary carried to another machine can be pointed at that machine's
// LibTorch. The directory is the one torch-sys found and links against, which cargo passes to
// the build scripts of crates that depend on torch-sys directly (`DEP_TCH_LIBTORCH_LIB`).

use std::path::PathBuf;

/// LibTorch's library directory, as torch-sys found it, with the `tch` feature.
fn libtorch_lib_dir() -> Option<PathBuf> {
    std::env::var_os("CARGO_FEATURE_TCH")?;
    let dir = PathBuf::from(
        std::env::var_os("DEP_TCH_LIBTORCH_LIB")
            .expect("with the tch feature, torch-sys must be a direct dependency (it reports DEP_TCH_LIBTORCH_LIB)"),
    );
    Some(dir)
}

fn link_libtorch_run_path() {
    if let Some(dir) = libtorch_lib_dir().filter(|dir| dir.is_dir()) {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    }
}
