//! CosFace against a plain loop written from the definition, finite differences for Z and W,
//! pytorch-metric-learning 2.9's `CosFaceLoss` (loss, ∂L/∂Z and ∂L/∂W), an SGD step by hand,
//! the initial distribution of W, a state round trip and configuration checks.

use dmlbench_loss_cosface::{Config, CosFace};
use dmlbench_sdk::classifier::SgdConfig;
use dmlbench_sdk::instance::parse_config;
use dmlbench_sdk::state::save_tensors;
use dmlbench_sdk::testing::batches::margin_softmax::{LABELS, W, Z};
use dmlbench_sdk::testing::{
    GradCheck, assert_all_close, assert_close, check_gradient, check_loss_gradient, naive, random_embeddings,
    random_labels,
};
use dmlbench_sdk::{Context, Instance};

fn ctx(d: usize, classes: usize, seed: u64) -> Context {
    Context { embedding_dim: d, num_classes: classes, seed, base_lr: 0.1 }
}

/// The definition in f64: cosines of unit embeddings and unit columns of W (d×C), logits
/// s·cos with m taken off the own class's cosine, mean cross-entropy.
fn reference(m: f64, s: f64, z: &[f32], w: &[f32], labels: &[i64], d: usize) -> f64 {
    let classes = w.len() / d;
    let x = naive::normalized_rows(z, d);
    let columns: Vec<Vec<f64>> = (0..classes)
        .map(|c| naive::normalized(&(0..d).map(|l| f64::from(w[l * classes + c])).collect::<Vec<_>>()))
        .collect();
    let mut total = 0.0;
    for (i, &y) in labels.iter().enumerate() {
        let logits: Vec<f64> = (0..classes)
            .map(|c| s * (naive::dot(&x[i], &columns[c]) - if c == y as usize { m } else { 0.0 }))
            .collect();
        let denominator: f64 = logits.iter().map(|l| l.exp()).sum();
        total -= (logits[y as usize].exp() / denominator).ln();
    }
    total / labels.len() as f64
}

fn with_weights(config: Config, context: Context, w: &[f32]) -> Instance<CosFace> {
    let shape = [context.embedding_dim, context.num_classes];
    let zeros = vec![0.0; w.len()];
    let mut loss = Instance::<CosFace>::new(config, context).unwrap();
    loss.load(&save_tensors(&[("W", &shape, w), ("W.momentum", &shape, &zeros)]).unwrap()).unwrap();
    loss
}

#[test]
fn matches_the_definition_and_finite_differences_for_z_and_w() {
    for (m, s) in [(0.35, 64.0), (0.1, 10.0), (0.0, 30.0), (0.6, 2.0)] {
        for (n, d, classes, seed) in [(12, 5, 4, 1), (9, 8, 6, 2), (6, 3, 2, 3), (1, 4, 3, 4)] {
            let what = format!("m {m}, s {s}, n {n}, d {d}, C {classes}");
            let config = Config { margin: m, scale: s, ..Config::default() };
            let mut loss = Instance::<CosFace>::new(config, ctx(d, classes, seed)).unwrap();
            let w = loss.plugin().head().weight().to_vec();
            let z = random_embeddings(10 + seed, n, d);
            let labels = random_labels(10 + seed, n, classes);
            let out = loss.forward_backward(&z, &labels, None).unwrap();
            assert_close(out.loss, reference(m, s, &z, &w, &labels, d), 1e-6, &what);
            let dw = loss.plugin().head().pending_gradient().unwrap().to_vec();
            let f = |w: &[f32]| Ok(reference(m, s, &z, w, &labels, d));
            check_gradient(f, &w, &dw, &GradCheck::default()).unwrap_or_else(|e| panic!("{what}, dW: {e}"));
            check_loss_gradient(&mut loss, &z, &labels, None, &GradCheck::default())
                .unwrap_or_else(|e| panic!("{what}, dZ: {e}"));
        }
    }
}

