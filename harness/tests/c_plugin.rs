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
