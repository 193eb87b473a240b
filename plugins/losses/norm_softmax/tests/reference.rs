//! NormSoftmax against a plain loop written from the definition, finite differences for Z and
//! W, pytorch-metric-learning 2.9's `NormalizedSoftmaxLoss` (loss, ∂L/∂Z and ∂L/∂W), SGD steps
//! by hand, the initial distribution of W, state round trips and configuration checks.

use dmlbench_loss_norm_softmax::{Config, NormSoftmax};
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

/// The definition in f64: unit embeddings, unit columns of W (d×C), logits cos/T, mean
/// cross-entropy. Also returns the mean angle to the own class, in degrees.
fn reference(temperature: f64, z: &[f32], w: &[f32], labels: &[i64], d: usize) -> (f64, f64) {
    let classes = w.len() / d;
    let x = naive::normalized_rows(z, d);
    let columns: Vec<Vec<f64>> = (0..classes)
        .map(|c| naive::normalized(&(0..d).map(|l| f64::from(w[l * classes + c])).collect::<Vec<_>>()))
        .collect();
    let (mut total, mut angles) = (0.0, 0.0);
    for (i, &y) in labels.iter().enumerate() {
        let cosines: Vec<f64> = columns.iter().map(|wc| naive::dot(&x[i], wc)).collect();
        let denominator: f64 = cosines.iter().map(|c| (c / temperature).exp()).sum();
        total -= ((cosines[y as usize] / temperature).exp() / denominator).ln();
        angles += cosines[y as usize].clamp(-1.0, 1.0).acos().to_degrees();
    }
    (total / labels.len() as f64, angles / labels.len() as f64)
}

/// An instance whose W is `w` (d×C), with an empty momentum buffer, loaded as a state.
fn with_weights(config: Config, context: Context, w: &[f32]) -> Instance<NormSoftmax> {
    let shape = [context.embedding_dim, context.num_classes];
    let zeros = vec![0.0; w.len()];
    let mut loss = Instance::<NormSoftmax>::new(config, context).unwrap();
    loss.load(&save_tensors(&[("W", &shape, w), ("W.momentum", &shape, &zeros)]).unwrap()).unwrap();
    loss
}

#[test]
fn matches_the_definition_and_finite_differences_for_z_and_w() {
    for temperature in [0.05, 0.2, 1.0] {
        for (n, d, classes, seed) in [(12, 5, 4, 1), (9, 8, 6, 2), (6, 3, 2, 3), (1, 4, 3, 4)] {
            let what = format!("T {temperature}, n {n}, d {d}, C {classes}");
            let config = Config { temperature, ..Config::default() };
            let mut loss = Instance::<NormSoftmax>::new(config, ctx(d, classes, seed)).unwrap();
            let w = loss.plugin().head().weight().to_vec();
            let z = random_embeddings(10 + seed, n, d);
            let labels = random_labels(10 + seed, n, classes);
            let out = loss.forward_backward(&z, &labels, None).unwrap();
            let (want, angle) = reference(temperature, &z, &w, &labels, d);
            assert_close(out.loss, want, 1e-6, &what);
            assert_close(out.stats.get("avg_angle").unwrap(), angle, 1e-6, &what);
            let dw = loss.plugin().head().pending_gradient().unwrap().to_vec();
            let f = |w: &[f32]| Ok(reference(temperature, &z, w, &labels, d).0);
            check_gradient(f, &w, &dw, &GradCheck::default()).unwrap_or_else(|e| panic!("{what}, dW: {e}"));
            check_loss_gradient(&mut loss, &z, &labels, None, &GradCheck::default())
                .unwrap_or_else(|e| panic!("{what}, dZ: {e}"));
        }
    }
}

