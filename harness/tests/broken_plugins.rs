//! Plugins that break the contract are caught by `plugins check` with a message saying what
//! is wrong, libraries that are not plugins are reported and skipped, duplicate ids are
//! rejected, and the host keeps running through all of it.

mod common;

use std::env::consts::{DLL_PREFIX, DLL_SUFFIX};

use common::{build_cdylib, compile_c_plugin, dmlbench, json, profile_dir, run};

fn lib_file(name: &str) -> String {
    format!("{DLL_PREFIX}{name}{DLL_SUFFIX}")
}

/// A plugin directory with the broken plugins, a C library that is not a plugin and a file
/// that is not a library at all.
fn plugin_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let broken = build_cdylib("dmlbench-test-broken-plugins", "dmlbench_test_broken_plugins");
    std::fs::copy(&broken, dir.path().join(lib_file("broken"))).unwrap();
    compile_c_plugin(&["not_a_plugin.c"], &dir.path().join(lib_file("not_a_plugin")));
    std::fs::write(dir.path().join(lib_file("garbage")), b"this is not a shared library").unwrap();
    dir
}

#[test]
fn check_fails_each_broken_plugin_with_the_reason() {
    let dir = plugin_dir();
    let (code, stdout, stderr) = run(dmlbench().env("DMLBENCH_PLUGIN_PATH", dir.path()).args([
        "plugins",
        "check",
        "wrong_gradient",
        "panicking",
        "out_of_range",
        "--json",
    ]));
    assert_eq!(code, 1, "{stderr}");
    let checks = json(&stdout)["checks"].as_array().unwrap().clone();
    let failures = |plugin: &str| -> Vec<String> {
        checks
            .iter()
            .filter(|c| c["plugin"] == plugin && c["passed"] == false)
            .map(|c| format!("{}: {}", c["check"], c["detail"]))
            .collect()
    };
    let wrong = failures("loss:wrong_gradient");
    assert!(!wrong.is_empty() && wrong.iter().all(|f| f.contains("gradient mismatch")), "{wrong:?}");
    let panicking = failures("loss:panicking");
    assert!(panicking.iter().any(|f| f.contains("panicked") && f.contains("deliberate")), "{panicking:?}");
    let out_of_range = failures("miner:out_of_range");
    assert!(out_of_range.iter().any(|f| f.contains("out of range for a batch of")), "{out_of_range:?}");
    // Checks that do not depend on the defect still pass: the suite ran to the end.
    assert!(checks.iter().any(|c| c["plugin"] == "loss:panicking"
        && c["check"] == "malformed config is rejected"
        && c["passed"] == true));
}

#[test]
fn libraries_that_are_not_plugins_are_reported_and_skipped() {
    let dir = plugin_dir();
    let (code, stdout, _) = run(dmlbench().env("DMLBENCH_PLUGIN_PATH", dir.path()).args(["plugins", "list", "--json"]));
    assert_eq!(code, 1, "problems make the exit code 1");
    let v = json(&stdout);
    let problems = v["problems"].as_array().unwrap();
    let reason = |file: &str| {
        problems
            .iter()
            .find(|p| p["path"].as_str().unwrap().ends_with(file))
            .map(|p| p["reason"].as_str().unwrap().to_string())
    };
    assert!(reason(&lib_file("not_a_plugin")).unwrap().contains("not a dmlbench plugin"));
    assert!(reason(&lib_file("garbage")).unwrap().contains("cannot load"));
    let ids: Vec<&str> = v["plugins"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap()).collect();
    for id in ["contrastive", "batch_hard", "wrong_gradient", "panicking", "out_of_range"] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
}

#[test]
fn duplicate_ids_are_rejected_naming_both_libraries() {
    let dir = tempfile::tempdir().unwrap();
    // Make sure the crate's library is built, then offer a second copy on the plugin path.
    assert_eq!(run(dmlbench().args(["plugins", "list"])).0, 0);
    let contrastive = profile_dir().join(lib_file("dmlbench_loss_contrastive"));
    std::fs::copy(&contrastive, dir.path().join(lib_file("contrastive_copy"))).unwrap();
    let (code, stdout, _) = run(dmlbench().env("DMLBENCH_PLUGIN_PATH", dir.path()).args(["plugins", "list", "--json"]));
    assert_eq!(code, 1);
    let v = json(&stdout);
    let problem = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["reason"].as_str().unwrap().contains("duplicate loss id 'contrastive'"))
        .expect("a duplicate problem");
    let reason = problem["reason"].as_str().unwrap();
    assert!(
        reason.contains(&lib_file("contrastive_copy")) && reason.contains(&lib_file("dmlbench_loss_contrastive")),
        "{reason}"
    );
    assert!(v["plugins"].as_array().unwrap().iter().all(|p| p["id"] != "contrastive"));
    assert!(v["plugins"].as_array().unwrap().iter().any(|p| p["id"] == "batch_hard"));
}

/// A file that is not a loadable library is reported with the dynamic loader's own reason, not
/// just "dlopen failed".
#[test]
fn a_library_that_cannot_be_loaded_shows_the_loaders_reason() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join(lib_file("garbage"));
    std::fs::write(&garbage, "not an ELF file\n".repeat(256)).unwrap();
    let (code, stdout, _) = run(dmlbench().env("DMLBENCH_PLUGIN_PATH", dir.path()).args(["plugins", "list", "--json"]));
    assert_eq!(code, 1);
    let v = json(&stdout);
    let problem = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["path"] == garbage.to_str().unwrap())
        .expect("the garbage file is reported")
        .clone();
    let reason = problem["reason"].as_str().unwrap();
    // The loader's message names the file and what is wrong with it.
    assert!(reason.starts_with("cannot load: dlopen failed: ") && reason.contains(&lib_file("garbage")), "{reason}");
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    assert!(reason.ends_with("invalid ELF header"), "{reason}");
}
