//! Proxy-Anchor against a plain loop written from its definition, finite differences for the
//! embeddings and the proxies, pytorch-metric-learning's `ProxyAnchorLoss` on a fixed batch,
//! SGD steps by hand, the distribution of the initial proxies and the state round trip.

use dmlbench_loss_proxy_anchor::{Config, ProxyAnchor};
use dmlbench_sdk::classifier::SgdConfig;
use dmlbench_sdk::distance::DistanceConfig;
use dmlbench_sdk::instance::parse_config;
use dmlbench_sdk::pairwise::Measure;
use dmlbench_sdk::state::save_tensors;
use dmlbench_sdk::testing::batches::proxies::{LABELS, Z, mined};
use dmlbench_sdk::testing::{
    GradCheck, assert_close, check_gradient, check_loss_gradient, naive, random_embeddings, random_labels,
};
use dmlbench_sdk::tuples::all_pairs;
use dmlbench_sdk::{Context, Instance, Pairs, Triplets, Tuples};

fn ctx(d: usize, classes: usize, seed: u64) -> Context {
    Context { embedding_dim: d, num_classes: classes, seed, base_lr: 0.1 }
}

/// Puts known proxies and momentum buffer into an instance through its state.
fn set_state(loss: &mut Instance<ProxyAnchor>, proxies: &[f32], momentum: &[f32]) {
    let shape = [loss.context().num_classes, loss.context().embedding_dim];
    let bytes = save_tensors(&[("proxies", &shape, proxies), ("proxies.momentum", &shape, momentum)]).unwrap();
    loss.load(&bytes).unwrap();
}

fn set_proxies(loss: &mut Instance<ProxyAnchor>, proxies: &[f32]) {
    set_state(loss, proxies, &vec![0.0; proxies.len()]);
}

/// The definition: embeddings and proxies normalised when the distance says so; for each
/// proxy, log(1 + Σ e^{−α(S − δ) + b_i}) over the rows of its class and
/// log(1 + Σ e^{α(S + δ) + b_i}) over the others (α(D − δ) and −α(D + δ) for a distance), a
/// proxy without such rows contributing 0; the positive terms averaged over the proxies with
/// a row of their class, the negative terms over all C. b_i = w_i − 1 with w_i the row's
/// share of the mined indices (the four lists a1, p, a2, n), 0 without a miner.
fn reference(config: &Config, proxies: &[f32], z: &[f32], labels: &[i64], d: usize, mined: Option<[&[u32]; 4]>) -> f64 {
    let n = labels.len();
    let classes = proxies.len() / d;
    let prepare = |x: Vec<f64>| if config.distance.normalize_embeddings { naive::normalized(&x) } else { x };
    let u: Vec<Vec<f64>> = (0..n).map(|i| prepare(naive::row(z, d, i))).collect();
    let q: Vec<Vec<f64>> = (0..classes).map(|c| prepare(naive::row(proxies, d, c))).collect();
    let value = |a: &[f64], b: &[f64]| match config.distance.measure {
        Measure::SquaredEuclidean => naive::squared_euclidean(a, b),
        Measure::Euclidean => naive::euclidean(a, b),
        Measure::Cosine => naive::cosine(a, b),
        Measure::Dot => naive::dot(a, b),
    };
    let similarity = matches!(config.distance.measure, Measure::Cosine | Measure::Dot);
    let mut offsets = vec![0.0; n];
    if let Some(lists) = mined.filter(|lists| lists.iter().any(|l| !l.is_empty())) {
        let mut counts = vec![0.0; n];
        for &i in lists.iter().flat_map(|l| l.iter()) {
            counts[i as usize] += 1.0;
        }
        let most = counts.iter().copied().fold(0.0, f64::max);
        offsets = counts.iter().map(|c| c / most - 1.0).collect();
    }
    let (alpha, delta) = (config.alpha, config.margin);
    let (mut pos_total, mut neg_total, mut with_positives) = (0.0, 0.0, 0);
    for (c, qc) in q.iter().enumerate() {
        let (mut pos_sum, mut neg_sum, mut positives, mut negatives) = (0.0, 0.0, 0, 0);
        for i in 0..n {
            let v = value(&u[i], qc);
            if labels[i] == c as i64 {
                let a = if similarity { -alpha * (v - delta) } else { alpha * (v - delta) };
                pos_sum += (a + offsets[i]).exp();
                positives += 1;
            } else {
                let a = if similarity { alpha * (v + delta) } else { -alpha * (v + delta) };
                neg_sum += (a + offsets[i]).exp();
                negatives += 1;
            }
        }
        if positives > 0 {
            pos_total += (1.0 + pos_sum).ln();
            with_positives += 1;
        }
        if negatives > 0 {
            neg_total += (1.0 + neg_sum).ln();
        }
    }
    pos_total / with_positives as f64 + neg_total / classes as f64
}

