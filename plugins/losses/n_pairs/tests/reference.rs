//! The N-pair loss against a plain loop written from its definition, against finite
//! differences, and against pytorch-metric-learning's `NPairsLoss` on a fixed batch.

use dmlbench_loss_n_pairs::{Config, NPairs};
use dmlbench_sdk::distance::DistanceConfig;
use dmlbench_sdk::pairwise::Measure;
use dmlbench_sdk::testing::batches::exact::{LABELS, Z, mined};
use dmlbench_sdk::testing::{
    GradCheck, assert_close, check_loss_gradient, context, naive, random_embeddings, random_labels,
};
use dmlbench_sdk::tuples::all_pairs;
use dmlbench_sdk::{Instance, Pairs, Triplets, Tuples};

/// The definition: the candidate positive pairs (the given ones, else every ordered positive
/// pair by anchor then positive), the first one of each anchor label, the cross-entropy of each
/// chosen anchor's logits against every chosen positive with its own positive as the target,
/// the mean over the chosen pairs.
fn reference(config: &Config, z: &[f32], labels: &[i64], d: usize, given: Option<Vec<(usize, usize)>>) -> f64 {
    let rows: Vec<Vec<f64>> = (0..labels.len())
        .map(|i| {
            let r = naive::row(z, d, i);
            if config.distance.normalize_embeddings { naive::normalized(&r) } else { r }
        })
        .collect();
    let logit = |a: usize, b: usize| match config.distance.measure {
        Measure::Dot => naive::dot(&rows[a], &rows[b]),
        Measure::Cosine => naive::cosine(&rows[a], &rows[b]),
        Measure::Euclidean => -naive::euclidean(&rows[a], &rows[b]),
        Measure::SquaredEuclidean => -naive::squared_euclidean(&rows[a], &rows[b]),
    };
    let candidates = given.unwrap_or_else(|| {
        let mut all = vec![];
        for a in 0..labels.len() {
            for p in 0..labels.len() {
                if p != a && labels[p] == labels[a] {
                    all.push((a, p));
                }
            }
        }
        all
    });
    let mut chosen: Vec<(usize, usize)> = vec![];
    for (a, p) in candidates {
        if !chosen.iter().any(|&(b, _)| labels[b] == labels[a]) {
            chosen.push((a, p));
        }
    }
    if chosen.is_empty() {
        return 0.0;
    }
    let mut total = 0.0;
    for &(a, p) in &chosen {
        let denominator: f64 = chosen.iter().map(|&(_, q)| logit(a, q).exp()).sum();
        total -= (logit(a, p).exp() / denominator).ln();
    }
    total / chosen.len() as f64
}

fn configs() -> Vec<Config> {
    let distance =
        |measure, normalize_embeddings| Config { distance: DistanceConfig { measure, normalize_embeddings } };
    vec![
        Config::default(),
        distance(Measure::Dot, false),
        distance(Measure::Euclidean, true),
        distance(Measure::SquaredEuclidean, false),
        distance(Measure::Cosine, true),
    ]
}

#[test]
fn matches_the_definition_on_random_batches() {
    for (k, config) in configs().iter().enumerate() {
        for (n, d, classes) in [(12, 5, 3), (16, 8, 4), (9, 4, 7), (24, 6, 10), (5, 3, 1)] {
            let seed = 300 + k as u64 * 10 + n as u64;
            // Unnormalised measures get smaller embeddings, to keep the softmax away from
            // saturation where finite differences say little.
            let scale = if config.distance.normalize_embeddings { 1.0 } else { 0.5 };
            let z: Vec<f32> = random_embeddings(seed, n, d).iter().map(|v| v * scale).collect();
            let labels = random_labels(seed, n, classes);
            let mut loss = Instance::<NPairs>::new(config.clone(), context(d, 0)).unwrap();
            let out = loss.forward_backward(&z, &labels, None).unwrap();
            let what = format!("config {k}, n {n}");
            assert_close(out.loss, reference(config, &z, &labels, d, None), 1e-5, &what);
            check_loss_gradient(&mut loss, &z, &labels, None, &GradCheck::default())
                .unwrap_or_else(|e| panic!("{what}: {e}"));
        }
    }
}