#[test]
fn a_loaded_state_after_training_matches_the_definition() {
    let (n, d, classes) = (10, 6, 5);
    let config = Config { temperature: 0.1, ..Config::default() };
    let mut trained = Instance::<NormSoftmax>::new(config.clone(), ctx(d, classes, 7)).unwrap();
    let start = trained.plugin().head().weight().to_vec();
    for s in 0..3 {
        trained.forward_backward(&random_embeddings(s, n, d), &random_labels(s, n, classes), None).unwrap();
        trained.step(1.0).unwrap();
    }
    let w = trained.plugin().head().weight().to_vec();
    assert_ne!(w, start, "three steps moved W");
    let mut loss = with_weights(config, ctx(d, classes, 99), &w);
    let z = random_embeddings(50, n, d);
    let labels = random_labels(50, n, classes);
    let out = loss.forward_backward(&z, &labels, None).unwrap();
    assert_close(out.loss, reference(0.1, &z, &w, &labels, d).0, 1e-6, "loaded W");
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
// run(losses.NormalizedSoftmaxLoss(num_classes=3, embedding_size=4), W3)
// ```

const PML_LOSS: f64 = 3.225277499204e+00;
const PML_DZ: [f64; 32] = [
    -2.764274245604e-05,
    2.384034750796e-06,
    -2.211879701400e-05,
    3.109344791342e-05,
    1.810381160851e-11,
    3.221709115742e-10,
    -7.138340491229e-10,
    3.814335092500e-10,
    3.732369095512e-03,
    2.721986172105e-04,
    1.087424481046e-03,
    -3.256024056725e-04,
    -6.397633850033e-02,
    1.543983356568e+00,
    -1.266735361883e-01,
    -1.048089380928e+00,
    1.991297204200e-07,
    1.051042871637e-08,
    -2.661500826604e-08,
    9.257217177260e-08,
    8.343124306375e-01,
    -1.005248530960e-01,
    5.947858070624e-01,
    -1.362829899436e-01,
    -1.714437418084e-04,
    5.677255737452e-05,
    -2.373406478235e-04,
    1.431700541780e-04,
    1.357310035959e-09,
    7.344439023887e-11,
    4.334764206136e-10,
    1.683278611564e-09,
];
const PML_DW: [f64; 12] = [
    -2.425228892657e-01,
    -1.423784743426e+00,
    -4.641414322559e-01,
    -8.382381120598e-01,
    -5.921863164481e-01,
    7.201863112502e-01,
    -5.298353592054e-01,
    7.949779053464e-01,
    5.888763668776e-03,
    4.841760960041e-01,
    -1.809646604183e-01,
    -3.751816969394e-01,
];

#[test]
fn matches_pml_loss_and_both_gradients_and_a_step_is_plain_sgd() {
    let config = Config {
        optimizer: SgdConfig { lr: Some(0.5), ..dmlbench_sdk::classifier::SgdConfig::plain() },
        ..Config::default()
    };
    let mut loss = with_weights(config, ctx(4, 3, 0), &W);
    let out = loss.forward_backward(&Z, &LABELS, None).unwrap();
    assert_close(out.loss, PML_LOSS, 1e-6, "loss");
    assert_all_close(&out.grad, &PML_DZ, 1e-6, "dL/dZ");
    assert_all_close(loss.plugin().head().pending_gradient().unwrap(), &PML_DW, 1e-6, "dL/dW");
    assert_close(reference(0.05, &Z, &W, &LABELS, 4).0, PML_LOSS, 1e-9, "reference loop");
    // One step at lr 0.5 × lr_scale 0.5: W ← W − 0.25·∂L/∂W.
    loss.step(0.5).unwrap();
    let want: Vec<f64> = W.iter().zip(&PML_DW).map(|(&w, g)| f64::from(w) - 0.25 * g).collect();
    assert_all_close(loss.plugin().head().weight(), &want, 1e-6, "W after one step");
    // A step without a new gradient leaves W alone.
    let before = loss.plugin().head().weight().to_vec();
    loss.step(1.0).unwrap();
    assert_eq!(loss.plugin().head().weight(), &before[..]);
}

#[test]
fn steps_follow_torch_sgd_with_momentum_and_weight_decay() {
    let (mu, wd, lr) = (0.9, 0.01, 0.5);
    let optimizer = SgdConfig { lr: Some(lr), momentum: mu, weight_decay: wd, nesterov: false };
    let mut loss = with_weights(Config { optimizer, ..Config::default() }, ctx(4, 3, 0), &W);
    loss.forward_backward(&Z, &LABELS, None).unwrap();
    loss.step(1.0).unwrap();
    // First step: v = g + wd·W₀, W₁ = W₀ − lr·v.
    let v1: Vec<f64> = W.iter().zip(&PML_DW).map(|(&w, g)| g + wd * f64::from(w)).collect();
    let w1: Vec<f64> = W.iter().zip(&v1).map(|(&w, v)| f64::from(w) - lr * v).collect();
    assert_all_close(loss.plugin().head().weight(), &w1, 1e-6, "W₁");
    assert_all_close(loss.plugin().head().momentum(), &v1, 1e-6, "v₁");
    // Second step: v = μ·v₁ + g₂ + wd·W₁, W₂ = W₁ − lr·v.
    loss.forward_backward(&Z, &LABELS, None).unwrap();
    let g2 = loss.plugin().head().pending_gradient().unwrap().to_vec();
    let w1_now = loss.plugin().head().weight().to_vec();
    loss.step(1.0).unwrap();
    let v2: Vec<f64> = (0..12).map(|k| mu * v1[k] + f64::from(g2[k]) + wd * f64::from(w1_now[k])).collect();
    let w2: Vec<f64> = (0..12).map(|k| f64::from(w1_now[k]) - lr * v2[k]).collect();
    assert_all_close(loss.plugin().head().weight(), &w2, 1e-6, "W₂");
    assert_all_close(loss.plugin().head().momentum(), &v2, 1e-6, "v₂");
}

#[test]
fn weights_start_from_a_seeded_standard_normal() {
    let (d, classes) = (64, 500);
    let loss = Instance::<NormSoftmax>::new(Config::default(), ctx(d, classes, 3)).unwrap();
    let w = loss.plugin().head().weight();
    assert_eq!(w.len(), d * classes);
    let count = w.len() as f64;
    let mean = w.iter().map(|&v| f64::from(v)).sum::<f64>() / count;
    let var = w.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / count;
    // 32,000 draws: standard errors 0.006 (mean) and 0.008 (variance).
    assert!(mean.abs() < 0.03 && (var - 1.0).abs() < 0.04, "mean {mean}, variance {var}");
    let same = Instance::<NormSoftmax>::new(Config::default(), ctx(d, classes, 3)).unwrap();
    assert_eq!(same.plugin().head().weight(), w);
    let other = Instance::<NormSoftmax>::new(Config::default(), ctx(d, classes, 4)).unwrap();
    assert_ne!(other.plugin().head().weight(), w);
}

#[test]
fn state_round_trip_continues_the_run_exactly() {
    let (n, d, classes) = (8, 5, 4);
    let optimizer = SgdConfig { lr: Some(0.3), momentum: 0.9, weight_decay: 1e-3, nesterov: true };
    let config = Config { optimizer, ..Config::default() };
    let mut original = Instance::<NormSoftmax>::new(config.clone(), ctx(d, classes, 1)).unwrap();
    for s in 0..2 {
        original.forward_backward(&random_embeddings(s, n, d), &random_labels(s, n, classes), None).unwrap();
        original.step(1.0).unwrap();
    }
    let bytes = original.save().unwrap();
    let mut restored = Instance::<NormSoftmax>::new(config, ctx(d, classes, 2)).unwrap();
    restored.load(&bytes).unwrap();
    assert_eq!(restored.save().unwrap(), bytes);
    // A forward pass alone leaves the state as it was.
    restored.forward_backward(&random_embeddings(40, n, d), &random_labels(40, n, classes), None).unwrap();
    assert_eq!(restored.save().unwrap(), bytes);
    let z = random_embeddings(41, n, d);
    let labels = random_labels(41, n, classes);
    let a = original.forward_backward(&z, &labels, None).unwrap();
    let b = restored.forward_backward(&z, &labels, None).unwrap();
    assert_eq!((a.loss, a.grad), (b.loss, b.grad));
    original.step(0.5).unwrap();
    restored.step(0.5).unwrap();
    assert_eq!(original.save().unwrap(), restored.save().unwrap());
}

/// A state tensor: name, shape, values.
type Tensor<'a> = (&'a str, &'a [usize], &'a [f32]);

