//! `dmlbench plugins new` makes crates that build, pass their own generated tests, are
//! discovered and pass `plugins check`. The crates are made in a scratch workspace that
//! depends on this repository's SDK, so the repository itself is never modified.

mod common;

use std::process::Command;

use common::{dmlbench_at, json, profile_dir, root, run};

#[test]
fn new_plugins_build_pass_their_tests_and_the_conformance_suite() {
    let scratch = tempfile::tempdir().unwrap();
    let ws = scratch.path();
    std::fs::create_dir(ws.join("plugins")).unwrap();
    let sdk = root().join("plugins/sdk");
    std::fs::write(
        ws.join("Cargo.toml"),
        format!(
            "[workspace]\nresolver = \"3\"\nmembers = [\"plugins/losses/*\", \"plugins/miners/*\"]\n\n\
             [workspace.package]\nedition = \"2024\"\nlicense = \"MIT\"\n\n\
             [workspace.dependencies]\ndmlbench-sdk = {{ path = {:?} }}\nserde = {{ version = \"1\", features = [\"derive\"] }}\n",
            sdk.display().to_string()
        ),
    )
    .unwrap();
    // Same dependency versions as the repository, so the shared target directory is reused.
    std::fs::copy(root().join("Cargo.lock"), ws.join("Cargo.lock")).unwrap();
    let target = profile_dir().parent().unwrap().to_path_buf();
    let in_scratch = |args: &[&str]| run(dmlbench_at(ws).args(args));

    let (code, stdout, stderr) = in_scratch(&["plugins", "new", "demo_loss", "--kind", "loss"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("dmlbench-loss-demo-loss"), "{stdout}");
    let (code, _, stderr) = in_scratch(&["plugins", "new", "demo_miner", "--kind", "miner"]);
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = in_scratch(&["plugins", "new", "demo_loss", "--kind", "loss"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("already exists"), "{stderr}");

    // The generated tests pass.
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo.current_dir(ws).args(["test", "--quiet"]).env("CARGO_TARGET_DIR", &target);
    let (code, stdout, stderr) = run(&mut cargo);
    assert_eq!(code, 0, "generated tests failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("test result: ok. 2 passed") && stdout.contains("test result: ok. 1 passed"), "{stdout}");

    // They are discovered (built by the host) and conform.
    let (code, stdout, stderr) = in_scratch(&["plugins", "list", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let listed: Vec<String> = json(&stdout)["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| format!("{}:{}", p["kind"].as_str().unwrap(), p["id"].as_str().unwrap()))
        .collect();
    assert_eq!(listed, vec!["loss:demo_loss", "miner:demo_miner"]);
    let (code, stdout, stderr) = in_scratch(&["plugins", "check", "demo_loss", "demo_miner"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
}