// PML parity. The batch, labels and W below, and the values from:
//
// ```python
// import torch
// from pytorch_metric_learning import losses  # 2.9.0
// Z = [[0.9, -0.2, 0.4, 1.1], [-0.5, 1.3, 0.2, -0.7], [0.3, 0.8, -1.2, 0.1], [-1.1, -0.2, 0.6, -0.3],
//      [0.2, 1.0, 0.5, -0.4], [0.7, -0.6, -0.9, 0.8], [1.2, 0.1, -0.3, 0.9], [-0.4, 0.9, 1.1, 0.0]]
// y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
// W3 = [[1.0, -0.3, 0.2], [0.2, 1.1, 0.4], [-0.5, 0.1, -1.3], [0.3, -0.8, 0.5]]
// def run(loss_fn, W):
//     # f32 inputs, as the plugin sees them, computed in f64
//     z = torch.tensor(Z, dtype=torch.float32).double().requires_grad_()
//     loss_fn.W.data = torch.tensor(W, dtype=torch.float32).double()
//     L = loss_fn(z, y)
//     L.backward()
//     fmt = lambda t: ", ".join("%.12e" % v for v in t.flatten().tolist())
//     print("%.12e" % L.item()); print(fmt(z.grad)); print(fmt(loss_fn.W.grad))
// run(losses.CosFaceLoss(num_classes=3, embedding_size=4), W3)
// ```

const PML_LOSS: f64 = 1.625730730123e+01;
const PML_DZ: [f64; 32] = [
    -1.014781721205e-04,
    8.751845099469e-06,
    -8.119966611433e-05,
    1.141459870393e-04,
    6.683798019721e-21,
    2.068782542193e-20,
    -5.315175172727e-20,
    1.845988966912e-20,
    4.088226214355e+00,
    2.932345004453e-01,
    1.188243065430e+00,
    -3.516378119459e-01,
    -2.047242181563e-01,
    4.940746851298e+00,
    -4.053552205906e-01,
    -3.353886140562e+00,
    8.188497812274e-13,
    4.171511942824e-14,
    -1.074647531537e-13,
    3.793817481899e-13,
    3.646851835691e+00,
    -4.394028323007e-01,
    2.599860235417e+00,
    -5.957047429694e-01,
    -3.984464479293e-02,
    1.319431265862e-02,
    -5.515951601624e-02,
    3.327365521868e-02,
    3.467801011618e-19,
    2.101345080762e-19,
    -4.582637148573e-20,
    1.217178209022e-19,
];
const PML_DW: [f64; 12] = [
    -3.238031230139e+00,
    -4.556115744132e+00,
    -2.364282012385e+00,
    -7.357729183138e-01,
    -1.895001681140e+00,
    1.601343086986e+00,
    -5.858745479809e+00,
    2.543944005758e+00,
    1.968990100331e-02,
    1.519376859926e+00,
    -5.790908820153e-01,
    -2.841679289013e-01,
];

#[test]
fn matches_pml_loss_and_both_gradients_and_a_step_is_plain_sgd() {
    let optimizer = SgdConfig { lr: Some(0.5), momentum: 0.0, weight_decay: 0.0, nesterov: false };
    let mut loss = with_weights(Config { optimizer, ..Config::default() }, ctx(4, 3, 0), &W);
    let out = loss.forward_backward(&Z, &LABELS, None).unwrap();
    assert_close(out.loss, PML_LOSS, 1e-6, "loss");
    assert_all_close(&out.grad, &PML_DZ, 1e-6, "dL/dZ");
    assert_all_close(loss.plugin().head().pending_gradient().unwrap(), &PML_DW, 1e-6, "dL/dW");
    assert_close(reference(0.35, 64.0, &Z, &W, &LABELS, 4), PML_LOSS, 1e-9, "reference loop");
    // One step at lr 0.5 × lr_scale 0.5: W ← W − 0.25·∂L/∂W.
    loss.step(0.5).unwrap();
    let want: Vec<f64> = W.iter().zip(&PML_DW).map(|(&w, g)| f64::from(w) - 0.25 * g).collect();
    assert_all_close(loss.plugin().head().weight(), &want, 1e-6, "W after one step");
}

