//! Sub-centre ArcFace against a plain loop written from the definition, finite differences for
//! Z and W, pytorch-metric-learning 2.9's `SubCenterArcFaceLoss` (loss, ∂L/∂Z and ∂L/∂W), ties
//! between sub-centres, an SGD step by hand, the initial distribution of W, a state round trip
//! and configuration checks.

use std::f64::consts::PI;

use dmlbench_loss_sub_center_arcface::{Config, SubCenterArcFace};
use dmlbench_sdk::classifier::SgdConfig;
use dmlbench_sdk::instance::parse_config;
use dmlbench_sdk::state::save_tensors;
use dmlbench_sdk::testing::batches::margin_softmax::{LABELS, Z};
use dmlbench_sdk::testing::{
    GradCheck, assert_all_close, assert_close, check_gradient, check_loss_gradient, naive, random_embeddings,
    random_labels,
};
use dmlbench_sdk::{Context, Instance};

fn ctx(d: usize, classes: usize, seed: u64) -> Context {
    Context { embedding_dim: d, num_classes: classes, seed, base_lr: 0.1 }
}

/// The definition in f64: for each class the largest cosine between the unit embedding and
/// its K unit sub-centres (columns cK..cK+K of W, d×C·K); the own class's replaced by
/// cos(θ + m), or by cos θ − m·sin m once θ > π − m; logits times s; mean cross-entropy.
fn reference(k: usize, margin_degrees: f64, s: f64, z: &[f32], w: &[f32], labels: &[i64], d: usize) -> f64 {
    let m = margin_degrees * PI / 180.0;
    let columns = w.len() / d;
    let x = naive::normalized_rows(z, d);
    let centres: Vec<Vec<f64>> = (0..columns)
        .map(|j| naive::normalized(&(0..d).map(|l| f64::from(w[l * columns + j])).collect::<Vec<_>>()))
        .collect();
    let mut total = 0.0;
    for (i, &y) in labels.iter().enumerate() {
        let y = y as usize;
        let mut logits: Vec<f64> = (0..columns / k)
            .map(|c| s * (0..k).map(|j| naive::dot(&x[i], &centres[c * k + j])).fold(f64::NEG_INFINITY, f64::max))
            .collect();
        let theta = (logits[y] / s).clamp(-1.0, 1.0).acos();
        logits[y] = if theta <= PI - m { s * (theta + m).cos() } else { s * (theta.cos() - m * m.sin()) };
        let denominator: f64 = logits.iter().map(|l| l.exp()).sum();
        total -= (logits[y].exp() / denominator).ln();
    }
    total / labels.len() as f64
}

fn with_weights(config: Config, context: Context, w: &[f32]) -> Instance<SubCenterArcFace> {
    let shape = [context.embedding_dim, context.num_classes * config.sub_centers];
    let zeros = vec![0.0; w.len()];
    let mut loss = Instance::<SubCenterArcFace>::new(config, context).unwrap();
    loss.load(&save_tensors(&[("W", &shape, w), ("W.momentum", &shape, &zeros)]).unwrap()).unwrap();
    loss
}

#[test]
fn matches_the_definition_and_finite_differences_for_z_and_w() {
    for (k, m, s) in [(3, 28.6, 64.0), (1, 28.6, 64.0), (2, 10.0, 16.0), (4, 60.0, 4.0)] {
        for (n, d, classes, seed) in [(12, 5, 4, 1), (9, 8, 6, 2), (6, 3, 2, 3), (1, 4, 3, 4)] {
            let what = format!("K {k}, m {m}°, s {s}, n {n}, d {d}, C {classes}");
            let config = Config { sub_centers: k, margin: m, scale: s, ..Config::default() };
            let mut loss = Instance::<SubCenterArcFace>::new(config, ctx(d, classes, seed)).unwrap();
            let w = loss.plugin().head().weight().to_vec();
            assert_eq!(w.len(), d * classes * k);
            let z = random_embeddings(10 + seed, n, d);
            let labels = random_labels(10 + seed, n, classes);
            let out = loss.forward_backward(&z, &labels, None).unwrap();
            assert_close(out.loss, reference(k, m, s, &z, &w, &labels, d), 1e-6, &what);
            // A small step: a sub-centre overtaking another within it is a kink (a seed here
            // has two within 2·10⁻³).
            let options = GradCheck { step: 1e-4, ..GradCheck::default() };
            let dw = loss.plugin().head().pending_gradient().unwrap().to_vec();
            let f = |w: &[f32]| Ok(reference(k, m, s, &z, w, &labels, d));
            check_gradient(f, &w, &dw, &options).unwrap_or_else(|e| panic!("{what}, dW: {e}"));
            check_loss_gradient(&mut loss, &z, &labels, None, &options).unwrap_or_else(|e| panic!("{what}, dZ: {e}"));
        }
    }
}

