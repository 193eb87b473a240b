//! The batch-hard miner against a brute-force search written from the definition.

use dmlbench_miner_batch_hard::{BatchHard, Config};
use dmlbench_sdk::distance::DistanceConfig;
use dmlbench_sdk::testing::{context, naive, random_embeddings, random_labels};
use dmlbench_sdk::{Instance, Triplets, Tuples};

/// For each anchor: every candidate's distance in f64, the positive with the largest and the
/// negative with the smallest (lowest index on ties).
fn reference(z: &[f32], labels: &[i64], d: usize, cosine: bool) -> Triplets {
    let rows = naive::normalized_rows(z, d);
    let dist = |a: usize, b: usize| {
        if cosine { -naive::dot(&rows[a], &rows[b]) } else { naive::euclidean(&rows[a], &rows[b]) }
    };
    let mut out = Triplets::default();
    for a in 0..labels.len() {
        let positives: Vec<usize> = (0..labels.len()).filter(|&j| j != a && labels[j] == labels[a]).collect();
        let negatives: Vec<usize> = (0..labels.len()).filter(|&j| labels[j] != labels[a]).collect();
        if positives.is_empty() || negatives.is_empty() {
            continue;
        }
        let mut p = positives[0];
        for &j in &positives {
            if dist(a, j) > dist(a, p) {
                p = j;
            }
        }
        let mut n = negatives[0];
        for &j in &negatives {
            if dist(a, j) < dist(a, n) {
                n = j;
            }
        }
        out.a.push(a as u32);
        out.p.push(p as u32);
        out.n.push(n as u32);
    }
    out
}

#[test]
fn matches_brute_force() {
    for cosine in [false, true] {
        let config = Config { distance: if cosine { DistanceConfig::cosine() } else { DistanceConfig::default() } };
        for (n, d, classes, seed) in [(16, 6, 4, 1), (9, 3, 5, 2), (32, 8, 8, 3)] {
            let z = random_embeddings(seed, n, d);
            let labels = random_labels(seed, n, classes);
            let mut miner = Instance::<BatchHard>::new(config.clone(), context(d, 0)).unwrap();
            let (tuples, stats) = miner.mine(&z, &labels).unwrap();
            let want = reference(&z, &labels, d, cosine);
            assert_eq!(stats.get("dropped_anchors"), Some((n - want.len()) as f64));
            assert_eq!(tuples, Tuples::Triplets(want), "cosine {cosine}, n {n}");
        }
    }
}

#[test]
fn drops_anchors_without_positive_or_negative() {
    let mut miner = Instance::<BatchHard>::new(Config::default(), context(2, 0)).unwrap();
    // Row 2 is alone in its class; rows 0 and 1 have each other and row 2 as negative.
    let z = [1.0, 0.0, 0.0, 1.0, -1.0, 0.0];
    let (tuples, stats) = miner.mine(&z, &[0, 0, 1]).unwrap();
    assert_eq!(tuples, Tuples::Triplets(Triplets { a: vec![0, 1], p: vec![1, 0], n: vec![2, 2] }));
    assert_eq!(stats.get("dropped_anchors"), Some(1.0));
    // One class only: no negatives anywhere, no triplets, no error.
    let (tuples, _) = miner.mine(&z, &[3, 3, 3]).unwrap();
    assert_eq!(tuples, Tuples::Triplets(Triplets::default()));
}