fn configs() -> Vec<Config> {
    let distance = |measure, normalize_embeddings| DistanceConfig { measure, normalize_embeddings };
    vec![
        Config::default(),
        Config { margin: 0.25, alpha: 8.0, ..Config::default() },
        Config { margin: -0.1, alpha: 64.0, ..Config::default() },
        Config { margin: 0.2, alpha: 4.0, distance: distance(Measure::Euclidean, true), ..Config::default() },
        Config { margin: 0.5, alpha: 1.0, distance: distance(Measure::Dot, false), ..Config::default() },
    ]
}

/// A finite-difference step small enough for α up to 64 (the exponentials are stiff).
fn grad_check(d: usize) -> GradCheck {
    GradCheck { step: 2e-4, columns: d, ..GradCheck::default() }
}

/// Checks dL/dP against finite differences of the reference as a function of the proxies.
fn check_proxy_gradient(
    config: &Config,
    proxies: &[f32],
    dp: &[f32],
    z: &[f32],
    labels: &[i64],
    d: usize,
    mined: Option<[&[u32]; 4]>,
) {
    let f = |p: &[f32]| Ok(reference(config, p, z, labels, d, mined));
    check_gradient(f, proxies, dp, &grad_check(d)).unwrap_or_else(|e| panic!("{config:?} dL/dP: {e}"));
}

#[test]
fn matches_the_definition_and_finite_differences_on_random_batches() {
    for (k, config) in configs().iter().enumerate() {
        for (n, d, classes) in [(12, 5, 4), (16, 8, 6), (5, 3, 3), (2, 4, 2), (9, 6, 12), (6, 4, 1)] {
            let seed = 400 + k as u64 * 10 + n as u64;
            let z = random_embeddings(seed, n, d);
            // The (5, 3, 3) batch holds one class only.
            let labels = if n == 5 { vec![1; 5] } else { random_labels(seed, n, classes.min(n)) };
            let mut loss = Instance::<ProxyAnchor>::new(config.clone(), ctx(d, classes, seed)).unwrap();
            let what = format!("config {k}, n {n}, C {classes}");
            // The seeded initial proxies first, then known ones loaded through the state.
            for round in 0..2 {
                if round == 1 {
                    set_proxies(&mut loss, &random_embeddings(seed + 1, classes, d));
                }
                let proxies = loss.plugin().proxies().to_vec();
                let out = loss.forward_backward(&z, &labels, None).unwrap();
                assert_close(out.loss, reference(config, &proxies, &z, &labels, d, None), 1e-5, &what);
                let present = (0..classes as i64).filter(|c| labels.contains(c)).count();
                assert_eq!(out.stats.get("proxies_with_positives"), Some(present as f64), "{what}");
                let sum = out.stats.get("pos_loss").unwrap() + out.stats.get("neg_loss").unwrap();
                assert_close(sum, out.loss, 1e-12, &what);
                let dp = loss.plugin().proxy_gradient().unwrap().to_vec();
                check_proxy_gradient(config, &proxies, &dp, &z, &labels, d, None);
                check_loss_gradient(&mut loss, &z, &labels, None, &grad_check(d))
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
            }
        }
    }
}

#[test]
fn mined_tuples_weight_the_rows_inside_the_exponentials() {
    let (n, d, classes) = (16, 6, 5);
    for (k, config) in configs().iter().enumerate() {
        let seed = 80 + k as u64;
        let z = random_embeddings(seed, n, d);
        let labels = random_labels(seed, n, classes);
        let mut loss = Instance::<ProxyAnchor>::new(config.clone(), ctx(d, classes, seed)).unwrap();
        let proxies = loss.plugin().proxies().to_vec();
        // A share of the batch's pairs: some rows appear often, some never.
        let every = all_pairs(&labels);
        let keep = |list: &[u32], step: usize| list.iter().copied().step_by(step).collect::<Vec<u32>>();
        let pairs =
            Pairs { a1: keep(&every.a1, 7), p: keep(&every.p, 7), a2: keep(&every.a2, 13), n: keep(&every.n, 13) };
        let lists = [&pairs.a1[..], &pairs.p[..], &pairs.a2[..], &pairs.n[..]];
        let want = reference(config, &proxies, &z, &labels, d, Some(lists));
        let tuples = Tuples::Pairs(pairs.clone());
        let out = loss.forward_backward(&z, &labels, Some(&tuples)).unwrap();
        let what = format!("config {k}, mined pairs");
        assert_close(out.loss, want, 1e-5, &what);
        let dp = loss.plugin().proxy_gradient().unwrap().to_vec();
        check_proxy_gradient(config, &proxies, &dp, &z, &labels, d, Some(lists));
        check_loss_gradient(&mut loss, &z, &labels, Some(&tuples), &grad_check(d))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
    }
    // Triplets reach the loss as (a, p, a, n): the anchor counts twice.
    let (n, d) = (10, 4);
    let z = random_embeddings(12, n, d);
    let labels = [0, 1, 2, 0, 1, 2, 0, 1, 2, 3];
    let triplets = Triplets { a: vec![4, 4, 0, 3], p: vec![7, 1, 3, 6], n: vec![0, 9, 1, 2] };
    let mut loss = Instance::<ProxyAnchor>::new(Config::default(), ctx(d, 4, 1)).unwrap();
    let proxies = loss.plugin().proxies().to_vec();
    let lists = [&triplets.a[..], &triplets.p[..], &triplets.a[..], &triplets.n[..]];
    let out = loss.forward_backward(&z, &labels, Some(&Tuples::Triplets(triplets.clone()))).unwrap();
    assert_close(out.loss, reference(&Config::default(), &proxies, &z, &labels, d, Some(lists)), 1e-5, "triplets");
    // Empty mined lists weigh every row 1, as PML does: the same as no miner.
    let plain = loss.forward_backward(&z, &labels, None).unwrap();
    let empty = loss.forward_backward(&z, &labels, Some(&Tuples::Pairs(Pairs::default()))).unwrap();
    assert_eq!((plain.loss, &plain.grad), (empty.loss, &empty.grad));
}

