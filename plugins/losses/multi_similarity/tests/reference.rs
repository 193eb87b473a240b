//! The multi-similarity loss against a plain loop over anchors and pairs, and against finite
//! differences.

use dmlbench_loss_multi_similarity::{Config, MultiSimilarity};
use dmlbench_sdk::distance::DistanceConfig;
use dmlbench_sdk::pairwise::Measure;
use dmlbench_sdk::testing::{
    GradCheck, assert_close, check_loss_gradient, context, naive, random_embeddings, random_labels,
};
use dmlbench_sdk::{Instance, Pairs, Triplets, Tuples};

/// Positive and negative pairs (anchor, other).
type PairLists = (Vec<(usize, usize)>, Vec<(usize, usize)>);

/// The definition: for each row, its distinct positive and negative pairs (all ordered pairs
/// when none are given), the two log(1 + Σ exp) terms, the mean over all n rows.
fn reference(config: &Config, z: &[f32], labels: &[i64], d: usize, given: Option<PairLists>) -> f64 {
    let n = labels.len();
    let u = naive::normalized_rows(z, d);
    let value = |a: usize, b: usize| match config.distance.measure {
        Measure::Cosine => naive::dot(&u[a], &u[b]),
        Measure::Euclidean => naive::euclidean(&u[a], &u[b]),
        other => panic!("reference does not cover {other:?}"),
    };
    let similarity = config.distance.measure == Measure::Cosine;
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
    let mut total = 0.0;
    for i in 0..n {
        let p_sum: f64 = pos
            .iter()
            .filter(|&&(a, _)| a == i)
            .map(|&(_, j)| {
                let e = if similarity { -(value(i, j) - config.base) } else { value(i, j) - config.base };
                (config.alpha * e).exp()
            })
            .sum();
        let n_sum: f64 = neg
            .iter()
            .filter(|&&(a, _)| a == i)
            .map(|&(_, j)| {
                let e = if similarity { value(i, j) - config.base } else { config.base - value(i, j) };
                (config.beta * e).exp()
            })
            .sum();
        total += (1.0 + p_sum).ln() / config.alpha + (1.0 + n_sum).ln() / config.beta;
    }
    total / n as f64
}

fn configs() -> Vec<Config> {
    vec![
        Config::default(),
        Config { alpha: 1.0, beta: 10.0, base: 0.2, ..Config::default() },
        Config { alpha: 3.0, beta: 8.0, base: 0.9, distance: DistanceConfig::default() },
    ]
}

#[test]
fn matches_the_definition_on_random_batches() {
    for (k, config) in configs().iter().enumerate() {
        for (n, d, classes) in [(12, 5, 3), (16, 8, 4), (7, 4, 7), (4, 3, 1)] {
            let seed = 500 + 10 * k as u64 + n as u64;
            // Small embeddings in few dimensions spread the similarities over [−1, 1].
            let z = random_embeddings(seed, n, d);
            let labels = random_labels(seed, n, classes);
            let mut loss = Instance::<MultiSimilarity>::new(config.clone(), context(d, 0)).unwrap();
            let out = loss.forward_backward(&z, &labels, None).unwrap();
            let what = format!("config {k}, n {n}");
            assert_close(out.loss, reference(config, &z, &labels, d, None), 1e-5, &what);
            check_loss_gradient(&mut loss, &z, &labels, None, &GradCheck::default())
                .unwrap_or_else(|e| panic!("{what}: {e}"));
        }
    }
}

#[test]
fn uses_only_the_mined_pairs_and_counts_duplicates_once() {
    let (n, d) = (8, 4);
    let z = random_embeddings(61, n, d);
    let labels = [0, 0, 0, 1, 1, 2, 2, 3];
    let config = Config::default();
    let mut loss = Instance::<MultiSimilarity>::new(config.clone(), context(d, 0)).unwrap();
    let pairs = Pairs { a1: vec![0, 0, 3], p: vec![1, 1, 4], a2: vec![0, 3, 3, 5], n: vec![5, 0, 7, 1] };
    let tuples = Tuples::Pairs(pairs);
    let out = loss.forward_backward(&z, &labels, Some(&tuples)).unwrap();
    let want = reference(&config, &z, &labels, d, Some((vec![(0, 1), (3, 4)], vec![(0, 5), (3, 0), (3, 7), (5, 1)])));
    assert_close(out.loss, want, 1e-5, "mined pairs");
    assert_eq!((out.stats.get("pos_pairs"), out.stats.get("anchors_without_pairs")), (Some(2.0), Some(5.0)));
    check_loss_gradient(&mut loss, &z, &labels, Some(&tuples), &GradCheck::default()).unwrap();
    // Rows 2 and 6 are in no pair and get no gradient.
    for row in [2, 6] {
        assert!(out.grad[row * d..(row + 1) * d].iter().all(|&g| g == 0.0), "row {row}");
    }
    // Triplets are split into their (a, p) and (a, n) pairs.
    let triplets = Tuples::Triplets(Triplets { a: vec![0, 0], p: vec![1, 2], n: vec![3, 3] });
    let out = loss.forward_backward(&z, &labels, Some(&triplets)).unwrap();
    let want = reference(&config, &z, &labels, d, Some((vec![(0, 1), (0, 2)], vec![(0, 3)])));
    assert_close(out.loss, want, 1e-5, "triplets");
}

#[test]
fn degenerate_batches_give_zero_without_nan() {
    let d = 3;
    let mut loss = Instance::<MultiSimilarity>::new(Config::default(), context(d, 0)).unwrap();
    let z = random_embeddings(3, 3, d);
    let out = loss.forward_backward(&z[..d], &[0], None).unwrap();
    assert_eq!((out.loss, out.stats.get("no_pairs")), (0.0, Some(1.0)));
    assert!(out.grad.iter().all(|&g| g == 0.0));
    let empty = Tuples::Pairs(Pairs::default());
    let out = loss.forward_backward(&z, &[0, 0, 1], Some(&empty)).unwrap();
    assert_eq!((out.loss, out.stats.get("no_pairs")), (0.0, Some(1.0)));
    // Extreme similarities (identical embeddings, β = 50) stay finite.
    let same = [1.0f32, 2.0, 3.0].repeat(3);
    let out = loss.forward_backward(&same, &[0, 1, 2], None).unwrap();
    assert!(out.loss.is_finite() && out.loss > 0.0);
    for (text, field) in [("(alpha: 0.0)", "alpha"), ("(beta: -1.0)", "beta"), ("(base: NaN)", "base")] {
        let e = Instance::<MultiSimilarity>::from_config_text(text, context(d, 0)).err().unwrap();
        assert!(e.message().contains(field), "{text}: {e}");
    }
}
