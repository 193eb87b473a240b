//! The pair margin miner against a brute-force filter written from the definition, and on a
//! hand-made batch.

use dmlbench_miner_pair_margin::{Config, PairMargin};
use dmlbench_sdk::distance::DistanceConfig;
use dmlbench_sdk::testing::{context, naive, random_embeddings, random_labels};
use dmlbench_sdk::{Instance, Pairs, Tuples};

fn reference(config: &Config, z: &[f32], labels: &[i64], d: usize) -> Pairs {
    let u = naive::normalized_rows(z, d);
    let cosine = config.distance == DistanceConfig::cosine();
    let mut out = Pairs::default();
    for i in 0..labels.len() {
        for j in 0..labels.len() {
            if i == j {
                continue;
            }
            let v = if cosine { naive::dot(&u[i], &u[j]) } else { naive::euclidean(&u[i], &u[j]) };
            if labels[i] == labels[j] {
                let hard = if cosine { v < config.pos_margin } else { v > config.pos_margin };
                if hard {
                    out.a1.push(i as u32);
                    out.p.push(j as u32);
                }
            } else {
                let hard = if cosine { v > config.neg_margin } else { v < config.neg_margin };
                if hard {
                    out.a2.push(i as u32);
                    out.n.push(j as u32);
                }
            }
        }
    }
    out
}

#[test]
fn matches_brute_force() {
    let configs = [
        Config::default(),
        Config { pos_margin: 0.9, neg_margin: 1.3, ..Config::default() },
        Config { pos_margin: 0.7, neg_margin: 0.1, distance: DistanceConfig::cosine() },
    ];
    for config in &configs {
        for (n, d, classes, seed) in [(16, 6, 4, 1), (9, 3, 5, 2), (32, 8, 8, 3)] {
            let z = random_embeddings(seed, n, d);
            let labels = random_labels(seed, n, classes);
            let mut miner = Instance::<PairMargin>::new(config.clone(), context(d, 0)).unwrap();
            let (tuples, stats) = miner.mine(&z, &labels).unwrap();
            let want = reference(config, &z, &labels, d);
            assert_eq!(stats.get("neg_pairs"), Some(want.negatives() as f64));
            assert_eq!(tuples, Tuples::Pairs(want), "{config:?}, n {n}");
        }
    }
}

#[test]
fn keeps_far_positives_and_close_negatives() {
    // Unit circle: 0 at angle 0, 1 at 0.1 (chord 0.100), 2 at 1.0 (chord 0.959) in class 0;
    // 3 at 0.5 (chord 0.495 from 0) and 4 at 3.0 (chord 1.995) in class 1.
    let point = |angle: f32| [angle.cos(), angle.sin()];
    let z: Vec<f32> = [0.0, 0.1, 1.0, 0.5, 3.0].iter().flat_map(|&a| point(a)).collect();
    let (tuples, _) =
        Instance::<PairMargin>::new(Config::default(), context(2, 0)).unwrap().mine(&z, &[0, 0, 0, 1, 1]).unwrap();
    let Tuples::Pairs(p) = tuples else { panic!("triplets from a pair miner") };
    let from_0 =
        |a: &[u32], b: &[u32]| a.iter().zip(b).filter(|&(&x, _)| x == 0).map(|(_, &y)| y).collect::<Vec<u32>>();
    assert_eq!(from_0(&p.a1, &p.p), vec![2]);
    assert_eq!(from_0(&p.a2, &p.n), vec![3]);
    let e = Instance::<PairMargin>::from_config_text("(neg_margin: inf)", context(2, 0)).err().unwrap();
    assert!(e.message().contains("neg_margin"), "{e}");
}
