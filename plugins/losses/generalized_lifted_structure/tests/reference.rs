//! The generalised lifted structure loss against a plain loop over anchors, against finite
//! differences, and against values and gradients computed by pytorch-metric-learning 2.9.

use dmlbench_loss_generalized_lifted_structure::{Config, GeneralizedLiftedStructure};
use dmlbench_sdk::distance::DistanceConfig;
use dmlbench_sdk::pairwise::Measure;
use dmlbench_sdk::testing::batches::lifted::{LABELS, Z, mined};
use dmlbench_sdk::testing::{
    GradCheck, assert_close, check_loss_gradient, context, naive, random_embeddings, random_labels,
};
use dmlbench_sdk::{Instance, Pairs, Triplets, Tuples};

/// Positive and negative pairs (anchor, other).
type PairLists = (Vec<(usize, usize)>, Vec<(usize, usize)>);

/// The definition: for each row, its distinct positive and negative pairs, the log of the sum
/// of exp(d − m⁺) over positives and of exp(m⁻ − d) over negatives (each 0 when its set is
/// empty), the hinge of their sum, the mean over all n rows.
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
    let log_sum =
        |terms: Vec<f64>| if terms.is_empty() { 0.0 } else { terms.iter().map(|t| t.exp()).sum::<f64>().ln() };
    let mut total = 0.0;
    for i in 0..n {
        let pos_terms = pos
            .iter()
            .filter(|&&(a, _)| a == i)
            .map(|&(_, j)| {
                let v = measure(i, j);
                if similarity { config.pos_margin - v } else { v - config.pos_margin }
            })
            .collect();
        let neg_terms = neg
            .iter()
            .filter(|&&(a, _)| a == i)
            .map(|&(_, j)| {
                let v = measure(i, j);
                if similarity { v - config.neg_margin } else { config.neg_margin - v }
            })
            .collect();
        total += (log_sum(pos_terms) + log_sum(neg_terms)).max(0.0);
    }
    total / n as f64
}

fn configs() -> Vec<Config> {
    vec![
        Config::default(),
        Config { neg_margin: 0.4, pos_margin: 0.3, ..Config::default() },
        Config { neg_margin: 0.2, pos_margin: 0.9, distance: DistanceConfig::cosine() },
        Config {
            neg_margin: 3.0,
            pos_margin: 1.0,
            distance: DistanceConfig { measure: Measure::SquaredEuclidean, normalize_embeddings: false },
        },
    ]
}

#[test]
fn matches_the_definition_and_finite_differences() {
    for (k, config) in configs().iter().enumerate() {
        for (n, d, classes) in [(12, 5, 3), (16, 8, 4), (7, 4, 7), (5, 3, 1), (10, 6, 2)] {
            let seed = 1100 + 10 * k as u64 + n as u64;
            let z = random_embeddings(seed, n, d);
            let labels = random_labels(seed, n, classes);
            let what = format!("config {k}, n {n}");
            let mut loss = Instance::<GeneralizedLiftedStructure>::new(config.clone(), context(d, 0)).unwrap();
            let out = loss.forward_backward(&z, &labels, None).unwrap();
            assert_close(out.loss, reference(config, &z, &labels, d, None), 1e-5, &what);
            check_loss_gradient(&mut loss, &z, &labels, None, &GradCheck::default())
                .unwrap_or_else(|e| panic!("{what}: {e}"));
        }
    }
}

