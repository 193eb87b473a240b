//! `dmlbench plugins`, `loss` and `mine` on the reference plugins, through the ABI.

mod common;

use common::{dmlbench, json, run, write_batch};
use dmlbench_sdk::Instance;
use dmlbench_sdk::testing::{context, random_embeddings, random_labels};
use dmlbench_sdk::tuples::{Triplets, Tuples};

#[test]
fn list_shows_the_reference_plugins_with_their_origin() {
    let (code, stdout, stderr) = run(dmlbench().args(["plugins", "list", "--json"]));
    assert_eq!(code, 0, "{stderr}");
    let v = json(&stdout);
    let plugins = v["plugins"].as_array().unwrap();
    let find = |kind: &str, id: &str| plugins.iter().find(|p| p["kind"] == kind && p["id"] == id).cloned();
    let contrastive = find("loss", "contrastive").expect("contrastive is listed");
    assert!(contrastive["source"]["crate_dir"].as_str().unwrap().ends_with("plugins/losses/contrastive"));
    assert_eq!(contrastive["capabilities"]["accepts_pairs"], true);
    assert!(find("miner", "batch_hard").is_some());
    assert_eq!(v["problems"].as_array().unwrap().len(), 0, "{:?}", v["problems"]);
}

#[test]
fn show_prints_the_default_config_and_unknown_ids_are_errors() {
    let (code, stdout, _) = run(dmlbench().args(["plugins", "show", "contrastive"]));
    assert_eq!(code, 0);
    assert!(stdout.contains("neg_margin: 1.0") && stdout.contains("measure: euclidean"), "{stdout}");
    let (code, _, stderr) = run(dmlbench().args(["plugins", "show", "no_such_plugin"]));
    assert_eq!(code, 2);
    assert!(stderr.contains("no plugin matches 'no_such_plugin'") && stderr.contains("loss:contrastive"), "{stderr}");
}