/// A loss, dL/dZ and dL/dP from PML.
struct Pml {
    loss: f64,
    dz: [f64; 32],
    dp: [f64; 12],
}

/// Agreement to 1e-5 relative: the loss to itself, each gradient element to the largest one.
#[track_caller]
fn assert_parity(got: (f64, &[f32], &[f32]), want: &Pml, what: &str) {
    assert!((got.0 - want.loss).abs() <= 1e-5 * want.loss.abs(), "{what}: loss {} vs PML {}", got.0, want.loss);
    for (name, ours, theirs) in [("dL/dZ", got.1, &want.dz[..]), ("dL/dP", got.2, &want.dp[..])] {
        let largest = theirs.iter().fold(0.0f64, |m, g| m.max(g.abs()));
        for (i, (&g, &w)) in ours.iter().zip(theirs).enumerate() {
            assert!((f64::from(g) - w).abs() <= 1e-5 * largest, "{what}: {name}[{i}] {g} vs PML {w}");
        }
    }
}

#[rustfmt::skip]
const P: [f32; 12] = [0.5, 1.0, -0.25, 0.75,  -1.25, 0.25, 0.5, 1.0,  0.375, -0.75, 1.5, -0.5];
/// No row of class 2: its proxy has no positive term and the divisor of L⁺ is 2.
const LABELS_WITHOUT_2: [i64; 8] = [0, 0, 1, 0, 1, 1, 1, 0];

fn mined_triplets() -> Tuples {
    Tuples::Triplets(Triplets { a: vec![2, 2, 4], p: vec![5, 6, 1], n: vec![0, 7, 3] })
}

// The expected values below come from pytorch-metric-learning 2.9.0 (torch 2.9, CPU, f64);
// each `run` prints the loss, dL/dZ and dL/dP of one constant:
//
// import torch
// from pytorch_metric_learning import losses, distances
// Z = [[0.25, -0.5, 0.75, 1.0], [-0.625, 0.125, 0.5, -0.25], [1.0, 0.375, -0.75, 0.5], [0.125, 1.25, 0.25, -0.375],
//      [-0.875, -0.25, 0.625, 0.75], [0.5, 0.625, 1.125, -0.125], [-0.25, -1.0, -0.5, 0.875], [0.75, -0.125, 0.25, -1.125]]
// P = [[0.5, 1.0, -0.25, 0.75], [-1.25, 0.25, 0.5, 1.0], [0.375, -0.75, 1.5, -0.5]]
// labels = torch.tensor([0, 2, 1, 0, 2, 1, 1, 0])
// pairs = tuple(torch.tensor(x) for x in ([0, 3, 3, 5], [3, 7, 0, 6], [0, 1, 4], [2, 5, 6]))
// a, p, n = (torch.tensor(x) for x in ([2, 2, 4], [5, 6, 1], [0, 7, 3]))
// def run(loss, tuples=None, labels=labels):
//     loss.proxies.data = torch.tensor(P, dtype=torch.float64)
//     z = torch.tensor(Z, dtype=torch.float64, requires_grad=True)
//     value = loss(z, labels, tuples)
//     value.backward()
//     print(repr(value.item()), [float(g) for g in z.grad.flatten()], [float(g) for g in loss.proxies.grad.flatten()])
// run(losses.ProxyAnchorLoss(3, 4))                                                                # PML_DEFAULT
// run(losses.ProxyAnchorLoss(3, 4), pairs)                                                         # PML_MINED_PAIRS
// run(losses.ProxyAnchorLoss(3, 4, margin=0.25, alpha=8))                                          # PML_MARGIN_025_ALPHA_8
// run(losses.ProxyAnchorLoss(3, 4), labels=torch.tensor([0, 0, 1, 0, 1, 1, 1, 0]))                 # PML_CLASS_2_ABSENT
// run(losses.ProxyAnchorLoss(3, 4, alpha=4, distance=distances.LpDistance()))                      # PML_EUCLIDEAN_ALPHA_4
// run(losses.ProxyAnchorLoss(3, 4), (a, p, a, n))                                                  # PML_TRIPLETS_AS_PAIRS
// run(losses.ProxyAnchorLoss(3, 4), (a, p, n))                                                     # PML_TRIPLETS

