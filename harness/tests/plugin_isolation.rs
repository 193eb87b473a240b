//! A plugin that crashes, calls `exit` or hangs while `dmlbench` validates an experiment or
//! checks plugins costs the job it was given, never the command: the failure names the plugin,
//! how its process ended (signal, exit code or timeout) and its last output, escaped; every
//! other plugin is still validated or checked; `--json` stays one valid object; and a dead
//! child never passes.

mod common;

use std::collections::BTreeMap;
use std::env::consts::{DLL_PREFIX, DLL_SUFFIX};
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{compile_c_plugin_with, dmlbench, dmlbench_program, json, root};
use dmlbench_record::{CellRecord, CellStatus};

/// A directory holding `misbehaving.c` compiled once per (id, behaviour).
fn misbehaving(plugins: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (id, behaviour) in plugins {
        let out = dir.path().join(format!("{DLL_PREFIX}{id}{DLL_SUFFIX}"));
        compile_c_plugin_with(&["misbehaving.c"], &[&format!("PLUGIN_ID=\"{id}\""), behaviour], &out);
    }
    dir
}

/// Runs a command and returns (exit code, stdout, stderr), failing the test if it has not
/// ended after two minutes: a plugin that hangs the command itself must fail a test, not
/// stall the suite.
fn run(command: &mut Command) -> (i32, String, String) {
    let mut child =
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("the command starts");
    let read = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = read(Box::new(child.stdout.take().unwrap()));
    let stderr = read(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} did not end within two minutes");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status.code().unwrap_or(-1), stdout.join().unwrap(), stderr.join().unwrap())
}

/// `plugins check ARGS --json` with `dir` on the plugin path: (exit code, the JSON, stderr).
fn check(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, serde_json::Value, String) {
    check_with(dmlbench(), dir, args, env)
}

