//! The batch easy/hard miner against a per-anchor search written from the definition, against
//! pytorch-metric-learning 2.9 on a fixed batch, on exact ties, on degenerate batches and with
//! bad configurations.

use dmlbench_miner_batch_easy_hard::{BatchEasyHard, Config, Strategy};
use dmlbench_sdk::distance::DistanceConfig;
use dmlbench_sdk::testing::{context, naive, random_embeddings, random_labels};
use dmlbench_sdk::{Instance, Pairs, Tuples};

const STRATEGIES: [Strategy; 4] = [Strategy::Easy, Strategy::Semihard, Strategy::Hard, Strategy::All];

/// The index among `candidates` of the smallest `cost` (the first on ties), among those with
/// `cost > floor`.
fn first_min(candidates: &[usize], cost: impl Fn(usize) -> f64, floor: f64) -> Option<usize> {
    let mut best: Option<usize> = None;
    for &j in candidates {
        if cost(j) > floor && best.is_none_or(|b| cost(j) < cost(b)) {
            best = Some(j);
        }
    }
    best
}

/// Written from the definition, in f64. `hardness(a, j)` grows as the pair gets harder for
/// its kind: d for a positive, −d for a negative (with a similarity s: −s and s). Easy takes
/// the least hard pair, hard the hardest, semi-hard the hardest one still easier than the
/// other side's choice (a positive closer than the chosen negative, a negative farther than
/// the chosen positive).
fn reference(config: &Config, z: &[f32], labels: &[i64], d: usize) -> Pairs {
    let u = naive::normalized_rows(z, d);
    let cosine = config.distance == DistanceConfig::cosine();
    let raw = |a: usize, j: usize| if cosine { naive::dot(&u[a], &u[j]) } else { naive::euclidean(&u[a], &u[j]) };
    // A distance-like value: larger is farther.
    let far = |a: usize, j: usize| if cosine { -raw(a, j) } else { raw(a, j) };
    let inside = |range: Option<(f64, f64)>, v: f64| range.is_none_or(|(low, high)| low <= v && v <= high);
    let n = labels.len();
    let mut out = Pairs::default();
    for a in 0..n {
        let pos: Vec<usize> = (0..n)
            .filter(|&j| j != a && labels[j] == labels[a] && inside(config.allowed_pos_range, raw(a, j)))
            .collect();
        let neg: Vec<usize> =
            (0..n).filter(|&j| labels[j] != labels[a] && inside(config.allowed_neg_range, raw(a, j))).collect();
        // The easy positive is the closest; the hard one the farthest.
        let easy_pos = || first_min(&pos, |j| far(a, j), f64::NEG_INFINITY);
        let hard_pos = || first_min(&pos, |j| -far(a, j), f64::NEG_INFINITY);
        let easy_neg = || first_min(&neg, |j| -far(a, j), f64::NEG_INFINITY);
        let hard_neg = || first_min(&neg, |j| far(a, j), f64::NEG_INFINITY);
        let (p, m) = match (config.pos_strategy, config.neg_strategy) {
            (Strategy::Semihard, neg_strategy) => {
                let m = if neg_strategy == Strategy::Easy { easy_neg() } else { hard_neg() };
                // The farthest positive closer than d(a, m): −far > −d(a, m).
                (m.and_then(|m| first_min(&pos, |j| -far(a, j), -far(a, m))), m)
            }
            (pos_strategy, Strategy::Semihard) => {
                let p = if pos_strategy == Strategy::Easy { easy_pos() } else { hard_pos() };
                (p, p.and_then(|p| first_min(&neg, |j| far(a, j), far(a, p))))
            }
            (pos_strategy, neg_strategy) => {
                let p = match pos_strategy {
                    Strategy::Easy => easy_pos(),
                    _ => hard_pos(),
                };
                let m = match neg_strategy {
                    Strategy::Easy => easy_neg(),
                    _ => hard_neg(),
                };
                (p, m)
            }
        };
        let every = |positive: bool| (0..n).filter(move |&j| j != a && (labels[j] == labels[a]) == positive);
        if config.pos_strategy != Strategy::All && config.neg_strategy != Strategy::All {
            // One (a, p, a, n) per anchor that has both.
            if let (Some(p), Some(m)) = (p, m) {
                out.a1.push(a as u32);
                out.p.push(p as u32);
                out.a2.push(a as u32);
                out.n.push(m as u32);
            }
            continue;
        }
        if config.pos_strategy == Strategy::All {
            for j in every(true) {
                out.a1.push(a as u32);
                out.p.push(j as u32);
            }
        } else if let Some(p) = p {
            out.a1.push(a as u32);
            out.p.push(p as u32);
        }
        if config.neg_strategy == Strategy::All {
            for j in every(false) {
                out.a2.push(a as u32);
                out.n.push(j as u32);
            }
        } else if let Some(m) = m {
            out.a2.push(a as u32);
            out.n.push(m as u32);
        }
    }
    out
}

