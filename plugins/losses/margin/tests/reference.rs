//! The margin loss against a plain loop over triplets written from its definition, finite
//! differences for the embeddings and for β, pytorch-metric-learning's `MarginLoss` on a
//! fixed batch (loss, dL/dZ and dL/dβ), SGD steps by hand, degenerate batches, the state
//! round trip and configuration checks.

use dmlbench_loss_margin::{Config, Margin};
use dmlbench_sdk::classifier::SgdConfig;
use dmlbench_sdk::distance::DistanceConfig;
use dmlbench_sdk::instance::parse_config;
use dmlbench_sdk::pairwise::Measure;
use dmlbench_sdk::state::save_tensors;
use dmlbench_sdk::testing::batches::proxies::{LABELS, Z};
use dmlbench_sdk::testing::{
    GradCheck, assert_close, check_gradient, check_loss_gradient, naive, random_embeddings, random_labels,
};
use dmlbench_sdk::tuples::{all_pairs, all_triplets};
use dmlbench_sdk::{Context, Instance, Loss, Pairs, Plugin, Triplets, Tuples};

fn ctx(d: usize, classes: usize, seed: u64) -> Context {
    Context { embedding_dim: d, num_classes: classes, seed, base_lr: 0.1 }
}

/// (a, p, n) index triplets.
type TripletList = Vec<(usize, usize, usize)>;

/// Puts β and its momentum buffer into an instance through its state.
fn set_state(loss: &mut Instance<Margin>, beta: &[f32], momentum: &[f32]) {
    let shape = [beta.len()];
    loss.load(&save_tensors(&[("beta", &shape, beta), ("beta.momentum", &shape, momentum)]).unwrap()).unwrap();
}

fn set_beta(loss: &mut Instance<Margin>, beta: &[f32]) {
    set_state(loss, beta, &vec![0.0; beta.len()]);
}

/// Every triplet of the batch: a, then p of a's label (p ≠ a), then n of another label.
fn every_triplet(labels: &[i64]) -> TripletList {
    let mut out = vec![];
    for a in 0..labels.len() {
        for p in 0..labels.len() {
            for n in 0..labels.len() {
                if p != a && labels[p] == labels[a] && labels[n] != labels[a] {
                    out.push((a, p, n));
                }
            }
        }
    }
    out
}

/// Mined pairs joined into triplets: each positive pair with each negative pair of its anchor.
fn joined(pairs: &Pairs) -> TripletList {
    let mut out = vec![];
    for (&a, &p) in pairs.a1.iter().zip(&pairs.p) {
        for (&a2, &n) in pairs.a2.iter().zip(&pairs.n) {
            if a2 == a {
                out.push((a as usize, p as usize, n as usize));
            }
        }
    }
    out
}

/// The definition: for each triplet, ℓ⁺ = [d(a,p) − β + α]₊ and ℓ⁻ = [β − d(a,n) + α]₊
/// (flipped for a similarity), β the anchor's class's with per-class β; their sum divided by
/// the number of positive terms; plus ν·β (one β) or ν·Σ β_{y_a} over the same divisor
/// (per-class β) when β is learnt.
fn reference(
    config: &Config,
    beta: &[f32],
    z: &[f32],
    labels: &[i64],
    d: usize,
    triplets: &[(usize, usize, usize)],
) -> f64 {
    if triplets.is_empty() {
        return 0.0;
    }
    let prepare = |x: Vec<f64>| if config.distance.normalize_embeddings { naive::normalized(&x) } else { x };
    let rows: Vec<Vec<f64>> = (0..labels.len()).map(|i| prepare(naive::row(z, d, i))).collect();
    let value = |a: usize, b: usize| match config.distance.measure {
        Measure::Euclidean => naive::euclidean(&rows[a], &rows[b]),
        Measure::SquaredEuclidean => naive::squared_euclidean(&rows[a], &rows[b]),
        Measure::Cosine => naive::cosine(&rows[a], &rows[b]),
        Measure::Dot => naive::dot(&rows[a], &rows[b]),
    };
    let similarity = matches!(config.distance.measure, Measure::Cosine | Measure::Dot);
    let beta_of = |a: usize| f64::from(beta[if config.per_class_beta { labels[a] as usize } else { 0 }]);
    let (mut sum, mut active, mut beta_sum) = (0.0, 0usize, 0.0);
    for &(a, p, n) in triplets {
        let b = beta_of(a);
        let (ap, an) = (value(a, p), value(a, n));
        let pos = if similarity { b - ap + config.margin } else { ap - b + config.margin };
        let neg = if similarity { an - b + config.margin } else { b - an + config.margin };
        for term in [pos, neg] {
            if term > 0.0 {
                sum += term;
                active += 1;
            }
        }
        beta_sum += b;
    }
    let margin_loss = if active > 0 { sum / active as f64 } else { 0.0 };
    let reg = match (config.learn_beta, config.per_class_beta) {
        (false, _) => 0.0,
        (true, false) => config.nu * f64::from(beta[0]),
        (true, true) if active > 0 => config.nu * beta_sum / active as f64,
        (true, true) => 0.0,
    };
    margin_loss + reg
}

