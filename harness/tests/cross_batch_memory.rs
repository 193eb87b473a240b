//! The cross-batch memory against pytorch-metric-learning 2.9's `CrossBatchMemory`: the same
//! three batches through a memory of 12 (the third wraps around), with each reference-taking
//! loss alone and with miners that mine against the memory. The expected losses and gradients
//! come from `benches/pytorch/cross_batch_memory.py` (float64), stored in
//! `tests/fixtures/cross_batch_memory.json` with the batches themselves. The same file holds
//! PML's losses and a miner called on one batch with `ref_emb`, which `dmlbench loss` and
//! `dmlbench mine` must reproduce from `.npy` files.

mod common;

use common::{dmlbench, run, write_batch};
use dmlbench::train::memory::CrossBatchMemory;
use dmlbench_host::{CreateOptions, HostOptions, LossHandle, MinerHandle, PluginKind, Registry};
use serde_json::Value;

fn fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/cross_batch_memory.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().flat_map(|row| row.as_array().unwrap()).map(|x| x.as_f64().unwrap()).collect()
}

/// The fixture's batches as (embeddings, labels).
fn batches(fixture: &Value) -> Vec<(Vec<f32>, Vec<i64>)> {
    fixture["batches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            let z = floats(&b["embeddings"]).iter().map(|&x| x as f32).collect();
            let labels = b["labels"].as_array().unwrap().iter().map(|l| l.as_i64().unwrap()).collect();
            (z, labels)
        })
        .collect()
}

fn indices(v: &Value) -> Vec<u64> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect()
}

#[test]
fn loss_and_mine_with_reference_files_match_pml() {
    let fixture = fixture();
    let batches = batches(&fixture);
    let d = batches[0].0.len() / batches[0].1.len();
    let dir = tempfile::tempdir().unwrap();
    let (embeddings, labels) = write_batch(dir.path(), &batches[0].0, d, &batches[0].1);
    let refs = dir.path().join("refs");
    std::fs::create_dir(&refs).unwrap();
    let (ref_embeddings, ref_labels) = write_batch(&refs, &batches[1].0, d, &batches[1].1);
    let files = |command: &str, id: &str| {
        let mut c = dmlbench();
        c.args([command, id, "--json", "--embeddings"]).arg(&embeddings).arg("--labels").arg(&labels);
        c.arg("--ref-embeddings").arg(&ref_embeddings).arg("--ref-labels").arg(&ref_labels);
        c
    };
    for expected in fixture["direct"].as_array().unwrap() {
        let id = expected["loss"].as_str().unwrap();
        let (code, stdout, stderr) = run(&mut files("loss", id));
        assert_eq!(code, 0, "{stderr}");
        let got: Value = serde_json::from_str(&stdout).unwrap();
        let (value, want) = (got["loss"].as_f64().unwrap(), expected["value"].as_f64().unwrap());
        assert!((value - want).abs() <= 1e-5 * want.abs(), "{id}: loss {value} vs PML {want}");
        let (grad, want_grad) = (floats(&got["grad"]), floats(&expected["grad"]));
        let largest = want_grad.iter().fold(0.0f64, |m, g| m.max(g.abs()));
        for (g, w) in grad.iter().zip(&want_grad) {
            assert!((g - w).abs() <= 1e-4 * largest, "{id}: gradient {g} vs PML {w}");
        }
    }
    let mined = &fixture["direct_mined"];
    let (code, stdout, stderr) = run(&mut files("mine", mined["miner"].as_str().unwrap()));
    assert_eq!(code, 0, "{stderr}");
    let got: Value = serde_json::from_str(&stdout).unwrap();
    for key in ["a", "p", "n"] {
        assert_eq!(indices(&got[key]), indices(&mined[key]), "batch_hard's {key}");
    }
    // A loss that does not take references says so.
    let (code, _, stderr) = run(&mut files("loss", "cross_entropy"));
    assert_ne!(code, 0);
    assert!(stderr.contains("does not accept reference embeddings"), "{stderr}");
}

#[test]
fn memory_losses_and_miners_match_pml() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let registry = Registry::open(&HostOptions { root: Some(root), build: true, ..HostOptions::default() });
    let fixture = fixture();
    let size = fixture["memory_size"].as_u64().unwrap() as usize;
    let batches = batches(&fixture);
    let d = batches[0].0.len() / batches[0].1.len();
    let options = CreateOptions { config: String::new(), embedding_dim: d, num_classes: 4, seed: 0, base_lr: 0.1 };
    let cases = fixture["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 8);
    for case in cases {
        let loss_id = case["loss"].as_str().unwrap();
        let miner_id = case["miner"].as_str();
        let what = format!("{loss_id} with {}", miner_id.unwrap_or("no miner"));
        let info = registry.get(PluginKind::Loss, loss_id).unwrap_or_else(|e| panic!("{e}: {:?}", registry.problems()));
        let mut loss = LossHandle::create(info, &options).unwrap();
        let mut miner =
            miner_id.map(|id| MinerHandle::create(registry.get(PluginKind::Miner, id).unwrap(), &options).unwrap());
        let mut memory = CrossBatchMemory::new(size, d);
        for (step, ((z, labels), expected)) in batches.iter().zip(case["steps"].as_array().unwrap()).enumerate() {
            memory.enqueue(z, labels);
            let references = memory.references();
            let tuples = miner.as_mut().map(|m| m.mine_against(z, d, labels, Some(&references)).unwrap().tuples);
            let out = loss.forward_backward_against(z, d, labels, Some(&references), tuples.as_ref()).unwrap();
            let want = expected["loss"].as_f64().unwrap();
            assert!(
                (out.loss - want).abs() <= 1e-5 * want.abs().max(1.0),
                "{what}, step {step}: loss {} vs PML {want}",
                out.loss
            );
            let want_grad = floats(&expected["grad"]);
            let largest = want_grad.iter().fold(0.0f64, |m, g| m.max(g.abs())).max(1e-6);
            for (i, (&g, &w)) in out.grad.iter().zip(&want_grad).enumerate() {
                assert!((f64::from(g) - w).abs() <= 1e-4 * largest, "{what}, step {step}: grad[{i}] {g} vs PML {w}");
            }
        }
    }
}

#[test]
fn a_loss_without_references_is_refused_a_memory() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let registry = Registry::open(&HostOptions { root: Some(root), build: true, ..HostOptions::default() });
    let info = registry.get(PluginKind::Loss, "cross_entropy").unwrap();
    assert!(!info.capabilities.accepts_references);
    let options = CreateOptions { config: String::new(), embedding_dim: 2, num_classes: 2, seed: 0, base_lr: 0.1 };
    let mut loss = LossHandle::create(info, &options).unwrap();
    let mut memory = CrossBatchMemory::new(4, 2);
    let (z, labels) = ([1.0, 0.0, 0.0, 1.0], [0, 1]);
    memory.enqueue(&z, &labels);
    let e = loss.forward_backward_against(&z, 2, &labels, Some(&memory.references()), None).unwrap_err();
    assert!(e.to_string().contains("does not accept reference embeddings"), "{e}");
}