fn valid(pos: Strategy, neg: Strategy) -> bool {
    !matches!(
        (pos, neg),
        (Strategy::Semihard, Strategy::Semihard)
            | (Strategy::Semihard, Strategy::All)
            | (Strategy::All, Strategy::Semihard)
    )
}

fn mine(config: &Config, z: &[f32], labels: &[i64], d: usize) -> (Pairs, dmlbench_sdk::Stats) {
    let mut miner = Instance::<BatchEasyHard>::new(config.clone(), context(d, 0)).unwrap();
    let (tuples, stats) = miner.mine(z, labels).unwrap();
    let Tuples::Pairs(pairs) = tuples else { panic!("triplets from a pair miner") };
    (pairs, stats)
}

#[test]
fn matches_the_definition_for_every_strategy() {
    for cosine in [false, true] {
        let distance = if cosine { DistanceConfig::cosine() } else { DistanceConfig::default() };
        let ranges =
            if cosine { [None, Some(((-0.2, 0.9), (-0.5, 0.4)))] } else { [None, Some(((0.4, 1.3), (0.6, 1.6)))] };
        for pos_strategy in STRATEGIES {
            for neg_strategy in STRATEGIES {
                if !valid(pos_strategy, neg_strategy) {
                    continue;
                }
                for range in ranges {
                    let config = Config {
                        pos_strategy,
                        neg_strategy,
                        allowed_pos_range: range.map(|r| r.0),
                        allowed_neg_range: range.map(|r| r.1),
                        distance,
                    };
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
    }
}

/// The fixed batch of the PML parity test: 8 rows of dimension 4, 3 classes. Its 28 distances
/// (and cosine similarities) differ pairwise by more than 3e-3, so no choice is a near tie.
const Z: [f32; 32] = [
    -0.31, -0.71, -0.73, -0.30, -0.25, -0.36, 0.94, 1.16, -0.17, 0.01, -0.05, 0.55, -1.25, 0.32, 0.59, 1.06, 0.80,
    0.37, 0.57, 1.57, 0.87, -3.70, -1.81, -1.84, -1.18, 0.55, 1.05, -0.16, -2.10, 1.58, 1.08, 0.89,
];
const LABELS: [i64; 8] = [0, 0, 0, 1, 1, 1, 2, 2];

#[test]
fn matches_pml_on_a_fixed_batch() {
    // Each line below is PML's (a1, p, a2, n) for one configuration, printed by this script
    // (pytorch-metric-learning 2.9.0, torch 2.9, float64):
    //
    // import torch
    // from pytorch_metric_learning.miners import BatchEasyHardMiner
    // from pytorch_metric_learning.distances import CosineSimilarity
    // z = torch.tensor([[-0.31, -0.71, -0.73, -0.30], [-0.25, -0.36, 0.94, 1.16], [-0.17, 0.01, -0.05, 0.55],
    //                   [-1.25, 0.32, 0.59, 1.06], [0.80, 0.37, 0.57, 1.57], [0.87, -3.70, -1.81, -1.84],
    //                   [-1.18, 0.55, 1.05, -0.16], [-2.10, 1.58, 1.08, 0.89]], dtype=torch.float64)
    // labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2])
    // configs = [
    //     dict(),
    //     dict(pos_strategy="hard", neg_strategy="hard"),
    //     dict(pos_strategy="easy", neg_strategy="easy"),
    //     dict(pos_strategy="hard", neg_strategy="semihard"),
    //     dict(pos_strategy="semihard", neg_strategy="hard"),
    //     dict(pos_strategy="semihard", neg_strategy="easy"),
    //     dict(pos_strategy="all", neg_strategy="hard"),
    //     dict(pos_strategy="easy", neg_strategy="all"),
    //     dict(pos_strategy="all", neg_strategy="all"),
    //     dict(pos_strategy="hard", neg_strategy="hard", allowed_pos_range=(0.5, 1.0), allowed_neg_range=(0.9, 1.5)),
    //     dict(pos_strategy="easy", neg_strategy="semihard", allowed_neg_range=(1.2, 2.0)),
    //     dict(pos_strategy="all", neg_strategy="easy", allowed_pos_range=(0.0, 0.1), allowed_neg_range=(0.0, 1.3)),
    //     dict(distance=CosineSimilarity()),
    //     dict(pos_strategy="semihard", neg_strategy="hard", distance=CosineSimilarity()),
    //     dict(pos_strategy="hard", neg_strategy="easy", allowed_pos_range=(0.0, 0.8), allowed_neg_range=(-0.5, 0.5),
    //          distance=CosineSimilarity()),
    // ]
    // for c in configs:
    //     out = BatchEasyHardMiner(**c)(z, labels)
    //     print([t.tolist() for t in out])
    use Strategy::{All, Easy, Hard, Semihard};
    let every_anchor: &[u32] = &[0, 1, 2, 3, 4, 5, 6, 7];
    let all_pos: (&[u32], &[u32]) =
        (&[0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 7], &[1, 2, 0, 2, 0, 1, 4, 5, 3, 5, 3, 4, 7, 6]);
    let all_neg: (&[u32], &[u32]) = (
        &[
            0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 6, 6, 6, 6, 6, 6,
            7, 7, 7, 7, 7, 7,
        ],
        &[
            3, 4, 5, 6, 7, 3, 4, 5, 6, 7, 3, 4, 5, 6, 7, 0, 1, 2, 6, 7, 0, 1, 2, 6, 7, 0, 1, 2, 6, 7, 0, 1, 2, 3, 4, 5,
            0, 1, 2, 3, 4, 5,
        ],
    );
    let euclidean = DistanceConfig::default();
    let cosine = DistanceConfig::cosine();
    type Case<'a> = (Strategy, Strategy, Option<(f64, f64)>, Option<(f64, f64)>, DistanceConfig, [&'a [u32]; 4]);
    let cases: Vec<Case<'_>> = vec![
        (
            Easy,
            Semihard,
            None,
            None,
            euclidean,
            [every_anchor, &[2, 2, 1, 4, 3, 4, 7, 6], every_anchor, &[3, 4, 4, 0, 7, 6, 3, 2]],
        ),
        (
            Hard,
            Hard,
            None,
            None,
            euclidean,
            [every_anchor, &[1, 0, 0, 5, 5, 3, 7, 6], every_anchor, &[5, 3, 3, 7, 1, 0, 3, 3]],
        ),
        (
            Easy,
            Easy,
            None,
            None,
            euclidean,
            [every_anchor, &[2, 2, 1, 4, 3, 4, 7, 6], every_anchor, &[4, 5, 5, 0, 0, 7, 5, 5]],
        ),
        (
            Hard,
            Semihard,
            None,
            None,
            euclidean,
            [&[0, 2, 4, 5, 6, 7], &[1, 0, 5, 3, 7, 6], &[0, 2, 4, 5, 6, 7], &[7, 5, 0, 7, 3, 2]],
        ),
        (Semihard, Hard, None, None, euclidean, [&[6], &[7], &[6], &[3]]),
        (
            Semihard,
            Easy,
            None,
            None,
            euclidean,
            [every_anchor, &[1, 2, 0, 4, 5, 3, 7, 6], every_anchor, &[4, 5, 5, 0, 0, 7, 5, 5]],
        ),
        (All, Hard, None, None, euclidean, [all_pos.0, all_pos.1, every_anchor, &[5, 3, 3, 7, 1, 0, 3, 3]]),
        (Easy, All, None, None, euclidean, [every_anchor, &[2, 2, 1, 4, 3, 4, 7, 6], all_neg.0, all_neg.1]),
        (All, All, None, None, euclidean, [all_pos.0, all_pos.1, all_neg.0, all_neg.1]),
        (
            Hard,
            Hard,
            Some((0.5, 1.0)),
            Some((0.9, 1.5)),
            euclidean,
            [&[1, 2, 6, 7], &[2, 1, 7, 6], &[1, 2, 6, 7], &[7, 7, 1, 2]],
        ),
        (
            Easy,
            Semihard,
            None,
            Some((1.2, 2.0)),
            euclidean,
            [every_anchor, &[2, 2, 1, 4, 3, 4, 7, 6], every_anchor, &[3, 5, 6, 0, 7, 6, 2, 4]],
        ),
        // With `all`, PML ignores that side's range: every positive pair despite (0, 0.1).
        (
            All,
            Easy,
            Some((0.0, 0.1)),
            Some((0.0, 1.3)),
            euclidean,
            [all_pos.0, all_pos.1, every_anchor, &[5, 6, 7, 6, 7, 0, 1, 4]],
        ),
        (
            Easy,
            Semihard,
            None,
            None,
            cosine,
            [every_anchor, &[2, 2, 1, 4, 3, 4, 7, 6], every_anchor, &[3, 4, 4, 0, 7, 6, 3, 2]],
        ),
        (Semihard, Hard, None, None, cosine, [&[6], &[7], &[6], &[3]]),
        (
            Hard,
            Easy,
            Some((0.0, 0.8)),
            Some((-0.5, 0.5)),
            cosine,
            [&[1, 2, 3, 4], &[2, 1, 4, 3], &[1, 2, 3, 4], &[5, 5, 0, 6]],
        ),
    ];
    for (pos_strategy, neg_strategy, allowed_pos_range, allowed_neg_range, distance, [a1, p, a2, n]) in cases {
        let config = Config { pos_strategy, neg_strategy, allowed_pos_range, allowed_neg_range, distance };
        let want = Pairs { a1: a1.to_vec(), p: p.to_vec(), a2: a2.to_vec(), n: n.to_vec() };
        let (got, stats) = mine(&config, &Z, &LABELS, 4);
        assert_eq!(got, want, "{config:?}");
        // The reference agrees too, and the dropped anchors are counted.
        assert_eq!(reference(&config, &Z, &LABELS, 4), want, "{config:?}");
        let per_anchor = if pos_strategy == All { a2.len() } else { a1.len() };
        let dropped = if pos_strategy == All && neg_strategy == All { 0 } else { 8 - per_anchor };
        assert_eq!(stats.get("dropped_anchors"), Some(dropped as f64), "{config:?}");
    }
}