fn configs() -> Vec<Config> {
    let distance = |measure, normalize_embeddings| DistanceConfig { measure, normalize_embeddings };
    vec![
        Config::default(),
        Config { margin: 0.05, beta: 0.9, ..Config::default() },
        Config { margin: 0.1, beta: 0.4, distance: DistanceConfig::cosine(), ..Config::default() },
        Config { nu: 0.1, learn_beta: true, ..Config::default() },
        Config {
            margin: 0.3,
            nu: 0.2,
            beta: 3.0,
            learn_beta: true,
            per_class_beta: true,
            distance: distance(Measure::Euclidean, false),
            ..Config::default()
        },
        Config {
            margin: 0.15,
            nu: 0.05,
            beta: 0.2,
            learn_beta: true,
            per_class_beta: true,
            distance: distance(Measure::Dot, true),
            ..Config::default()
        },
    ]
}

/// Checks dL/dβ, when there is one, against finite differences of the reference as a
/// function of β.
fn check_beta_gradient(
    loss: &Instance<Margin>,
    config: &Config,
    z: &[f32],
    labels: &[i64],
    d: usize,
    triplets: &[(usize, usize, usize)],
    what: &str,
) {
    let beta = loss.plugin().beta().to_vec();
    if let Some(dbeta) = loss.plugin().beta_gradient() {
        let f = |b: &[f32]| Ok(reference(config, b, z, labels, d, triplets));
        check_gradient(f, &beta, dbeta, &GradCheck::default()).unwrap_or_else(|e| panic!("{what}: dL/dβ: {e}"));
    }
}

#[test]
fn matches_the_definition_and_finite_differences_on_random_batches() {
    for (k, config) in configs().iter().enumerate() {
        for (n, d, classes) in [(12, 5, 3), (16, 8, 4), (7, 4, 7), (2, 3, 1), (9, 6, 2)] {
            let seed = 300 + k as u64 * 10 + n as u64;
            let z = random_embeddings(seed, n, d);
            let labels = random_labels(seed, n, classes);
            let mut loss = Instance::<Margin>::new(config.clone(), ctx(d, classes, seed)).unwrap();
            if config.per_class_beta {
                // Distinct known values, loaded through the state.
                let beta: Vec<f32> = (0..classes).map(|c| config.beta as f32 * (0.8 + 0.15 * c as f32)).collect();
                set_beta(&mut loss, &beta);
            }
            let what = format!("config {k}, n {n}");
            let beta = loss.plugin().beta().to_vec();
            let out = loss.forward_backward(&z, &labels, None).unwrap();
            let triplets = every_triplet(&labels);
            assert_close(out.loss, reference(config, &beta, &z, &labels, d, &triplets), 1e-5, &what);
            assert_eq!(out.stats.get("triplets"), Some(triplets.len() as f64), "{what}");
            check_beta_gradient(&loss, config, &z, &labels, d, &triplets, &what);
            // β has a gradient when learnt and in the loss: a single β whenever there are
            // triplets, per-class β when some term is active.
            let active = out.stats.get("active_pos_pairs").unwrap() + out.stats.get("active_neg_pairs").unwrap();
            let in_loss = !triplets.is_empty() && (!config.per_class_beta || active > 0.0);
            assert_eq!(loss.plugin().beta_gradient().is_some(), config.learn_beta && in_loss, "{what}");
            check_loss_gradient(&mut loss, &z, &labels, None, &GradCheck::default())
                .unwrap_or_else(|e| panic!("{what}: {e}"));
        }
    }
}