const PML_DEFAULT: Pml = Pml {
    loss: 37.94871184431331,
    dz: [
        0.008181981356774098,
        -0.016371502907268784,
        0.03794512119272439,
        -0.0386900876873712,
        -0.0013627452101629789,
        0.0013222583557290636,
        -0.0017458690203095558,
        0.0005762541626528675,
        1.9345330934027185,
        2.0189278868460496,
        1.2151907235224795,
        -3.560476016656252,
        1.1096031560993842e-10,
        -1.484426362910048e-10,
        4.396918921712265e-10,
        -1.6469408765255215e-10,
        -1.250158983646073,
        2.808077672636473,
        -1.5847308161810043,
        0.7981160901092421,
        -0.02653284080755114,
        -4.58020309360565,
        2.3886779122599955,
        -1.5090456209184928,
        5.719689943568719e-10,
        -3.087121336252054e-10,
        -2.807514945864375e-10,
        -3.4982357980480715e-10,
        -4.3534544501642545,
        -5.754556265641009,
        1.6355091677915208,
        -1.8994613444179422,
    ],
    dp: [
        -1.7816363974852312,
        -3.4525909188229718,
        -4.0289577401164465,
        4.448226243381971,
        -2.3166031336171597,
        -4.128203756936768,
        3.798340229725292,
        -3.7628730926499028,
        1.8757739601286747,
        3.7568755322130514,
        1.2927654176771162,
        -0.3501865751917218,
    ],
};

const PML_MINED_PAIRS: Pml = Pml {
    loss: 36.924754940530036,
    dz: [
        0.011794060080921763,
        -0.023602806438075514,
        0.054701964211913714,
        -0.055776391398203465,
        -0.0007464728648538795,
        0.0007099238545892194,
        -0.000934673475702997,
        0.0003517971380233144,
        1.9345313059774556,
        2.0189287840442476,
        1.2151908826647713,
        -3.560472875990942,
        1.5902799358904122e-10,
        -2.1457532970700715e-10,
        6.346359106985272e-10,
        -2.3915116069465847e-10,
        -1.1541043807800033,
        2.6941145133184747,
        -1.361688843051923,
        0.6863237627394234,
        -0.02740405752704289,
        -4.73110123572032,
        2.4673731434067947,
        -1.5587641180486302,
        7.949444761496265e-10,
        -4.2016778126840324e-10,
        -4.0638519854744225e-10,
        -4.852848702911061e-10,
        -4.333787349999885,
        -5.6622234202889326,
        1.450854916012542,
        -1.9376434275205887,
    ],
    dp: [
        -1.7816311009069048,
        -3.452587194653116,
        -4.0289585862835775,
        4.448217464714235,
        -2.3166027447775006,
        -4.12820412859421,
        3.7983360472263787,
        -3.762870422436513,
        1.682092151830229,
        3.822006441930517,
        1.4716536803624427,
        -0.056479507935776385,
    ],
};

const PML_MARGIN_025_ALPHA_8: Pml = Pml {
    loss: 12.133270250574762,
    dz: [
        -0.000703863556987528,
        -0.1124602650582571,
        0.20107327168276712,
        -0.20685912040195698,
        -0.24515642384218328,
        0.20189833337462396,
        -0.25954404375338436,
        0.19475213878600162,
        0.45831296447699055,
        0.5031805062816429,
        0.29952246240957214,
        -0.8447276150508535,
        -0.00047078470988847995,
        -0.0011294680864349454,
        0.003345286424507614,
        -0.0016916309084075655,
        -0.6070723771576496,
        1.0306203167660968,
        -1.1032677422522914,
        0.554678784115017,
        0.0525873225586575,
        -0.6691938938655712,
        0.32169042771521367,
        -0.24040632965630393,
        0.00461414380232288,
        -0.002208391317853068,
        -0.0012871576921784926,
        -0.001941067672413252,
        -1.079555927956262,
        -1.5292391268041885,
        0.6787859690532361,
        -0.39894716698076815,
    ],
    dp: [
        -0.4153166939596463,
        -0.8086945961013111,
        -0.9791716285679987,
        1.0287467145855138,
        -0.59091636436657,
        -1.0004492936671254,
        0.9079111247229705,
        -0.942488694402916,
        1.1425158162337858,
        0.5968906257074666,
        -0.16222498142619785,
        -0.5251240206644538,
    ],
};