#[test]
fn bad_states_are_refused_naming_the_tensor() {
    let (d, classes) = (4, 3);
    let mut loss = Instance::<NormSoftmax>::new(Config::default(), ctx(d, classes, 0)).unwrap();
    let good = vec![0.5f32; d * classes];
    let cases: [(&[Tensor<'_>], &str); 4] = [
        (&[("W", &[d, 4], &[0.0; 16]), ("W.momentum", &[d, 4], &[0.0; 16])], "'W'"),
        (&[("W", &[d, classes], &good)], "'W.momentum'"),
        (&[("W", &[d, classes], &[f32::NAN; 12]), ("W.momentum", &[d, classes], &good)], "'W' holds NaN"),
        (
            &[("W", &[d, classes], &good), ("W.momentum", &[d, classes], &good), ("proxies", &[1], &[0.0])],
            "unexpected tensors: proxies",
        ),
    ];
    let before = loss.save().unwrap();
    for (tensors, wanted) in cases {
        let e = loss.load(&save_tensors(tensors).unwrap()).unwrap_err();
        assert!(e.message().contains(wanted), "{e} does not say {wanted}");
    }
    assert_eq!(loss.save().unwrap(), before, "a refused state changes nothing");
}

#[test]
fn one_class_one_row_and_zero_rows_are_ordinary_batches() {
    // There is no degenerate batch: the other classes' weights are always the negatives.
    let (d, classes) = (4, 3);
    let mut loss = Instance::<NormSoftmax>::new(Config::default(), ctx(d, classes, 5)).unwrap();
    let w = loss.plugin().head().weight().to_vec();
    let mut z = random_embeddings(6, 5, d);
    z[4..8].fill(0.0); // a zero embedding: cosines 0, as F.normalize gives
    for labels in [vec![2i64; 5], vec![0, 1, 2, 0, 1]] {
        let out = loss.forward_backward(&z, &labels, None).unwrap();
        assert_close(out.loss, reference(0.05, &z, &w, &labels, d).0, 1e-6, "batch with a zero row");
        assert!(out.loss > 0.0 && out.grad.iter().all(|g| g.is_finite()));
    }
    let out = loss.forward_backward(&z[..d], &[1], None).unwrap();
    assert_close(out.loss, reference(0.05, &z[..d], &w, &[1], d).0, 1e-6, "one row");
    check_loss_gradient(&mut loss, &z[8..], &[1, 1, 1], None, &GradCheck::default()).unwrap();
}

#[test]
fn invalid_settings_name_their_field() {
    for (text, field) in [
        ("(temperature: 0.0)", "temperature"),
        ("(temperature: -1.0)", "temperature"),
        ("(optimizer: (lr: Some(-0.1)))", "optimizer.lr"),
        ("(optimizer: (momentum: 1.0))", "optimizer.momentum"),
        ("(optimizer: (weight_decay: -1.0))", "optimizer.weight_decay"),
        ("(optimizer: (nesterov: true))", "optimizer.nesterov"),
        ("(optimizer: (learning_rate: 0.1))", "learning_rate"),
        ("(temprature: 0.1)", "temprature"),
    ] {
        let e = Instance::<NormSoftmax>::from_config_text(text, ctx(4, 3, 0)).err().unwrap();
        assert!(e.message().contains(field), "{text}: {e}");
    }
    for (d, classes) in [(4, 0), (0, 3)] {
        let e = Instance::<NormSoftmax>::from_config_text("", ctx(d, classes, 0)).err().unwrap();
        assert!(e.message().contains("num_classes") && e.message().contains("embedding_dim"), "{e}");
    }
    // Fields left out of `optimizer` stay plain: no weight decay sneaks in.
    let config = parse_config::<NormSoftmax>("(optimizer: (lr: Some(0.01)))").unwrap();
    assert_eq!(config.optimizer, SgdConfig { lr: Some(0.01), momentum: 0.0, weight_decay: 0.0, nesterov: false });
    assert_eq!(parse_config::<NormSoftmax>("").unwrap(), Config::default());
}