#[test]
fn mined_tuples_keep_the_first_pair_of_each_label() {
    let (n, d) = (16, 6);
    for (k, config) in configs().iter().enumerate() {
        let z = random_embeddings(40 + k as u64, n, d);
        let labels = random_labels(40 + k as u64, n, 5);
        let mut loss = Instance::<NPairs>::new(config.clone(), context(d, 0)).unwrap();
        // Every positive pair of the batch, in a scrambled order, so the first pair of a label
        // is not its row-major first one; negatives are ignored.
        let every = all_pairs(&labels);
        let order: Vec<usize> = (0..every.a1.len()).map(|i| (i * 7 + 3) % every.a1.len()).collect();
        let (a1, p): (Vec<u32>, Vec<u32>) = order.iter().map(|&i| (every.a1[i], every.p[i])).unzip();
        let list: Vec<(usize, usize)> = a1.iter().zip(&p).map(|(&a, &q)| (a as usize, q as usize)).collect();
        let pairs = Tuples::Pairs(Pairs { a1, p, a2: every.a2.clone(), n: every.n.clone() });
        let out = loss.forward_backward(&z, &labels, Some(&pairs)).unwrap();
        let what = format!("config {k}, scrambled pairs");
        assert_close(out.loss, reference(config, &z, &labels, d, Some(list)), 1e-5, &what);
        check_loss_gradient(&mut loss, &z, &labels, Some(&pairs), &GradCheck::default())
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        // Every pair in PML's row-major order picks what the loss picks without a miner.
        let plain = loss.forward_backward(&z, &labels, None).unwrap();
        let all = loss.forward_backward(&z, &labels, Some(&Tuples::Pairs(every))).unwrap();
        assert_eq!((plain.loss, &plain.grad), (all.loss, &all.grad), "config {k}: all pairs as mined");
    }
    // Triplets give their (a, p) pairs, duplicates included.
    let (n, d) = (10, 4);
    let z = random_embeddings(9, n, d);
    let labels = [0, 1, 2, 0, 1, 2, 0, 1, 2, 3];
    let triplets = Triplets { a: vec![4, 4, 0, 3, 2], p: vec![7, 1, 3, 6, 8], n: vec![0, 9, 1, 2, 9] };
    let mut loss = Instance::<NPairs>::new(Config::default(), context(d, 0)).unwrap();
    let tuples = Tuples::Triplets(triplets);
    let out = loss.forward_backward(&z, &labels, Some(&tuples)).unwrap();
    let want = reference(&Config::default(), &z, &labels, d, Some(vec![(4, 7), (4, 1), (0, 3), (3, 6), (2, 8)]));
    assert_close(out.loss, want, 1e-5, "triplets");
    assert_eq!(out.stats.get("num_pairs"), Some(3.0));
    check_loss_gradient(&mut loss, &z, &labels, Some(&tuples), &GradCheck::default()).unwrap();
    // Rows in no chosen pair (1 and 6: later pairs of labels already taken; 5 and 9) get no
    // gradient.
    for row in [1, 5, 6, 9] {
        assert!(out.grad[row * d..(row + 1) * d].iter().all(|&g| g == 0.0), "row {row}");
    }
}

/// Agreement to 1e-5 relative: the loss to itself, each gradient element to the largest one.
#[track_caller]
fn assert_parity(got: (f64, &[f32]), want: (f64, &[f64]), what: &str) {
    assert!((got.0 - want.0).abs() <= 1e-5 * want.0.abs(), "{what}: loss {} vs PML {}", got.0, want.0);
    let largest = want.1.iter().fold(0.0f64, |m, g| m.max(g.abs()));
    for (i, (&g, &w)) in got.1.iter().zip(want.1).enumerate() {
        assert!((f64::from(g) - w).abs() <= 1e-5 * largest, "{what}: grad[{i}] {g} vs PML {w}");
    }
}

/// Mined triplets: pairs (7,2) and (1,6); (7,5) repeats label 1.
fn mined_triplets() -> Tuples {
    Tuples::Triplets(Triplets { a: vec![7, 7, 1], p: vec![2, 5, 6], n: vec![0, 3, 2] })
}