#[test]
fn mined_triplets_and_pairs_are_the_triplets_used() {
    let (n, d, classes) = (14, 6, 4);
    for (k, config) in configs().iter().enumerate() {
        let seed = 60 + k as u64;
        let z = random_embeddings(seed, n, d);
        let labels = random_labels(seed, n, classes);
        let mut loss = Instance::<Margin>::new(config.clone(), ctx(d, classes, seed)).unwrap();
        let beta = loss.plugin().beta().to_vec();
        // A share of the batch's triplets, one listed twice.
        let every = all_triplets(&labels);
        let pick = |list: &[u32]| list.iter().copied().step_by(9).chain([list[0]]).collect::<Vec<u32>>();
        let triplets = Triplets { a: pick(&every.a), p: pick(&every.p), n: pick(&every.n) };
        let listed: TripletList = (0..triplets.len())
            .map(|i| (triplets.a[i] as usize, triplets.p[i] as usize, triplets.n[i] as usize))
            .collect();
        let tuples = Tuples::Triplets(triplets);
        let what = format!("config {k}, mined triplets");
        let out = loss.forward_backward(&z, &labels, Some(&tuples)).unwrap();
        assert_close(out.loss, reference(config, &beta, &z, &labels, d, &listed), 1e-5, &what);
        assert_eq!(out.stats.get("triplets"), Some(listed.len() as f64));
        check_beta_gradient(&loss, config, &z, &labels, d, &listed, &what);
        check_loss_gradient(&mut loss, &z, &labels, Some(&tuples), &GradCheck::default())
            .unwrap_or_else(|e| panic!("{what}: {e}"));

        // Pairs are joined per anchor into triplets.
        let all = all_pairs(&labels);
        let keep = |list: &[u32], step: usize| list.iter().copied().step_by(step).collect::<Vec<u32>>();
        let pairs = Pairs { a1: keep(&all.a1, 3), p: keep(&all.p, 3), a2: keep(&all.a2, 5), n: keep(&all.n, 5) };
        let listed = joined(&pairs);
        assert!(!listed.is_empty());
        let tuples = Tuples::Pairs(pairs);
        let what = format!("config {k}, mined pairs");
        let out = loss.forward_backward(&z, &labels, Some(&tuples)).unwrap();
        assert_close(out.loss, reference(config, &beta, &z, &labels, d, &listed), 1e-5, &what);
        check_beta_gradient(&loss, config, &z, &labels, d, &listed, &what);
        check_loss_gradient(&mut loss, &z, &labels, Some(&tuples), &GradCheck::default())
            .unwrap_or_else(|e| panic!("{what}: {e}"));
    }
}

/// A loss, dL/dZ and dL/dβ (empty without `learn_beta`) from PML.
struct Pml {
    loss: f64,
    dz: [f64; 32],
    dbeta: &'static [f64],
}

/// Agreement to 1e-5 relative: the loss to itself, each gradient element to the largest one.
#[track_caller]
fn assert_parity(got: (f64, &[f32], &[f32]), want: &Pml, what: &str) {
    assert!((got.0 - want.loss).abs() <= 1e-5 * want.loss.abs(), "{what}: loss {} vs PML {}", got.0, want.loss);
    for (name, ours, theirs) in [("dL/dZ", got.1, &want.dz[..]), ("dL/dβ", got.2, want.dbeta)] {
        assert_eq!(ours.len(), theirs.len(), "{what}: {name} length");
        let largest = theirs.iter().fold(0.0f64, |m, g| m.max(g.abs()));
        for (i, (&g, &w)) in ours.iter().zip(theirs).enumerate() {
            assert!((f64::from(g) - w).abs() <= 1e-5 * largest, "{what}: {name}[{i}] {g} vs PML {w}");
        }
    }
}

fn mined_pairs() -> Tuples {
    Tuples::Pairs(Pairs {
        a1: vec![0, 3, 3, 5, 4],
        p: vec![3, 7, 0, 6, 1],
        a2: vec![0, 3, 1, 4, 5],
        n: vec![2, 5, 6, 7, 0],
    })
}

fn mined_triplets() -> Tuples {
    Tuples::Triplets(Triplets { a: vec![2, 2, 4, 0, 7], p: vec![5, 6, 1, 3, 0], n: vec![0, 7, 3, 4, 1] })
}