#[test]
fn a_tie_between_sub_centres_sends_the_gradient_to_the_first() {
    // d = 3, C = 2, K = 3; class 0's sub-centres 0 and 2 are the same vector, sub-centre 1
    // points elsewhere. torch's max(dim) returns the first maximal index and autograd routes
    // the gradient through it alone.
    let (d, classes, k) = (3, 2, 3);
    #[rustfmt::skip]
    let w: [f32; 18] = [
        1.0, -1.0, 1.0, 0.2, 0.0, 0.5,
        0.5, 0.3, 0.5, 1.0, 0.4, -0.2,
        0.0, 0.8, 0.0, -0.3, 1.0, 0.6,
    ];
    let config = Config { scale: 8.0, ..Config::default() };
    let mut loss = with_weights(config, ctx(d, classes, 0), &w);
    let z = [0.9, 0.4, 0.1, 0.2, 1.0, -0.3];
    let labels = [0, 1];
    let out = loss.forward_backward(&z, &labels, None).unwrap();
    assert_close(out.loss, reference(k, 28.6, 8.0, &z, &w, &labels, d), 1e-6, "loss at a tie");
    let dw = loss.plugin().head().pending_gradient().unwrap();
    let column = |j: usize| (0..d).map(|l| dw[l * classes * k + j]).collect::<Vec<f32>>();
    assert!(column(0).iter().any(|&g| g != 0.0), "the first of the tied sub-centres gets the gradient");
    assert_eq!(column(2), vec![0.0; 3], "the second of the tied sub-centres gets none");
}

// PML parity. The batch, labels and W below, and the values from:
//
// ```python
// import torch
// from pytorch_metric_learning import losses  # 2.9.0
// Z = [[0.9, -0.2, 0.4, 1.1], [-0.5, 1.3, 0.2, -0.7], [0.3, 0.8, -1.2, 0.1], [-1.1, -0.2, 0.6, -0.3],
//      [0.2, 1.0, 0.5, -0.4], [0.7, -0.6, -0.9, 0.8], [1.2, 0.1, -0.3, 0.9], [-0.4, 0.9, 1.1, 0.0]]
// y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
// W9 = [[1.0, 0.6, -0.2, -0.3, 0.1, 0.9, 0.2, -0.7, 0.4], [0.2, -0.4, 0.8, 1.1, 0.9, -0.1, 0.4, 0.3, -0.6],
//       [-0.5, 0.3, 0.7, 0.1, -0.2, 0.5, -1.3, -0.4, 0.2], [0.3, 1.2, -0.1, -0.8, -0.5, 0.6, 0.5, 0.9, -1.0]]
// def run(loss_fn, W):
//     # f32 inputs, as the plugin sees them, computed in f64
//     z = torch.tensor(Z, dtype=torch.float32).double().requires_grad_()
//     loss_fn.W.data = torch.tensor(W, dtype=torch.float32).double()
//     L = loss_fn(z, y)
//     L.backward()
//     fmt = lambda t: ", ".join("%.12e" % v for v in t.flatten().tolist())
//     print("%.12e" % L.item()); print(fmt(z.grad)); print(fmt(loss_fn.W.grad))
// run(losses.SubCenterArcFaceLoss(num_classes=3, embedding_size=4), W9)
// ```

