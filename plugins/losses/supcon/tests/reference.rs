//! The supervised contrastive loss against a plain loop over anchors, against
//! pytorch-metric-learning 2.9's `SupConLoss` on a fixed batch, and against finite
//! differences.

use dmlbench_loss_supcon::{Config, SupCon};
use dmlbench_sdk::distance::DistanceConfig;
use dmlbench_sdk::pairwise::Measure;
use dmlbench_sdk::testing::batches::ntxent::{LABELS, Z, mined};
use dmlbench_sdk::testing::{
    GradCheck, assert_close, check_loss_gradient, context, naive, random_embeddings, random_labels,
};
use dmlbench_sdk::{Instance, LossValue, Pairs, Triplets, Tuples};

/// (anchor, other) index pairs.
type PairList = Vec<(usize, usize)>;

/// The definition, written out: for each anchor, its distinct positive and negative pairs
/// (all ordered pairs when none are given); −mean over its positives of the log-softmax over
/// all its pairs; the mean over the anchors whose loss is above 0. Also returns how many
/// anchors that is.
fn reference(
    config: &Config,
    z: &[f32],
    labels: &[i64],
    d: usize,
    given: Option<(PairList, PairList)>,
) -> (f64, usize) {
    let n = labels.len();
    let u = naive::normalized_rows(z, d);
    let logit = |a: usize, b: usize| match config.distance.measure {
        Measure::Cosine => naive::dot(&u[a], &u[b]) / config.temperature,
        Measure::Euclidean => -naive::euclidean(&u[a], &u[b]) / config.temperature,
        other => panic!("reference does not cover {other:?}"),
    };
    let (mut pos, mut neg) = given.unwrap_or_else(|| {
        let mut pos = vec![];
        let mut neg = vec![];
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
    if pos.is_empty() || neg.is_empty() {
        return (0.0, 0);
    }
    let mut losses = vec![];
    for i in 0..n {
        let positives: Vec<usize> = pos.iter().filter(|&&(a, _)| a == i).map(|&(_, p)| p).collect();
        if positives.is_empty() {
            continue;
        }
        let denominator: f64 = pos.iter().chain(&neg).filter(|&&(a, _)| a == i).map(|&(_, k)| logit(i, k).exp()).sum();
        let log_probs: f64 = positives.iter().map(|&p| (logit(i, p).exp() / denominator).ln()).sum();
        losses.push(-log_probs / positives.len() as f64);
    }
    let active: Vec<f64> = losses.into_iter().filter(|&l| l > 0.0).collect();
    if active.is_empty() { (0.0, 0) } else { (active.iter().sum::<f64>() / active.len() as f64, active.len()) }
}

fn configs() -> Vec<Config> {
    vec![
        Config::default(),
        Config { temperature: 0.3, ..Config::default() },
        Config { temperature: 0.5, distance: DistanceConfig::default() },
    ]
}

#[test]
fn matches_the_definition_on_random_batches() {
    for (k, config) in configs().iter().enumerate() {
        for (n, d, classes) in [(12, 5, 3), (16, 8, 4), (7, 4, 7), (9, 3, 2), (5, 4, 4), (4, 3, 1)] {
            let seed = 900 + 10 * k as u64 + n as u64;
            let z = random_embeddings(seed, n, d);
            let labels = random_labels(seed, n, classes);
            let mut loss = Instance::<SupCon>::new(config.clone(), context(d, 0)).unwrap();
            let out = loss.forward_backward(&z, &labels, None).unwrap();
            let what = format!("config {k}, n {n}");
            let (want, active) = reference(config, &z, &labels, d, None);
            assert_close(out.loss, want, 1e-5, &what);
            if want > 0.0 {
                assert_eq!(out.stats.get("active_anchors"), Some(active as f64), "{what}");
            }
            check_loss_gradient(&mut loss, &z, &labels, None, &GradCheck::default())
                .unwrap_or_else(|e| panic!("{what}: {e}"));
        }
    }
}

#[test]
fn mined_pairs_form_masks_and_inactive_anchors_do_not_count() {
    let (n, d) = (8, 4);
    let labels = [0, 0, 0, 1, 1, 2, 2, 3];
    // (0,1) and (0,3) twice; anchor 5 has one positive and no negative (ℓ = 0); anchor 4 has
    // a negative but no positive; row 7 is only in pairs of those two.
    let pairs = Pairs {
        a1: vec![0, 0, 3, 5, 0, 1],
        p: vec![1, 1, 4, 6, 2, 2],
        a2: vec![0, 0, 3, 4, 0, 1],
        n: vec![3, 5, 0, 7, 3, 6],
    };
    let pos = vec![(0, 1), (3, 4), (5, 6), (0, 2), (1, 2)];
    let neg = vec![(0, 3), (0, 5), (3, 0), (4, 7), (1, 6)];
    let tuples = Tuples::Pairs(pairs);
    for (k, config) in configs().iter().enumerate() {
        let z = random_embeddings(91 + k as u64, n, d);
        let mut loss = Instance::<SupCon>::new(config.clone(), context(d, 0)).unwrap();
        let out = loss.forward_backward(&z, &labels, Some(&tuples)).unwrap();
        let what = format!("config {k}");
        let (want, active) = reference(config, &z, &labels, d, Some((pos.clone(), neg.clone())));
        assert_close(out.loss, want, 1e-5, &what);
        assert_eq!(active, 3, "{what}: anchors 0, 1 and 3");
        assert_eq!(out.stats.get("active_anchors"), Some(3.0), "{what}");
        assert_eq!((out.stats.get("pos_pairs"), out.stats.get("neg_pairs")), (Some(5.0), Some(5.0)), "{what}");
        check_loss_gradient(&mut loss, &z, &labels, Some(&tuples), &GradCheck::default())
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(out.grad[7 * d..8 * d].iter().all(|&g| g == 0.0), "{what}: row 7");
        assert!(out.grad[6 * d..7 * d].iter().any(|&g| g != 0.0), "{what}: row 6 is a negative of anchor 1");
    }
    // Triplets are split into their (a, p) and (a, n) pairs, then masked.
    let z = random_embeddings(95, n, d);
    let triplets = Tuples::Triplets(Triplets { a: vec![0, 0, 3, 0], p: vec![1, 2, 4, 1], n: vec![3, 3, 0, 3] });
    let mut loss = Instance::<SupCon>::new(Config::default(), context(d, 0)).unwrap();
    let out = loss.forward_backward(&z, &labels, Some(&triplets)).unwrap();
    let (want, _) =
        reference(&Config::default(), &z, &labels, d, Some((vec![(0, 1), (0, 2), (3, 4)], vec![(0, 3), (3, 0)])));
    assert_close(out.loss, want, 1e-5, "triplets");
    check_loss_gradient(&mut loss, &z, &labels, Some(&triplets), &GradCheck::default()).unwrap();
}

/// Agreement to 1e-5 relative: the loss to itself, each gradient element to the largest one.
#[track_caller]
fn assert_parity(got: &LossValue, want: &(f64, [f64; 32]), what: &str) {
    assert!((got.loss - want.0).abs() <= 1e-5 * want.0.abs(), "{what}: loss {} vs PML {}", got.loss, want.0);
    let largest = want.1.iter().fold(0.0f64, |m, g| m.max(g.abs()));
    for (i, (&g, &w)) in got.grad.iter().zip(&want.1).enumerate() {
        assert!((f64::from(g) - w).abs() <= 1e-5 * largest, "{what}: grad[{i}] {g} vs PML {w}");
    }
}

// The expected values below come from pytorch-metric-learning 2.9.0 (torch 2.9, CPU, f64):
//
// import torch
// from pytorch_metric_learning.losses import SupConLoss
// Z = [[0.9, -0.2, 0.4, 0.1], [0.7, 0.1, 0.5, -0.3], [0.2, -0.8, 0.3, 0.6], [-0.5, 0.4, 0.9, 0.2],
//      [-0.3, 0.6, 0.2, -0.7], [0.1, 0.3, -0.9, 0.4], [0.5, -0.6, -0.4, -0.2], [-0.8, -0.1, -0.3, 0.5]]
// labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
// mined = tuple(torch.tensor(x) for x in ([0, 0, 3, 5, 0, 6], [1, 2, 4, 6, 1, 7], [0, 0, 3, 5, 1, 0], [3, 5, 0, 1, 7, 3]))
// one_each = tuple(torch.tensor(x) for x in ([0], [1], [0], [3]))
// def run(loss, tuples):
//     z = torch.tensor(Z, dtype=torch.float32).double().requires_grad_()  # the f32 inputs, in f64
//     value = loss(z, labels, tuples)
//     value.backward()
//     print(repr(value.item()), [float(g) for g in z.grad.flatten()])
// run(SupConLoss(), None); run(SupConLoss(temperature=0.3), mined); run(SupConLoss(), one_each)

const PML_ALL_PAIRS: (f64, [f64; 32]) = (
    2.419577523055396,
    [
        0.21360224920014995,
        0.0519803951002166,
        -0.24777426704826144,
        -0.827362304834833,
        0.03780089969695,
        0.7012325014294601,
        -0.4252232466851694,
        -0.38675912735649876,
        -0.9062319291283049,
        -0.42528198732647965,
        -1.0390982622742009,
        0.2545837976583809,
        -0.10296766190325608,
        -0.19135903424599177,
        -0.049061273564887944,
        0.346074639473309,
        0.21873956179579787,
        -0.039022286148012536,
        -0.17509935168033128,
        -0.17722159533719786,
        -1.1944950695559493,
        0.5536972113605754,
        0.3068735572048093,
        0.5738163236861359,
        1.4437182862750273,
        -0.2521400891631211,
        2.4207552467274964,
        -0.47579454527485754,
        -0.08259236039189999,
        1.1618662497227938,
        0.3547099512091297,
        0.31305145399341694,
    ],
);

const PML_MINED_TEMPERATURE_0_3: (f64, [f64; 32]) = (
    0.39264970677409927,
    [
        0.019970394056831944,
        0.3409961103513298,
        0.1799231811071623,
        -0.21743404279792541,
        0.12773137315379193,
        -0.03965655161504272,
        -0.0911183648348768,
        0.1329570682065681,
        -0.23262262405287698,
        -0.048409964962415425,
        -0.07541763386512412,
        0.0507030713442514,
        0.16680478659944722,
        -0.09644815079172708,
        0.10502576000124808,
        0.1372923614250654,
        0.055422739159591214,
        -0.020572428479438104,
        -0.12220637076500106,
        -0.07630222201930374,
        0.046639086185898224,
        0.10230023596841491,
        0.048163660128779755,
        0.019983280375887993,
        -0.0008901711657271199,
        -0.04940438018424381,
        0.09925384424906711,
        -0.052519972145646014,
        0.0,
        0.0,
        0.0,
        0.0,
    ],
);

#[test]
fn matches_pml_on_a_fixed_batch() {
    let d = 4;
    let mut loss = Instance::<SupCon>::new(Config::default(), context(d, 3)).unwrap();
    let out = loss.forward_backward(&Z, &LABELS, None).unwrap();
    assert_parity(&out, &PML_ALL_PAIRS, "all pairs, τ 0.1");
    assert_eq!(out.stats.get("active_anchors"), Some(8.0));
    let mut loss = Instance::<SupCon>::new(Config { temperature: 0.3, ..Config::default() }, context(d, 3)).unwrap();
    let out = loss.forward_backward(&Z, &LABELS, Some(&mined())).unwrap();
    assert_parity(&out, &PML_MINED_TEMPERATURE_0_3, "mined pairs, τ 0.3");
    // Anchors 0, 3 and 5; anchor 6's lone positive is its whole softmax, anchor 1 has none.
    assert_eq!(out.stats.get("active_anchors"), Some(3.0));
}

#[test]
fn one_pair_of_each_kind_is_computed_where_pml_returns_zero() {
    // PML's GenericPairLoss returns 0 when every index array has at most one element (the
    // last line of the snippet above prints 0.0 and a zero gradient); here the anchor counts.
    let d = 4;
    let one_each = Tuples::Pairs(Pairs { a1: vec![0], p: vec![1], a2: vec![0], n: vec![3] });
    let mut loss = Instance::<SupCon>::new(Config::default(), context(d, 3)).unwrap();
    let out = loss.forward_backward(&Z, &LABELS, Some(&one_each)).unwrap();
    let (want, active) = reference(&Config::default(), &Z, &LABELS, d, Some((vec![(0, 1)], vec![(0, 3)])));
    assert!(want > 1e-6 && active == 1, "the anchor has a loss of its own: {want}");
    assert_close(out.loss, want, 1e-5, "one pair of each kind");
    assert!(out.grad.iter().any(|&g| g != 0.0));
}

#[test]
fn degenerate_batches_give_zero_without_nan() {
    let d = 3;
    let mut loss = Instance::<SupCon>::new(Config::default(), context(d, 0)).unwrap();
    let z = random_embeddings(19, 4, d);
    let zero = |out: &LossValue| out.loss == 0.0 && out.grad.iter().all(|&g| g == 0.0);
    // One class: positives but no negative.
    let out = loss.forward_backward(&z, &[2, 2, 2, 2], None).unwrap();
    assert!(zero(&out));
    assert_eq!((out.stats.get("no_negative_pairs"), out.stats.get("pos_pairs")), (Some(1.0), Some(12.0)));
    // All singletons: negatives but no positive.
    let out = loss.forward_backward(&z, &[0, 1, 2, 3], None).unwrap();
    assert!(zero(&out));
    assert_eq!(out.stats.get("no_positive_pairs"), Some(1.0));
    // A single embedding, and an empty mined set.
    let out = loss.forward_backward(&z[..d], &[0], None).unwrap();
    assert!(zero(&out) && out.stats.get("no_positive_pairs") == Some(1.0));
    let out = loss.forward_backward(&z, &[0, 0, 1, 1], Some(&Tuples::Pairs(Pairs::default()))).unwrap();
    assert!(zero(&out) && out.stats.get("no_positive_pairs") == Some(1.0));
    // Pairs of both kinds, but no anchor active: anchor 0's single positive is its whole
    // softmax, and anchor 2 has no positive.
    let inactive = Tuples::Pairs(Pairs { a1: vec![0], p: vec![1], a2: vec![2], n: vec![0] });
    let out = loss.forward_backward(&z, &[0, 0, 1, 1], Some(&inactive)).unwrap();
    assert!(zero(&out));
    assert_eq!(out.stats.get("active_anchors"), Some(0.0));
    // Extreme logits (a tiny temperature, identical and opposite embeddings) stay finite.
    let mut cold = Instance::<SupCon>::new(Config { temperature: 1e-3, ..Config::default() }, context(d, 0)).unwrap();
    let z = [1.0, 2.0, 3.0, 1.0, 2.0, 3.0, -1.0, -2.0, -3.0, 1.0, 2.0, 3.0];
    let out = cold.forward_backward(&z, &[0, 0, 0, 1], None).unwrap();
    assert!(out.loss.is_finite() && out.loss > 100.0, "{}", out.loss);
    assert!(out.grad.iter().all(|g| g.is_finite()));
}

#[test]
fn bad_configurations_are_refused_naming_the_field() {
    for text in ["(temperature: 0.0)", "(temperature: -0.1)", "(temperature: NaN)", "(temperature: inf)"] {
        let e = Instance::<SupCon>::from_config_text(text, context(3, 0)).err().unwrap();
        assert!(e.message().contains("temperature"), "{text}: {e}");
    }
    assert!(Instance::<SupCon>::from_config_text("(temperature: 0.2)", context(3, 0)).is_ok());
}
