include!("../build-support/libtorch_rpath.rs");
include!("../build-support/build_fingerprint.rs");

fn main() {
    link_libtorch_run_path();
    // The sources this binary is built from, recorded in every result record.
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest.parent().expect("the harness lies in the workspace");
    // Only inputs that exist: cargo runs a script that names a missing file on every build.
    for input in build_inputs(root).into_iter().filter(|input| input.exists()) {
        println!("cargo:rerun-if-changed={}", input.display());
    }
    // With rerun-if-changed given, cargo no longer reruns this script for everything else:
    // the LibTorch directory the run path names is named here too.
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rustc-env=DMLBENCH_BUILD={}", build_fingerprint(root));
}
