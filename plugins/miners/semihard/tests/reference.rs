//! The triplet margin miner against a brute-force filter written from the definitions, and
//! on a hand-made batch whose triplet margins are known.

use dmlbench_miner_semihard::{Config, Semihard, TripletType};
use dmlbench_sdk::distance::DistanceConfig;
use dmlbench_sdk::testing::{context, naive, random_embeddings, random_labels};
use dmlbench_sdk::{Instance, Triplets, Tuples};

const TYPES: [TripletType; 4] = [TripletType::Semihard, TripletType::Hard, TripletType::All, TripletType::Easy];

/// Every triplet in (a, p, n) order whose margin t passes the type's test, in f64.
fn reference(config: &Config, z: &[f32], labels: &[i64], d: usize) -> Triplets {
    let u = naive::normalized_rows(z, d);
    let cosine = config.distance == DistanceConfig::cosine();
    let m = config.margin;
    let mut out = Triplets::default();
    for a in 0..labels.len() {
        for p in 0..labels.len() {
            for n in 0..labels.len() {
                if p == a || labels[p] != labels[a] || labels[n] == labels[a] {
                    continue;
                }
                let t = if cosine {
                    naive::dot(&u[a], &u[p]) - naive::dot(&u[a], &u[n])
                } else {
                    naive::euclidean(&u[a], &u[n]) - naive::euclidean(&u[a], &u[p])
                };
                let keep = match config.type_of_triplets {
                    TripletType::Semihard => t > 0.0 && t <= m,
                    TripletType::Hard => t <= 0.0 && t <= m,
                    TripletType::All => t <= m,
                    TripletType::Easy => t > m,
                };
                if keep {
                    out.a.push(a as u32);
                    out.p.push(p as u32);
                    out.n.push(n as u32);
                }
            }
        }
    }
    out
}

#[test]
fn matches_brute_force_for_every_type() {
    for cosine in [false, true] {
        for type_of_triplets in TYPES {
            for (n, d, classes, seed) in [(16, 6, 4, 1), (12, 3, 3, 2), (24, 8, 6, 3)] {
                let distance = if cosine { DistanceConfig::cosine() } else { DistanceConfig::default() };
                let config = Config { margin: 0.3, type_of_triplets, distance };
                let z = random_embeddings(seed, n, d);
                let labels = random_labels(seed, n, classes);
                let mut miner = Instance::<Semihard>::new(config.clone(), context(d, 0)).unwrap();
                let (tuples, stats) = miner.mine(&z, &labels).unwrap();
                let want = reference(&config, &z, &labels, d);
                assert_eq!(stats.get("triplets"), Some(want.len() as f64));
                assert_eq!(tuples, Tuples::Triplets(want), "{type_of_triplets:?}, cosine {cosine}, n {n}");
            }
        }
    }
}

#[test]
fn types_partition_the_triplets_on_a_known_batch() {
    // On the unit circle: anchor 0 at angle 0, its positive 1 at angle 0.5 (chord
    // 2 sin(0.25) = 0.4948); negatives at angles 0.4 (chord 0.3973, t = −0.097: hard),
    // 0.6 (0.5910, t = 0.096: semihard for m = 0.2) and 2.0 (1.6829, t = 1.19: easy).
    let point = |angle: f32| [angle.cos(), angle.sin()];
    let z: Vec<f32> = [0.0, 0.5, 0.4, 0.6, 2.0].iter().flat_map(|&a| point(a)).collect();
    let labels = [0, 0, 1, 2, 3];
    let mine = |type_of_triplets| {
        let config = Config { type_of_triplets, ..Config::default() };
        let (tuples, _) = Instance::<Semihard>::new(config, context(2, 0)).unwrap().mine(&z, &labels).unwrap();
        let Tuples::Triplets(t) = tuples else { panic!("pairs from a triplet miner") };
        // Only anchors 0 and 1 have positives; keep anchor 0's negatives.
        t.a.iter().zip(&t.n).filter(|&(&a, _)| a == 0).map(|(_, &n)| n).collect::<Vec<u32>>()
    };
    assert_eq!(mine(TripletType::Semihard), vec![3]);
    assert_eq!(mine(TripletType::Hard), vec![2]);
    assert_eq!(mine(TripletType::All), vec![2, 3]);
    assert_eq!(mine(TripletType::Easy), vec![4]);
}

#[test]
fn degenerate_batches_and_config_errors() {
    let z = random_embeddings(4, 3, 2);
    let mut miner = Instance::<Semihard>::new(Config::default(), context(2, 0)).unwrap();
    let (tuples, stats) = miner.mine(&z, &[1, 1, 1]).unwrap();
    assert_eq!((tuples, stats.get("triplets_considered")), (Tuples::Triplets(Triplets::default()), Some(0.0)));
    let (tuples, _) = miner.mine(&z, &[0, 1, 2]).unwrap();
    assert_eq!(tuples, Tuples::Triplets(Triplets::default()));
    let e = Instance::<Semihard>::from_config_text("(type_of_triplets: medium)", context(2, 0)).err().unwrap();
    assert!(e.message().contains("medium"), "{e}");
    let e = Instance::<Semihard>::from_config_text("(margin: inf)", context(2, 0)).err().unwrap();
    assert!(e.message().contains("margin"), "{e}");
}
