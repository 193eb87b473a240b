include!("../build-support/libtorch_rpath.rs");

#[cfg(feature = "tch")]
use std::process::Command;

fn main() {
    link_libtorch_run_path();
    #[cfg(feature = "tch")]
    compile_libtorch_backward();
}

/// With the `tch` feature, compiles `src/libtorch_backward.cpp` (LibTorch's convolution and
/// batch-norm backward kernels, which tch does not bind) against the LibTorch that `torch-sys`
/// found and links, with the same C++ ABI.
#[cfg(feature = "tch")]
fn compile_libtorch_backward() {
    let source = "src/libtorch_backward.cpp";
    println!("cargo:rerun-if-changed={source}");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let lib = libtorch_lib_dir().expect("built with the tch feature");
    let include = lib.parent().expect("LibTorch's lib directory has a parent").join("include");
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={}", libtorch_cxx11_abi()))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .file(source)
        .compile("dmlbench_libtorch_backward");
}

/// Whether LibTorch was built with the C++11 string ABI ("1") or not ("0"), asked of PyTorch
/// itself where torch-sys uses an installed PyTorch, as torch-sys does.
#[cfg(feature = "tch")]
fn libtorch_cxx11_abi() -> String {
    if let Ok(abi) = std::env::var("LIBTORCH_CXX11_ABI") {
        return abi;
    }
    if std::env::var_os("LIBTORCH_USE_PYTORCH").is_some() {
        let python = if std::env::var_os("VIRTUAL_ENV").is_some() { "python" } else { "python3" };
        let output = Command::new(python)
            .args(["-c", "import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))"])
            .output()
            .expect("cannot run Python to ask PyTorch for its C++ ABI");
        let abi = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        if abi == "0" || abi == "1" {
            return abi;
        }
    }
    "1".to_owned()
}
