//! Distance-weighted sampling against the exact sampling probabilities written from the
//! paper's density (many seeded draws, a chi-square test with a generous bound), plus its
//! structure, reproducibility and state.

use dmlbench_miner_distance_weighted::{Config, DistanceWeighted};
use dmlbench_sdk::testing::{naive, random_embeddings};
use dmlbench_sdk::{Context, Instance, Triplets, Tuples};

fn ctx(d: usize, seed: u64) -> Context {
    Context { embedding_dim: d, num_classes: 0, seed, base_lr: 0.1 }
}

/// P(n | a) from the formula, in f64 and without logarithms: w = 1/q(max(d, cutoff)) with
/// q(d) = d^{k−2} (1 − d²/4)^{(k−3)/2}, zero for a's class and at or beyond the
/// non-zero-loss cutoff, normalised over the row.
fn probabilities(config: &Config, z: &[f32], labels: &[i64], k: usize, a: usize) -> Vec<f64> {
    let u = naive::normalized_rows(z, k);
    let kf = k as f64;
    let w: Vec<f64> = (0..labels.len())
        .map(|n| {
            let d = naive::euclidean(&u[a], &u[n]).max(config.cutoff);
            if labels[n] == labels[a] || d >= config.nonzero_loss_cutoff {
                0.0
            } else {
                1.0 / (d.powf(kf - 2.0) * (1.0 - d * d / 4.0).powf((kf - 3.0) / 2.0))
            }
        })
        .collect();
    let total: f64 = w.iter().sum();
    w.iter().map(|x| if total > 0.0 { x / total } else { 0.0 }).collect()
}

#[test]
fn draws_follow_the_inverse_density_of_distances() {
    let (n, k) = (10, 5);
    let labels = [0, 0, 0, 1, 1, 2, 2, 3, 3, 4];
    let z = random_embeddings(17, n, k);
    let config = Config::default();
    let expected: Vec<Vec<f64>> = (0..n).map(|a| probabilities(&config, &z, &labels, k, a)).collect();
    // The batch must exercise the cut-offs and offer real choices, or the test proves little.
    let u = naive::normalized_rows(&z, k);
    let beyond = (0..n)
        .flat_map(|a| (0..n).map(move |b| (a, b)))
        .filter(|&(a, b)| labels[a] != labels[b] && naive::euclidean(&u[a], &u[b]) >= 1.4)
        .count();
    let clamped = (0..n)
        .flat_map(|a| (0..n).map(move |b| (a, b)))
        .filter(|&(a, b)| labels[a] != labels[b] && naive::euclidean(&u[a], &u[b]) < 0.5)
        .count();
    let choices = expected.iter().map(|p| p.iter().filter(|&&x| x > 0.0).count()).max().unwrap();
    assert!(
        beyond > 0 && clamped > 0 && choices >= 3,
        "uninformative batch: {beyond} beyond, {clamped} clamped, {choices} choices"
    );

    let draws = 3000;
    let mut miner = Instance::<DistanceWeighted>::new(config, ctx(k, 42)).unwrap();
    let mut counts = vec![vec![0usize; n]; n];
    let mut per_anchor = vec![0usize; n];
    for _ in 0..draws {
        let (tuples, stats) = miner.mine(&z, &labels).unwrap();
        assert_eq!(stats.get("anchors_without_positive"), Some(1.0));
        let Tuples::Triplets(t) = tuples else { panic!("pairs from a triplet miner") };
        // One triplet per (anchor, positive): 3·2 + 6·1 ordered positive pairs.
        assert_eq!(t.len(), 12);
        for i in 0..t.len() {
            counts[t.a[i] as usize][t.n[i] as usize] += 1;
            per_anchor[t.a[i] as usize] += 1;
        }
    }
    let (mut chi_square, mut dof) = (0.0, 0usize);
    for a in 0..n {
        if per_anchor[a] == 0 {
            continue;
        }
        let total = per_anchor[a] as f64;
        let mut cells = 0;
        for (b, &p) in expected[a].iter().enumerate() {
            if p == 0.0 {
                assert_eq!(counts[a][b], 0, "anchor {a} drew {b}, which has probability 0");
                continue;
            }
            let e = total * p;
            let o = counts[a][b] as f64;
            chi_square += (o - e).powi(2) / e;
            cells += 1;
            // Each frequency within 5 standard errors as well.
            let se = (p * (1.0 - p) / total).sqrt();
            assert!((o / total - p).abs() <= 5.0 * se + 1e-9, "anchor {a}, negative {b}: {} vs {p}", o / total);
        }
        dof += cells - 1;
    }
    // A chi-square variable has mean dof and standard deviation √(2·dof): allow 6 of them.
    let bound = dof as f64 + 6.0 * (2.0 * dof as f64).sqrt();
    assert!(chi_square < bound, "chi-square {chi_square:.1} with {dof} degrees of freedom (bound {bound:.1})");
}