#[test]
fn ties_go_to_the_lowest_index_and_semihard_is_strict() {
    // Unit vectors with exact dot products: anchor 0 = (1, 0); positives 1 = (0, 1) and
    // 2 = (0, −1) both at distance √2; negatives 3 = (0, 1) and 4 = (0, −1) also at √2.
    let z = [1.0, 0.0, 0.0, 1.0, 0.0, -1.0, 0.0, 1.0, 0.0, -1.0];
    let labels = [0, 0, 0, 1, 1];
    for (pos_strategy, neg_strategy) in [(Strategy::Easy, Strategy::Easy), (Strategy::Hard, Strategy::Hard)] {
        let config = Config { pos_strategy, neg_strategy, ..Config::default() };
        let (pairs, _) = mine(&config, &z, &labels, 2);
        assert_eq!((pairs.a1[0], pairs.p[0], pairs.a2[0], pairs.n[0]), (0, 1, 0, 3), "{config:?}");
    }
    // A semi-hard negative must be strictly farther than the positive: none is, for anchor 0.
    let (pairs, stats) = mine(&Config::default(), &z, &labels, 2);
    assert!(!pairs.a1.contains(&0), "{pairs:?}");
    assert!(stats.get("dropped_anchors").unwrap() >= 1.0);
    // Likewise a semi-hard positive must be strictly closer than the negative.
    let config = Config { pos_strategy: Strategy::Semihard, neg_strategy: Strategy::Hard, ..Config::default() };
    let (pairs, _) = mine(&config, &z, &labels, 2);
    assert!(!pairs.a1.contains(&0), "{pairs:?}");
}

