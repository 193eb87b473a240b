//! NT-Xent against a plain loop over positive pairs, against pytorch-metric-learning 2.9's
//! `NTXentLoss` on a fixed batch, and against finite differences.

use dmlbench_loss_ntxent::{Config, NtXent};
use dmlbench_sdk::distance::DistanceConfig;
use dmlbench_sdk::pairwise::Measure;
use dmlbench_sdk::testing::batches::ntxent::{LABELS, Z, mined};
use dmlbench_sdk::testing::{
    GradCheck, assert_close, check_loss_gradient, context, naive, random_embeddings, random_labels,
};
use dmlbench_sdk::{Instance, Pairs, Triplets, Tuples};

/// (anchor, other) index pairs.
type PairList = Vec<(usize, usize)>;

/// The definition, written out: for each listed positive pair, the softmax of its logit
/// against the listed negative pairs of its anchor (duplicates included); −log of it; the mean
/// over the positive pairs. All ordered pairs when none are given; 0 without positives or
/// without negatives.
fn reference(config: &Config, z: &[f32], labels: &[i64], d: usize, given: Option<(PairList, PairList)>) -> f64 {
    let n = labels.len();
    let u = naive::normalized_rows(z, d);
    let logit = |a: usize, b: usize| match config.distance.measure {
        Measure::Cosine => naive::dot(&u[a], &u[b]) / config.temperature,
        Measure::Euclidean => -naive::euclidean(&u[a], &u[b]) / config.temperature,
        other => panic!("reference does not cover {other:?}"),
    };
    let (pos, neg) = given.unwrap_or_else(|| {
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
    if pos.is_empty() || neg.is_empty() {
        return 0.0;
    }
    let mut total = 0.0;
    for &(a, p) in &pos {
        let numerator = logit(a, p).exp();
        let negatives: f64 = neg.iter().filter(|&&(b, _)| b == a).map(|&(b, k)| logit(b, k).exp()).sum();
        total -= (numerator / (numerator + negatives)).ln();
    }
    total / pos.len() as f64
}

fn configs() -> Vec<Config> {
    vec![
        Config::default(),
        Config { temperature: 0.5, ..Config::default() },
        Config { temperature: 0.2, distance: DistanceConfig::default() },
    ]
}

#[test]
fn matches_the_definition_on_random_batches() {
    for (k, config) in configs().iter().enumerate() {
        for (n, d, classes) in [(12, 5, 3), (16, 8, 4), (7, 4, 7), (9, 3, 2), (4, 3, 1)] {
            let seed = 700 + 10 * k as u64 + n as u64;
            let z = random_embeddings(seed, n, d);
            let labels = random_labels(seed, n, classes);
            let mut loss = Instance::<NtXent>::new(config.clone(), context(d, 0)).unwrap();
            let out = loss.forward_backward(&z, &labels, None).unwrap();
            let what = format!("config {k}, n {n}");
            assert_close(out.loss, reference(config, &z, &labels, d, None), 1e-5, &what);
            check_loss_gradient(&mut loss, &z, &labels, None, &GradCheck::default())
                .unwrap_or_else(|e| panic!("{what}: {e}"));
        }
    }
}

#[test]
fn mined_pairs_are_a_list_with_repeats_and_lone_positives_still_count() {
    let (n, d) = (8, 4);
    let labels = [0, 0, 0, 1, 1, 2, 2, 3];
    // (0,1) twice, (0,3) twice; (6,5) has no negative pair of anchor 6; (2,*) is in none.
    let pairs =
        Pairs { a1: vec![0, 0, 3, 6, 0], p: vec![1, 1, 4, 5, 2], a2: vec![0, 0, 3, 4, 0], n: vec![3, 5, 7, 0, 3] };
    let pos = vec![(0, 1), (0, 1), (3, 4), (6, 5), (0, 2)];
    let neg = vec![(0, 3), (0, 5), (3, 7), (4, 0), (0, 3)];
    let tuples = Tuples::Pairs(pairs);
    for (k, config) in configs().iter().enumerate() {
        let z = random_embeddings(71 + k as u64, n, d);
        let mut loss = Instance::<NtXent>::new(config.clone(), context(d, 0)).unwrap();
        let out = loss.forward_backward(&z, &labels, Some(&tuples)).unwrap();
        let what = format!("config {k}");
        assert_close(out.loss, reference(config, &z, &labels, d, Some((pos.clone(), neg.clone()))), 1e-5, &what);
        assert_eq!(out.stats.get("pos_pairs_without_negatives"), Some(1.0), "{what}");
        check_loss_gradient(&mut loss, &z, &labels, Some(&tuples), &GradCheck::default())
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        // Row 2 appears only as a positive of anchor 0 and gets a gradient; row 6 appears
        // only in (6, 5), whose anchor has no negative pair, and gets none.
        assert!(out.grad[2 * d..3 * d].iter().any(|&g| g != 0.0), "{what}");
        assert!(out.grad[6 * d..7 * d].iter().all(|&g| g == 0.0), "{what}");
    }
    // Triplets are split into their (a, p) and (a, n) pairs: one term per triplet.
    let z = random_embeddings(75, n, d);
    let triplets = Tuples::Triplets(Triplets { a: vec![0, 0, 3], p: vec![1, 2, 4], n: vec![3, 3, 0] });
    let mut loss = Instance::<NtXent>::new(Config::default(), context(d, 0)).unwrap();
    let out = loss.forward_backward(&z, &labels, Some(&triplets)).unwrap();
    let want = reference(
        &Config::default(),
        &z,
        &labels,
        d,
        Some((vec![(0, 1), (0, 2), (3, 4)], vec![(0, 3), (0, 3), (3, 0)])),
    );
    assert_close(out.loss, want, 1e-5, "triplets");
    check_loss_gradient(&mut loss, &z, &labels, Some(&triplets), &GradCheck::default()).unwrap();
}

/// Agreement to 1e-5 relative: the loss to itself, each gradient element to the largest one.
#[track_caller]
fn assert_parity(got: (f64, &[f32]), want: (f64, &[f64]), what: &str) {
    assert!((got.0 - want.0).abs() <= 1e-5 * want.0.abs(), "{what}: loss {} vs PML {}", got.0, want.0);
    let largest = want.1.iter().fold(0.0f64, |m, g| m.max(g.abs()));
    for (i, (&g, &w)) in got.1.iter().zip(want.1).enumerate() {
        assert!((f64::from(g) - w).abs() <= 1e-5 * largest, "{what}: grad[{i}] {g} vs PML {w}");
    }
}

// The expected values below come from pytorch-metric-learning 2.9.0 (torch 2.9, CPU, f64):
//
// import torch
// from pytorch_metric_learning.losses import NTXentLoss
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
// run(NTXentLoss(), None); run(NTXentLoss(), mined); run(NTXentLoss(temperature=0.5), mined); run(NTXentLoss(), one_each)

const PML_ALL_PAIRS: (f64, [f64; 32]) = (
    2.2918411996201438,
    [
        0.41914278563436647,
        -0.7302479964533461,
        -1.1322130135853772,
        -0.7039288531316269,
        -0.4162125382376945,
        1.6043541409923863,
        -0.7181469642076488,
        -1.6332893931611037,
        -1.3426209340914486,
        -0.9286376549304414,
        -2.0746761117387456,
        0.24669484696176988,
        -0.41649418831365864,
        -0.15435367027244942,
        -0.24601501385738622,
        0.374539401810741,
        0.4164319428798402,
        -0.011247396408317954,
        0.15948905357412993,
        -0.14254316635780545,
        -0.4393612264743045,
        0.7165167509903787,
        0.29794609469892713,
        0.2428314153538219,
        3.009874283347146,
        -0.3074159472869715,
        4.245766890035016,
        -0.04460031906353357,
        -0.7153070824313128,
        1.3911072048551034,
        2.0249192032568013,
        0.3486816664044094,
    ],
);

const PML_MINED: (f64, [f64; 32]) = (
    0.00016752640103485605,
    [
        -0.0004990494854036899,
        0.0012011108690980733,
        0.0017127600538720843,
        4.262670543059982e-05,
        0.0001013473985697482,
        7.80014241142349e-05,
        -0.000130302656152317,
        4.530663900689184e-05,
        -0.0005684398479878261,
        -0.00011829525712028904,
        -0.00018429156882070034,
        0.00012389872345731418,
        0.0017583112994623892,
        -0.0008843433947569523,
        0.0010983441846522297,
        0.0012219163463151885,
        0.0004734420316346451,
        -0.00017573747675872622,
        -0.0010439331099655004,
        -0.0006518024832196576,
        9.262240250917155e-05,
        0.00018182288594712815,
        8.770498833801788e-05,
        3.781344711802273e-05,
        -1.592382004104887e-06,
        -8.837698743598904e-05,
        0.00017755016282890095,
        -9.395031171617756e-05,
        0.0,
        0.0,
        0.0,
        0.0,
    ],
);

const PML_MINED_TEMPERATURE_HALF: (f64, [f64; 32]) = (
    0.29819575482416455,
    [
        -0.04301169210344441,
        0.17473956842690655,
        0.1589854930659536,
        0.10064237749789445,
        -0.01398526927011945,
        0.08579984659414513,
        -0.03318740512109625,
        -0.05934468462734779,
        -0.11153202213516977,
        -0.02321038766428675,
        -0.036159342814889556,
        0.024309828412058098,
        0.25583328705001207,
        -0.08089170046406594,
        0.15665047370777307,
        0.09643950651607477,
        0.028887838258204575,
        -0.010722908963073926,
        -0.06369728249294937,
        -0.03977079231122432,
        0.09960033663488749,
        0.05559247241540918,
        0.04221351027628808,
        0.028385954684439507,
        -0.0005619004121335059,
        -0.03118539743314589,
        0.06265174399783022,
        -0.03315204438213098,
        0.0,
        0.0,
        0.0,
        0.0,
    ],
);

#[test]
fn matches_pml_on_a_fixed_batch() {
    let d = 4;
    let cases = [
        ("all pairs, τ 0.07", Config::default(), None, PML_ALL_PAIRS),
        ("mined pairs, τ 0.07", Config::default(), Some(mined()), PML_MINED),
        (
            "mined pairs, τ 0.5",
            Config { temperature: 0.5, ..Config::default() },
            Some(mined()),
            PML_MINED_TEMPERATURE_HALF,
        ),
    ];
    for (what, config, tuples, (want_loss, want_grad)) in cases {
        let mut loss = Instance::<NtXent>::new(config, context(d, 3)).unwrap();
        let out = loss.forward_backward(&Z, &LABELS, tuples.as_ref()).unwrap();
        assert_parity((out.loss, &out.grad), (want_loss, &want_grad), what);
    }
}

#[test]
fn one_pair_of_each_kind_is_computed_where_pml_returns_zero() {
    // PML's GenericPairLoss returns 0 when every index array has at most one element (the
    // last line of the snippet above prints 0.0 and a zero gradient); here the pair counts.
    let d = 4;
    let one_each = Tuples::Pairs(Pairs { a1: vec![0], p: vec![1], a2: vec![0], n: vec![3] });
    for config in [Config::default(), Config { temperature: 0.5, ..Config::default() }] {
        let mut loss = Instance::<NtXent>::new(config.clone(), context(d, 3)).unwrap();
        let out = loss.forward_backward(&Z, &LABELS, Some(&one_each)).unwrap();
        let want = reference(&config, &Z, &LABELS, d, Some((vec![(0, 1)], vec![(0, 3)])));
        assert!(want > 0.0, "the pair has a loss of its own: {want}");
        assert!((out.loss - want).abs() <= 1e-5 * want, "τ {}: {} vs {want}", config.temperature, out.loss);
        assert!(out.grad.iter().any(|&g| g != 0.0));
    }
}

#[test]
fn degenerate_batches_give_zero_without_nan() {
    let d = 3;
    let mut loss = Instance::<NtXent>::new(Config::default(), context(d, 0)).unwrap();
    let z = random_embeddings(9, 4, d);
    let zero = |out: &dmlbench_sdk::LossValue| out.loss == 0.0 && out.grad.iter().all(|&g| g == 0.0);
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
    // Mined pairs whose positive anchors have no negative pair: every term is −log 1 = 0.
    let lone = Tuples::Pairs(Pairs { a1: vec![0, 1], p: vec![1, 0], a2: vec![2], n: vec![0] });
    let out = loss.forward_backward(&z, &[0, 0, 1, 1], Some(&lone)).unwrap();
    assert!(zero(&out));
    assert_eq!(out.stats.get("pos_pairs_without_negatives"), Some(2.0));
    // Extreme logits (a tiny temperature, identical and opposite embeddings) stay finite.
    let mut cold = Instance::<NtXent>::new(Config { temperature: 1e-3, ..Config::default() }, context(d, 0)).unwrap();
    let z = [1.0, 2.0, 3.0, 1.0, 2.0, 3.0, -1.0, -2.0, -3.0, 1.0, 2.0, 3.0];
    let out = cold.forward_backward(&z, &[0, 0, 0, 1], None).unwrap();
    assert!(out.loss.is_finite() && out.loss > 100.0, "{}", out.loss);
    assert!(out.grad.iter().all(|g| g.is_finite()));
}

#[test]
fn bad_configurations_are_refused_naming_the_field() {
    for text in ["(temperature: 0.0)", "(temperature: -0.1)", "(temperature: NaN)", "(temperature: inf)"] {
        let e = Instance::<NtXent>::from_config_text(text, context(3, 0)).err().unwrap();
        assert!(e.message().contains("temperature"), "{text}: {e}");
    }
    assert!(Instance::<NtXent>::from_config_text("(temperature: 0.2)", context(3, 0)).is_ok());
}