// The expected values below come from pytorch-metric-learning 2.9.0 (torch 2.9, CPU, f64);
// each `run` prints the loss, dL/dZ and dL/dβ of one constant:
//
// import torch
// from pytorch_metric_learning import losses, distances
// Z = [[0.25, -0.5, 0.75, 1.0], [-0.625, 0.125, 0.5, -0.25], [1.0, 0.375, -0.75, 0.5], [0.125, 1.25, 0.25, -0.375],
//      [-0.875, -0.25, 0.625, 0.75], [0.5, 0.625, 1.125, -0.125], [-0.25, -1.0, -0.5, 0.875], [0.75, -0.125, 0.25, -1.125]]
// labels = torch.tensor([0, 2, 1, 0, 2, 1, 1, 0])
// pairs = tuple(torch.tensor(x) for x in ([0, 3, 3, 5, 4], [3, 7, 0, 6, 1], [0, 3, 1, 4, 5], [2, 5, 6, 7, 0]))
// triplets = tuple(torch.tensor(x) for x in ([2, 2, 4, 0, 7], [5, 6, 1, 3, 0], [0, 7, 3, 4, 1]))
// def run(loss, beta=None, tuples=None, z=Z, labels=labels):
//     if beta is not None:
//         loss.beta.data = torch.tensor(beta, dtype=torch.float64)
//     z = torch.tensor(z, dtype=torch.float64, requires_grad=True)
//     value = loss(z, labels, tuples)
//     value.backward()
//     grad_beta = None if loss.beta.grad is None else [float(g) for g in loss.beta.grad]
//     print(repr(value.item()), [float(g) for g in z.grad.flatten()], grad_beta)
// run(losses.MarginLoss())                                                                       # PML_DEFAULT
// run(losses.MarginLoss(), tuples=triplets)                                                      # PML_DEFAULT_MINED
// run(losses.MarginLoss(margin=0.1, nu=0.2, learn_beta=True), [0.875])                           # PML_LEARN_BETA
// run(losses.MarginLoss(nu=0.05, learn_beta=True, num_classes=3), [0.75, 1.125, 0.9375], triplets)  # PML_PER_CLASS_TRIPLETS
// run(losses.MarginLoss(margin=0.1, nu=0.3, learn_beta=True, num_classes=3,
//                       distance=distances.CosineSimilarity()), [0.25, 0.125, 0.4375], pairs)    # PML_COSINE_PAIRS
// run(losses.MarginLoss(nu=0.5, beta=1.0, learn_beta=True), None, None,
//     [[1.0, 0.0], [1.0, 0.01], [-1.0, 0.0], [-1.0, 0.01]], torch.tensor([0, 0, 1, 1]))         # PML_INACTIVE (0.5, zeros, [0.5])

const PML_DEFAULT: Pml = Pml {
    loss: 0.45881457641988754,
    dz: [
        -0.058096692469059096,
        -0.026404055762471318,
        -0.03590881616444844,
        0.028253757359365448,
        0.02822224119693495,
        0.04167870981401493,
        0.0216342994816235,
        -0.00644764912208288,
        -0.008267041012548958,
        0.0376773949490333,
        -0.017258105026126125,
        -0.037611121725866226,
        -0.031534724652448706,
        0.014794396835697728,
        -0.015785075071842826,
        0.0282796978536143,
        0.01868458356278506,
        -0.02093140877071115,
        -0.005149616625832885,
        0.019112891754539583,
        -0.05152244358640777,
        0.0033264459661057153,
        0.01468455238812797,
        -0.05729657302195091,
        -0.055091713123305824,
        -0.015723751039501976,
        0.03912829609735361,
        -0.01135146431045898,
        -0.01175871732568766,
        -0.02805222740096484,
        -0.017546323099813972,
        -0.008621413639198813,
    ],
    dbeta: &[],
};

const PML_DEFAULT_MINED: Pml = Pml {
    loss: 0.5373405504104619,
    dz: [
        -0.1966895716415073,
        -0.04147564684491914,
        -0.04822090583197493,
        0.06460024886189844,
        0.0,
        0.0,
        0.0,
        0.0,
        -0.01563099768434631,
        0.030331960300256464,
        -0.04253649031727094,
        -0.05529171033240608,
        -0.01974309313992969,
        -0.0031248061084780815,
        -0.05567836338742761,
        -0.05411596033318857,
        0.10017725774935476,
        -0.04269850330300367,
        0.044340753430042276,
        0.0656900050815441,
        -0.0730850938131678,
        -0.03014404647546998,
        0.045429353060908784,
        -0.03419643008184214,
        -0.07537269626361502,
        -0.03429180574493515,
        0.0519572814317199,
        -0.031035816108547363,
        -0.03334164810112488,
        0.03491684407440637,
        -0.05381919575378425,
        -0.03806723602096938,
    ],
    dbeta: &[],
};