#[test]
fn degenerate_batches_mine_nothing_and_say_so() {
    let z = random_embeddings(5, 4, 3);
    // One class: no negatives, every anchor dropped.
    let (pairs, stats) = mine(&Config::default(), &z, &[2, 2, 2, 2], 3);
    assert_eq!(pairs, Pairs::default());
    assert_eq!(stats.get("dropped_anchors"), Some(4.0));
    // All singletons: no positives.
    let (pairs, stats) = mine(&Config::default(), &z, &[0, 1, 2, 3], 3);
    assert_eq!(pairs, Pairs::default());
    assert_eq!((stats.get("pos_pairs"), stats.get("dropped_anchors")), (Some(0.0), Some(4.0)));
    // With `all` positives and one class, PML returns every positive pair and no negative.
    let config = Config { pos_strategy: Strategy::All, neg_strategy: Strategy::Hard, ..Config::default() };
    let (pairs, stats) = mine(&config, &z, &[2, 2, 2, 2], 3);
    assert_eq!((pairs.positives(), pairs.negatives()), (12, 0));
    assert_eq!(stats.get("dropped_anchors"), Some(4.0));
    // A range that nothing falls in.
    let config = Config { allowed_pos_range: Some((3.0, 4.0)), ..Config::default() };
    let (pairs, _) = mine(&config, &z, &[0, 0, 1, 1], 3);
    assert_eq!(pairs, Pairs::default());
}