#[rustfmt::skip]
const W: [f32; 36] = [
    1.0, 0.6, -0.2, -0.3, 0.1, 0.9, 0.2, -0.7, 0.4,
    0.2, -0.4, 0.8, 1.1, 0.9, -0.1, 0.4, 0.3, -0.6,
    -0.5, 0.3, 0.7, 0.1, -0.2, 0.5, -1.3, -0.4, 0.2,
    0.3, 1.2, -0.1, -0.8, -0.5, 0.6, 0.5, 0.9, -1.0,
];
const PML_LOSS: f64 = 2.037837483033e+01;
const PML_DZ: [f64; 32] = [
    3.307202868494e+00,
    2.370650301515e+00,
    1.586793750218e+00,
    -2.851881706343e+00,
    -9.625482740481e-01,
    6.032426452853e-01,
    2.518013430721e+00,
    2.527274672723e+00,
    2.383848748469e+00,
    1.398282609971e+00,
    1.391325907392e+00,
    -1.641895999438e+00,
    -9.367459550242e-01,
    -1.222485924419e-01,
    -3.320994045610e+00,
    -3.125753925233e+00,
    1.605319419703e+00,
    -9.379418440864e-01,
    4.822731510440e+00,
    4.486219432796e+00,
    3.915780245447e+00,
    -1.291088353249e+00,
    3.387740234140e+00,
    -5.834162886918e-01,
    -7.219717297539e-01,
    -1.825848022534e+00,
    5.491506392408e+00,
    2.996003299691e+00,
    8.025248761390e-01,
    -2.087155745975e+00,
    1.999500026530e+00,
    3.317210173923e+00,
];
const PML_DW: [f64; 36] = [
    -2.270917394765e+00,
    -2.959500715647e+00,
    6.974754376688e+00,
    -5.280593185619e+00,
    1.234910204411e-01,
    4.920820941493e-01,
    -3.179806884651e+00,
    -7.274106190579e-03,
    1.705536583084e-25,
    -7.889000741682e-01,
    -2.011877457532e+00,
    5.019307624357e+00,
    -5.183761907286e+00,
    2.170134963833e-02,
    5.145957953272e-01,
    2.080152815221e+00,
    -1.719756702324e-03,
    8.250532911924e-25,
    -6.444717160943e+00,
    -9.816407581975e-01,
    -3.957217052445e+00,
    -6.470225529071e+00,
    -5.911034643653e-01,
    -4.394168965327e+00,
    -9.110940359440e-03,
    4.694471106619e-03,
    4.178564510220e-25,
    -2.645537123282e+00,
    1.054534744851e+00,
    -1.495566241130e+00,
    -5.956228368143e+00,
    3.002020220398e-01,
    3.009450197017e+00,
    -4.158879482261e-01,
    -2.997954240379e-03,
    -3.432392385966e-25,
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
    assert_close(reference(3, 28.6, 64.0, &Z, &W, &LABELS, 4), PML_LOSS, 1e-9, "reference loop");
    // One step at lr 0.5 × lr_scale 0.5: W ← W − 0.25·∂L/∂W.
    loss.step(0.5).unwrap();
    let want: Vec<f64> = W.iter().zip(&PML_DW).map(|(&w, g)| f64::from(w) - 0.25 * g).collect();
    assert_all_close(loss.plugin().head().weight(), &want, 1e-5, "W after one step");
}

#[test]
fn weights_start_from_a_seeded_standard_normal() {
    let loss = Instance::<SubCenterArcFace>::new(Config::default(), ctx(64, 200, 3)).unwrap();
    let w = loss.plugin().head().weight();
    let count = w.len() as f64;
    let mean = w.iter().map(|&v| f64::from(v)).sum::<f64>() / count;
    let var = w.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / count;
    assert!(count == 38_400.0 && mean.abs() < 0.03 && (var - 1.0).abs() < 0.04, "mean {mean}, variance {var}");
}