const PML_LEARN_BETA: Pml = Pml {
    loss: 0.7914772339456754,
    dz: [
        -0.06780865330005839,
        -0.029015210242304964,
        -0.04019636361690146,
        0.032591830916538216,
        0.04582154584828094,
        0.05208774015231936,
        -0.02584805150415847,
        -0.1402060975528596,
        -0.009893036509079939,
        0.01919744322801043,
        -0.02692182931472846,
        -0.034994753374940554,
        -0.03899527584398538,
        0.015006398081165988,
        -0.015097098882327964,
        0.026958169067672864,
        0.06374321182107862,
        -0.03908099926536337,
        -0.031246154379537407,
        0.08737854268575176,
        -0.05611035502447103,
        0.027094689598538266,
        0.0034429436527527862,
        -0.05798147923041819,
        -0.0589658341683031,
        -0.019676587237291418,
        0.006081756792808014,
        -0.035859619866243635,
        -0.018835196394763297,
        -0.048577964721204264,
        -0.0448315666401448,
        -0.017121816325296135,
    ],
    dbeta: &[-0.6227848101265823],
};

const PML_PER_CLASS_TRIPLETS: Pml = Pml {
    loss: 0.6191754433508155,
    dz: [
        -0.16390797636792273,
        -0.034563039037432616,
        -0.04018408819331243,
        0.05383354071824867,
        0.05027641836130825,
        0.0571518260004615,
        -0.028361056511507214,
        -0.15383724592605427,
        -0.013025831403621943,
        0.025276633583547065,
        -0.03544707526439245,
        -0.04607642527700507,
        -0.016452577616608073,
        -0.0026040050903984036,
        -0.04639863615618968,
        -0.04509663361099048,
        0.13255125461925243,
        -0.0695671054249843,
        -0.006571004050438239,
        0.13692993195616493,
        -0.06090424484430649,
        -0.025120038729558317,
        0.03785779421742397,
        -0.028497025068201776,
        -0.06281058021967917,
        -0.02857650478744595,
        0.04329773452643325,
        -0.025863180090456135,
        -0.027784706750937378,
        0.029097370062005305,
        -0.0448493297948202,
        -0.03172269668414114,
    ],
    dbeta: &[-0.15, -0.31666666666666665, -0.15833333333333333],
};

const PML_COSINE_PAIRS: Pml = Pml {
    loss: 0.6039800779653043,
    dz: [
        -0.0035306254839553054,
        -0.10515775563779446,
        -0.01927027726880365,
        -0.03724351349630566,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        -0.03899425277187321,
        -0.005377875302364388,
        -0.0008627495290959089,
        -0.031499501617903054,
        0.0,
        0.0,
        0.0,
        0.0,
        -0.02793643146334262,
        0.12197714404128607,
        -0.058039906360388846,
        -0.024219162890440345,
        -0.023514187351497788,
        0.004232553723269604,
        -0.05596376589656474,
        -0.03386042978615682,
        0.0031773112949652956,
        -0.09905267962054311,
        -0.015092228651085157,
        0.00977023223201829,
    ],
    dbeta: &[0.27142857142857135, 0.042857142857142844, 0.04285714285714285],
};

#[test]
fn matches_pml_on_a_fixed_batch() {
    let learnt = Config { margin: 0.1, nu: 0.2, learn_beta: true, ..Config::default() };
    let per_class = Config { nu: 0.05, learn_beta: true, per_class_beta: true, ..Config::default() };
    let cosine = Config {
        margin: 0.1,
        nu: 0.3,
        learn_beta: true,
        per_class_beta: true,
        distance: DistanceConfig::cosine(),
        ..Config::default()
    };
    let cases = [
        ("default, no miner", Config::default(), None, None, &PML_DEFAULT),
        ("default, mined triplets", Config::default(), None, Some(mined_triplets()), &PML_DEFAULT_MINED),
        ("learnt β", learnt, Some(&[0.875][..]), None, &PML_LEARN_BETA),
        (
            "per-class β, mined triplets",
            per_class,
            Some(&[0.75, 1.125, 0.9375][..]),
            Some(mined_triplets()),
            &PML_PER_CLASS_TRIPLETS,
        ),
        (
            "cosine, per-class β, mined pairs",
            cosine,
            Some(&[0.25, 0.125, 0.4375][..]),
            Some(mined_pairs()),
            &PML_COSINE_PAIRS,
        ),
    ];
    for (what, config, beta, tuples, want) in cases {
        let mut loss = Instance::<Margin>::new(config, ctx(4, 3, 0)).unwrap();
        if let Some(beta) = beta {
            set_beta(&mut loss, beta);
        }
        let out = loss.forward_backward(&Z, &LABELS, tuples.as_ref()).unwrap();
        let dbeta = loss.plugin().beta_gradient().unwrap_or(&[]).to_vec();
        assert_parity((out.loss, &out.grad, &dbeta), want, what);
    }

    // One SGD step at the context's rate 0.1: β − 0.1·dL/dβ, with PML's dL/dβ.
    let mut loss = Instance::<Margin>::new(
        Config { nu: 0.05, learn_beta: true, per_class_beta: true, ..Config::default() },
        ctx(4, 3, 0),
    )
    .unwrap();
    let beta0 = [0.75f32, 1.125, 0.9375];
    set_beta(&mut loss, &beta0);
    loss.forward_backward(&Z, &LABELS, Some(&mined_triplets())).unwrap();
    loss.step(1.0).unwrap();
    for (c, (&got, (&b, &g))) in
        loss.plugin().beta().iter().zip(beta0.iter().zip(PML_PER_CLASS_TRIPLETS.dbeta)).enumerate()
    {
        assert_close(f64::from(got), f64::from(b) - 0.1 * g, 1e-6, &format!("β[{c}] after one step"));
    }
}