#[test]
fn bad_configurations_are_refused_naming_the_field() {
    let refuse = |text: &str, words: &[&str]| {
        let e = Instance::<BatchEasyHard>::from_config_text(text, context(3, 0)).err().unwrap();
        for word in words {
            assert!(e.message().contains(word), "{text}: {e}");
        }
    };
    refuse("(pos_strategy: semihard, neg_strategy: semihard)", &["pos_strategy", "neg_strategy", "semihard"]);
    refuse("(pos_strategy: semihard, neg_strategy: all)", &["pos_strategy", "neg_strategy", "all"]);
    refuse("(pos_strategy: all, neg_strategy: semihard)", &["pos_strategy", "neg_strategy", "all"]);
    refuse("(pos_strategy: medium)", &["medium"]);
    refuse("(neg_strategy: Hard)", &["Hard"]);
    refuse("(allowed_pos_range: Some((NaN, 1.0)))", &["allowed_pos_range"]);
    refuse("(allowed_pos_range: Some((0.0, NaN)))", &["allowed_pos_range"]);
    refuse("(allowed_neg_range: Some((1.0, 0.5)))", &["allowed_neg_range"]);
    for fine in [
        "()",
        "(pos_strategy: all, neg_strategy: all)",
        "(pos_strategy: hard, neg_strategy: semihard)",
        "(allowed_pos_range: Some((0.5, inf)), allowed_neg_range: Some((0.7, 0.7)))",
    ] {
        assert!(Instance::<BatchEasyHard>::from_config_text(fine, context(3, 0)).is_ok(), "{fine}");
    }
}
