//! ArcFace against a plain loop written from the definition (both branches of the target
//! logit), finite differences for Z and W, pytorch-metric-learning 2.9's `ArcFaceLoss` (loss,
//! ∂L/∂Z and ∂L/∂W), the clamp at |cos| = 1 where PML's gradient is NaN, an SGD step by hand,
//! the initial distribution of W, a state round trip and configuration checks.

use std::f64::consts::PI;

use dmlbench_loss_arcface::{ArcFace, Config};
use dmlbench_sdk::classifier::SgdConfig;
use dmlbench_sdk::instance::parse_config;
use dmlbench_sdk::margin_softmax::arcface_target;
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

/// The definition in f64: cosines of unit embeddings and unit columns of W (d×C); the own
/// class's cosine replaced by cos(θ + m), or by cos θ − m·sin m once θ > π − m; logits times
/// s; mean cross-entropy. Also returns how many rows took the second branch.
fn reference(margin_degrees: f64, s: f64, z: &[f32], w: &[f32], labels: &[i64], d: usize) -> (f64, usize) {
    let m = margin_degrees * PI / 180.0;
    let classes = w.len() / d;
    let x = naive::normalized_rows(z, d);
    let columns: Vec<Vec<f64>> = (0..classes)
        .map(|c| naive::normalized(&(0..d).map(|l| f64::from(w[l * classes + c])).collect::<Vec<_>>()))
        .collect();
    let (mut total, mut second_branch) = (0.0, 0);
    for (i, &y) in labels.iter().enumerate() {
        let y = y as usize;
        let mut logits: Vec<f64> = columns.iter().map(|wc| s * naive::dot(&x[i], wc)).collect();
        let theta = naive::dot(&x[i], &columns[y]).clamp(-1.0, 1.0).acos();
        logits[y] = if theta <= PI - m {
            s * (theta + m).cos()
        } else {
            second_branch += 1;
            s * (theta.cos() - m * m.sin())
        };
        let denominator: f64 = logits.iter().map(|l| l.exp()).sum();
        total -= (logits[y].exp() / denominator).ln();
    }
    (total / labels.len() as f64, second_branch)
}

fn with_weights(config: Config, context: Context, w: &[f32]) -> Instance<ArcFace> {
    let shape = [context.embedding_dim, context.num_classes];
    let zeros = vec![0.0; w.len()];
    let mut loss = Instance::<ArcFace>::new(config, context).unwrap();
    loss.load(&save_tensors(&[("W", &shape, w), ("W.momentum", &shape, &zeros)]).unwrap()).unwrap();
    loss
}

#[test]
fn matches_the_definition_and_finite_differences_for_z_and_w() {
    let mut second_branch = 0;
    for (m, s) in [(28.6, 64.0), (10.0, 16.0), (0.0, 30.0), (60.0, 4.0)] {
        for (n, d, classes, seed) in [(12, 5, 4, 1), (9, 8, 6, 2), (6, 3, 2, 3), (1, 4, 3, 4)] {
            let what = format!("m {m}°, s {s}, n {n}, d {d}, C {classes}");
            let config = Config { margin: m, scale: s, ..Config::default() };
            let mut loss = Instance::<ArcFace>::new(config, ctx(d, classes, seed)).unwrap();
            let w = loss.plugin().head().weight().to_vec();
            let mut z = random_embeddings(10 + seed, n, d);
            let labels = random_labels(10 + seed, n, classes);
            // Every third row points away from its class (θ near π: the second branch).
            for i in (0..n).step_by(3) {
                for l in 0..d {
                    z[i * d + l] = -w[l * classes + labels[i] as usize] + 0.1 * z[i * d + l];
                }
            }
            let out = loss.forward_backward(&z, &labels, None).unwrap();
            let (want, branch) = reference(m, s, &z, &w, &labels, d);
            second_branch += branch;
            assert_close(out.loss, want, 1e-6, &what);
            let dw = loss.plugin().head().pending_gradient().unwrap().to_vec();
            let f = |w: &[f32]| Ok(reference(m, s, &z, w, &labels, d).0);
            check_gradient(f, &w, &dw, &GradCheck::default()).unwrap_or_else(|e| panic!("{what}, dW: {e}"));
            check_loss_gradient(&mut loss, &z, &labels, None, &GradCheck::default())
                .unwrap_or_else(|e| panic!("{what}, dZ: {e}"));
        }
    }
    assert!(second_branch >= 10, "only {second_branch} rows took the second branch");
}

