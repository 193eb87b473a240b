//! The contrastive loss against a plain loop over pairs and against finite differences.

use dmlbench_loss_contrastive::{Config, Contrastive};
use dmlbench_sdk::distance::DistanceConfig;
use dmlbench_sdk::pairwise::Measure;
use dmlbench_sdk::testing::{
    GradCheck, assert_close, check_loss_gradient, context, naive, random_embeddings, random_labels,
};
use dmlbench_sdk::{Instance, Triplets, Tuples};

/// (anchor, other) index pairs.
type PairList = Vec<(usize, usize)>;

/// The definition, written out: every ordered pair (or the given ones), hinge, mean of the
/// non-zero terms of each kind, summed.
fn reference(config: &Config, z: &[f32], labels: &[i64], d: usize, pairs: Option<(PairList, PairList)>) -> f64 {
    let rows: Vec<Vec<f64>> = (0..labels.len()).map(|i| naive::row(z, d, i)).collect();
    let measure = |a: usize, b: usize| {
        let (x, y) = (naive::normalized(&rows[a]), naive::normalized(&rows[b]));
        match config.distance.measure {
            Measure::Euclidean => naive::euclidean(&x, &y),
            Measure::Cosine => naive::dot(&x, &y),
            other => panic!("reference does not cover {other:?}"),
        }
    };
    let similarity = config.distance.measure == Measure::Cosine;
    let (pos, neg) = pairs.unwrap_or_else(|| {
        let mut pos = vec![];
        let mut neg = vec![];
        for i in 0..labels.len() {
            for j in 0..labels.len() {
                if i != j {
                    if labels[i] == labels[j] { pos.push((i, j)) } else { neg.push((i, j)) }
                }
            }
        }
        (pos, neg)
    });
    let mean_nonzero = |v: Vec<f64>| {
        let nz: Vec<f64> = v.into_iter().filter(|&x| x > 0.0).collect();
        if nz.is_empty() { 0.0 } else { nz.iter().sum::<f64>() / nz.len() as f64 }
    };
    let pos_terms = pos.iter().map(|&(a, b)| {
        let m = measure(a, b);
        if similarity { (config.pos_margin - m).max(0.0) } else { (m - config.pos_margin).max(0.0) }
    });
    let neg_terms = neg.iter().map(|&(a, b)| {
        let m = measure(a, b);
        if similarity { (m - config.neg_margin).max(0.0) } else { (config.neg_margin - m).max(0.0) }
    });
    mean_nonzero(pos_terms.collect()) + mean_nonzero(neg_terms.collect())
}

#[test]
fn matches_the_definition_on_random_batches() {
    let configs = [
        Config::default(),
        Config { pos_margin: 0.2, neg_margin: 0.9, ..Config::default() },
        Config { pos_margin: 0.9, neg_margin: 0.1, distance: DistanceConfig::cosine() },
    ];
    for (k, config) in configs.iter().enumerate() {
        for (n, d, classes) in [(12, 5, 3), (2, 3, 1), (7, 4, 7), (16, 8, 4)] {
            let seed = 100 + k as u64 * 10 + n as u64;
            let z = random_embeddings(seed, n, d);
            let labels = random_labels(seed, n, classes);
            let mut loss = Instance::<Contrastive>::new(config.clone(), context(d, 0)).unwrap();
            let out = loss.forward_backward(&z, &labels, None).unwrap();
            assert_close(out.loss, reference(config, &z, &labels, d, None), 1e-5, &format!("config {k}, n {n}"));
            check_loss_gradient(&mut loss, &z, &labels, None, &GradCheck::default())
                .unwrap_or_else(|e| panic!("config {k}, n {n}: {e}"));
        }
    }
}

#[test]
fn uses_mined_triplets_as_their_pairs() {
    let (n, d) = (6, 4);
    let z = random_embeddings(7, n, d);
    let labels = [0, 0, 1, 1, 2, 2];
    let triplets = Triplets { a: vec![0, 0, 2], p: vec![1, 1, 3], n: vec![2, 4, 5] };
    let tuples = Tuples::Triplets(triplets);
    let mut loss = Instance::<Contrastive>::new(Config::default(), context(d, 0)).unwrap();
    let out = loss.forward_backward(&z, &labels, Some(&tuples)).unwrap();
    let pos = vec![(0, 1), (0, 1), (2, 3)];
    let neg = vec![(0, 2), (0, 4), (2, 5)];
    assert_close(out.loss, reference(&Config::default(), &z, &labels, d, Some((pos, neg))), 1e-5, "triplets");
    check_loss_gradient(&mut loss, &z, &labels, Some(&tuples), &GradCheck::default()).unwrap();
    // Rows that appear in no pair get no gradient.
    assert!(out.grad[d..2 * d].iter().any(|&g| g != 0.0));
}

#[test]
fn degenerate_batches_give_zero_without_nan() {
    let d = 3;
    let mut loss = Instance::<Contrastive>::new(Config::default(), context(d, 0)).unwrap();
    // One class, identical embeddings: every positive distance is 0, no negatives.
    let z = [1.0, 2.0, 3.0, 1.0, 2.0, 3.0];
    let out = loss.forward_backward(&z, &[4, 4], None).unwrap();
    assert_eq!(out.loss, 0.0);
    assert!(out.grad.iter().all(|&g| g == 0.0));
    assert_eq!(out.stats.get("active_pos_pairs"), Some(0.0));
    assert_eq!(out.stats.get("neg_pairs"), Some(0.0));
    // A single embedding: no pair at all.
    let out = loss.forward_backward(&z[..3], &[1], None).unwrap();
    assert_eq!((out.loss, out.stats.get("no_pairs")), (0.0, Some(1.0)));
}
