//! The circle loss against the paper's double sum written as a plain loop, against finite
//! differences (of the loss, and of the loss with α frozen for PML's detached gradient), and
//! against values and gradients computed by pytorch-metric-learning 2.9.

use dmlbench_loss_circle::{Circle, Config};
use dmlbench_sdk::testing::batches::lifted::{LABELS, Z, mined};
use dmlbench_sdk::testing::{
    GradCheck, assert_close, check_gradient, check_loss_gradient, context, naive, random_embeddings, random_labels,
};
use dmlbench_sdk::{Instance, Pairs, Triplets, Tuples};

/// Positive and negative pairs (anchor, other).
type PairLists = (Vec<(usize, usize)>, Vec<(usize, usize)>);

/// The definition, in the paper's form (eq. 6 with pair labels): for each anchor,
/// ℓ = log(1 + Σ_n Σ_p exp(γ α_n (s_n − Δ_n) − γ α_p (s_p − Δ_p))) over its distinct pairs,
/// 0 without a positive or a negative; the mean over the anchors with ℓ > 0. The weights α
/// come from the similarities of `frozen` when given (the embeddings PML detaches them at).
fn reference(
    config: &Config,
    z: &[f32],
    labels: &[i64],
    d: usize,
    given: Option<PairLists>,
    frozen: Option<&[f32]>,
) -> f64 {
    let n = labels.len();
    let u = naive::normalized_rows(z, d);
    let u0 = naive::normalized_rows(frozen.unwrap_or(z), d);
    let (m, gamma) = (config.m, config.gamma);
    let (mut pos, mut neg) = given.unwrap_or_else(|| {
        let (mut pos, mut neg) = (vec![], vec![]);
        for i in 0..n {
            for j in 0..n {
                if i != j {
                    if labels[i] == labels[j] { pos.push((i, j)) } else { neg.push((i, j)) }
                }
            }
        }
        (pos, neg)
    });
    for list in [&mut pos, &mut neg] {
        list.sort_unstable();
        list.dedup();
    }
    let mut losses = vec![];
    for i in 0..n {
        let ps: Vec<usize> = pos.iter().filter(|&&(a, _)| a == i).map(|&(_, j)| j).collect();
        let ns: Vec<usize> = neg.iter().filter(|&&(a, _)| a == i).map(|&(_, j)| j).collect();
        if ps.is_empty() || ns.is_empty() {
            continue;
        }
        let mut double_sum = 0.0;
        for &q in &ns {
            let alpha_n = (naive::dot(&u0[i], &u0[q]) + m).max(0.0);
            let sn = naive::dot(&u[i], &u[q]);
            for &p in &ps {
                let alpha_p = (1.0 + m - naive::dot(&u0[i], &u0[p])).max(0.0);
                let sp = naive::dot(&u[i], &u[p]);
                double_sum += (gamma * (alpha_n * (sn - m) - alpha_p * (sp - (1.0 - m)))).exp();
            }
        }
        losses.push(double_sum.ln_1p());
    }
    let active: Vec<f64> = losses.into_iter().filter(|&l| l > 0.0).collect();
    if active.is_empty() { 0.0 } else { active.iter().sum::<f64>() / active.len() as f64 }
}

fn configs() -> Vec<Config> {
    vec![
        Config::default(),
        Config { m: 0.25, gamma: 128.0, ..Config::default() },
        Config { m: 0.1, gamma: 10.0, ..Config::default() },
        Config { m: -0.2, gamma: 32.0, ..Config::default() },
    ]
}

#[test]
fn matches_the_definition_and_finite_differences() {
    for (k, config) in configs().iter().enumerate() {
        for (n, d, classes) in [(12, 5, 3), (16, 8, 4), (7, 4, 7), (5, 3, 1), (10, 6, 2)] {
            let seed = 700 + 10 * k as u64 + n as u64;
            let z = random_embeddings(seed, n, d);
            let labels = random_labels(seed, n, classes);
            let what = format!("config {k}, n {n}");
            let mut loss = Instance::<Circle>::new(config.clone(), context(d, 0)).unwrap();
            let out = loss.forward_backward(&z, &labels, None).unwrap();
            assert_close(out.loss, reference(config, &z, &labels, d, None, None), 1e-5, &what);
            check_loss_gradient(&mut loss, &z, &labels, None, &GradCheck::default())
                .unwrap_or_else(|e| panic!("{what}: {e}"));
        }
    }
}

