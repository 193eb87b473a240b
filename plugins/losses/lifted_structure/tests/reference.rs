//! The lifted structure loss against a plain loop over the pair lists, against finite
//! differences, and against values and gradients computed by pytorch-metric-learning 2.9.

use dmlbench_loss_lifted_structure::{Config, LiftedStructure};
use dmlbench_sdk::distance::DistanceConfig;
use dmlbench_sdk::pairwise::Measure;
use dmlbench_sdk::testing::batches::lifted::{LABELS, Z, mined};
use dmlbench_sdk::testing::{
    GradCheck, assert_close, check_loss_gradient, context, naive, random_embeddings, random_labels,
};
use dmlbench_sdk::{Instance, Pairs, Triplets, Tuples};

/// Positive and negative pair lists (anchor, other), duplicates kept.
type PairLists = (Vec<(usize, usize)>, Vec<(usize, usize)>);

/// The definition: for each listed positive pair (a, p), J = log Σ over the listed negative
/// pairs anchored at a or p of exp(m⁻ − d) (0 when there is none) plus d(a, p) − m⁺; the mean
/// of ½[J]₊² over the listed positive pairs; 0 without positive or without negative pairs.
fn reference(config: &Config, z: &[f32], labels: &[i64], d: usize, given: Option<PairLists>) -> f64 {
    let n = labels.len();
    let rows: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            let r = naive::row(z, d, i);
            if config.distance.normalize_embeddings { naive::normalized(&r) } else { r }
        })
        .collect();
    let measure = |a: usize, b: usize| match config.distance.measure {
        Measure::Euclidean => naive::euclidean(&rows[a], &rows[b]),
        Measure::SquaredEuclidean => naive::squared_euclidean(&rows[a], &rows[b]),
        Measure::Cosine => naive::cosine(&rows[a], &rows[b]),
        Measure::Dot => naive::dot(&rows[a], &rows[b]),
    };
    let similarity = matches!(config.distance.measure, Measure::Cosine | Measure::Dot);
    let (pos, neg) = given.unwrap_or_else(|| {
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
    if pos.is_empty() || neg.is_empty() {
        return 0.0;
    }
    let mut total = 0.0;
    for &(a, p) in &pos {
        let mut sum = 0.0;
        let mut any = false;
        for &(k, l) in &neg {
            if k == a || k == p {
                let v = measure(k, l);
                sum += if similarity { v - config.neg_margin } else { config.neg_margin - v }.exp();
                any = true;
            }
        }
        let v = measure(a, p);
        let j =
            if any { sum.ln() } else { 0.0 } + if similarity { config.pos_margin - v } else { v - config.pos_margin };
        total += 0.5 * j.max(0.0).powi(2);
    }
    total / pos.len() as f64
}

fn configs() -> Vec<Config> {
    vec![
        Config::default(),
        Config { neg_margin: 0.5, pos_margin: 0.1, ..Config::default() },
        Config { neg_margin: 0.3, pos_margin: 0.8, distance: DistanceConfig::cosine() },
        Config {
            neg_margin: 2.0,
            pos_margin: 0.5,
            distance: DistanceConfig { measure: Measure::SquaredEuclidean, normalize_embeddings: false },
        },
    ]
}

#[test]
fn matches_the_definition_and_finite_differences() {
    for (k, config) in configs().iter().enumerate() {
        for (n, d, classes) in [(12, 5, 3), (16, 8, 4), (7, 4, 7), (5, 3, 1), (10, 6, 2)] {
            let seed = 900 + 10 * k as u64 + n as u64;
            let z = random_embeddings(seed, n, d);
            let labels = random_labels(seed, n, classes);
            let what = format!("config {k}, n {n}");
            let mut loss = Instance::<LiftedStructure>::new(config.clone(), context(d, 0)).unwrap();
            let out = loss.forward_backward(&z, &labels, None).unwrap();
            assert_close(out.loss, reference(config, &z, &labels, d, None), 1e-5, &what);
            check_loss_gradient(&mut loss, &z, &labels, None, &GradCheck::default())
                .unwrap_or_else(|e| panic!("{what}: {e}"));
        }
    }
}

#[test]
fn uses_the_mined_pair_lists_with_their_duplicates() {
    let (n, d) = (8, 4);
    let z = random_embeddings(91, n, d);
    let labels = [0, 0, 0, 1, 1, 2, 2, 3];
    let config = Config { neg_margin: 0.8, pos_margin: 0.05, ..Config::default() };
    let mut loss = Instance::<LiftedStructure>::new(config.clone(), context(d, 0)).unwrap();
    // (0, 1) and (3, 0) twice; (5, 6) has no negative pair anchored at 5 or 6.
    let pos = vec![(0, 1), (0, 1), (3, 4), (5, 6)];
    let neg = vec![(0, 5), (3, 0), (3, 7), (1, 3), (3, 0)];
    let split = |v: &[(usize, usize)]| -> (Vec<u32>, Vec<u32>) { v.iter().map(|&(a, b)| (a as u32, b as u32)).unzip() };
    let ((a1, p), (a2, neg_n)) = (split(&pos), split(&neg));
    let tuples = Tuples::Pairs(Pairs { a1, p, a2, n: neg_n });
    let out = loss.forward_backward(&z, &labels, Some(&tuples)).unwrap();
    assert_close(out.loss, reference(&config, &z, &labels, d, Some((pos, neg))), 1e-5, "mined pairs");
    assert_eq!((out.stats.get("pos_pairs"), out.stats.get("neg_pairs")), (Some(4.0), Some(5.0)));
    check_loss_gradient(&mut loss, &z, &labels, Some(&tuples), &GradCheck::default()).unwrap();
    // Row 2 is in no pair: no gradient.
    assert!(out.grad[2 * d..3 * d].iter().all(|&g| g == 0.0));
    // Triplets are split into their (a, p) and (a, n) pairs, duplicates kept.
    let triplets = Tuples::Triplets(Triplets { a: vec![0, 0, 3], p: vec![1, 1, 4], n: vec![3, 5, 6] });
    let out = loss.forward_backward(&z, &labels, Some(&triplets)).unwrap();
    let want = reference(&config, &z, &labels, d, Some((vec![(0, 1), (0, 1), (3, 4)], vec![(0, 3), (0, 5), (3, 6)])));
    assert_close(out.loss, want, 1e-5, "triplets");
}

#[test]
fn one_positive_and_one_negative_pair_are_computed_unlike_pml() {
    // PML returns 0 when every index array of the tuple has at most one element; here the
    // pair (0, 1) and the pair (0, 2) are a batch like any other.
    let (n, d) = (3, 4);
    let z = random_embeddings(5, n, d);
    let labels = [0, 0, 1];
    let config = Config::default();
    let mut loss = Instance::<LiftedStructure>::new(config.clone(), context(d, 0)).unwrap();
    let tuples = Tuples::Pairs(Pairs { a1: vec![0], p: vec![1], a2: vec![0], n: vec![2] });
    let out = loss.forward_backward(&z, &labels, Some(&tuples)).unwrap();
    let want = reference(&config, &z, &labels, d, Some((vec![(0, 1)], vec![(0, 2)])));
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
//     run(losses.LiftedStructureLoss())
//     run(losses.LiftedStructureLoss(neg_margin=0.7, pos_margin=0.1), mined)

const PML_DEFAULT_LOSS: f64 = 4.460509926425175;
const PML_DEFAULT_GRAD: [f64; 32] = [
    0.11313464821645643,
    0.07411765193685924,
    -0.35751183878247267,
    0.2927854449847681,
    0.03211327523686506,
    0.09698106875261815,
    0.02470660740102741,
    0.14279685600193465,
    -0.0453699377034737,
    0.3822747457205085,
    -0.23800644814513208,
    -0.03512430673588337,
    0.061452792590968114,
    -0.18163577010929616,
    0.1504642222960941,
    0.14403595819801354,
    -0.2053143202392799,
    0.16345110298878762,
    -0.10149546941301056,
    0.001625069841909482,
    0.3229220092672776,
    0.0010803467608575777,
    0.3528795617472632,
    -0.285282614915429,
    -0.1384623656032272,
    -0.12901587397754108,
    0.1453377159197332,
    -0.08897318336596294,
    0.3391873946311463,
    -0.2976710937288257,
    0.034342442007732704,
    -0.12762188105140582,
];
const PML_MINED_LOSS: f64 = 0.40177526701621635;
const PML_MINED_GRAD: [f64; 32] = [
    0.2874869902909327,
    0.0638635528444367,
    -0.2525831829240039,
    0.14941785449489814,
    -0.06399938291106275,
    0.1360028407814008,
    0.1667610773768993,
    -0.07927564140323419,
    -0.002246273390719526,
    0.07359772990046994,
    -0.060742655411684374,
    -0.017492740346914254,
    0.05677197232961573,
    -0.2021013241851414,
    0.10321354064509494,
    0.14748742247138816,
    -0.02405513522584899,
    0.016604857083602043,
    -0.013067034113605654,
    -0.008995033692513829,
    0.007436168951815688,
    -0.05649499012474283,
    0.13210211484986487,
    0.0007276301917830401,
    0.003825666340598933,
    0.0037820280545582913,
    -0.0021412813684133307,
    0.002782914083358873,
    0.008932712425885836,
    -0.0409260139664564,
    -0.0014925458390215585,
    -0.025777363377294544,
];

#[test]
fn matches_pml_values_and_gradients() {
    let mined = mined();
    let mined_config = Config { neg_margin: 0.7, pos_margin: 0.1, ..Config::default() };
    let cases = [
        ("default, all pairs", Config::default(), None, PML_DEFAULT_LOSS, &PML_DEFAULT_GRAD),
        ("margins 0.7 / 0.1, mined", mined_config, Some(&mined), PML_MINED_LOSS, &PML_MINED_GRAD),
    ];
    for (what, config, tuples, want_loss, want_grad) in cases {
        let mut loss = Instance::<LiftedStructure>::new(config, context(4, 0)).unwrap();
        let out = loss.forward_backward(&Z, &LABELS, tuples).unwrap();
        assert_close(out.loss, want_loss, 1e-5, what);
        assert_gradient(&out.grad, want_grad, 1e-5, what);
    }
}

#[test]
fn degenerate_batches_give_zero_without_nan() {
    let d = 3;
    let mut loss = Instance::<LiftedStructure>::new(Config::default(), context(d, 0)).unwrap();
    let z = random_embeddings(19, 4, d);
    // A single embedding, and singletons: no positive pair.
    for labels in [&[0][..], &[0, 1, 2, 3]] {
        let out = loss.forward_backward(&z[..labels.len() * d], labels, None).unwrap();
        assert_eq!((out.loss, out.stats.get("no_pos_pairs")), (0.0, Some(1.0)), "{labels:?}");
        assert!(out.grad.iter().all(|&g| g == 0.0));
    }
    // One class: no negative pair, so 0 (as PML) even though positives are apart.
    let out = loss.forward_backward(&z, &[1, 1, 1, 1], None).unwrap();
    assert_eq!((out.loss, out.stats.get("no_neg_pairs")), (0.0, Some(1.0)));
    assert!(out.grad.iter().all(|&g| g == 0.0));
    // Mined positive pairs without negative pairs.
    let only_pos = Tuples::Pairs(Pairs { a1: vec![0], p: vec![1], a2: vec![], n: vec![] });
    let out = loss.forward_backward(&z, &[0, 0, 1, 1], Some(&only_pos)).unwrap();
    assert_eq!((out.loss, out.stats.get("no_neg_pairs")), (0.0, Some(1.0)));
    // Every positive pair satisfied: a large m⁺.
    let mut lenient =
        Instance::<LiftedStructure>::new(Config { pos_margin: 10.0, ..Config::default() }, context(d, 0)).unwrap();
    let out = lenient.forward_backward(&z, &[0, 0, 1, 1], None).unwrap();
    assert_eq!((out.loss, out.stats.get("all_pos_pairs_inactive")), (0.0, Some(1.0)));
    assert!(out.grad.iter().all(|&g| g == 0.0));
    // Identical embeddings: d = 0 everywhere, a finite loss and gradient.
    let same = [0.5f32, -1.0, 2.0].repeat(4);
    let out = loss.forward_backward(&same, &[0, 0, 1, 1], None).unwrap();
    // J = log(4 e^{1 − 0}) + 0 for every positive pair: four negative pairs anchored at a or p.
    assert_close(out.loss, 0.5 * (1.0 + 4f64.ln()).powi(2), 1e-6, "identical embeddings");
    assert!(out.grad.iter().all(|g| g.is_finite()));
}

#[test]
fn config_checks_name_the_field() {
    for (text, field) in [("(neg_margin: NaN)", "neg_margin"), ("(pos_margin: inf)", "pos_margin")] {
        let e = Instance::<LiftedStructure>::from_config_text(text, context(3, 0)).err().unwrap();
        assert!(e.message().starts_with(field), "{text}: {e}");
    }
    assert!(Instance::<LiftedStructure>::from_config_text("(margin: 1.0)", context(3, 0)).is_err());
}