#[test]
fn uses_the_mined_pairs_as_masks() {
    let (n, d) = (8, 4);
    let z = random_embeddings(111, n, d);
    let labels = [0, 0, 0, 1, 1, 2, 2, 3];
    let config = Config { neg_margin: 0.8, pos_margin: 0.2, ..Config::default() };
    let mut loss = Instance::<GeneralizedLiftedStructure>::new(config.clone(), context(d, 0)).unwrap();
    // (0, 1) and (3, 0) twice; anchor 5 has only a negative, anchor 6 only a positive.
    let pairs = Pairs { a1: vec![0, 0, 3, 6], p: vec![1, 1, 4, 5], a2: vec![0, 3, 3, 5, 3], n: vec![5, 0, 7, 1, 0] };
    let tuples = Tuples::Pairs(pairs);
    let out = loss.forward_backward(&z, &labels, Some(&tuples)).unwrap();
    let want =
        reference(&config, &z, &labels, d, Some((vec![(0, 1), (3, 4), (6, 5)], vec![(0, 5), (3, 0), (3, 7), (5, 1)])));
    assert_close(out.loss, want, 1e-5, "mined pairs");
    assert_eq!((out.stats.get("pos_pairs"), out.stats.get("neg_pairs")), (Some(3.0), Some(4.0)));
    check_loss_gradient(&mut loss, &z, &labels, Some(&tuples), &GradCheck::default()).unwrap();
    // Row 2 is in no pair: no gradient.
    assert!(out.grad[2 * d..3 * d].iter().all(|&g| g == 0.0));
    // Triplets are split into their (a, p) and (a, n) pairs.
    let triplets = Tuples::Triplets(Triplets { a: vec![0, 0, 3], p: vec![1, 2, 4], n: vec![3, 3, 6] });
    let out = loss.forward_backward(&z, &labels, Some(&triplets)).unwrap();
    let want = reference(&config, &z, &labels, d, Some((vec![(0, 1), (0, 2), (3, 4)], vec![(0, 3), (3, 6)])));
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
    let mut loss = Instance::<GeneralizedLiftedStructure>::new(config.clone(), context(d, 0)).unwrap();
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
//     run(losses.GeneralizedLiftedStructureLoss())
//     run(losses.GeneralizedLiftedStructureLoss(neg_margin=0.7, pos_margin=0.1), mined)

const PML_DEFAULT_LOSS: f64 = 2.7735555730028647;
const PML_DEFAULT_GRAD: [f64; 32] = [
    0.03923744298092013,
    0.026433010366485692,
    -0.09433419681270394,
    0.08332556612319333,
    0.02483309410667097,
    0.022763832222989444,
    -0.008560258724810818,
    0.062415307965306484,
    -0.009141595530841415,
    0.12155117184581594,
    -0.07943936948682044,
    -0.015497942965949281,
    0.04271338640066806,
    -0.12273751941078934,
    0.1013668412374739,
    0.07724095653794208,
    -0.13293159241690086,
    0.10095281806427056,
    -0.06761612700349275,
    -0.01818014263144912,
    0.09488523662108492,
    0.0027036540129624234,
    0.0950101735966212,
    -0.07931278322811826,
    -0.031078009673212385,
    -0.024153615336623024,
    0.045600515381688966,
    -0.02059550191306751,
    0.1069122409406499,
    -0.08306625575630178,
    0.007560395834391485,
    -0.039907000954243065,
];
const PML_MINED_LOSS: f64 = 0.2635825664868221;
const PML_MINED_GRAD: [f64; 32] = [
    0.09567640809545655,
    0.024297221450871542,
    -0.05084659069546757,
    0.03236310982838464,
    -0.013529500715001848,
    0.04561788241769102,
    0.04067547934365546,
    0.006965421042924389,
    -0.0006905248259601315,
    0.022624610094456803,
    -0.018672843532671648,
    -0.005377427134882061,
    0.03542130649383066,
    -0.11549253357826253,
    0.07354262159795223,
    0.08159528148330632,
    -0.060702166708216244,
    0.041901689322943435,
    -0.03297413528125551,
    -0.02269860591605656,
    0.005015336428387532,
    -0.03330405128419413,
    0.08707936069492099,
    -0.01204235041767006,
    0.00965391521588722,
    0.009543795755355,
    -0.005403437452097547,
    0.007022571814153292,
    0.0077566451514946315,
    -0.035537757477000054,
    -0.0012960395335330707,
    -0.022383555086738262,
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
        let mut loss = Instance::<GeneralizedLiftedStructure>::new(config, context(4, 0)).unwrap();
        let out = loss.forward_backward(&Z, &LABELS, tuples).unwrap();
        assert_close(out.loss, want_loss, 1e-5, what);
        assert_gradient(&out.grad, want_grad, 1e-5, what);
    }
}

#[test]
fn degenerate_batches_give_zero_without_nan() {
    let d = 3;
    let mut loss = Instance::<GeneralizedLiftedStructure>::new(Config::default(), context(d, 0)).unwrap();
    let z = random_embeddings(29, 4, d);
    // A single embedding, and empty mined tuples: no pair at all.
    let out = loss.forward_backward(&z[..d], &[0], None).unwrap();
    assert_eq!((out.loss, out.stats.get("no_pairs")), (0.0, Some(1.0)));
    assert!(out.grad.iter().all(|&g| g == 0.0));
    let empty = Tuples::Pairs(Pairs::default());
    let out = loss.forward_backward(&z, &[0, 0, 1, 1], Some(&empty)).unwrap();
    assert_eq!((out.loss, out.stats.get("no_pairs")), (0.0, Some(1.0)));
    // One class: as in PML, the positive terms alone still count (an empty negative
    // log-sum-exp is 0); with identical embeddings they are log 3 per row.
    let same = [0.5f32, -1.0, 2.0].repeat(4);
    let out = loss.forward_backward(&same, &[1, 1, 1, 1], None).unwrap();
    assert_close(out.loss, 3f64.ln(), 1e-6, "one class, identical embeddings");
    assert!(out.grad.iter().all(|g| g.is_finite()));
    // Every row inactive: a large m⁺ and a negative m⁻.
    let config = Config { neg_margin: -5.0, pos_margin: 5.0, ..Config::default() };
    let mut lenient = Instance::<GeneralizedLiftedStructure>::new(config, context(d, 0)).unwrap();
    let out = lenient.forward_backward(&z, &[0, 0, 1, 1], None).unwrap();
    assert_eq!((out.loss, out.stats.get("no_active_anchors")), (0.0, Some(1.0)));
    assert!(out.grad.iter().all(|&g| g == 0.0));
}

#[test]
fn config_checks_name_the_field() {
    for (text, field) in [("(neg_margin: -inf)", "neg_margin"), ("(pos_margin: NaN)", "pos_margin")] {
        let e = Instance::<GeneralizedLiftedStructure>::from_config_text(text, context(3, 0)).err().unwrap();
        assert!(e.message().starts_with(field), "{text}: {e}");
    }
    assert!(Instance::<GeneralizedLiftedStructure>::from_config_text("(margin: 1.0)", context(3, 0)).is_err());
}