#[test]
fn show_lists_the_state_tensors_of_stateful_plugins() {
    let (code, stdout, stderr) =
        run(dmlbench().args(["plugins", "show", "cross_entropy", "--embedding-dim", "4", "--num-classes", "3"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("state (embedding size 4, 3 classes):"), "{stdout}");
    for line in ["classifier.weight [3, 4] F32", "classifier.bias [3] F32", "classifier.weight_momentum [3, 4] F32"] {
        assert!(stdout.contains(line), "{line} missing from:\n{stdout}");
    }
    let (code, stdout, _) = run(dmlbench().args(["plugins", "show", "contrastive"]));
    assert_eq!(code, 0);
    assert!(!stdout.contains("state"), "a plugin without state lists none:\n{stdout}");
}

#[test]
fn loss_evaluates_with_the_parameters_of_a_state_file() {
    use dmlbench_sdk::classifier::{ClassifierConfig, STATE_NAMES};
    use dmlbench_sdk::testing::naive;

    let dir = tempfile::tempdir().unwrap();
    let (n, d, classes) = (6, 4, 3);
    let z = random_embeddings(11, n, d);
    let labels = random_labels(11, n, classes);
    let (e, l) = write_batch(dir.path(), &z, d, &labels);
    // A classifier with known weights and biases (momentum and step counter zero).
    let w = random_embeddings(12, classes, d);
    let b = [0.5f32, -0.25, 0.0];
    let zeros = vec![0.0f32; classes * d];
    let steps = [0.0f32; 4];
    let state = dmlbench_sdk::state::save_tensors(&[
        (STATE_NAMES[0], &[classes, d], &w),
        (STATE_NAMES[1], &[classes], &b),
        (STATE_NAMES[2], &[classes, d], &zeros),
        (STATE_NAMES[3], &[classes], &zeros[..classes]),
        (STATE_NAMES[4], &[4], &steps),
    ])
    .unwrap();
    let file = dir.path().join("classifier.safetensors");
    std::fs::write(&file, &state).unwrap();

    let loss = |extra: &[&std::ffi::OsStr]| {
        let mut cmd = dmlbench();
        cmd.args(["loss", "cross_entropy", "--json", "--embeddings"]).arg(&e).arg("--labels").arg(&l).args(extra);
        run(&mut cmd)
    };
    let (code, stdout, stderr) = loss(&["--state".as_ref(), file.as_os_str()]);
    assert_eq!(code, 0, "{stderr}");
    let want = naive::classifier_loss(&ClassifierConfig::default(), &w, &b, &z, &labels, d, None);
    let got = json(&stdout)["loss"].as_f64().unwrap();
    assert!((got - want).abs() < 1e-5 * want.abs().max(1.0), "{got} vs {want}");
    // Without the state the classifier starts at zero: the uniform prediction.
    let (_, stdout, _) = loss(&[]);
    assert!((json(&stdout)["loss"].as_f64().unwrap() - want).abs() > 1e-3);

    // A file that is not a state, and a state of the wrong shape, are refused with the file named.
    let garbage = dir.path().join("garbage.safetensors");
    std::fs::write(&garbage, b"not a state").unwrap();
    let (code, _, stderr) = loss(&["--state".as_ref(), garbage.as_os_str()]);
    assert_eq!(code, 2);
    assert!(stderr.contains("garbage.safetensors") && stderr.contains("safetensors"), "{stderr}");
    let wrong = dir.path().join("wrong.safetensors");
    let small = dmlbench_sdk::state::save_tensors(&[(STATE_NAMES[0], &[1, 1], &[1.0])]).unwrap();
    std::fs::write(&wrong, small).unwrap();
    let (code, _, stderr) = loss(&["--state".as_ref(), wrong.as_os_str()]);
    assert_eq!(code, 2);
    assert!(stderr.contains("wrong.safetensors") && stderr.contains(STATE_NAMES[0]), "{stderr}");
    // A loss without state refuses one.
    let mut cmd = dmlbench();
    cmd.args(["loss", "contrastive", "--embeddings"]).arg(&e).arg("--labels").arg(&l).arg("--state").arg(&file);
    let (code, _, stderr) = run(&mut cmd);
    assert_eq!(code, 2);
    assert!(stderr.contains("loss 'contrastive' has no state"), "{stderr}");
}

#[test]
fn reference_plugins_pass_the_conformance_suite() {
    let (code, stdout, stderr) = run(dmlbench().args(["plugins", "check", "contrastive", "batch_hard", "--json"]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let v = json(&stdout);
    assert_eq!(v["passed"], true);
    let checks = v["checks"].as_array().unwrap();
    // Both plugins, every shape of the suite, and the rejection checks ran.
    for name in [
        "gradient: one class only",
        "gradient: singletons",
        "gradient: n = 2, same class",
        "gradient: with mined pairs",
        "NaN embedding is rejected",
        "label count mismatch is rejected",
        "out-of-range tuple index is rejected",
        "malformed config is rejected",
    ] {
        assert!(checks.iter().any(|c| c["plugin"] == "loss:contrastive" && c["check"] == name), "missing check {name}");
    }
    assert!(checks.iter().any(|c| c["plugin"] == "miner:batch_hard" && c["check"] == "same seed, same result"));
}

#[test]
fn loss_through_the_abi_equals_the_direct_call() {
    let dir = tempfile::tempdir().unwrap();
    let (n, d) = (12, 5);
    let z = random_embeddings(3, n, d);
    let labels = random_labels(3, n, 3);
    let (e, l) = write_batch(dir.path(), &z, d, &labels);
    let mut cmd = dmlbench();
    cmd.args(["loss", "contrastive", "--json", "--config", "(neg_margin: 1.2)", "--embeddings"])
        .arg(&e)
        .arg("--labels")
        .arg(&l);
    let (code, stdout, stderr) = run(&mut cmd);
    assert_eq!(code, 0, "{stderr}");
    let v = json(&stdout);

    let config =
        dmlbench_sdk::instance::parse_config::<dmlbench_loss_contrastive::Contrastive>("(neg_margin: 1.2)").unwrap();
    let mut direct = Instance::<dmlbench_loss_contrastive::Contrastive>::new(config, context(d, 0)).unwrap();
    let want = direct.forward_backward(&z, &labels, None).unwrap();
    // JSON carries f64 loss and f32 gradient values exactly.
    assert_eq!(v["loss"].as_f64().unwrap(), want.loss);
    let grad: Vec<f32> = v["grad"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| {
            assert_eq!(row.as_array().unwrap().len(), d);
            row.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(grad, want.grad);
    assert!(v.get("tuples").is_none());
}

#[test]
fn loss_with_a_miner_uses_the_mined_tuples() {
    let dir = tempfile::tempdir().unwrap();
    let (n, d) = (16, 4);
    let z = random_embeddings(8, n, d);
    let labels = random_labels(8, n, 4);
    let (e, l) = write_batch(dir.path(), &z, d, &labels);
    let mut cmd = dmlbench();
    cmd.args(["loss", "contrastive", "--miner", "batch_hard", "--json", "--embeddings"])
        .arg(&e)
        .arg("--labels")
        .arg(&l);
    let (code, stdout, stderr) = run(&mut cmd);
    assert_eq!(code, 0, "{stderr}");
    let v = json(&stdout);
    assert_eq!(v["tuples"]["kind"], "triplets");
    // The miner alone gives the same tuples...
    let mut cmd = dmlbench();
    cmd.args(["mine", "batch_hard", "--json", "--embeddings"]).arg(&e).arg("--labels").arg(&l);
    let (code, mined, stderr) = run(&mut cmd);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(json(&mined), v["tuples"]);
    // ...and the loss on exactly those tuples, called directly, gives the same value.
    let as_u32 = |key: &str| -> Vec<u32> {
        v["tuples"][key].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
    };
    let tuples = Tuples::Triplets(Triplets { a: as_u32("a"), p: as_u32("p"), n: as_u32("n") });
    assert!(tuples_len(&tuples) > n / 2, "most anchors have a positive and a negative");
    let mut loss = Instance::<dmlbench_loss_contrastive::Contrastive>::new(Default::default(), context(d, 0)).unwrap();
    assert_eq!(v["loss"].as_f64().unwrap(), loss.forward_backward(&z, &labels, Some(&tuples)).unwrap().loss);
}

fn tuples_len(t: &Tuples) -> usize {
    match t {
        Tuples::Triplets(t) => t.len(),
        Tuples::Pairs(p) => p.positives(),
    }
}

#[test]
fn mine_prints_pml_layout_json() {
    let dir = tempfile::tempdir().unwrap();
    let z = [1.0, 0.0, 0.9, 0.1, 0.0, 1.0, 0.1, 0.9];
    let (e, l) = write_batch(dir.path(), &z, 2, &[0, 0, 1, 1]);
    let mut cmd = dmlbench();
    cmd.args(["mine", "batch_hard", "--json", "--embeddings"]).arg(&e).arg("--labels").arg(&l);
    let (code, stdout, stderr) = run(&mut cmd);
    assert_eq!(code, 0, "{stderr}");
    // Hand-computed: each point's only positive is its partner; the closest negative of 0
    // and 1 is 3 (0.1, 0.9), and of 2 and 3 is 1 (0.9, 0.1).
    assert_eq!(
        json(&stdout),
        serde_json::json!({"kind": "triplets", "a": [0, 1, 2, 3], "p": [1, 0, 3, 2], "n": [3, 3, 1, 1]})
    );
}

#[test]
fn bad_inputs_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (e, _) = write_batch(dir.path(), &[1.0, f32::NAN, 0.0, 1.0], 2, &[0, 1]);
    let short = dir.path().join("short.npy");
    dmlbench_datasets::npy::write_labels(&short, &[0]).unwrap();
    let mut cmd = dmlbench();
    cmd.args(["loss", "contrastive", "--embeddings"]).arg(&e).arg("--labels").arg(&short);
    let (code, _, stderr) = run(&mut cmd);
    assert_eq!(code, 2);
    assert!(stderr.contains("embeddings.npy") && stderr.contains("NaN"), "{stderr}");

    let (e, l) = write_batch(dir.path(), &[1.0, 0.0, 0.0, 1.0], 2, &[0, 1]);
    let mut cmd = dmlbench();
    cmd.args(["loss", "contrastive", "--config", "(neg_margin: oops)", "--embeddings"]).arg(&e).arg("--labels").arg(&l);
    let (code, _, stderr) = run(&mut cmd);
    assert_eq!(code, 2);
    assert!(stderr.contains("loss:contrastive create (bad config)"), "{stderr}");

    let mut cmd = dmlbench();
    cmd.args(["loss", "batch_hard", "--embeddings"]).arg(&e).arg("--labels").arg(&l);
    let (code, _, stderr) = run(&mut cmd);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("no loss plugin 'batch_hard'; known losses: ") && stderr.contains("contrastive"),
        "{stderr}"
    );
}

/// Labels are checked before any plugin is created: a huge label is not a reason to allocate a
/// classifier with that many rows, and a negative one is named with its index instead of
/// surfacing as a plugin's complaint about the class count. The command runs with its address
/// space limited, so that a regression fails here instead of exhausting the machine.
#[cfg(unix)]
#[test]
fn labels_are_checked_before_any_plugin_sees_them() {
    // Have the plugin libraries built beforehand, outside the memory limit.
    assert_eq!(run(dmlbench().args(["plugins", "list"])).0, 0);
    let dir = tempfile::tempdir().unwrap();
    let z = random_embeddings(1, 4, 8);
    let limited = |labels: &[i64], extra: &[&str]| {
        let (e, l) = write_batch(dir.path(), &z, 8, labels);
        let cmd = dmlbench();
        let program = cmd.get_program().to_owned();
        let args: Vec<std::ffi::OsString> = cmd.get_args().map(|a| a.to_owned()).collect();
        let mut shell = std::process::Command::new("sh");
        shell.arg("-c").arg(r#"ulimit -v 8000000 && exec "$0" "$@""#).arg(program).args(args);
        for (key, value) in cmd.get_envs() {
            match value {
                Some(value) => shell.env(key, value),
                None => shell.env_remove(key),
            };
        }
        shell.args(["loss", "cross_entropy", "--embeddings"]).arg(&e).arg("--labels").arg(&l).args(extra);
        run(&mut shell)
    };
    let (code, _, stderr) = limited(&[0, 1, 1_000_000_000_000_000, 1], &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(
            "labels.npy: label 1000000000000000 at index 2 would make 1000000000000001 classes (the largest label + 1)"
        ),
        "{stderr}"
    );
    let (code, _, stderr) = limited(&[0, 1, 2, -1], &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("labels.npy: label -1 at index 3 is negative; labels are class indices 0..C-1"),
        "{stderr}"
    );
    assert!(!stderr.contains("num_classes"), "{stderr}");
    let (code, _, stderr) = limited(&[0, 1, 2, 7], &["--num-classes", "5"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("labels.npy: label 7 at index 3 is outside 0..5 (--num-classes 5)"), "{stderr}");
    // Within the limit, the same command works.
    let (code, stdout, stderr) = limited(&[0, 1, 2, 1], &["--num-classes", "5", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(json(&stdout)["loss"].as_f64().unwrap().is_finite());
}