#[test]
fn without_an_active_term_a_learnt_single_beta_keeps_pmls_regulariser() {
    // Two tight clusters far apart: every ℓ⁺ and ℓ⁻ is 0. PML (PML_INACTIVE above) gives
    // ν·β = 0.5 with dL/dβ = ν = 0.5 and a zero gradient for Z.
    let z = [1.0, 0.0, 1.0, 0.01, -1.0, 0.0, -1.0, 0.01];
    let labels = [0, 0, 1, 1];
    let config = Config { nu: 0.5, beta: 1.0, learn_beta: true, ..Config::default() };
    let mut loss = Instance::<Margin>::new(config, ctx(2, 2, 0)).unwrap();
    let out = loss.forward_backward(&z, &labels, None).unwrap();
    assert_close(out.loss, 0.5, 1e-12, "ν·β");
    assert!(out.grad.iter().all(|&g| g == 0.0));
    assert_eq!(out.stats.get("all_triplets_inactive"), Some(1.0));
    assert_eq!(out.stats.get("active_pos_pairs"), Some(0.0));
    assert_eq!(loss.plugin().beta_gradient(), Some(&[0.5f32][..]));
    loss.step(1.0).unwrap();
    assert_close(f64::from(loss.plugin().beta()[0]), 1.0 - 0.1 * 0.5, 1e-7, "β after the step");

    // The same batch with a fixed β, or with per-class β: 0, and β gets no gradient.
    for config in [
        Config { nu: 0.5, beta: 1.0, ..Config::default() },
        Config { nu: 0.5, beta: 1.0, learn_beta: true, per_class_beta: true, ..Config::default() },
    ] {
        let mut loss = Instance::<Margin>::new(config.clone(), ctx(2, 2, 0)).unwrap();
        let out = loss.forward_backward(&z, &labels, None).unwrap();
        assert_eq!(out.loss, 0.0, "{config:?}");
        assert!(out.grad.iter().all(|&g| g == 0.0));
        assert_eq!(out.stats.get("all_triplets_inactive"), Some(1.0));
        assert_eq!(loss.plugin().beta_gradient(), None);
    }
}

#[test]
fn degenerate_batches_give_zero_and_leave_beta_alone() {
    let d = 3;
    let optimizer = SgdConfig { momentum: 0.9, ..SgdConfig::plain() };
    let config = Config { nu: 0.3, learn_beta: true, optimizer, ..Config::default() };
    let mut loss = Instance::<Margin>::new(config, ctx(d, 5, 0)).unwrap();
    set_state(&mut loss, &[1.25], &[0.5]);
    let z = random_embeddings(3, 4, d);
    // One class, all singletons, a single row, and empty mined triplets: no triplet.
    for (labels, tuples) in [
        (&[2, 2, 2, 2][..], None),
        (&[0, 1, 2, 3][..], None),
        (&[4][..], None),
        (&[0, 0, 1, 1][..], Some(Tuples::Triplets(Triplets::default()))),
    ] {
        let out = loss.forward_backward(&z[..labels.len() * d], labels, tuples.as_ref()).unwrap();
        assert_eq!(out.loss, 0.0, "{labels:?}");
        assert!(out.grad.iter().all(|&g| g == 0.0));
        assert_eq!(out.stats.get("no_triplets"), Some(1.0));
        assert_eq!(out.stats.get("triplets"), Some(0.0));
        assert_eq!(loss.plugin().beta_gradient(), None);
        // PyTorch skips a parameter without a gradient: neither β nor its momentum moves.
        loss.step(1.0).unwrap();
        assert_eq!((loss.plugin().beta(), loss.plugin().momentum()), (&[1.25f32][..], &[0.5f32][..]));
    }
}

