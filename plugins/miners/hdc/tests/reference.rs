//! The HDC miner against a sort written from the definition, against pytorch-metric-learning
//! 2.9 on a fixed batch, on PML's rounding of the kept count, on degenerate batches and with
//! bad configurations.

use dmlbench_miner_hdc::{Config, Hdc};
use dmlbench_sdk::distance::DistanceConfig;
use dmlbench_sdk::testing::{context, naive, random_embeddings, random_labels};
use dmlbench_sdk::{Instance, Pairs, Stats, Tuples};

/// Written from the definition, in f64: every ordered pair of each kind with its hardness
/// (d for a positive, −d for a negative; −s and s with a similarity), the hardest
/// ⌈f · count⌉ first, ties in row-major order.
fn reference(config: &Config, z: &[f32], labels: &[i64], d: usize) -> Pairs {
    let u = naive::normalized_rows(z, d);
    let cosine = config.distance == DistanceConfig::cosine();
    let n = labels.len();
    let keep = |positive: bool| {
        let mut list = Vec::new();
        for a in 0..n {
            for j in 0..n {
                if j != a && (labels[a] == labels[j]) == positive {
                    let far = if cosine { -naive::dot(&u[a], &u[j]) } else { naive::euclidean(&u[a], &u[j]) };
                    list.push((a as u32, j as u32, if positive { far } else { -far }));
                }
            }
        }
        let k = (config.filter_percentage * list.len() as f64).ceil() as usize;
        // Selection by repeated maximum, the first of equals winning, to stay apart from a sort.
        let mut chosen = Vec::new();
        let mut taken = vec![false; list.len()];
        for _ in 0..k {
            let mut best: Option<usize> = None;
            for (i, item) in list.iter().enumerate() {
                if !taken[i] && best.is_none_or(|b| item.2 > list[b].2) {
                    best = Some(i);
                }
            }
            let b = best.unwrap();
            taken[b] = true;
            chosen.push((list[b].0, list[b].1));
        }
        chosen.into_iter().unzip::<u32, u32, Vec<u32>, Vec<u32>>()
    };
    let ((a1, p), (a2, n)) = (keep(true), keep(false));
    Pairs { a1, p, a2, n }
}

fn mine(config: &Config, z: &[f32], labels: &[i64], d: usize) -> (Pairs, Stats) {
    let mut miner = Instance::<Hdc>::new(config.clone(), context(d, 0)).unwrap();
    let (tuples, stats) = miner.mine(z, labels).unwrap();
    let Tuples::Pairs(pairs) = tuples else { panic!("triplets from a pair miner") };
    (pairs, stats)
}

#[test]
fn matches_the_definition() {
    for distance in [DistanceConfig::default(), DistanceConfig::cosine()] {
        for filter_percentage in [0.5, 0.1, 0.37, 1.0] {
            let config = Config { filter_percentage, distance };
            for (n, d, classes, seed) in [(16, 6, 4, 1), (9, 3, 5, 2), (32, 8, 8, 3), (12, 4, 2, 4)] {
                let z = random_embeddings(seed, n, d);
                let labels = random_labels(seed, n, classes);
                let (got, stats) = mine(&config, &z, &labels, d);
                let want = reference(&config, &z, &labels, d);
                assert_eq!(got, want, "{config:?}, n {n}");
                assert_eq!(stats.get("pos_pairs"), Some(want.positives() as f64));
                assert_eq!(stats.get("neg_pairs"), Some(want.negatives() as f64));
            }
        }
    }
}

/// The pairs as unordered {i, j}, in order: a pair and its mirror have the same distance, and
/// PML's `torch.topk` puts either first.
fn unordered(anchors: &[u32], others: &[u32]) -> Vec<(u32, u32)> {
    anchors.iter().zip(others).map(|(&a, &b)| (a.min(b), a.max(b))).collect()
}