// The expected values below come from pytorch-metric-learning 2.9.0 (torch 2.9, CPU, f64):
//
// import torch
// from pytorch_metric_learning import losses, distances
// Z = [[0.5, -0.25, 1.0, 0.125], [0.75, 0.5, -0.375, 1.25], [-1.0, 0.25, 0.5, -0.5], [0.25, 1.5, -0.75, 0.375],
//      [-0.625, -1.0, 0.25, 0.875], [1.125, 0.375, 0.625, -0.25], [-0.375, 0.875, -1.25, 0.5], [0.875, -0.5, -0.125, -1.0]]
// labels = torch.tensor([2, 0, 1, 0, 2, 1, 0, 1])
// pairs = tuple(torch.tensor(x) for x in ([3, 6, 0, 5, 1, 4], [6, 3, 4, 2, 3, 0], [3, 0], [2, 1]))
// triplets = tuple(torch.tensor(x) for x in ([7, 7, 1], [2, 5, 6], [0, 3, 2]))
// def run(loss, tuples=None):
//     z = torch.tensor(Z, dtype=torch.float64, requires_grad=True)
//     value = loss(z, labels, tuples)
//     value.backward()
//     print(repr(value.item()), [float(g) for g in z.grad.flatten()])
// run(losses.NPairsLoss())                                      # PML_DEFAULT
// run(losses.NPairsLoss(), pairs)                               # PML_MINED_PAIRS
// run(losses.NPairsLoss(), triplets)                            # PML_MINED_TRIPLETS
// run(losses.NPairsLoss(distance=distances.LpDistance()))       # PML_EUCLIDEAN
// run(losses.NPairsLoss(distance=distances.DotProductSimilarity(normalize_embeddings=False)))  # PML_RAW_DOT

const PML_DEFAULT: (f64, [f64; 32]) = (
    1.0812642858095445,
    [
        0.19478096143945134,
        0.2253010593159727,
        -0.02373690394084569,
        -0.1386264955990943,
        0.0408162826568748,
        -0.09958332117112587,
        0.07480635643059674,
        0.03778546580350449,
        -0.14930382492766933,
        -0.06259896248659083,
        -0.12868505037261269,
        0.1386231182394306,
        -0.07212305879686996,
        0.051721633793674164,
        0.03712322886260294,
        -0.08455803825157741,
        -0.12236975387200147,
        0.05348104578482704,
        -0.10608073922392915,
        0.0040230107666381805,
        0.09638224156666939,
        -0.08475671564291525,
        -0.05328083143789761,
        0.17338293499089547,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
    ],
);

const PML_MINED_PAIRS: (f64, [f64; 32]) = (
    0.7437930071095956,
    [
        0.003113134999168283,
        0.13356741004145742,
        0.04543918169572653,
        -0.10883117347957053,
        0.0,
        0.0,
        0.0,
        0.0,
        -0.05797640065996908,
        -0.023174813951163994,
        -0.03479183386403854,
        0.0695735604803176,
        -0.018051236620842466,
        0.024047964153385462,
        0.040291260627101255,
        -0.00357517761211093,
        -0.0244932111632373,
        0.021295505747831824,
        -0.0743940487209931,
        0.028098012515493466,
        0.0937539199746478,
        -0.02990718106453599,
        -0.10081523430125333,
        0.12499378253597773,
        0.03211340138639126,
        0.009638191198577728,
        0.00178366436057531,
        0.01167737734372068,
        0.0,
        0.0,
        0.0,
        0.0,
    ],
);

const PML_MINED_TRIPLETS: (f64, [f64; 32]) = (
    0.44030631706278606,
    [
        0.0,
        0.0,
        0.0,
        0.0,
        -0.0002691196432642179,
        0.003536732434699274,
        0.06360359853851126,
        0.017827858373632204,
        -0.07653288397206646,
        0.09556268595483253,
        -0.002165546470382057,
        0.19868156445116714,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.030088570186828974,
        -0.01833587766735053,
        -0.07110709238579399,
        -0.12311351740649983,
        0.10812340897773622,
        0.04460822412972589,
        -0.1895143611365722,
        0.09599316593272773,
    ],
);

const PML_EUCLIDEAN: (f64, [f64; 32]) = (
    1.076406393462813,
    [
        0.18354992490952185,
        0.1994019257193128,
        -0.026239074360207053,
        -0.1254832533178054,
        0.039903149536541394,
        -0.10576774946561615,
        0.07135277856643135,
        0.03977104363425103,
        -0.09210440510223344,
        -0.03848189041986129,
        -0.07668596464261697,
        0.08828190035191925,
        -0.0669744015914987,
        0.045575293104554424,
        0.023795363725709548,
        -0.09006084390579948,
        -0.0895235220642362,
        0.03916415427522298,
        -0.08696878282108746,
        0.005661884217539683,
        0.052260707734267935,
        -0.07651163617045273,
        0.005032500188213801,
        0.13298698101906123,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
    ],
);

