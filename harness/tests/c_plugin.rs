//! A loss written in C, compiled here with the system C compiler, is discovered, passes the
//! conformance suite and computes through the same host as Rust plugins: the ABI does not
//! depend on Rust.

mod common;

use common::{compile_c_plugin, dmlbench, json, run, write_batch};
use dmlbench_sdk::testing::{naive, random_embeddings, random_labels};

fn c_plugin_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let file = format!("{}c_center_pull{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX);
    compile_c_plugin(&["center_pull.c"], &dir.path().join(file));
    dir
}

#[test]
fn c_plugin_is_listed_and_passes_the_conformance_suite() {
    let dir = c_plugin_dir();
    let (code, stdout, stderr) =
        run(dmlbench().env("DMLBENCH_PLUGIN_PATH", dir.path()).args(["plugins", "list", "--json"]));
    assert_eq!(code, 0, "{stderr}");
    let v = json(&stdout);
    let c = v["plugins"].as_array().unwrap().iter().find(|p| p["id"] == "c_center_pull").expect("listed").clone();
    assert_eq!(c["sdk_version"], "hand-written C");
    assert_eq!(c["source"]["crate_dir"], serde_json::Value::Null);

    let (code, stdout, stderr) =
        run(dmlbench().env("DMLBENCH_PLUGIN_PATH", dir.path()).args(["plugins", "check", "c_center_pull"]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("0 failed"), "{stdout}");
}

#[test]
fn c_plugin_loss_matches_its_formula() {
    let dir = c_plugin_dir();
    let data = tempfile::tempdir().unwrap();
    let (n, d) = (10, 3);
    let z = random_embeddings(5, n, d);
    let labels = random_labels(5, n, 3);
    let (e, l) = write_batch(data.path(), &z, d, &labels);
    let mut cmd = dmlbench();
    cmd.env("DMLBENCH_PLUGIN_PATH", dir.path())
        .args(["loss", "c_center_pull", "--json", "--embeddings"])
        .arg(&e)
        .arg("--labels")
        .arg(&l);
    let (code, stdout, stderr) = run(&mut cmd);
    assert_eq!(code, 0, "{stderr}");
    let v = json(&stdout);
    // L = 1/(2n) Σ_i ‖z_i − μ_{y_i}‖², dL/dz_i = (z_i − μ_{y_i}) / n.
    let mut want = 0.0;
    for i in 0..n {
        let members: Vec<usize> = (0..n).filter(|&j| labels[j] == labels[i]).collect();
        let zi = naive::row(&z, d, i);
        for k in 0..d {
            let mean = members.iter().map(|&j| naive::row(&z, d, j)[k]).sum::<f64>() / members.len() as f64;
            want += (zi[k] - mean).powi(2) / (2.0 * n as f64);
            let g = v["grad"][i][k].as_f64().unwrap();
            assert!((g - (zi[k] - mean) / n as f64).abs() < 1e-6, "grad[{i}][{k}]");
        }
    }
    assert!((v["loss"].as_f64().unwrap() - want).abs() < 1e-9, "{} vs {want}", v["loss"]);
    assert_eq!(v["stats"]["rows"], n as f64);
}

/// The libraries of `c_center_pull` (ABI 1.1, with an extension) and of `c_center_pull_abi10`
/// (the same loss built as an ABI 1.0 library), in one directory.
fn both_abi_versions() -> tempfile::TempDir {
    let dir = c_plugin_dir();
    let file = format!("{}c_center_pull_abi10{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX);
    common::compile_c_plugin_with(&["center_pull.c"], &["AS_ABI_1_0"], &dir.path().join(file));
    dir
}

#[test]
fn extensions_are_found_by_id_and_absent_from_older_plugins() {
    use dmlbench_host::{HostOptions, PluginKind, Registry};

    let dir = both_abi_versions();
    let registry = Registry::open(&HostOptions {
        root: Some(dir.path().to_path_buf()),
        build: false,
        plugin_path: vec![dir.path().to_path_buf()],
        load_in_child_first: false,
    });
    assert!(registry.problems().is_empty(), "{:?}", registry.problems());

    let current = registry.get(PluginKind::Loss, "c_center_pull").unwrap();
    assert_eq!(current.abi_version, (1, dmlbench_abi::ABI_MINOR));
    let info = current.extension(c"org.example.c_center_pull.info.v1").expect("the plugin answers its extension");
    // The extension's own layout: { size_t struct_size; const char *language; }.
    #[repr(C)]
    struct InfoV1 {
        struct_size: usize,
        language: *const std::ffi::c_char,
    }
    // SAFETY: the plugin documents this layout for this id; the size is checked before the field.
    let info = unsafe { info.cast::<InfoV1>().as_ref() };
    assert_eq!(info.struct_size, std::mem::size_of::<InfoV1>());
    assert_eq!(unsafe { std::ffi::CStr::from_ptr(info.language) }, c"C");
    assert!(current.extension(c"org.example.c_center_pull.info.v2").is_none(), "unknown versions are absent");
    assert!(current.extension(c"dmlbench.unknown.v1").is_none());

    // A 1.0 library loads and computes; its descriptor ends before get_extension, and the
    // aborting pointer stored beyond that end is never called.
    let older = registry.get(PluginKind::Loss, "c_center_pull_abi10").unwrap();
    assert_eq!(older.abi_version, (1, 0));
    assert!(older.extension(c"org.example.c_center_pull.info.v1").is_none());
    let mut loss = dmlbench_host::LossHandle::create(
        older,
        &dmlbench_host::CreateOptions {
            config: String::new(),
            embedding_dim: 2,
            num_classes: 2,
            seed: 0,
            base_lr: 0.1,
        },
    )
    .unwrap();
    let out = loss.forward_backward(&[0.0, 0.0, 2.0, 0.0], 2, &[0, 0], None).unwrap();
    // μ = (1, 0); L = 1/(2·2) · (1 + 1) = 0.5.
    assert!((out.loss - 0.5).abs() < 1e-12, "{}", out.loss);
    // It knows nothing of reference embeddings (ABI 1.2), so it is never sent any.
    let memory = dmlbench_host::References { embeddings: &[0.0, 0.0], labels: &[0], self_rows: None };
    let refused = loss.forward_backward_against(&[0.0, 0.0, 2.0, 0.0], 2, &[0, 0], Some(&memory), None).unwrap_err();
    assert!(refused.to_string().contains("does not accept reference embeddings"), "{refused}");
}