#[test]
fn matches_pml_on_a_fixed_batch() {
    // PML's (a1, p, a2, n) for each configuration, printed by this script
    // (pytorch-metric-learning 2.9.0, torch 2.9, float64):
    //
    // import torch
    // from pytorch_metric_learning.miners import HDCMiner
    // from pytorch_metric_learning.distances import CosineSimilarity
    // z = torch.tensor([[-0.31, -0.71, -0.73, -0.30], [-0.25, -0.36, 0.94, 1.16], [-0.17, 0.01, -0.05, 0.55],
    //                   [-1.25, 0.32, 0.59, 1.06], [0.80, 0.37, 0.57, 1.57], [0.87, -3.70, -1.81, -1.84],
    //                   [-1.18, 0.55, 1.05, -0.16], [-2.10, 1.58, 1.08, 0.89]], dtype=torch.float64)
    // labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2])
    // for c in [dict(), dict(filter_percentage=0.3), dict(filter_percentage=1.0),
    //           dict(filter_percentage=0.5, distance=CosineSimilarity())]:
    //     print([t.tolist() for t in HDCMiner(**c)(z, labels)])
    //
    // The 28 distances (and similarities) of this batch differ pairwise by more than 3e-3, so
    // the only ties are each pair with its mirror, which PML orders either way: the pairs are
    // compared unordered, in order.
    let z: [f32; 32] = [
        -0.31, -0.71, -0.73, -0.30, -0.25, -0.36, 0.94, 1.16, -0.17, 0.01, -0.05, 0.55, -1.25, 0.32, 0.59, 1.06, 0.80,
        0.37, 0.57, 1.57, 0.87, -3.70, -1.81, -1.84, -1.18, 0.55, 1.05, -0.16, -2.10, 1.58, 1.08, 0.89,
    ];
    let labels = [0, 0, 0, 1, 1, 1, 2, 2];
    let half: [&[u32]; 4] = [
        &[3, 5, 5, 4, 1, 0, 0],
        &[5, 3, 4, 5, 0, 1, 2],
        &[7, 3, 0, 5, 3, 2, 3, 1, 6, 3, 4, 1, 2, 4, 7, 2, 7, 1, 6, 1, 4],
        &[3, 7, 5, 0, 2, 3, 1, 3, 3, 6, 1, 4, 4, 2, 2, 7, 1, 7, 1, 6, 7],
    ];
    let cases: [(f64, DistanceConfig, [&[u32]; 4]); 4] = [
        (0.5, DistanceConfig::default(), half),
        (
            0.3,
            DistanceConfig::default(),
            [
                &[3, 5, 5, 4, 1],
                &[5, 3, 4, 5, 0],
                &[7, 3, 0, 5, 3, 2, 3, 1, 6, 3, 4, 1, 2],
                &[3, 7, 5, 0, 2, 3, 1, 3, 3, 6, 1, 4, 4],
            ],
        ),
        (
            1.0,
            DistanceConfig::default(),
            [
                &[5, 3, 5, 4, 0, 1, 0, 2, 4, 3, 1, 2, 6, 7],
                &[3, 5, 4, 5, 1, 0, 2, 0, 3, 4, 2, 1, 7, 6],
                &[
                    7, 3, 0, 5, 2, 3, 1, 3, 6, 3, 1, 4, 4, 2, 7, 2, 1, 7, 6, 1, 7, 4, 2, 6, 6, 4, 0, 3, 5, 1, 6, 0, 5,
                    2, 0, 7, 5, 6, 0, 4, 5, 7,
                ],
                &[
                    3, 7, 5, 0, 3, 2, 3, 1, 3, 6, 4, 1, 2, 4, 2, 7, 7, 1, 1, 6, 4, 7, 6, 2, 4, 6, 3, 0, 1, 5, 0, 6, 2,
                    5, 7, 0, 6, 5, 4, 0, 7, 5,
                ],
            ],
        ),
        (0.5, DistanceConfig::cosine(), half),
    ];
    for (filter_percentage, distance, [a1, p, a2, n]) in cases {
        let config = Config { filter_percentage, distance };
        let (got, _) = mine(&config, &z, &labels, 4);
        assert_eq!(unordered(&got.a1, &got.p), unordered(a1, p), "{config:?}");
        assert_eq!(unordered(&got.a2, &got.n), unordered(a2, n), "{config:?}");
    }
}