const PML_RAW_DOT: (f64, [f64; 32]) = (
    1.0147489131109022,
    [
        0.38928976249100933,
        0.3562355465470381,
        0.05042146383208526,
        -0.24852097966969455,
        0.021399295951961134,
        -0.18217319386186315,
        0.13495630829811847,
        -0.020618308406402726,
        -0.3577046001221693,
        -0.10863489750851431,
        -0.18961497265738259,
        0.23589843021702186,
        -0.16357318743839172,
        -0.03805795238530129,
        0.11652108949542399,
        -0.18132269741880683,
        -0.24301280818460122,
        0.11962837200825871,
        -0.17392495986082013,
        -0.05463158861197502,
        0.4065859956229929,
        -0.08157041962295741,
        0.057403870365396126,
        0.23595428603078186,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
    ],
);

#[test]
fn matches_pml_on_a_fixed_batch() {
    let d = 4;
    let raw = Config { distance: DistanceConfig { measure: Measure::Dot, normalize_embeddings: false } };
    let euclidean = Config { distance: DistanceConfig::default() };
    let cases = [
        ("default, no miner", Config::default(), None, PML_DEFAULT),
        ("default, mined pairs", Config::default(), Some(mined()), PML_MINED_PAIRS),
        ("default, mined triplets", Config::default(), Some(mined_triplets()), PML_MINED_TRIPLETS),
        ("Euclidean distance, no miner", euclidean, None, PML_EUCLIDEAN),
        ("raw dot product, no miner", raw, None, PML_RAW_DOT),
    ];
    for (what, config, tuples, (want_loss, want_grad)) in cases {
        let mut loss = Instance::<NPairs>::new(config, context(d, 3)).unwrap();
        let out = loss.forward_backward(&Z, &LABELS, tuples.as_ref()).unwrap();
        assert_parity((out.loss, &out.grad), (want_loss, &want_grad), what);
    }
}

#[test]
fn degenerate_batches_give_zero_without_nan() {
    let d = 3;
    let mut loss = Instance::<NPairs>::new(Config::default(), context(d, 0)).unwrap();
    let z = random_embeddings(5, 4, d);
    // Every label alone: no positive pair.
    let out = loss.forward_backward(&z, &[0, 1, 2, 3], None).unwrap();
    assert_eq!((out.loss, out.stats.get("no_pairs"), out.stats.get("num_pairs")), (0.0, Some(1.0), Some(0.0)));
    assert!(out.grad.iter().all(|&g| g == 0.0));
    // A single embedding.
    let out = loss.forward_backward(&z[..d], &[0], None).unwrap();
    assert_eq!((out.loss, out.stats.get("no_pairs")), (0.0, Some(1.0)));
    // Mined tuples with negatives only.
    let negatives = Tuples::Pairs(Pairs { a1: vec![], p: vec![], a2: vec![0, 1], n: vec![2, 3] });
    let out = loss.forward_backward(&z, &[0, 0, 1, 1], Some(&negatives)).unwrap();
    assert_eq!((out.loss, out.stats.get("no_pairs")), (0.0, Some(1.0)));
    assert!(out.grad.iter().all(|&g| g == 0.0));
    // One class: one pair, a softmax over one logit, ℓ = 0 and no gradient.
    let out = loss.forward_backward(&z, &[7, 7, 7, 7], None).unwrap();
    assert_eq!((out.loss, out.stats.get("num_pairs")), (0.0, Some(1.0)));
    assert!(out.grad.iter().all(|&g| g == 0.0));
    // Identical embeddings and huge raw dot products stay finite.
    let raw = Config { distance: DistanceConfig { measure: Measure::Dot, normalize_embeddings: false } };
    let mut loss = Instance::<NPairs>::new(raw, context(d, 0)).unwrap();
    let big = [100.0f32, -200.0, 300.0].repeat(4);
    let out = loss.forward_backward(&big, &[0, 0, 1, 1], None).unwrap();
    assert!(out.loss.is_finite() && out.grad.iter().all(|g| g.is_finite()));
}

#[test]
fn bad_configurations_are_refused_naming_the_field() {
    // The only field is the distance, and every measure is valid: what can be wrong is a
    // misspelt field or an unknown measure.
    for (text, named) in [("(distanse: ())", "distanse"), ("(distance: (measure: manhattan))", "manhattan")] {
        let e = Instance::<NPairs>::from_config_text(text, context(4, 0)).err().unwrap();
        assert!(e.message().contains(named), "{text}: {e}");
    }
    let ok = Instance::<NPairs>::from_config_text("(distance: (measure: cosine))", context(4, 0));
    assert!(ok.is_ok());
}
