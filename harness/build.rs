include!("../build-support/libtorch_rpath.rs");

fn main() {
    link_libtorch_run_path();
}
