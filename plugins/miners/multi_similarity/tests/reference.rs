//! The multi-similarity miner against a brute-force filter written from the definition.

use dmlbench_miner_multi_similarity::{Config, MultiSimilarityMiner};
use dmlbench_sdk::distance::DistanceConfig;
use dmlbench_sdk::testing::{context, naive, random_embeddings, random_labels};
use dmlbench_sdk::{Instance, Pairs, Tuples};

/// For each anchor, in index order: positives less similar than the most similar negative
/// plus ε, negatives more similar than the least similar positive minus ε.
fn reference(config: &Config, z: &[f32], labels: &[i64], d: usize) -> Pairs {
    let u = naive::normalized_rows(z, d);
    let cosine = config.distance == DistanceConfig::cosine();
    let n = labels.len();
    let mut out = Pairs::default();
    let has_pos = (0..n).any(|i| (0..n).any(|j| j != i && labels[i] == labels[j]));
    let has_neg = (0..n).any(|i| (0..n).any(|j| labels[i] != labels[j]));
    if !has_pos || !has_neg {
        return out;
    }
    for a in 0..n {
        let pos: Vec<usize> = (0..n).filter(|&j| j != a && labels[j] == labels[a]).collect();
        let neg: Vec<usize> = (0..n).filter(|&j| labels[j] != labels[a]).collect();
        if cosine {
            let s = |j: usize| naive::dot(&u[a], &u[j]);
            let max_neg = neg.iter().map(|&j| s(j)).fold(f64::NEG_INFINITY, f64::max);
            let min_pos = pos.iter().map(|&j| s(j)).fold(f64::INFINITY, f64::min);
            for j in 0..n {
                if pos.contains(&j) && s(j) - config.epsilon < max_neg {
                    out.a1.push(a as u32);
                    out.p.push(j as u32);
                }
                if neg.contains(&j) && s(j) + config.epsilon > min_pos {
                    out.a2.push(a as u32);
                    out.n.push(j as u32);
                }
            }
        } else {
            let dist = |j: usize| naive::euclidean(&u[a], &u[j]);
            let min_neg = neg.iter().map(|&j| dist(j)).fold(f64::INFINITY, f64::min);
            let max_pos = pos.iter().map(|&j| dist(j)).fold(f64::NEG_INFINITY, f64::max);
            for j in 0..n {
                if pos.contains(&j) && dist(j) + config.epsilon > min_neg {
                    out.a1.push(a as u32);
                    out.p.push(j as u32);
                }
                if neg.contains(&j) && dist(j) - config.epsilon < max_pos {
                    out.a2.push(a as u32);
                    out.n.push(j as u32);
                }
            }
        }
    }
    out
}

#[test]
fn matches_brute_force() {
    for config in [
        Config::default(),
        Config { epsilon: 0.3, ..Config::default() },
        Config { epsilon: 0.05, distance: DistanceConfig::default() },
    ] {
        for (n, d, classes, seed) in [(16, 6, 4, 1), (9, 3, 5, 2), (32, 8, 8, 3), (6, 4, 6, 4)] {
            let z = random_embeddings(seed, n, d);
            let labels = random_labels(seed, n, classes);
            let mut miner = Instance::<MultiSimilarityMiner>::new(config.clone(), context(d, 0)).unwrap();
            let (tuples, stats) = miner.mine(&z, &labels).unwrap();
            let want = reference(&config, &z, &labels, d);
            assert_eq!(stats.get("pos_pairs"), Some(want.positives() as f64));
            assert_eq!(tuples, Tuples::Pairs(want), "{config:?}, n {n}");
        }
    }
}

#[test]
fn keeps_the_informative_pairs_of_a_known_batch() {
    // Anchor 0 at angle 0. Positive 1 at angle 0.2 (cos 0.980), positive 2 at 1.2 (cos 0.362);
    // negative 3 at 0.9 (cos 0.622), negative 4 at 2.5 (cos −0.801). With ε = 0.1:
    // positives below 0.622 + 0.1 → only 2; negatives above 0.362 − 0.1 → only 3.
    let point = |angle: f32| [angle.cos(), angle.sin()];
    let z: Vec<f32> = [0.0, 0.2, 1.2, 0.9, 2.5].iter().flat_map(|&a| point(a)).collect();
    let labels = [0, 0, 0, 1, 2];
    let (tuples, _) =
        Instance::<MultiSimilarityMiner>::new(Config::default(), context(2, 0)).unwrap().mine(&z, &labels).unwrap();
    let Tuples::Pairs(pairs) = tuples else { panic!("triplets from a pair miner") };
    let of_anchor_0 =
        |a: &[u32], b: &[u32]| a.iter().zip(b).filter(|&(&x, _)| x == 0).map(|(_, &y)| y).collect::<Vec<u32>>();
    assert_eq!(of_anchor_0(&pairs.a1, &pairs.p), vec![2]);
    assert_eq!(of_anchor_0(&pairs.a2, &pairs.n), vec![3]);
}

#[test]
fn batches_without_positive_or_negative_pairs_yield_nothing() {
    let z = random_embeddings(5, 4, 3);
    let mut miner = Instance::<MultiSimilarityMiner>::new(Config::default(), context(3, 0)).unwrap();
    for labels in [[0, 1, 2, 3], [7, 7, 7, 7]] {
        let (tuples, stats) = miner.mine(&z, &labels).unwrap();
        assert_eq!((tuples, stats.get("empty_batch")), (Tuples::Pairs(Pairs::default()), Some(1.0)));
    }
    let e = Instance::<MultiSimilarityMiner>::from_config_text("(epsilon: NaN)", context(3, 0)).err().unwrap();
    assert!(e.message().contains("epsilon"), "{e}");
}