#[test]
fn mirrored_pairs_tie_and_go_in_row_major_order() {
    // Every pair ties with its mirror; (i, j) with i < j comes first, and an odd count keeps
    // it alone. 3 rows of one class and 1 of another: 6 positive and 6 negative pairs.
    for seed in 0..20 {
        let z = random_embeddings(seed, 4, 5);
        let labels = [0, 0, 0, 1];
        let config = Config { filter_percentage: 0.5, ..Config::default() };
        let (got, _) = mine(&config, &z, &labels, 5);
        for (anchors, others) in [(&got.a1, &got.p), (&got.a2, &got.n)] {
            assert_eq!(anchors.len(), 3);
            // Two full mirror couples, then the lower-anchor half of the third.
            assert_eq!((anchors[0], others[0]), (anchors[1].min(others[1]), anchors[1].max(others[1])));
            assert_eq!((anchors[0], others[0]), (others[1], anchors[1]), "seed {seed}: {got:?}");
            assert!(anchors[2] < others[2], "seed {seed}: {got:?}");
        }
    }
}

#[test]
fn the_kept_count_is_rounded_up_as_pml() {
    // PML computes math.ceil(filter_percentage * num_pairs) in f64: 0.14 · 40 = 5.6 → 6
    // positive pairs, and 0.14 · 50 = 7.000000000000001 → 8 negative pairs, not 7:
    //
    // import torch
    // from pytorch_metric_learning.miners import HDCMiner
    // z10 = torch.arange(30, dtype=torch.float64).reshape(10, 3).sin()
    // out = HDCMiner(filter_percentage=0.14)(z10, torch.tensor([0] * 5 + [1] * 5))
    // print(len(out[0]), len(out[2]))          # 6 8
    let z: Vec<f32> = (0..30).map(|i| f64::from(i).sin() as f32).collect();
    let labels = [0, 0, 0, 0, 0, 1, 1, 1, 1, 1];
    let (got, stats) = mine(&Config { filter_percentage: 0.14, ..Config::default() }, &z, &labels, 3);
    assert_eq!((got.positives(), got.negatives()), (6, 8));
    assert_eq!((stats.get("pos_pairs_considered"), stats.get("neg_pairs_considered")), (Some(40.0), Some(50.0)));
    // A tiny fraction keeps one pair of each kind; 1 keeps them all.
    let (got, _) = mine(&Config { filter_percentage: 1e-9, ..Config::default() }, &z, &labels, 3);
    assert_eq!((got.positives(), got.negatives()), (1, 1));
    let (got, _) = mine(&Config { filter_percentage: 1.0, ..Config::default() }, &z, &labels, 3);
    assert_eq!((got.positives(), got.negatives()), (40, 50));
}

#[test]
fn degenerate_batches_keep_nothing_of_the_missing_kind() {
    let z = random_embeddings(5, 4, 3);
    let (got, stats) = mine(&Config::default(), &z, &[2, 2, 2, 2], 3);
    assert_eq!((got.positives(), got.negatives()), (6, 0));
    assert_eq!(stats.get("neg_pairs_considered"), Some(0.0));
    let (got, stats) = mine(&Config::default(), &z, &[0, 1, 2, 3], 3);
    assert_eq!((got.positives(), got.negatives()), (0, 6));
    assert_eq!(stats.get("pos_pairs"), Some(0.0));
    let (got, _) = mine(&Config::default(), &z[..3], &[0], 3);
    assert_eq!(got, Pairs::default());
}

#[test]
fn bad_configurations_are_refused_naming_the_field() {
    for bad in ["0.0", "-0.1", "1.5", "NaN", "inf"] {
        let text = format!("(filter_percentage: {bad})");
        let e = Instance::<Hdc>::from_config_text(&text, context(3, 0)).err().unwrap();
        assert!(e.message().contains("filter_percentage"), "{text}: {e}");
    }
    let e = Instance::<Hdc>::from_config_text("(filter_percent: 0.5)", context(3, 0)).err().unwrap();
    assert!(e.message().contains("filter_percent"), "{e}");
    assert!(Instance::<Hdc>::from_config_text("(filter_percentage: 1.0)", context(3, 0)).is_ok());
}