#[test]
fn detached_weights_give_the_gradient_with_alpha_held_constant() {
    for (k, config) in configs().into_iter().enumerate() {
        let config = Config { detach_weights: true, ..config };
        for (n, d, classes) in [(12, 5, 3), (16, 8, 4)] {
            let seed = 800 + 10 * k as u64 + n as u64;
            let z = random_embeddings(seed, n, d);
            let labels = random_labels(seed, n, classes);
            let what = format!("config {k}, n {n}");
            let mut loss = Instance::<Circle>::new(config.clone(), context(d, 0)).unwrap();
            let out = loss.forward_backward(&z, &labels, None).unwrap();
            // The same value as without detaching.
            assert_close(out.loss, reference(&config, &z, &labels, d, None, None), 1e-5, &what);
            // The gradient of the loss whose α are computed at z and then held constant.
            let frozen = |x: &[f32]| Ok(reference(&config, x, &labels, d, None, Some(&z)));
            check_gradient(frozen, &z, &out.grad, &GradCheck { columns: d, ..GradCheck::default() })
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            // And it is not the loss's own gradient.
            let exact = Config { detach_weights: false, ..config.clone() };
            let mut plain = Instance::<Circle>::new(exact, context(d, 0)).unwrap();
            let exact_grad = plain.forward_backward(&z, &labels, None).unwrap().grad;
            let gap = exact_grad.iter().zip(&out.grad).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(gap > 1e-2, "{what}: detached and exact gradients coincide ({gap})");
        }
    }
}

#[test]
fn uses_the_mined_pairs_as_masks() {
    let (n, d) = (8, 4);
    let z = random_embeddings(71, n, d);
    let labels = [0, 0, 0, 1, 1, 2, 2, 3];
    let config = Config { m: 0.3, gamma: 40.0, ..Config::default() };
    let mut loss = Instance::<Circle>::new(config.clone(), context(d, 0)).unwrap();
    // (0, 1) and (3, 0) twice; anchor 5 has a negative but no positive.
    let pairs = Pairs { a1: vec![0, 0, 3, 0], p: vec![1, 1, 4, 2], a2: vec![0, 3, 3, 5, 3], n: vec![5, 0, 7, 1, 0] };
    let tuples = Tuples::Pairs(pairs);
    let out = loss.forward_backward(&z, &labels, Some(&tuples)).unwrap();
    let want = reference(
        &config,
        &z,
        &labels,
        d,
        Some((vec![(0, 1), (3, 4), (0, 2)], vec![(0, 5), (3, 0), (3, 7), (5, 1)])),
        None,
    );
    assert_close(out.loss, want, 1e-5, "mined pairs");
    assert_eq!(out.stats.get("pos_pairs"), Some(3.0));
    assert_eq!(out.stats.get("neg_pairs"), Some(4.0));
    assert_eq!(out.stats.get("active_anchors"), Some(2.0));
    assert_eq!(out.stats.get("skipped_anchors"), Some(6.0));
    check_loss_gradient(&mut loss, &z, &labels, Some(&tuples), &GradCheck::default()).unwrap();
    // Row 6 is in no pair: no gradient.
    assert!(out.grad[6 * d..7 * d].iter().all(|&g| g == 0.0));
    // Triplets are split into their (a, p) and (a, n) pairs.
    let triplets = Tuples::Triplets(Triplets { a: vec![0, 0, 3], p: vec![1, 2, 4], n: vec![3, 3, 6] });
    let out = loss.forward_backward(&z, &labels, Some(&triplets)).unwrap();
    let want = reference(&config, &z, &labels, d, Some((vec![(0, 1), (0, 2), (3, 4)], vec![(0, 3), (3, 6)])), None);
    assert_close(out.loss, want, 1e-5, "triplets");
}

#[test]
fn one_positive_and_one_negative_pair_are_computed_unlike_pml() {
    // PML returns 0 when every index array of the tuple has at most one element; here the
    // pair (0, 1) and the pair (0, 2) are a batch like any other.
    let (n, d) = (3, 4);
    let z = random_embeddings(5, n, d);
    let labels = [0, 0, 1];
    let config = Config { m: 0.3, gamma: 40.0, ..Config::default() };
    let mut loss = Instance::<Circle>::new(config.clone(), context(d, 0)).unwrap();
    let tuples = Tuples::Pairs(Pairs { a1: vec![0], p: vec![1], a2: vec![0], n: vec![2] });
    let out = loss.forward_backward(&z, &labels, Some(&tuples)).unwrap();
    let want = reference(&config, &z, &labels, d, Some((vec![(0, 1)], vec![(0, 2)])), None);
    assert!(want > 0.0);
    assert_close(out.loss, want, 1e-5, "one pair of each kind");
}