#[test]
fn state_round_trip_continues_the_run_exactly() {
    let (n, d, classes) = (8, 5, 4);
    let optimizer = SgdConfig { lr: Some(0.3), momentum: 0.9, weight_decay: 1e-3, nesterov: false };
    let config = Config { sub_centers: 2, optimizer, ..Config::default() };
    let mut original = Instance::<SubCenterArcFace>::new(config.clone(), ctx(d, classes, 1)).unwrap();
    for s in 0..2 {
        original.forward_backward(&random_embeddings(s, n, d), &random_labels(s, n, classes), None).unwrap();
        original.step(1.0).unwrap();
    }
    let bytes = original.save().unwrap();
    let mut restored = Instance::<SubCenterArcFace>::new(config, ctx(d, classes, 2)).unwrap();
    restored.load(&bytes).unwrap();
    assert_eq!(restored.save().unwrap(), bytes);
    let z = random_embeddings(41, n, d);
    let labels = random_labels(41, n, classes);
    let a = original.forward_backward(&z, &labels, None).unwrap();
    let b = restored.forward_backward(&z, &labels, None).unwrap();
    assert_eq!((a.loss, a.grad), (b.loss, b.grad));
    let want = reference(2, 28.6, 64.0, &z, original.plugin().head().weight(), &labels, d);
    assert_close(a.loss, want, 1e-6, "loaded state");
    original.step(0.5).unwrap();
    restored.step(0.5).unwrap();
    assert_eq!(original.save().unwrap(), restored.save().unwrap());
    // Another sub-centre count is another shape.
    let e = Instance::<SubCenterArcFace>::new(Config::default(), ctx(d, classes, 0)).unwrap().load(&bytes).unwrap_err();
    assert!(e.message().contains("'W'") && e.message().contains("[5, 12]"), "{e}");
}

#[test]
fn one_class_and_one_row_are_ordinary_batches() {
    // There is no degenerate batch: the other classes' weights are always the negatives.
    let (d, classes) = (4, 3);
    let mut loss = Instance::<SubCenterArcFace>::new(Config::default(), ctx(d, classes, 5)).unwrap();
    let w = loss.plugin().head().weight().to_vec();
    let z = random_embeddings(6, 5, d);
    for labels in [&[2i64; 5][..], &[1]] {
        let z = &z[..labels.len() * d];
        let out = loss.forward_backward(z, labels, None).unwrap();
        assert_close(out.loss, reference(3, 28.6, 64.0, z, &w, labels, d), 1e-6, "one class");
        assert!(out.loss > 0.0 && out.grad.iter().all(|g| g.is_finite()));
    }
}

#[test]
fn invalid_settings_name_their_field() {
    for (text, field) in [
        ("(sub_centers: 0)", "sub_centers"),
        ("(margin: -1.0)", "margin"),
        ("(margin: 200.0)", "margin"),
        ("(scale: 0.0)", "scale"),
        ("(optimizer: (lr: Some(-1.0)))", "optimizer.lr"),
        ("(optimizer: (momentum: 2.0))", "optimizer.momentum"),
        ("(optimizer: (weight_decay: -1.0))", "optimizer.weight_decay"),
        ("(optimizer: (nesterov: true))", "optimizer.nesterov"),
    ] {
        let e = Instance::<SubCenterArcFace>::from_config_text(text, ctx(4, 3, 0)).err().unwrap();
        assert!(e.message().contains(field), "{text}: {e}");
    }
    let e = Instance::<SubCenterArcFace>::from_config_text("", ctx(4, 0, 0)).err().unwrap();
    assert!(e.message().contains("num_classes") && e.message().contains("embedding_dim"), "{e}");
    let e = Instance::<SubCenterArcFace>::from_config_text("(sub_centers: 4611686018427387904)", ctx(4, 3, 0))
        .err()
        .unwrap();
    assert!(e.message().contains("W would hold"), "{e}");
    let config = parse_config::<SubCenterArcFace>("(optimizer: (lr: Some(0.01)))").unwrap();
    assert_eq!(config.optimizer, SgdConfig { lr: Some(0.01), momentum: 0.0, weight_decay: 0.0, nesterov: false });
}
