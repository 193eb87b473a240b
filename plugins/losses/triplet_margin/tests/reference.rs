//! The triplet margin loss against a plain loop over triplets and against finite differences.

use dmlbench_loss_triplet_margin::{Config, TripletMargin};
use dmlbench_sdk::distance::DistanceConfig;
use dmlbench_sdk::pairwise::Measure;
use dmlbench_sdk::testing::{
    GradCheck, assert_close, check_loss_gradient, context, naive, random_embeddings, random_labels,
};
use dmlbench_sdk::{Instance, Pairs, Triplets, Tuples};

/// The definition: every triplet (or the given ones), the hinge or softplus of the
/// violation, the mean over the positive terms.
fn reference(config: &Config, z: &[f32], labels: &[i64], d: usize, given: Option<Vec<(usize, usize, usize)>>) -> f64 {
    let rows: Vec<Vec<f64>> = (0..labels.len())
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
    let triplets = given.unwrap_or_else(|| {
        let mut all = vec![];
        for a in 0..labels.len() {
            for p in 0..labels.len() {
                for n in 0..labels.len() {
                    if p != a && labels[p] == labels[a] && labels[n] != labels[a] {
                        all.push((a, p, n));
                    }
                }
            }
        }
        all
    });
    let terms: Vec<f64> = triplets
        .iter()
        .map(|&(a, p, n)| {
            let ap = measure(a, p);
            let mut an = measure(a, n);
            if config.swap {
                let pn = measure(p, n);
                an = if similarity { an.max(pn) } else { an.min(pn) };
            }
            let v = if similarity { an - ap } else { ap - an } + config.margin;
            if config.smooth_loss { (1.0 + v.exp()).ln() } else { v.max(0.0) }
        })
        .filter(|&t| t > 0.0)
        .collect();
    if terms.is_empty() { 0.0 } else { terms.iter().sum::<f64>() / terms.len() as f64 }
}

fn configs() -> Vec<Config> {
    vec![
        Config::default(),
        Config { margin: 0.2, distance: DistanceConfig::cosine(), ..Config::default() },
        Config { margin: 0.3, swap: true, ..Config::default() },
        Config { margin: 0.1, swap: true, distance: DistanceConfig::cosine(), ..Config::default() },
        Config { smooth_loss: true, ..Config::default() },
        Config {
            margin: 1.0,
            distance: DistanceConfig { measure: Measure::SquaredEuclidean, normalize_embeddings: false },
            ..Config::default()
        },
    ]
}

#[test]
fn matches_the_definition_on_random_batches() {
    for (k, config) in configs().iter().enumerate() {
        for (n, d, classes) in [(12, 5, 3), (16, 8, 4), (7, 4, 7), (3, 3, 1)] {
            let seed = 300 + 10 * k as u64 + n as u64;
            let z = random_embeddings(seed, n, d);
            let labels = random_labels(seed, n, classes);
            let mut loss = Instance::<TripletMargin>::new(config.clone(), context(d, 0)).unwrap();
            let out = loss.forward_backward(&z, &labels, None).unwrap();
            let what = format!("config {k}, n {n}");
            assert_close(out.loss, reference(config, &z, &labels, d, None), 1e-5, &what);
            check_loss_gradient(&mut loss, &z, &labels, None, &GradCheck::default())
                .unwrap_or_else(|e| panic!("{what}: {e}"));
        }
    }
}

#[test]
fn uses_mined_triplets_and_pairs_joined_per_anchor() {
    let (n, d) = (8, 4);
    let z = random_embeddings(31, n, d);
    let labels = [0, 0, 1, 1, 2, 2, 3, 3];
    let config = Config { margin: 0.5, ..Config::default() };
    let mut loss = Instance::<TripletMargin>::new(config.clone(), context(d, 0)).unwrap();
    let triplets = Tuples::Triplets(Triplets { a: vec![0, 0, 2], p: vec![1, 1, 3], n: vec![4, 5, 6] });
    let out = loss.forward_backward(&z, &labels, Some(&triplets)).unwrap();
    let want = reference(&config, &z, &labels, d, Some(vec![(0, 1, 4), (0, 1, 5), (2, 3, 6)]));
    assert_close(out.loss, want, 1e-5, "triplets");
    check_loss_gradient(&mut loss, &z, &labels, Some(&triplets), &GradCheck::default()).unwrap();
    // Row 7 is in no triplet: no gradient.
    assert!(out.grad[7 * d..].iter().all(|&g| g == 0.0));

    // Pairs: each positive pair meets every negative pair of its anchor.
    let pairs = Tuples::Pairs(Pairs { a1: vec![0, 2], p: vec![1, 3], a2: vec![0, 0, 2, 5], n: vec![4, 6, 7, 0] });
    let out = loss.forward_backward(&z, &labels, Some(&pairs)).unwrap();
    let want = reference(&config, &z, &labels, d, Some(vec![(0, 1, 4), (0, 1, 6), (2, 3, 7)]));
    assert_close(out.loss, want, 1e-5, "pairs");
    assert_eq!(out.stats.get("triplets"), Some(3.0));
}

#[test]
fn degenerate_batches_give_zero_without_nan() {
    let d = 3;
    let mut loss = Instance::<TripletMargin>::new(Config::default(), context(d, 0)).unwrap();
    let z = random_embeddings(5, 4, d);
    // One class: no negatives, no triplets.
    let out = loss.forward_backward(&z, &[1, 1, 1, 1], None).unwrap();
    assert_eq!((out.loss, out.stats.get("no_triplets")), (0.0, Some(1.0)));
    assert!(out.grad.iter().all(|&g| g == 0.0));
    // Every class a singleton: no positives.
    let out = loss.forward_backward(&z, &[0, 1, 2, 3], None).unwrap();
    assert_eq!((out.loss, out.stats.get("triplets")), (0.0, Some(0.0)));
    // Well separated classes: every triplet satisfied, a zero loss with a statistic.
    let z = [1.0, 0.0, 0.0, 1.0, 0.01, 0.0, -1.0, 0.0, 0.0, -1.0, 0.01, 0.0];
    let out = loss.forward_backward(&z, &[0, 0, 1, 1], None).unwrap();
    assert_eq!((out.loss, out.stats.get("all_triplets_inactive")), (0.0, Some(1.0)));
    assert!(out.grad.iter().all(|&g| g == 0.0));
    // Identical embeddings: every distance 0, every triplet violates by exactly m, and the
    // subgradient at d = 0 is 0: a finite loss m with a zero gradient.
    let same = [0.5f32, -1.0, 2.0].repeat(4);
    let out = loss.forward_backward(&same, &[0, 0, 1, 1], None).unwrap();
    assert_close(out.loss, 0.05, 1e-6, "identical embeddings");
    assert!(out.grad.iter().all(|g| g.is_finite()));
}

#[test]
fn rejects_a_non_finite_margin() {
    let e = Instance::<TripletMargin>::from_config_text("(margin: inf)", context(3, 0)).err().unwrap();
    assert!(e.message().contains("margin"), "{e}");
}