#[test]
fn seeded_reproducible_and_resumable_from_state() {
    let (n, k) = (12, 4);
    let labels = [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3];
    let z = random_embeddings(3, n, k);
    let run = |seed: u64, calls: usize| {
        let mut m = Instance::<DistanceWeighted>::new(Config::default(), ctx(k, seed)).unwrap();
        (0..calls).map(|_| m.mine(&z, &labels).unwrap().0).collect::<Vec<Tuples>>()
    };
    let a = run(1, 4);
    assert_eq!(a, run(1, 4));
    assert_ne!(a, run(2, 4), "the seed does not reach the draws");
    assert_ne!(a[0], a[1], "successive calls repeat their draws");

    let mut first = Instance::<DistanceWeighted>::new(Config::default(), ctx(k, 1)).unwrap();
    for _ in 0..2 {
        first.mine(&z, &labels).unwrap();
    }
    let saved = first.save().unwrap();
    let mut resumed = Instance::<DistanceWeighted>::new(Config::default(), ctx(k, 1)).unwrap();
    resumed.load(&saved).unwrap();
    assert_eq!(resumed.mine(&z, &labels).unwrap().0, a[2]);
    assert!(resumed.load(b"junk").is_err());
}

#[test]
fn anchors_without_a_drawable_negative_are_skipped() {
    // Two tight antipodal clusters: every negative is at distance ≈ 2 ≥ 1.4.
    let z = [1.0, 0.0, 1.0, 0.01, -1.0, 0.0, -1.0, 0.01];
    let mut miner = Instance::<DistanceWeighted>::new(Config::default(), ctx(2, 0)).unwrap();
    let (tuples, stats) = miner.mine(&z, &[0, 0, 1, 1]).unwrap();
    assert_eq!(tuples, Tuples::Triplets(Triplets::default()));
    assert_eq!(stats.get("anchors_without_negative"), Some(4.0));
    // One class: positives but no negatives.
    let (tuples, _) = miner.mine(&z, &[5, 5, 5, 5]).unwrap();
    assert_eq!(tuples, Tuples::Triplets(Triplets::default()));
    // A wider cut-off makes the same negatives drawable (d < 2 keeps the weight finite).
    let config = Config { nonzero_loss_cutoff: 2.5, ..Config::default() };
    let z = [1.0, 0.0, 1.0, 0.3, -1.0, 0.0, -1.0, 0.3];
    let (tuples, _) = Instance::<DistanceWeighted>::new(config, ctx(2, 0)).unwrap().mine(&z, &[0, 0, 1, 1]).unwrap();
    let Tuples::Triplets(t) = tuples else { panic!() };
    assert_eq!(t.len(), 4);
    for (bad, field) in [("(cutoff: 0.0)", "cutoff"), ("(nonzero_loss_cutoff: 0.4)", "nonzero_loss_cutoff")] {
        let e = Instance::<DistanceWeighted>::from_config_text(bad, ctx(2, 0)).err().unwrap();
        assert!(e.message().contains(field), "{bad}: {e}");
    }
}