const PML_CLASS_2_ABSENT: Pml = Pml {
    loss: 40.69286586842953,
    dz: [
        -0.027676760305415646,
        -0.003321067098425178,
        0.0411837462813953,
        -0.025629153183905143,
        -4.847640906537412,
        -13.216237512986726,
        -1.7384098558460837,
        2.0341637981580005,
        3.5595256297860356,
        1.0106222687023831,
        0.9811197764534141,
        -6.405338296418739,
        -2.1499215831261785e-08,
        5.34137876931909e-09,
        9.357216615604885e-09,
        1.6876335031046295e-08,
        3.8096350252601766e-06,
        -4.519903819597169e-06,
        8.846100140279039e-06,
        -4.433810527294715e-06,
        -0.026515002540435928,
        -4.577791695850278,
        2.3874182796148444,
        -1.508253972879532,
        8.532249319827089e-10,
        -4.4864762499417496e-10,
        -4.411048511577396e-10,
        -5.210215058027059e-10,
        -0.4893676972161249,
        -0.8773153535064862,
        0.7996653325626752,
        -0.05106224051832364,
    ],
    dp: [
        9.2719949256288,
        -7.356015745509525,
        -8.7881462429996,
        0.6973089625936337,
        -5.71242807601204,
        -2.7516826719947933,
        6.514883671752992,
        -9.710056262892845,
        1.544024908497403,
        3.7027072033663844,
        1.4446369563887527,
        -0.062131254510266465,
    ],
};

const PML_EUCLIDEAN_ALPHA_4: Pml = Pml {
    loss: 6.2238192848580765,
    dz: [
        -0.059461372386667356,
        -0.12266916307161155,
        0.04357152813938933,
        -0.07914788454368092,
        -0.23887748262012207,
        0.23202814657713966,
        -0.30553525926904535,
        0.10213726130078427,
        0.15352738764461932,
        -0.07354642056051883,
        -0.01183270061852304,
        -0.26964401079663397,
        -0.01680342793839563,
        -0.012016430208688837,
        0.01565943806063301,
        -0.03521628463467266,
        -0.2040308148494716,
        0.2952942868621964,
        -0.42248335509627255,
        0.2124649408765755,
        0.11437046535266139,
        -0.03396178184921999,
        -0.0422986752705138,
        -0.09301512527007866,
        0.049960044733551416,
        -0.024571458111574615,
        -0.027860467925302314,
        -0.029727635303814753,
        -0.2386001620425729,
        -0.3047005522989251,
        0.06127536618384115,
        -0.11159440973209239,
    ],
    dp: [
        -0.2847782934339821,
        -0.04200972201320141,
        -0.17258362548944015,
        0.1883372831437769,
        -0.164992690701374,
        -0.19758437374356252,
        0.10716830311963985,
        -0.2104289215006468,
        0.4551216577539897,
        -0.016187495648028044,
        -0.18307519621840349,
        -0.18360310186767625,
    ],
};

const PML_TRIPLETS_AS_PAIRS: Pml = Pml {
    loss: 37.27143892864737,
    dz: [
        0.008182060560599766,
        -0.016371531702618507,
        0.03794511398264005,
        -0.03869011647843923,
        -0.0006761846431037904,
        0.0006471142404612892,
        -0.0008527498087243777,
        0.0003085191105413654,
        1.9345353274030863,
        2.0189267832556648,
        1.2151905328636863,
        -3.5604799429523886,
        1.1100805600785693e-10,
        -1.4845475970502724e-10,
        4.396721891380219e-10,
        -1.647317209221238e-10,
        -1.1730855468768278,
        2.716637538588205,
        -1.4057607715232496,
        0.7084133511091428,
        -0.026537096860401066,
        -4.580202652204478,
        2.3886798794943758,
        -1.5090427330146148,
        2.7498335399409e-10,
        -1.613553804913732e-10,
        -1.1142725982651517e-10,
        -1.6951219646412377e-10,
        -4.353451529589073,
        -5.754552579340634,
        1.6355085361530972,
        -1.899459947320846,
    ],
    dp: [
        -1.781632713530423,
        -3.4525904205264824,
        -4.028957975171074,
        4.448223044665235,
        -2.3165985744075277,
        -4.128208561178204,
        3.7983426309366113,
        -3.762867393183164,
        1.7528553956665962,
        3.7370589186358965,
        1.3495435685097994,
        -0.24231612567450023,
    ],
};

const PML_TRIPLETS: Pml = Pml {
    loss: 37.438116517563664,
    dz: [
        0.008181981356314993,
        -0.016371502903593148,
        0.03794512118711143,
        -0.03869008768120889,
        -0.0008682128058699271,
        0.000830885902900987,
        -0.0010949190184925052,
        0.00039613692914030056,
        1.9345347593518172,
        2.0189270638716392,
        1.2151905813435766,
        -3.5604789445919933,
        1.1096031623873159e-10,
        -1.484426357935669e-10,
        4.396918915361038e-10,
        -1.646940862082432e-10,
        -1.173079285862615,
        2.7166271837400027,
        -1.4057491450561037,
        0.7084075152870355,
        -0.02653601465212252,
        -4.580202764619042,
        2.3886793793675474,
        -1.5090434673957707,
        3.5049948152285723e-10,
        -1.9882457046143175e-10,
        -1.5448223881033888e-10,
        -2.1536093655529936e-10,
        -4.35345275397826,
        -5.754554124743863,
        1.6355088009541066,
        -1.8994605330241652,
    ],
    dp: [
        -1.7816342380114776,
        -3.452590690195189,
        -4.028958018655079,
        4.448224406049547,
        -2.3166032824076312,
        -4.128203349272864,
        3.798344379589725,
        -3.7628754554861854,
        1.7529975031604197,
        3.737003395991354,
        1.3494939459227537,
        -0.24227512884845592,
    ],
};