/// Asserts a gradient agrees with PML's within `tol`, relative to each entry (entries below
/// 10⁻³ of the largest are compared at that floor).
fn assert_gradient(got: &[f32], want: &[f64], tol: f64, what: &str) {
    let floor = 1e-3 * want.iter().fold(0.0f64, |m, g| m.max(g.abs()));
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!((f64::from(g) - w).abs() <= tol * w.abs().max(floor), "{what}[{i}]: {g} vs PML {w}");
    }
}

// PML 2.9, float64, the f32 values of Z above (pytorch_metric_learning in the venv):
//
//     import torch
//     from pytorch_metric_learning import losses
//     Z = [[0.31, -1.20, 0.57, 0.88], [0.12, -0.95, 1.03, 0.44], [-0.61, 0.25, 0.72, -1.37],
//          [1.45, 0.33, -0.28, 0.09], [0.97, 0.81, -0.66, -0.14], [-0.23, 1.12, 0.49, 0.35],
//          [-1.08, 0.54, -0.17, 0.62], [0.05, -0.42, -1.31, 0.76]]
//     labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
//     mined = (torch.tensor([0, 0, 3, 5, 0]), torch.tensor([1, 1, 4, 7, 2]),
//              torch.tensor([0, 1, 3, 3, 5, 0]), torch.tensor([3, 5, 0, 6, 1, 3]))
//     def run(loss_fn, tuples=None):
//         z = torch.tensor(Z, dtype=torch.float32).double().requires_grad_()
//         loss = loss_fn(z, labels, tuples)
//         loss.backward()
//         print(repr(loss.item()), z.grad.flatten().tolist())
//     run(losses.CircleLoss())
//     run(losses.CircleLoss(m=0.25, gamma=128), mined)
//     torch.Tensor.detach = lambda self: self   # PML's value, differentiated through α too
//     run(losses.CircleLoss())
//     run(losses.CircleLoss(m=0.25, gamma=128), mined)

const PML_DEFAULT_LOSS: f64 = 92.16038031873468;
const PML_DEFAULT_GRAD: [f64; 32] = [
    6.280915813489693,
    4.612347194898048,
    -13.642831350141504,
    12.913803147991107,
    3.558193142812486,
    -1.0359245229221625,
    -4.751580801525523,
    7.915946946545469,
    -0.9456153859099989,
    20.423898998906246,
    -18.64766095392122,
    -5.6522016384865275,
    3.573356122416387e-05,
    -0.00013488330520454404,
    5.430422112530453e-05,
    8.781120747849146e-05,
    -0.001704331092849575,
    0.001587850097967673,
    -0.0007079413745809666,
    0.0007157049976964226,
    1.2293271988784558,
    -2.8089548157813597,
    19.00957332114454,
    -16.816904402703848,
    -1.6187747420488003,
    3.0284428810448487,
    7.145892001083473,
    -3.4981199064325095,
    9.926119355367673,
    -20.900820470547256,
    -0.9110725486396669,
    -13.773888706137981,
];
const PML_MINED_LOSS: f64 = 170.07266470791294;
const PML_MINED_GRAD: [f64; 32] = [
    18.3579451967417,
    10.315243446557254,
    -27.953619796819716,
    25.705559977045684,
    -0.10463951291865282,
    0.47253342138095494,
    0.3530761002484907,
    0.22226162119090695,
    -0.8913002788373907,
    29.202891087569462,
    -24.102117725044856,
    -6.940955812970092,
    1.36437875317192,
    -4.983352419857343,
    2.3693182596804068,
    3.661846768677515,
    -0.026889184873281076,
    0.01856115410382727,
    -0.014606523419109682,
    -0.010054781302559077,
    2.423361173748688,
    -5.7885588190316835,
    37.745118811815566,
    -32.727285108097746,
    0.0,
    0.0,
    0.0,
    0.0,
    7.4664539640155105,
    -34.20822082279221,
    -1.2475521728365013,
    -21.546142738517936,
];
const PML_DEFAULT_EXACT_GRAD: [f64; 32] = [
    10.59076174422859,
    3.250471791601779,
    -25.052796734601955,
    16.92900474910323,
    5.186130873462185,
    -1.5083206495191148,
    -6.913282882770729,
    11.512365702143427,
    -1.4311315653266559,
    31.462908937512733,
    -28.57502253205107,
    -8.638904737022823,
    -3.8184031318886665e-06,
    -2.0339971010905555e-05,
    -3.8862898634467256e-05,
    1.5191818948025922e-05,
    0.00872056636319005,
    -0.008838917196853513,
    0.0027320762821301946,
    -0.0035981696031858116,
    0.8635923741417981,
    -0.9124870259489022,
    25.293941143967018,
    -31.924056768509182,
    -2.172221049762386,
    4.045525977700316,
    9.56097291201947,
    -4.6858346891085,
    14.128994002608561,
    -31.85572031454472,
    -1.364064010618499,
    -20.885231315889907,
];
const PML_MINED_EXACT_GRAD: [f64; 32] = [
    20.533308766833635,
    15.260570732509072,
    -45.735942065587636,
    43.20096215485478,
    2.099442525916589,
    -9.480708884179048,
    -7.0839681786624045,
    -4.459362303894804,
    -1.5235439982171535,
    49.91795750932631,
    -41.19895132559989,
    -11.864521779949214,
    -0.11713635816408433,
    0.4343696462075494,
    -0.1996257472323741,
    -0.32654969240194837,
    -0.02016074171274569,
    0.01391662244657957,
    -0.010951553472580535,
    -0.007538787426035607,
    3.454862942238309,
    -2.556132105462339,
    51.417049038060455,
    -61.533909783815595,
    0.0,
    0.0,
    0.0,
    0.0,
    12.700313181835192,
    -58.187610870794686,
    -2.122065358209394,
    -36.64962805081503,
];