#[test]
fn sgd_steps_are_hand_computed_and_a_fixed_beta_never_moves() {
    let (n, d, classes) = (12, 5, 3);
    let z = random_embeddings(5, n, d);
    let labels = random_labels(5, n, classes);
    let optimizer = SgdConfig { lr: Some(0.05), momentum: 0.9, weight_decay: 0.01, nesterov: false };
    let config = Config { nu: 0.1, learn_beta: true, per_class_beta: true, optimizer, ..Config::default() };
    let mut loss = Instance::<Margin>::new(config, ctx(d, classes, 0)).unwrap();
    assert_eq!(loss.plugin().learning_rate(), 0.05);
    let theta0: Vec<f64> = loss.plugin().beta().iter().map(|&v| f64::from(v)).collect();
    loss.forward_backward(&z, &labels, None).unwrap();
    let g1: Vec<f64> = loss.plugin().beta_gradient().unwrap().iter().map(|&v| f64::from(v)).collect();
    loss.step(1.0).unwrap();
    // v₁ = g₁ + wd·θ₀, θ₁ = θ₀ − lr·v₁.
    let v1: Vec<f64> = g1.iter().zip(&theta0).map(|(g, t)| g + 0.01 * t).collect();
    let theta1: Vec<f64> = theta0.iter().zip(&v1).map(|(t, v)| t - 0.05 * v).collect();
    for (c, (&got, &want)) in loss.plugin().beta().iter().zip(&theta1).enumerate() {
        assert_close(f64::from(got), want, 1e-6, &format!("θ₁[{c}]"));
    }
    // A step without a new gradient changes nothing; the second at lr_scale 0.5.
    loss.step(1.0).unwrap();
    assert_close(f64::from(loss.plugin().beta()[0]), theta1[0], 1e-6, "no gradient, no step");
    loss.forward_backward(&z, &labels, None).unwrap();
    let g2: Vec<f64> = loss.plugin().beta_gradient().unwrap().iter().map(|&v| f64::from(v)).collect();
    loss.step(0.5).unwrap();
    for c in 0..classes {
        let v2 = 0.9 * v1[c] + g2[c] + 0.01 * theta1[c];
        assert_close(f64::from(loss.plugin().beta()[c]), theta1[c] - 0.025 * v2, 1e-6, &format!("θ₂[{c}]"));
        assert_close(f64::from(loss.plugin().momentum()[c]), v2, 1e-6, &format!("v₂[{c}]"));
    }

    // PML's default: β is a constant, and the state holds it all the same.
    let mut fixed = Instance::<Margin>::from_config_text("", ctx(d, 0, 0)).unwrap();
    assert_eq!(fixed.plugin().beta(), &[1.2f32]);
    for _ in 0..3 {
        fixed.forward_backward(&z, &labels, None).unwrap();
        assert_eq!(fixed.plugin().beta_gradient(), None);
        fixed.step(1.0).unwrap();
    }
    assert_eq!(fixed.plugin().beta(), &[1.2f32]);
    assert_eq!(fixed.plugin().learning_rate(), 0.1);
    // The default learns nothing, so the capability flag is off; state is on.
    const { assert!(!<Margin as Loss>::OWNS_PARAMETERS && <Margin as Plugin>::HAS_STATE) };
    // Omitted optimizer fields are plain SGD.
    let config = parse_config::<Margin>("(learn_beta: true, optimizer: (lr: Some(0.1), momentum: 0.9))").unwrap();
    assert_eq!(config.optimizer, SgdConfig { lr: Some(0.1), momentum: 0.9, ..SgdConfig::plain() });
    assert_eq!(Config::default().optimizer, SgdConfig::plain());
}