#[test]
fn matches_pml_on_a_fixed_batch() {
    let d = 4;
    let euclidean = DistanceConfig { measure: Measure::Euclidean, normalize_embeddings: true };
    let cases = [
        ("default, no miner", Config::default(), &LABELS, None, &PML_DEFAULT),
        ("default, mined pairs", Config::default(), &LABELS, Some(mined()), &PML_MINED_PAIRS),
        (
            "δ 0.25, α 8",
            Config { margin: 0.25, alpha: 8.0, ..Config::default() },
            &LABELS,
            None,
            &PML_MARGIN_025_ALPHA_8,
        ),
        ("class 2 absent", Config::default(), &LABELS_WITHOUT_2, None, &PML_CLASS_2_ABSENT),
        (
            "Euclidean, α 4",
            Config { alpha: 4.0, distance: euclidean, ..Config::default() },
            &LABELS,
            None,
            &PML_EUCLIDEAN_ALPHA_4,
        ),
        ("mined triplets", Config::default(), &LABELS, Some(mined_triplets()), &PML_TRIPLETS_AS_PAIRS),
    ];
    for (what, config, labels, tuples, want) in cases {
        let mut loss = Instance::<ProxyAnchor>::new(config, ctx(d, 3, 0)).unwrap();
        set_proxies(&mut loss, &P);
        let out = loss.forward_backward(&Z, labels, tuples.as_ref()).unwrap();
        assert_parity((out.loss, &out.grad, loss.plugin().proxy_gradient().unwrap()), want, what);
    }

    // One SGD step at the context's rate 0.1: P − 0.1·dL/dP, with PML's dL/dP.
    let mut loss = Instance::<ProxyAnchor>::new(Config::default(), ctx(d, 3, 0)).unwrap();
    set_proxies(&mut loss, &P);
    loss.forward_backward(&Z, &LABELS, None).unwrap();
    loss.step(1.0).unwrap();
    for (k, (&got, (&p, &g))) in loss.plugin().proxies().iter().zip(P.iter().zip(&PML_DEFAULT.dp)).enumerate() {
        assert_close(f64::from(got), f64::from(p) - 0.1 * g, 1e-6, &format!("proxy [{k}] after one step"));
    }
}

#[test]
fn mined_triplets_are_weighted_as_their_pairs_not_as_pml_weights_the_triplet_tuple() {
    // The documented difference: PML given the (a, p, n) tuple counts each anchor once per
    // triplet (PML_TRIPLETS); the loss receives (a, p, a, n) and matches PML given that.
    let mut loss = Instance::<ProxyAnchor>::new(Config::default(), ctx(4, 3, 0)).unwrap();
    set_proxies(&mut loss, &P);
    let out = loss.forward_backward(&Z, &LABELS, Some(&mined_triplets())).unwrap();
    let dp = loss.plugin().proxy_gradient().unwrap();
    assert_parity((out.loss, &out.grad, dp), &PML_TRIPLETS_AS_PAIRS, "triplets as pairs");
    assert!(
        (out.loss - PML_TRIPLETS.loss).abs() > 0.1,
        "{} vs PML's triplet-tuple value {}",
        out.loss,
        PML_TRIPLETS.loss
    );
}

#[test]
fn sgd_steps_are_hand_computed_and_the_rate_defaults_to_the_runs() {
    let (n, d, classes) = (10, 5, 4);
    let optimizer = SgdConfig { lr: Some(0.05), momentum: 0.9, weight_decay: 0.01, nesterov: false };
    let mut loss = Instance::<ProxyAnchor>::new(Config { optimizer, ..Config::default() }, ctx(d, classes, 2)).unwrap();
    assert_eq!(loss.plugin().learning_rate(), 0.05);
    let z = random_embeddings(9, n, d);
    let labels = random_labels(9, n, classes);
    let theta0: Vec<f64> = loss.plugin().proxies().iter().map(|&v| f64::from(v)).collect();
    loss.forward_backward(&z, &labels, None).unwrap();
    let g1: Vec<f64> = loss.plugin().proxy_gradient().unwrap().iter().map(|&v| f64::from(v)).collect();
    loss.step(1.0).unwrap();
    // v₁ = g₁ + wd·θ₀ (PyTorch starts the buffer at the first gradient), θ₁ = θ₀ − lr·v₁.
    let v1: Vec<f64> = g1.iter().zip(&theta0).map(|(g, t)| g + 0.01 * t).collect();
    let theta1: Vec<f64> = theta0.iter().zip(&v1).map(|(t, v)| t - 0.05 * v).collect();
    for (k, (&got, &want)) in loss.plugin().proxies().iter().zip(&theta1).enumerate() {
        assert_close(f64::from(got), want, 1e-6, &format!("θ₁[{k}]"));
    }
    // A step without a new gradient leaves the proxies alone, as PyTorch skips them.
    let before = loss.plugin().proxies().to_vec();
    loss.step(1.0).unwrap();
    assert_eq!(loss.plugin().proxies(), &before[..]);
    // Second step at lr_scale 0.5: v₂ = 0.9·v₁ + g₂ + wd·θ₁, θ₂ = θ₁ − 0.5·lr·v₂.
    loss.forward_backward(&z, &labels, None).unwrap();
    let g2: Vec<f64> = loss.plugin().proxy_gradient().unwrap().iter().map(|&v| f64::from(v)).collect();
    loss.step(0.5).unwrap();
    for k in 0..classes * d {
        let v2 = 0.9 * v1[k] + g2[k] + 0.01 * theta1[k];
        assert_close(f64::from(loss.plugin().proxies()[k]), theta1[k] - 0.025 * v2, 1e-6, &format!("θ₂[{k}]"));
        assert_close(f64::from(loss.plugin().momentum()[k]), v2, 1e-6, &format!("v₂[{k}]"));
    }
    // Without `lr` the experiment's base rate applies; omitted optimizer fields are plain SGD
    // (SgdConfig's own default weight decay does not creep in).
    let loss = Instance::<ProxyAnchor>::from_config_text("", ctx(d, classes, 0)).unwrap();
    assert_eq!(loss.plugin().learning_rate(), 0.1);
    let config = parse_config::<ProxyAnchor>("(optimizer: (lr: Some(0.01)))").unwrap();
    assert_eq!(config.optimizer, SgdConfig { lr: Some(0.01), ..SgdConfig::plain() });
    assert_eq!(parse_config::<ProxyAnchor>("(optimizer: (momentum: 0.5))").unwrap().optimizer.weight_decay, 0.0);
    assert_eq!(Config::default().optimizer, SgdConfig::plain());
}

