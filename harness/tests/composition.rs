//! Every miner composes with every loss that consumes tuples, through the host as in
//! training: the miner's tuples, whatever their form, are converted by the SDK (pairs ⇄
//! triplets), the loss runs on exactly those tuples, and its gradient is exact. Every plugin
//! found is included, so a new miner or loss is covered without editing this file.

use dmlbench_host::{CreateOptions, HostOptions, LossHandle, MinerHandle, PluginInfo, PluginKind, Registry};
use dmlbench_testkit::{GradCheck, check_gradient, check_piecewise_gradient, random_embeddings};
use dmlbench_tuples::Tuples;

const D: usize = 6;

/// Four training classes, as the batches below (losses with proxies need the count).
fn options() -> CreateOptions {
    CreateOptions { config: String::new(), embedding_dim: D, num_classes: 4, seed: 0, base_lr: 0.1 }
}

/// Losses that take mined tuples as row weights (PML's `convert_to_weights`) rather than as
/// the pairs or triplets they compute on: every row still enters them, through its proxy (or,
/// for FastAP, through the other anchors' histograms).
const ROW_WEIGHTING: [&str; 4] = ["proxy_nca", "proxy_anchor", "soft_triple", "fast_ap"];

/// The batch rows that appear in any tuple.
fn used_rows(tuples: &Tuples, n: usize) -> Vec<bool> {
    let mut used = vec![false; n];
    let indices: Vec<u32> = match tuples {
        Tuples::Triplets(t) => t.a.iter().chain(&t.p).chain(&t.n).copied().collect(),
        Tuples::Pairs(p) => p.a1.iter().chain(&p.p).chain(&p.a2).chain(&p.n).copied().collect(),
    };
    for i in indices {
        used[i as usize] = true;
    }
    used
}

fn is_empty(tuples: &Tuples) -> bool {
    match tuples {
        Tuples::Triplets(t) => t.is_empty(),
        Tuples::Pairs(p) => p.positives() + p.negatives() == 0,
    }
}

#[test]
fn every_miner_feeds_every_tuple_consuming_loss() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let registry = Registry::open(&HostOptions {
        root: Some(root),
        build: true,
        plugin_path: Vec::new(),
        ..HostOptions::default()
    });
    let miners: Vec<&PluginInfo> = registry.plugins().iter().filter(|p| p.kind == PluginKind::Miner).collect();
    let losses: Vec<&PluginInfo> =
        registry.plugins().iter().filter(|p| p.kind == PluginKind::Loss && p.capabilities.accepts_tuples()).collect();
    assert!(!miners.is_empty() && !losses.is_empty(), "plugins: {:?}", registry.problems());

    // Four classes of four, each drawn around a class mean so that every miner finds tuples.
    let n = 16;
    let labels: Vec<i64> = (0..n as i64).map(|i| i / 4).collect();
    let means = random_embeddings(90, 4, D);
    let noise = random_embeddings(91, n, D);
    let z: Vec<f32> = (0..n * D).map(|k| means[(k / D / 4) * D + k % D] + 0.8 * noise[k]).collect();
    let one_class = vec![0i64; n];

    for miner_info in &miners {
        let mut miner = MinerHandle::create(miner_info, &options()).unwrap();
        let tuples = miner.mine(&z, D, &labels).unwrap().tuples;
        assert!(!is_empty(&tuples), "miner '{}' found nothing: the composition is not exercised", miner_info.id);
        let one_class_tuples = miner.mine(&z, D, &one_class).unwrap().tuples;
        for loss_info in &losses {
            let what = format!("miner '{}' into loss '{}'", miner_info.id, loss_info.id);
            let mut loss = LossHandle::create(loss_info, &options()).unwrap();
            let out = loss.forward_backward(&z, D, &labels, Some(&tuples)).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(out.loss >= 0.0, "{what}: loss {}", out.loss);
            let weighting = ROW_WEIGHTING.contains(&loss_info.id.as_str());
            // The loss used the mined tuples and nothing else: rows outside them get no gradient.
            for (row, used) in used_rows(&tuples, n).into_iter().enumerate().filter(|_| !weighting) {
                if !used {
                    assert!(
                        out.grad[row * D..(row + 1) * D].iter().all(|&g| g == 0.0),
                        "{what}: row {row} is in no tuple"
                    );
                }
            }
            let options = GradCheck { columns: D, ..GradCheck::default() };
            let mut eval = |x: &[f32]| loss.forward_backward(x, D, &labels, Some(&tuples)).map_err(|e| e.to_string());
            if loss_info.capabilities.piecewise_smooth {
                // As the conformance suite: differences stay on the piece the loss names.
                let f = |x: &[f32]| {
                    let o = eval(x)?;
                    Ok((o.loss, o.piece.ok_or("no piece recorded")?))
                };
                check_piecewise_gradient(f, &z, &out.grad, &options)
            } else {
                check_gradient(|x: &[f32]| eval(x).map(|o| o.loss), &z, &out.grad, &options)
            }
            .unwrap_or_else(|e| panic!("{what}: {e}"));

            // One class: no negatives. An empty set of tuples gives 0 and a zero gradient.
            let out = loss
                .forward_backward(&z, D, &one_class, Some(&one_class_tuples))
                .unwrap_or_else(|e| panic!("{what}, one class: {e}"));
            if is_empty(&one_class_tuples) && !weighting {
                assert_eq!(out.loss, 0.0, "{what}, one class");
                assert!(out.grad.iter().all(|&g| g == 0.0), "{what}, one class");
            }
        }
    }
}