#[test]
fn state_round_trip_continues_the_run_exactly_and_known_beta_is_used() {
    let (n, d, classes) = (10, 4, 3);
    let optimizer = SgdConfig { lr: Some(0.2), momentum: 0.9, weight_decay: 1e-3, nesterov: true };
    let config = Config { nu: 0.1, learn_beta: true, per_class_beta: true, optimizer, ..Config::default() };
    let mut original = Instance::<Margin>::new(config.clone(), ctx(d, classes, 9)).unwrap();
    for s in 0..3 {
        original.forward_backward(&random_embeddings(s, n, d), &random_labels(s, n, classes), None).unwrap();
        original.step(1.0).unwrap();
    }
    assert!(original.plugin().momentum().iter().any(|&v| v != 0.0));
    let bytes = original.save().unwrap();
    let mut restored = Instance::<Margin>::new(config.clone(), ctx(d, classes, 1)).unwrap();
    restored.load(&bytes).unwrap();
    assert_eq!(restored.save().unwrap(), bytes);
    for s in 0..2 {
        let z = random_embeddings(50 + s, n, d);
        let labels = random_labels(50 + s, n, classes);
        let a = original.forward_backward(&z, &labels, None).unwrap();
        let b = restored.forward_backward(&z, &labels, None).unwrap();
        assert_eq!((a.loss, &a.grad), (b.loss, &b.grad), "step {s}");
        assert_eq!(original.plugin().beta_gradient(), restored.plugin().beta_gradient());
        original.step(1.0).unwrap();
        restored.step(1.0).unwrap();
    }
    assert_eq!(original.save().unwrap(), restored.save().unwrap());

    // A known fixed β loaded into a default instance is the β the loss uses.
    let z = random_embeddings(77, n, d);
    let labels = random_labels(77, n, classes);
    let mut fixed = Instance::<Margin>::from_config_text("", ctx(d, 0, 0)).unwrap();
    set_beta(&mut fixed, &[0.625]);
    let out = fixed.forward_backward(&z, &labels, None).unwrap();
    assert_close(
        out.loss,
        reference(&Config::default(), &[0.625], &z, &labels, d, &every_triplet(&labels)),
        1e-5,
        "β 0.625",
    );

    // Wrong shape, missing or extra tensors, non-finite values and garbage are refused.
    let e = fixed.load(&bytes).unwrap_err();
    assert!(e.message().contains("'beta'") && e.message().contains("[3]"), "{e}");
    let shape = [classes];
    let ok = [1.0f32, 1.0, 1.0];
    let bad = [1.0f32, f32::NAN, 1.0];
    for (tensors, needle) in [
        (vec![("beta", &shape, &ok[..])], "beta.momentum"),
        (vec![("beta", &shape, &bad[..]), ("beta.momentum", &shape, &ok[..])], "'beta' holds NaN"),
        (vec![("beta", &shape, &ok[..]), ("beta.momentum", &shape, &bad[..])], "'beta.momentum' holds NaN"),
        (
            vec![("beta", &shape, &ok[..]), ("beta.momentum", &shape, &ok[..]), ("fc", &shape, &ok[..])],
            "unexpected tensors: fc",
        ),
    ] {
        let state = save_tensors(&tensors.iter().map(|&(n, s, v)| (n, &s[..], v)).collect::<Vec<_>>()).unwrap();
        let e = restored.load(&state).unwrap_err();
        assert!(e.message().contains(needle), "{needle}: {e}");
    }
    assert!(restored.load(b"not a state").is_err());
    assert_eq!(restored.save().unwrap(), original.save().unwrap());
}

#[test]
fn bad_configurations_and_contexts_are_refused_naming_the_field() {
    for (text, field) in [
        ("(margin: inf)", "margin"),
        ("(margin: NaN)", "margin"),
        ("(nu: -0.1)", "nu"),
        ("(nu: inf)", "nu"),
        ("(beta: NaN)", "beta"),
        ("(beta: -inf)", "beta"),
        ("(optimizer: (lr: Some(0.0)))", "optimizer.lr"),
        ("(optimizer: (momentum: 1.0))", "optimizer.momentum"),
        ("(optimizer: (weight_decay: -0.1))", "optimizer.weight_decay"),
        ("(optimizer: (nesterov: true))", "optimizer.nesterov"),
        ("(optimizer: (rate: 0.1))", "rate"),
        ("(num_classes: 3)", "num_classes"),
        ("(triplets_per_anchor: 5)", "triplets_per_anchor"),
    ] {
        let e = Instance::<Margin>::from_config_text(text, ctx(4, 3, 0)).err().unwrap();
        assert!(e.message().contains(field), "{text}: {e}");
    }
    let e = Instance::<Margin>::from_config_text("(per_class_beta: true)", ctx(4, 0, 0)).err().unwrap();
    assert!(e.message().contains("per_class_beta") && e.message().contains("num_classes"), "{e}");
    // A single β needs no class count.
    assert!(Instance::<Margin>::from_config_text("(learn_beta: true)", ctx(4, 0, 0)).is_ok());
}