#[test]
fn initial_proxies_are_seeded_kaiming_normal_fan_out_draws() {
    let (d, classes) = (500, 200);
    let loss = Instance::<ProxyAnchor>::new(Config::default(), ctx(d, classes, 3)).unwrap();
    let values: Vec<f64> = loss.plugin().proxies().iter().map(|&v| f64::from(v)).collect();
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64;
    // N(0, 2/C) = N(0, 0.01), 100,000 draws: standard errors 3e-4 for the mean and 4.5e-5 for
    // the variance.
    assert!(mean.abs() < 2e-3 && (var - 0.01).abs() < 3e-4, "mean {mean}, variance {var}");
    assert!(loss.plugin().momentum().iter().all(|&v| v == 0.0));
    let same = Instance::<ProxyAnchor>::new(Config::default(), ctx(d, classes, 3)).unwrap();
    assert_eq!(same.plugin().proxies(), loss.plugin().proxies());
    let other = Instance::<ProxyAnchor>::new(Config::default(), ctx(d, classes, 4)).unwrap();
    assert_ne!(other.plugin().proxies(), loss.plugin().proxies());
}

#[test]
fn state_round_trip_continues_the_run_exactly() {
    let (n, d, classes) = (8, 4, 3);
    let optimizer = SgdConfig { lr: Some(0.2), momentum: 0.9, weight_decay: 1e-3, nesterov: true };
    let config = Config { optimizer, ..Config::default() };
    let mut original = Instance::<ProxyAnchor>::new(config.clone(), ctx(d, classes, 9)).unwrap();
    for s in 0..3 {
        original.forward_backward(&random_embeddings(s, n, d), &random_labels(s, n, classes), None).unwrap();
        original.step(1.0).unwrap();
    }
    assert!(original.plugin().momentum().iter().any(|&v| v != 0.0));
    let bytes = original.save().unwrap();
    let mut restored = Instance::<ProxyAnchor>::new(config.clone(), ctx(d, classes, 1)).unwrap();
    restored.load(&bytes).unwrap();
    assert_eq!(restored.save().unwrap(), bytes);
    // A forward pass alone leaves the state as it was: it changes in `step` only.
    restored.forward_backward(&random_embeddings(49, n, d), &random_labels(49, n, classes), None).unwrap();
    assert_eq!(restored.save().unwrap(), bytes);
    for s in 0..2 {
        let z = random_embeddings(50 + s, n, d);
        let labels = random_labels(50 + s, n, classes);
        let a = original.forward_backward(&z, &labels, None).unwrap();
        let b = restored.forward_backward(&z, &labels, None).unwrap();
        assert_eq!((a.loss, &a.grad), (b.loss, &b.grad), "step {s}");
        assert_eq!(original.plugin().proxy_gradient(), restored.plugin().proxy_gradient());
        original.step(1.0).unwrap();
        restored.step(1.0).unwrap();
    }
    assert_eq!(original.save().unwrap(), restored.save().unwrap());

    // Wrong shape, missing or extra tensors, non-finite values and garbage are refused.
    let mut other = Instance::<ProxyAnchor>::new(config.clone(), ctx(d, classes + 1, 9)).unwrap();
    let e = other.load(&bytes).unwrap_err();
    assert!(e.message().contains("'proxies'"), "{e}");
    let shape = [classes, d];
    let zeros = vec![0.0f32; classes * d];
    let mut bad = zeros.clone();
    bad[5] = f32::INFINITY;
    for (tensors, needle) in [
        (vec![("proxies", &shape, &zeros[..])], "proxies.momentum"),
        (vec![("proxies", &shape, &bad[..]), ("proxies.momentum", &shape, &zeros[..])], "'proxies' holds inf"),
        (vec![("proxies", &shape, &zeros[..]), ("proxies.momentum", &shape, &bad[..])], "'proxies.momentum' holds inf"),
        (
            vec![("proxies", &shape, &zeros[..]), ("proxies.momentum", &shape, &zeros[..]), ("W", &shape, &zeros[..])],
            "unexpected tensors: W",
        ),
    ] {
        let state = save_tensors(&tensors.iter().map(|&(n, s, v)| (n, &s[..], v)).collect::<Vec<_>>()).unwrap();
        let e = restored.load(&state).unwrap_err();
        assert!(e.message().contains(needle), "{needle}: {e}");
    }
    assert!(restored.load(b"not a state").is_err());
    // A refused state leaves the instance as it was.
    assert_eq!(restored.save().unwrap(), original.save().unwrap());
}