#[test]
fn target_logit_derivative_matches_finite_differences_on_both_branches() {
    for m_degrees in [28.6f64, 5.0, 90.0] {
        let m = m_degrees.to_radians();
        for k in 1..200 {
            let s = -1.0 + k as f64 / 100.0;
            let boundary = (PI - m).cos();
            if (s - boundary).abs() < 1e-3 {
                continue; // the branches meet here with a jump
            }
            let h = 1e-6;
            let numeric = (arcface_target(m, s + h).0 - arcface_target(m, s - h).0) / (2.0 * h);
            let (_, slope) = arcface_target(m, s);
            assert!(
                (slope - numeric).abs() < 1e-5 * numeric.abs().max(1.0),
                "m {m_degrees}°, s {s}: {slope} vs {numeric}"
            );
        }
        // At and past the clamp the derivative is 0, the value the clamped cosine's.
        assert_eq!(arcface_target(m, 1.0), (m.cos(), 0.0));
        assert_eq!(arcface_target(m, 1.0 + 1e-15), (m.cos(), 0.0));
        assert_eq!(arcface_target(m, -1.0), (-1.0 - m * m.sin(), 0.0));
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
// run(losses.ArcFaceLoss(num_classes=3, embedding_size=4), W3)
// ```
//
// Row 3 is at 177° from its class: the second branch (θ > 180° − 28.6°).

const PML_LOSS: f64 = 1.574088920860e+01;
const PML_DZ: [f64; 32] = [
    -1.737622183631e-01,
    -5.246139116031e-03,
    -7.033248402391e-02,
    1.667906859976e-01,
    6.162639131412e-25,
    1.907472399867e-24,
    -4.900732549534e-24,
    1.702050811541e-24,
    2.632924195215e+00,
    9.064942373460e-01,
    1.169644166663e+00,
    -1.114996332041e+00,
    -2.047242181563e-01,
    4.940746851298e+00,
    -4.053552205906e-01,
    -3.353886140562e+00,
    2.240990704617e-12,
    8.136371192954e-15,
    1.896168210033e-14,
    1.164538382260e-12,
    3.915780245033e+00,
    -1.291088349923e+00,
    3.387740228379e+00,
    -5.834162923169e-01,
    -3.876059163059e-03,
    1.973119539544e-04,
    -2.322360032488e-03,
    4.372035612903e-03,
    3.503766166941e-16,
    2.123138488736e-16,
    -4.630164459479e-17,
    1.229801771676e-16,
];
const PML_DW: [f64; 12] = [
    -2.428670572710e+00,
    -4.556115744312e+00,
    -2.930122700846e+00,
    -1.769519271557e+00,
    -1.895001681355e+00,
    2.174044366576e+00,
    -4.667244025737e+00,
    2.543944006322e+00,
    1.065318559007e-01,
    1.496508005289e+00,
    -5.790908821725e-01,
    -2.902036061922e-01,
];

#[test]
fn matches_pml_loss_and_both_gradients_and_a_step_is_plain_sgd() {
    let optimizer = SgdConfig { lr: Some(0.5), momentum: 0.0, weight_decay: 0.0, nesterov: false };
    let mut loss = with_weights(Config { optimizer, ..Config::default() }, ctx(4, 3, 0), &W);
    let out = loss.forward_backward(&Z, &LABELS, None).unwrap();
    assert_close(out.loss, PML_LOSS, 1e-6, "loss");
    // The gradients go through f32 products (see dmlbench_sdk::margin_softmax): a few 1e-6
    // from PML's float64 at scale 64, inside the 1e-4 parity bar; the loss stays within 1e-6.
    assert_all_close(&out.grad, &PML_DZ, 1e-5, "dL/dZ");
    assert_all_close(loss.plugin().head().pending_gradient().unwrap(), &PML_DW, 1e-5, "dL/dW");
    assert_eq!(reference(28.6, 64.0, &Z, &W, &LABELS, 4).1, 1, "row 3 takes the second branch");
    assert_close(reference(28.6, 64.0, &Z, &W, &LABELS, 4).0, PML_LOSS, 1e-9, "reference loop");
    // One step at lr 0.5 × lr_scale 0.5: W ← W − 0.25·∂L/∂W.
    loss.step(0.5).unwrap();
    let want: Vec<f64> = W.iter().zip(&PML_DW).map(|(&w, g)| f64::from(w) - 0.25 * g).collect();
    assert_all_close(loss.plugin().head().weight(), &want, 1e-5, "W after one step");
}

// An embedding exactly parallel to its class's weights: cos = 1, θ = 0. PML's gradient is NaN
// there (acos' is infinite at 1, and torch.where multiplies the unused branch's infinity by
// 0); PML's loss is finite:
//
// ```python
// loss_fn = losses.ArcFaceLoss(num_classes=2, embedding_size=3, scale=2)
// loss_fn.W.data = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 1.0]], dtype=torch.float64)
// z = torch.tensor([[3.0, 0.0, 0.0]], dtype=torch.float64, requires_grad=True)
// L = loss_fn(z, torch.tensor([0])); L.backward()
// # L = 1.593431496214e-01, z.grad = [[nan, nan, nan]],
// # W.grad = [[nan, 0.20830841976402295], [nan, 0.0], [nan, 0.0]]
// ```
//
// The plugin takes dφ/dcos = 0 there, the clamped value: the other class alone pushes.
#[test]
fn at_the_clamp_the_gradient_is_finite_where_pml_gives_nan() {
    let w = [2.0f32, 0.0, 0.0, 1.0, 0.0, 1.0];
    let mut loss = with_weights(Config { scale: 2.0, ..Config::default() }, ctx(3, 2, 0), &w);
    let out = loss.forward_backward(&[3.0, 0.0, 0.0], &[0], None).unwrap();
    assert_close(out.loss, 1.593431496214e-01, 1e-9, "PML's loss");
    let m = 28.6f64.to_radians();
    let p1 = 1.0 / (1.0 + (2.0 * m.cos()).exp()); // softmax of the other class
    // ∂L/∂x = s·p₁·w₁ with w₁ = (0, 1, 1)/√2, already orthogonal to x; divided by ‖z‖ = 3.
    let side = 2.0 * p1 / 2f64.sqrt() / 3.0;
    assert_all_close(&out.grad, &[0.0, side, side], 1e-6, "dL/dz");
    // Column 0 gets nothing; column 1 gets PML's finite value.
    let dw = loss.plugin().head().pending_gradient().unwrap();
    assert_all_close(dw, &[0.0, 0.20830841976402295, 0.0, 0.0, 0.0, 0.0], 1e-6, "dL/dW");
}

#[test]
fn weights_start_from_a_seeded_standard_normal() {
    let loss = Instance::<ArcFace>::new(Config::default(), ctx(64, 500, 3)).unwrap();
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
    let mut original = Instance::<ArcFace>::new(config.clone(), ctx(d, classes, 1)).unwrap();
    for s in 0..2 {
        original.forward_backward(&random_embeddings(s, n, d), &random_labels(s, n, classes), None).unwrap();
        original.step(1.0).unwrap();
    }
    let bytes = original.save().unwrap();
    let mut restored = Instance::<ArcFace>::new(config, ctx(d, classes, 2)).unwrap();
    restored.load(&bytes).unwrap();
    assert_eq!(restored.save().unwrap(), bytes);
    let z = random_embeddings(41, n, d);
    let labels = random_labels(41, n, classes);
    let a = original.forward_backward(&z, &labels, None).unwrap();
    let b = restored.forward_backward(&z, &labels, None).unwrap();
    assert_eq!((a.loss, a.grad), (b.loss, b.grad));
    let (want, _) = reference(28.6, 64.0, &z, original.plugin().head().weight(), &labels, d);
    assert_close(a.loss, want, 1e-6, "loaded state");
    original.step(0.5).unwrap();
    restored.step(0.5).unwrap();
    assert_eq!(original.save().unwrap(), restored.save().unwrap());
    let e = Instance::<ArcFace>::new(Config::default(), ctx(d, 5, 0)).unwrap().load(&bytes).unwrap_err();
    assert!(e.message().contains("'W'"), "{e}");
}

#[test]
fn one_class_and_one_row_are_ordinary_batches() {
    // There is no degenerate batch: the other classes' weights are always the negatives.
    let (d, classes) = (4, 3);
    let mut loss = Instance::<ArcFace>::new(Config::default(), ctx(d, classes, 5)).unwrap();
    let w = loss.plugin().head().weight().to_vec();
    let z = random_embeddings(6, 5, d);
    for labels in [&[2i64; 5][..], &[1]] {
        let z = &z[..labels.len() * d];
        let out = loss.forward_backward(z, labels, None).unwrap();
        assert_close(out.loss, reference(28.6, 64.0, z, &w, labels, d).0, 1e-6, "one class");
        assert!(out.loss > 0.0 && out.grad.iter().all(|g| g.is_finite()));
    }
}

#[test]
fn invalid_settings_name_their_field() {
    for (text, field) in [
        ("(margin: -1.0)", "margin"),
        ("(margin: 181.0)", "margin"),
        ("(scale: -64.0)", "scale"),
        ("(optimizer: (lr: Some(-1.0)))", "optimizer.lr"),
        ("(optimizer: (momentum: 1.0))", "optimizer.momentum"),
        ("(optimizer: (weight_decay: -1.0))", "optimizer.weight_decay"),
        ("(optimizer: (nesterov: true))", "optimizer.nesterov"),
    ] {
        let e = Instance::<ArcFace>::from_config_text(text, ctx(4, 3, 0)).err().unwrap();
        assert!(e.message().contains(field), "{text}: {e}");
    }
    let e = Instance::<ArcFace>::from_config_text("", ctx(0, 3, 0)).err().unwrap();
    assert!(e.message().contains("num_classes") && e.message().contains("embedding_dim"), "{e}");
    let config = parse_config::<ArcFace>("(optimizer: (momentum: 0.9))").unwrap();
    assert_eq!(config.optimizer, SgdConfig { lr: None, momentum: 0.9, weight_decay: 0.0, nesterov: false });
}