#[test]
fn weights_start_from_a_seeded_standard_normal() {
    let loss = Instance::<CosFace>::new(Config::default(), ctx(64, 500, 3)).unwrap();
    let w = loss.plugin().head().weight();
    let count = w.len() as f64;
    let mean = w.iter().map(|&v| f64::from(v)).sum::<f64>() / count;
    let var = w.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / count;
    assert!(count == 32_000.0 && mean.abs() < 0.03 && (var - 1.0).abs() < 0.04, "mean {mean}, variance {var}");
}

#[test]
fn state_round_trip_continues_the_run_exactly() {
    let (n, d, classes) = (8, 5, 4);
    let optimizer = SgdConfig { lr: Some(0.3), momentum: 0.9, weight_decay: 1e-3, nesterov: false };
    let config = Config { optimizer, ..Config::default() };
    let mut original = Instance::<CosFace>::new(config.clone(), ctx(d, classes, 1)).unwrap();
    for s in 0..2 {
        original.forward_backward(&random_embeddings(s, n, d), &random_labels(s, n, classes), None).unwrap();
        original.step(1.0).unwrap();
    }
    let bytes = original.save().unwrap();
    let mut restored = Instance::<CosFace>::new(config, ctx(d, classes, 2)).unwrap();
    restored.load(&bytes).unwrap();
    assert_eq!(restored.save().unwrap(), bytes);
    let z = random_embeddings(41, n, d);
    let labels = random_labels(41, n, classes);
    let a = original.forward_backward(&z, &labels, None).unwrap();
    let b = restored.forward_backward(&z, &labels, None).unwrap();
    assert_eq!((a.loss, a.grad), (b.loss, b.grad));
    assert_close(a.loss, reference(0.35, 64.0, &z, original.plugin().head().weight(), &labels, d), 1e-6, "state");
    original.step(0.5).unwrap();
    restored.step(0.5).unwrap();
    assert_eq!(original.save().unwrap(), restored.save().unwrap());
    let e = Instance::<CosFace>::new(Config::default(), ctx(d, 5, 0)).unwrap().load(&bytes).unwrap_err();
    assert!(e.message().contains("'W'"), "{e}");
}

#[test]
fn one_class_and_one_row_are_ordinary_batches() {
    // There is no degenerate batch: the other classes' weights are always the negatives.
    let (d, classes) = (4, 3);
    let mut loss = Instance::<CosFace>::new(Config::default(), ctx(d, classes, 5)).unwrap();
    let w = loss.plugin().head().weight().to_vec();
    let z = random_embeddings(6, 5, d);
    for labels in [&[2i64; 5][..], &[1]] {
        let z = &z[..labels.len() * d];
        let out = loss.forward_backward(z, labels, None).unwrap();
        assert_close(out.loss, reference(0.35, 64.0, z, &w, labels, d), 1e-6, "one class");
        assert!(out.loss > 0.0 && out.grad.iter().all(|g| g.is_finite()));
    }
}

#[test]
fn invalid_settings_name_their_field() {
    for (text, field) in [
        ("(margin: -0.1)", "margin"),
        ("(scale: 0.0)", "scale"),
        ("(optimizer: (lr: Some(0.0)))", "optimizer.lr"),
        ("(optimizer: (momentum: -0.5))", "optimizer.momentum"),
        ("(optimizer: (weight_decay: -1.0))", "optimizer.weight_decay"),
        ("(optimizer: (nesterov: true))", "optimizer.nesterov"),
    ] {
        let e = Instance::<CosFace>::from_config_text(text, ctx(4, 3, 0)).err().unwrap();
        assert!(e.message().contains(field), "{text}: {e}");
    }
    let e = Instance::<CosFace>::from_config_text("", ctx(4, 0, 0)).err().unwrap();
    assert!(e.message().contains("num_classes") && e.message().contains("embedding_dim"), "{e}");
    let config = parse_config::<CosFace>("(optimizer: (lr: Some(0.01)))").unwrap();
    assert_eq!(config.optimizer, SgdConfig { lr: Some(0.01), momentum: 0.0, weight_decay: 0.0, nesterov: false });
}