#[test]
fn edge_batches_stay_finite_and_count_their_proxies() {
    let d = 3;
    let z = random_embeddings(6, 4, d);
    // One proxy and one class: no negative anywhere, L⁻ = 0, and L = L⁺ alone.
    let mut loss = Instance::<ProxyAnchor>::new(Config::default(), ctx(d, 1, 0)).unwrap();
    let proxies = loss.plugin().proxies().to_vec();
    let out = loss.forward_backward(&z, &[0, 0, 0, 0], None).unwrap();
    assert_eq!(out.stats.get("neg_loss"), Some(0.0));
    assert_eq!(out.stats.get("proxies_with_negatives"), Some(0.0));
    assert_eq!(out.stats.get("proxies_with_positives"), Some(1.0));
    assert_close(out.loss, reference(&Config::default(), &proxies, &z, &[0, 0, 0, 0], d, None), 1e-5, "one proxy");
    assert!(out.loss > 0.0);
    // A batch of one class among three: the other two proxies have negatives only, and the
    // class's own proxy has no negative.
    let mut loss = Instance::<ProxyAnchor>::new(Config::default(), ctx(d, 3, 0)).unwrap();
    let out = loss.forward_backward(&z, &[2, 2, 2, 2], None).unwrap();
    assert_eq!(out.stats.get("proxies_with_positives"), Some(1.0));
    assert_eq!(out.stats.get("proxies_with_negatives"), Some(2.0));
    // Huge α: the shifted sums neither overflow nor lose the gradient.
    let mut loss = Instance::<ProxyAnchor>::new(Config { alpha: 5000.0, ..Config::default() }, ctx(d, 3, 0)).unwrap();
    let out = loss.forward_backward(&z, &[0, 1, 2, 0], None).unwrap();
    assert!(out.loss.is_finite() && out.loss > 100.0, "{}", out.loss);
    assert!(out.grad.iter().all(|g| g.is_finite()) && out.grad.iter().any(|&g| g != 0.0));
    // A zero embedding (no direction) and a single row stay finite.
    let out = loss.forward_backward(&[0.0, 0.0, 0.0, 1.0, 2.0, 3.0], &[0, 2], None).unwrap();
    assert!(out.loss.is_finite() && out.grad.iter().all(|g| g.is_finite()));
    let out = loss.forward_backward(&z[..d], &[1], None).unwrap();
    assert!(out.loss.is_finite() && out.grad.iter().all(|g| g.is_finite()));
}

#[test]
fn bad_configurations_and_contexts_are_refused_naming_the_field() {
    for (text, field) in [
        ("(margin: inf)", "margin"),
        ("(margin: NaN)", "margin"),
        ("(alpha: 0.0)", "alpha"),
        ("(alpha: -32.0)", "alpha"),
        ("(optimizer: (lr: Some(-1.0)))", "optimizer.lr"),
        ("(optimizer: (momentum: -0.5))", "optimizer.momentum"),
        ("(optimizer: (weight_decay: -0.1))", "optimizer.weight_decay"),
        ("(optimizer: (nesterov: true))", "optimizer.nesterov"),
        ("(optimizer: (rate: 0.1))", "rate"),
        ("(mrg: 0.1)", "mrg"),
    ] {
        let e = Instance::<ProxyAnchor>::from_config_text(text, ctx(4, 3, 0)).err().unwrap();
        assert!(e.message().contains(field), "{text}: {e}");
    }
    for context in [ctx(4, 0, 0), ctx(0, 3, 0)] {
        let e = Instance::<ProxyAnchor>::from_config_text("", context).err().unwrap();
        assert!(e.message().contains("num_classes") && e.message().contains("embedding_dim"), "{e}");
    }
    // Labels beyond the proxies are refused.
    let mut loss = Instance::<ProxyAnchor>::from_config_text("", ctx(2, 3, 0)).unwrap();
    assert!(loss.forward_backward(&[1.0, 0.0], &[3], None).is_err());
}