#[test]
fn matches_pml_values_and_gradients() {
    let mined = mined();
    let mined_config = Config { m: 0.25, gamma: 128.0, ..Config::default() };
    let cases = [
        ("default, all pairs", Config::default(), None, PML_DEFAULT_LOSS, &PML_DEFAULT_GRAD, &PML_DEFAULT_EXACT_GRAD),
        ("m 0.25, γ 128, mined", mined_config, Some(&mined), PML_MINED_LOSS, &PML_MINED_GRAD, &PML_MINED_EXACT_GRAD),
    ];
    for (what, config, tuples, want_loss, want_detached, want_exact) in cases {
        for (detach_weights, want_grad) in [(true, want_detached), (false, want_exact)] {
            let config = Config { detach_weights, ..config.clone() };
            let mut loss = Instance::<Circle>::new(config, context(4, 0)).unwrap();
            let out = loss.forward_backward(&Z, &LABELS, tuples).unwrap();
            let what = format!("{what}, detach_weights {detach_weights}");
            assert_close(out.loss, want_loss, 1e-5, &what);
            assert_gradient(&out.grad, want_grad, 1e-5, &what);
        }
    }
}

#[test]
fn degenerate_batches_give_zero_without_nan() {
    let d = 3;
    let mut loss = Instance::<Circle>::new(Config::default(), context(d, 0)).unwrap();
    let z = random_embeddings(9, 4, d);
    // A single embedding: no pair at all.
    let out = loss.forward_backward(&z[..d], &[0], None).unwrap();
    assert_eq!((out.loss, out.stats.get("no_pairs")), (0.0, Some(1.0)));
    assert!(out.grad.iter().all(|&g| g == 0.0));
    // One class: no anchor has a negative.
    let out = loss.forward_backward(&z, &[2, 2, 2, 2], None).unwrap();
    assert_eq!((out.loss, out.stats.get("no_active_anchors")), (0.0, Some(1.0)));
    assert_eq!(out.stats.get("skipped_anchors"), Some(4.0));
    assert!(out.grad.iter().all(|&g| g == 0.0));
    // Singletons: no anchor has a positive.
    let out = loss.forward_backward(&z, &[0, 1, 2, 3], None).unwrap();
    assert_eq!((out.loss, out.stats.get("no_active_anchors")), (0.0, Some(1.0)));
    assert!(out.grad.iter().all(|&g| g == 0.0));
    // Empty mined tuples.
    let empty = Tuples::Pairs(Pairs::default());
    let out = loss.forward_backward(&z, &[0, 0, 1, 1], Some(&empty)).unwrap();
    assert_eq!((out.loss, out.stats.get("no_pairs")), (0.0, Some(1.0)));
    // Identical embeddings and a large γ stay finite.
    let same = [1.0f32, -2.0, 0.5].repeat(4);
    let config = Config { gamma: 1024.0, ..Config::default() };
    let mut sharp = Instance::<Circle>::new(config, context(d, 0)).unwrap();
    let out = sharp.forward_backward(&same, &[0, 0, 1, 1], None).unwrap();
    assert!(out.loss.is_finite() && out.loss > 0.0, "{}", out.loss);
    assert!(out.grad.iter().all(|g| g.is_finite()));
}

#[test]
fn config_checks_name_the_field() {
    for (text, field) in [("(m: NaN)", "m"), ("(m: inf)", "m"), ("(gamma: 0.0)", "gamma"), ("(gamma: -80.0)", "gamma")]
    {
        let e = Instance::<Circle>::from_config_text(text, context(3, 0)).err().unwrap();
        assert!(e.message().starts_with(field), "{text}: {e}");
    }
    assert!(Instance::<Circle>::from_config_text("(distance: (measure: euclidean))", context(3, 0)).is_err());
}