/// [`check`] with another `dmlbench` command.
fn check_with(
    mut command: Command,
    dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (i32, serde_json::Value, String) {
    command
        .env("DMLBENCH_PLUGIN_PATH", dir)
        .env_remove("DMLBENCH_CHECK_TIMEOUT")
        .args(["plugins", "check"])
        .args(args)
        .arg("--json");
    for (key, value) in env {
        command.env(key, value);
    }
    let (code, stdout, stderr) = run(&mut command);
    (code, json(&stdout), stderr)
}

/// The checks of one plugin in a `plugins check --json` answer: (check, passed, detail).
fn checks_of(v: &serde_json::Value, plugin: &str) -> Vec<(String, bool, String)> {
    v["checks"]
        .as_array()
        .expect("a checks array")
        .iter()
        .filter(|c| c["plugin"] == plugin)
        .map(|c| {
            (
                c["check"].as_str().unwrap().to_string(),
                c["passed"].as_bool().unwrap(),
                c["detail"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The one failed check of a plugin whose process died in `forward_backward`: the two create
/// checks before it passed, the first gradient check failed with `expected`, and the plugin's
/// last line of stderr is quoted with its escape sequence made harmless.
fn assert_died_in_the_first_gradient_check(v: &serde_json::Value, plugin: &str, expected: &[&str]) {
    let checks = checks_of(v, plugin);
    let passed: Vec<&str> = checks.iter().filter(|c| c.1).map(|c| c.0.as_str()).collect();
    assert_eq!(passed, ["default config is accepted", "malformed config is rejected"], "{checks:?}");
    let failed: Vec<&(String, bool, String)> = checks.iter().filter(|c| !c.1).collect();
    assert_eq!(failed.len(), 1, "{checks:?}");
    let (check, _, detail) = failed[0];
    assert_eq!(check, "gradient: 16 rows, 4 classes");
    for text in expected {
        assert!(detail.contains(text), "missing '{text}' in: {detail}");
    }
    assert!(detail.contains("the remaining checks of this plugin did not run"), "{detail}");
    let id = plugin.trim_start_matches("loss:");
    assert!(detail.contains(&format!("{id}: giving up in forward_backward \\u{{1b}}[31mnow")), "{detail}");
    assert!(!detail.contains('\u{1b}'), "a raw escape character reached the output: {detail:?}");
}

#[test]
fn a_plugin_that_segfaults_in_forward_backward_fails_its_check() {
    let dir = misbehaving(&[("c_crash_forward", "CRASH_IN_FORWARD")]);
    let (code, v, stderr) = check(dir.path(), &["c_crash_forward"], &[]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(v["passed"], false);
    assert_died_in_the_first_gradient_check(&v, "loss:c_crash_forward", &["crashed (signal 11, SIGSEGV)"]);
}

/// The job program installed beside `dmlbench` (which starts without LibTorch) comes from the
/// same sources as the host this test links, so `dmlbench` uses it.
#[test]
fn the_job_program_beside_dmlbench_reports_its_sources() {
    let program = env!("CARGO_BIN_EXE_dmlbench-plugin-job");
    let (code, stdout, stderr) = run(Command::new(program).arg(dmlbench_host::isolated::SOURCES_QUERY));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.trim(), dmlbench_host::isolated::BUILD_SOURCES);
}

/// The job program is started by dmlbench, but a person who runs it gets help, not a wait for
/// a job: `--help` has an example, an unknown argument is named, and a job that is not JSON is
/// refused.
#[test]
fn the_job_program_explains_itself_when_run_by_hand() {
    let program = env!("CARGO_BIN_EXE_dmlbench-plugin-job");
    let (code, stdout, _) = run(Command::new(program).arg("--help"));
    assert_eq!(code, 0);
    assert!(stdout.contains("not meant to be run by hand") && stdout.contains("Example"), "{stdout}");
    assert!(stdout.contains("dmlbench plugins check contrastive"), "{stdout}");
    let (code, _, stderr) = run(Command::new(program).arg("--frobnicate"));
    assert_eq!(code, 2);
    assert!(stderr.contains("unexpected argument '--frobnicate'"), "{stderr}");
    let mut garbage = Command::new(program);
    garbage.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = garbage.spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"{\"tasks\": [trunc").unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not a plugin job"), "{stderr}");
}

/// A `dmlbench` on its own, or beside a job program from another build, runs plugin jobs
/// through its own hidden command: a crash is reported just the same, and the stale program
/// is asked for its sources and nothing else.
#[cfg(unix)]
#[test]
fn plugin_jobs_run_without_the_job_program_or_beside_a_stale_one() {
    use std::os::unix::fs::PermissionsExt;
    let plugins = misbehaving(&[("c_crash_forward", "CRASH_IN_FORWARD")]);
    let bin = tempfile::tempdir().unwrap();
    let exe = bin.path().join("dmlbench");
    // A hard link where the file system allows it: the test binary is hundreds of MB.
    if std::fs::hard_link(env!("CARGO_BIN_EXE_dmlbench"), &exe).is_err() {
        std::fs::copy(env!("CARGO_BIN_EXE_dmlbench"), &exe).unwrap();
    }
    let calls = bin.path().join("calls");
    let stale = bin.path().join("dmlbench-plugin-job");
    for with_stale_program in [false, true] {
        if with_stale_program {
            let script = format!("#!/bin/sh\necho \"$*\" >> '{}'\necho 0123456789abcdef\nexit 3\n", calls.display());
            std::fs::write(&stale, script).unwrap();
            std::fs::set_permissions(&stale, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let (code, v, stderr) = check_with(dmlbench_program(&exe, &root()), plugins.path(), &["c_crash_forward"], &[]);
        assert_eq!(code, 1, "{stderr}");
        assert_died_in_the_first_gradient_check(&v, "loss:c_crash_forward", &["crashed (signal 11, SIGSEGV)"]);
    }
    let asked = std::fs::read_to_string(&calls).expect("the stale program was asked for its sources");
    assert!(asked.lines().all(|line| line == dmlbench_host::isolated::SOURCES_QUERY), "{asked}");
}

#[test]
fn a_plugin_that_calls_exit_0_fails_its_check() {
    let dir = misbehaving(&[("c_exit_forward", "EXIT_IN_FORWARD")]);
    let (code, v, stderr) = check(dir.path(), &["c_exit_forward"], &[]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(v["passed"], false);
    assert_died_in_the_first_gradient_check(&v, "loss:c_exit_forward", &["exited with code 0 before it finished"]);
}

#[test]
fn a_plugin_that_hangs_is_killed_after_the_timeout() {
    let dir = misbehaving(&[("c_hang_forward", "HANG_IN_FORWARD")]);
    let started = Instant::now();
    let (code, v, stderr) = check(dir.path(), &["c_hang_forward", "--timeout", "2"], &[]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(v["passed"], false);
    assert_died_in_the_first_gradient_check(
        &v,
        "loss:c_hang_forward",
        &["timed out: it made no progress for 2 s and was killed", "--timeout or DMLBENCH_CHECK_TIMEOUT"],
    );
    assert!(started.elapsed().as_secs() < 60, "the hang was not cut short: {:?}", started.elapsed());
}

/// With `--all`, the misbehaving plugins fail and every other plugin is still checked and
/// passes; the timeout comes from the environment here.
#[test]
fn check_all_reports_every_other_plugin() {
    let dir = misbehaving(&[
        ("c_crash_forward", "CRASH_IN_FORWARD"),
        ("c_exit_forward", "EXIT_IN_FORWARD"),
        ("c_hang_forward", "HANG_IN_FORWARD"),
    ]);
    let (code, v, stderr) = check(dir.path(), &["--all"], &[("DMLBENCH_CHECK_TIMEOUT", "3")]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(v["passed"], false);
    assert_died_in_the_first_gradient_check(&v, "loss:c_crash_forward", &["SIGSEGV"]);
    assert_died_in_the_first_gradient_check(&v, "loss:c_exit_forward", &["exited with code 0"]);
    assert_died_in_the_first_gradient_check(&v, "loss:c_hang_forward", &["no progress for 3 s"]);

    let mut by_plugin: BTreeMap<String, Vec<bool>> = BTreeMap::new();
    for c in v["checks"].as_array().unwrap() {
        by_plugin.entry(c["plugin"].as_str().unwrap().to_string()).or_default().push(c["passed"].as_bool().unwrap());
    }
    let good: Vec<&String> = by_plugin.keys().filter(|p| !p.starts_with("loss:c_")).collect();
    for plugin in ["loss:contrastive", "loss:cross_entropy", "miner:batch_hard", "miner:multi_similarity"] {
        assert!(by_plugin.contains_key(plugin), "{plugin} is missing from {good:?}");
    }
    for plugin in good {
        assert!(
            by_plugin[plugin].len() >= 8 && by_plugin[plugin].iter().all(|&p| p),
            "{plugin}: {:?}",
            checks_of(&v, plugin)
        );
    }
}

/// A tiny experiment on synthetic data whose grid is `grid`.
fn experiment(dir: &Path, grid: &str) -> std::path::PathBuf {
    let text = format!(
        r#"(
    name: "isolated",
    dataset: (format: cub, root: "{data}", synthetic: (classes: 8, per_class: 8, size: 32, seed: 1),
              transforms: (resize: 32, crop: 28)),
    model: (backbone: SmallCnn(channels: [8, 16]), embedding_dim: 16),
    training: (epochs: 1, batch_size: 16, sampler: MPerClass(m: 4), optimizer: Sgd(lr: 0.05), workers: 1),
    evaluation: (k: [1, 2], batch_size: 32),
    grid: [{grid}],
    seeds: [0],
)"#,
        data = dir.join("data").display(),
    );
    let file = dir.join("isolated.ron");
    std::fs::write(&file, text).unwrap();
    file
}

/// A `create` that segfaults or hangs makes the experiment invalid, naming the plugin and the
/// signal or the timeout; validation goes on to report the other entries' problems, and the
/// records already in the results directory are left as they were.
#[test]
fn a_create_that_crashes_or_hangs_makes_the_experiment_invalid() {
    let plugins = misbehaving(&[("c_crash_create", "CRASH_IN_CREATE"), ("c_hang_create", "HANG_IN_CREATE")]);
    let work = tempfile::tempdir().unwrap();
    let results = work.path().join("results");
    let file = experiment(work.path(), r#"(loss: "contrastive")"#);
    let runs = |extra: &[&str]| {
        let mut command = dmlbench();
        command
            .env("DMLBENCH_PLUGIN_PATH", plugins.path())
            .arg("run")
            .arg(&file)
            .arg("--results")
            .arg(&results)
            .args(extra);
        run(&mut command)
    };
    let (code, stdout, stderr) = runs(&[]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let record_path = results.join("isolated/contrastive-seed0.ron");
    let before = CellRecord::load(&record_path).unwrap();
    assert_eq!(before.status, CellStatus::Completed);

    experiment(
        work.path(),
        r#"(loss: "c_crash_create"), (loss: "contrastive"), (loss: "c_hang_create"), (loss: "contrastive", variant: "typo", loss_config: (neg_margin: "high"))"#,
    );
    let started = Instant::now();
    let (code, stdout, stderr) = runs(&["--create-timeout", "2"]);
    assert_eq!(code, 2, "an invalid experiment is exit code 2:\n{stdout}\n{stderr}");
    for expected in [
        "3 problems",
        "grid[0].loss: loss:c_crash_create create: its process crashed (signal 11, SIGSEGV); its last output:\nc_crash_create: giving up in create \\u{1b}[31mnow",
        "grid[2].loss: loss:c_hang_create create: its process timed out: it made no progress for 2 s and was killed; allow longer with --create-timeout or DMLBENCH_CREATE_TIMEOUT",
        "grid[3].loss_config: ",
    ] {
        assert!(stderr.contains(expected), "missing '{expected}' in:\n{stderr}");
    }
    assert!(!stderr.contains('\u{1b}'), "a raw escape character reached the terminal: {stderr:?}");
    assert!(started.elapsed().as_secs() < 60, "the hanging create was not cut short: {:?}", started.elapsed());
    assert_eq!(CellRecord::load(&record_path).unwrap(), before, "the completed cell's record changed");
}

/// A library that crashes while it is being loaded (in its entry function) is skipped with how
/// its test process ended, and the `dmlbench` that looked for plugins lives on and lists the
/// others. A library that loaded is remembered, so it is not loaded in a child again.
#[test]
fn a_library_that_crashes_while_loading_is_skipped() {
    let plugins = misbehaving(&[("c_crash_entry", "CRASH_IN_ENTRY"), ("c_fine", "WELL_BEHAVED")]);
    let cache = tempfile::tempdir().unwrap();
    for round in ["first", "second"] {
        let mut command = dmlbench();
        command
            .env("DMLBENCH_PLUGIN_PATH", plugins.path())
            .env("XDG_CACHE_HOME", cache.path())
            .args(["plugins", "list", "--json"]);
        let (code, stdout, stderr) = run(&mut command);
        assert_eq!(code, 1, "{round}: a skipped library makes the exit code 1\n{stdout}\n{stderr}");
        let listing = json(&stdout);
        let ids: Vec<&str> = listing["plugins"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap()).collect();
        assert!(ids.contains(&"c_fine") && !ids.contains(&"c_crash_entry"), "{round}: {ids:?}");
        let problems = listing["problems"].to_string();
        assert!(
            problems.contains("c_crash_entry")
                && problems.contains("SIGSEGV")
                && problems.contains("giving up in its entry function"),
            "{round}: {problems}"
        );
    }
    let remembered = std::fs::read_dir(cache.path().join("dmlbench/loaded-plugins")).unwrap().count();
    assert!(remembered >= 1, "the library that loaded is remembered");
}
