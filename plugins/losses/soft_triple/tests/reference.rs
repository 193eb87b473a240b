//! SoftTriple against a plain loop written from its definition, finite differences for the
//! embeddings and the centres, pytorch-metric-learning's `SoftTripleLoss` on a fixed batch
//! (loss, dL/dZ and dL/dfc), SGD steps by hand, the distribution of the initial centres, the
//! state round trip, edge batches and configuration checks.

use dmlbench_loss_soft_triple::{Config, SoftTriple};
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

/// Puts known centres and momentum buffer into an instance through its state.
fn set_state(loss: &mut Instance<SoftTriple>, fc: &[f32], momentum: &[f32]) {
    let d = loss.context().embedding_dim;
    let shape = [d, fc.len() / d];
    loss.load(&save_tensors(&[("fc", &shape, fc), ("fc.momentum", &shape, momentum)]).unwrap()).unwrap();
}

fn set_fc(loss: &mut Instance<SoftTriple>, fc: &[f32]) {
    set_state(loss, fc, &vec![0.0; fc.len()]);
}

/// The definition: unit embeddings and unit columns of fc (d×C·K) when the similarity
/// normalises; for each row and class, the softmax over the class's K centres of s/γ weighting
/// the similarities s into S; cross-entropy of λ(S − δ on the own class); each row's term
/// times its weight (w = the row's count in the four mined lists over the largest count, 1
/// without a miner); the mean over all n rows.
fn reference(config: &Config, fc: &[f32], z: &[f32], labels: &[i64], d: usize, mined: Option<[&[u32]; 4]>) -> f64 {
    let n = labels.len();
    let k = config.centers_per_class;
    let columns = fc.len() / d;
    let classes = columns / k;
    let normalize = config.distance.normalize_embeddings || config.distance.measure == Measure::Cosine;
    let prepare = |x: Vec<f64>| if normalize { naive::normalized(&x) } else { x };
    let x: Vec<Vec<f64>> = (0..n).map(|i| prepare(naive::row(z, d, i))).collect();
    let w: Vec<Vec<f64>> =
        (0..columns).map(|j| prepare((0..d).map(|l| f64::from(fc[l * columns + j])).collect())).collect();
    let mut weights = vec![1.0; n];
    if let Some(lists) = mined.filter(|lists| lists.iter().any(|l| !l.is_empty())) {
        let mut counts = vec![0.0; n];
        for &i in lists.iter().flat_map(|l| l.iter()) {
            counts[i as usize] += 1.0;
        }
        let most = counts.iter().copied().fold(0.0, f64::max);
        weights = counts.iter().map(|c| c / most).collect();
    }
    let mut total = 0.0;
    for i in 0..n {
        let y = labels[i] as usize;
        let logits: Vec<f64> = (0..classes)
            .map(|c| {
                let s: Vec<f64> = (0..k).map(|kk| naive::dot(&x[i], &w[c * k + kk])).collect();
                let e: Vec<f64> = s.iter().map(|v| (v / config.gamma).exp()).collect();
                let sum: f64 = e.iter().sum();
                let relaxed: f64 = s.iter().zip(&e).map(|(v, ev)| v * ev / sum).sum();
                config.la * (relaxed - if c == y { config.margin } else { 0.0 })
            })
            .collect();
        let denominator: f64 = logits.iter().map(|l| l.exp()).sum();
        total += weights[i] * (denominator.ln() - logits[y]);
    }
    total / n as f64
}

fn configs() -> Vec<Config> {
    let distance = |measure, normalize_embeddings| DistanceConfig { measure, normalize_embeddings };
    vec![
        Config::default(),
        Config { centers_per_class: 3, la: 8.0, gamma: 0.5, margin: 0.2, ..Config::default() },
        Config { centers_per_class: 1, la: 5.0, margin: -0.1, ..Config::default() },
        Config {
            centers_per_class: 2,
            la: 1.0,
            gamma: 1.0,
            distance: distance(Measure::Dot, false),
            ..Config::default()
        },
        Config {
            centers_per_class: 4,
            la: 30.0,
            gamma: 0.05,
            distance: distance(Measure::Dot, true),
            ..Config::default()
        },
    ]
}

/// A finite-difference step small enough for λ/γ up to 600 (the softmaxes are stiff).
fn grad_check(d: usize) -> GradCheck {
    GradCheck { step: 2e-4, columns: d, ..GradCheck::default() }
}

/// Checks dL/dfc against finite differences of the reference as a function of fc, on the
/// batch (z, labels, d).
fn check_fc_gradient(
    config: &Config,
    fc: &[f32],
    dfc: &[f32],
    (z, labels, d): (&[f32], &[i64], usize),
    mined: Option<[&[u32]; 4]>,
    what: &str,
) {
    let f = |p: &[f32]| Ok(reference(config, p, z, labels, d, mined));
    let options = GradCheck { columns: fc.len() / d, ..grad_check(d) };
    check_gradient(f, fc, dfc, &options).unwrap_or_else(|e| panic!("{what}: dL/dfc: {e}"));
}

#[test]
fn matches_the_definition_and_finite_differences_on_random_batches() {
    for (k, config) in configs().iter().enumerate() {
        for (n, d, classes) in [(12, 5, 4), (16, 8, 6), (5, 3, 3), (2, 4, 2), (9, 6, 12), (6, 4, 1)] {
            let seed = 500 + k as u64 * 10 + n as u64;
            let z = random_embeddings(seed, n, d);
            // The (5, 3, 3) batch holds one class only.
            let labels = if n == 5 { vec![2; 5] } else { random_labels(seed, n, classes.min(n)) };
            let mut loss = Instance::<SoftTriple>::new(config.clone(), ctx(d, classes, seed)).unwrap();
            let what = format!("config {k}, n {n}, C {classes}");
            // The seeded initial centres first, then known ones loaded through the state.
            for round in 0..2 {
                if round == 1 {
                    set_fc(&mut loss, &random_embeddings(seed + 1, d, classes * config.centers_per_class));
                }
                let fc = loss.plugin().fc().to_vec();
                let out = loss.forward_backward(&z, &labels, None).unwrap();
                assert_close(out.loss, reference(config, &fc, &z, &labels, d, None), 1e-6, &what);
                let dfc = loss.plugin().fc_gradient().unwrap().to_vec();
                check_fc_gradient(config, &fc, &dfc, (&z, &labels, d), None, &what);
                check_loss_gradient(&mut loss, &z, &labels, None, &grad_check(d))
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
            }
        }
    }
}

#[test]
fn mined_tuples_weight_the_rows() {
    let (n, d, classes) = (16, 6, 5);
    for (k, config) in configs().iter().enumerate() {
        let seed = 90 + k as u64;
        let z = random_embeddings(seed, n, d);
        let labels = random_labels(seed, n, classes);
        let mut loss = Instance::<SoftTriple>::new(config.clone(), ctx(d, classes, seed)).unwrap();
        set_fc(&mut loss, &random_embeddings(seed + 1, d, classes * config.centers_per_class));
        let fc = loss.plugin().fc().to_vec();
        // A share of the batch's pairs: some rows appear often, some never.
        let every = all_pairs(&labels);
        let keep = |list: &[u32], step: usize| list.iter().copied().step_by(step).collect::<Vec<u32>>();
        let pairs =
            Pairs { a1: keep(&every.a1, 11), p: keep(&every.p, 11), a2: keep(&every.a2, 29), n: keep(&every.n, 29) };
        let lists = [&pairs.a1[..], &pairs.p[..], &pairs.a2[..], &pairs.n[..]];
        let tuples = Tuples::Pairs(pairs.clone());
        let out = loss.forward_backward(&z, &labels, Some(&tuples)).unwrap();
        let what = format!("config {k}, mined pairs");
        assert_close(out.loss, reference(config, &fc, &z, &labels, d, Some(lists)), 1e-6, &what);
        let absent: Vec<usize> =
            (0..n as u32).filter(|i| !lists.iter().any(|l| l.contains(i))).map(|i| i as usize).collect();
        assert!(!absent.is_empty(), "the sample should leave some rows out");
        assert_eq!(out.stats.get("zero_weight_rows"), Some(absent.len() as f64));
        for &i in &absent {
            assert!(out.grad[i * d..(i + 1) * d].iter().all(|&g| g == 0.0), "{what}: row {i} has no weight");
        }
        let dfc = loss.plugin().fc_gradient().unwrap().to_vec();
        check_fc_gradient(config, &fc, &dfc, (&z, &labels, d), Some(lists), &what);
        check_loss_gradient(&mut loss, &z, &labels, Some(&tuples), &grad_check(d))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        // Empty mined lists weigh every row 1, as PML does: the same as no miner.
        let plain = loss.forward_backward(&z, &labels, None).unwrap();
        let empty = loss.forward_backward(&z, &labels, Some(&Tuples::Pairs(Pairs::default()))).unwrap();
        assert_eq!((plain.loss, &plain.grad), (empty.loss, &empty.grad));
    }
}

/// A loss, dL/dZ and dL/dfc from PML.
struct Pml {
    loss: f64,
    dz: [f64; 32],
    dfc: [f64; 36],
}

/// Agreement to 1e-5 relative: the loss to itself, each gradient element to the largest one.
#[track_caller]
fn assert_parity(got: (f64, &[f32], &[f32]), want: &Pml, what: &str) {
    assert!((got.0 - want.loss).abs() <= 1e-5 * want.loss.abs(), "{what}: loss {} vs PML {}", got.0, want.loss);
    for (name, ours, theirs) in [("dL/dZ", got.1, &want.dz[..]), ("dL/dfc", got.2, &want.dfc[..])] {
        assert_eq!(ours.len(), theirs.len(), "{what}: {name} length");
        let largest = theirs.iter().fold(0.0f64, |m, g| m.max(g.abs()));
        for (i, (&g, &w)) in ours.iter().zip(theirs).enumerate() {
            assert!((f64::from(g) - w).abs() <= 1e-5 * largest, "{what}: {name}[{i}] {g} vs PML {w}");
        }
    }
}

#[rustfmt::skip]
const FC: [f32; 36] = [
    0.5, -0.25, 0.75, 1.0, -0.5, 0.125, -0.75, 0.375, 0.25,
    -0.375, 1.0, 0.25, -0.625, 0.5, 0.875, 0.125, -1.0, 0.5,
    0.25, 0.625, -0.5, 0.375, 1.125, -0.25, 0.875, 0.5, -0.75,
    1.0, -0.125, 0.375, -0.25, 0.75, 0.5, -0.375, 0.625, 1.25,
];

fn mined_triplets() -> Tuples {
    Tuples::Triplets(Triplets { a: vec![2, 2, 4], p: vec![5, 6, 1], n: vec![0, 7, 3] })
}

// The expected values below come from pytorch-metric-learning 2.9.0 (torch 2.9, CPU, f64);
// each `run` prints the loss, dL/dZ and dL/dfc of one constant:
//
// import torch
// from pytorch_metric_learning import losses, distances
// Z = [[0.25, -0.5, 0.75, 1.0], [-0.625, 0.125, 0.5, -0.25], [1.0, 0.375, -0.75, 0.5], [0.125, 1.25, 0.25, -0.375],
//      [-0.875, -0.25, 0.625, 0.75], [0.5, 0.625, 1.125, -0.125], [-0.25, -1.0, -0.5, 0.875], [0.75, -0.125, 0.25, -1.125]]
// FC = [[0.5, -0.25, 0.75, 1.0, -0.5, 0.125, -0.75, 0.375, 0.25],
//       [-0.375, 1.0, 0.25, -0.625, 0.5, 0.875, 0.125, -1.0, 0.5],
//       [0.25, 0.625, -0.5, 0.375, 1.125, -0.25, 0.875, 0.5, -0.75],
//       [1.0, -0.125, 0.375, -0.25, 0.75, 0.5, -0.375, 0.625, 1.25]]
// labels = torch.tensor([0, 2, 1, 0, 2, 1, 1, 0])
// pairs = tuple(torch.tensor(x) for x in ([0, 3, 3, 5], [3, 7, 0, 6], [0, 1, 4], [2, 5, 6]))
// a, p, n = (torch.tensor(x) for x in ([2, 2, 4], [5, 6, 1], [0, 7, 3]))
// def run(loss, tuples=None):
//     loss.fc.data = torch.tensor(FC, dtype=torch.float64)
//     z = torch.tensor(Z, dtype=torch.float64, requires_grad=True)
//     value = loss(z, labels, tuples)
//     value.backward()
//     print(repr(value.item()), [float(g) for g in z.grad.flatten()], [float(g) for g in loss.fc.grad.flatten()])
// run(losses.SoftTripleLoss(3, 4, centers_per_class=3))                                            # PML_DEFAULT
// run(losses.SoftTripleLoss(3, 4, centers_per_class=3), pairs)                                     # PML_MINED_PAIRS
// run(losses.SoftTripleLoss(3, 4, centers_per_class=3, la=8, gamma=0.5, margin=0.2))                # PML_LA_8_GAMMA_05_MARGIN_02
// run(losses.SoftTripleLoss(3, 4, centers_per_class=3, la=2, gamma=1.0,
//                           distance=distances.DotProductSimilarity(normalize_embeddings=False)))  # PML_DOT
// run(losses.SoftTripleLoss(3, 4, centers_per_class=3), (a, p, a, n))                              # PML_TRIPLETS_AS_PAIRS
// run(losses.SoftTripleLoss(3, 4, centers_per_class=3), (a, p, n))                                 # PML_TRIPLETS

const PML_DEFAULT: Pml = Pml {
    loss: 5.702689523101483,
    dz: [
        -0.08461519791375122,
        -0.3049407407369475,
        0.12793440433248265,
        -0.2272673741393979,
        0.0002540130724945851,
        0.001866295280693894,
        0.00032603440239080953,
        0.0009501837638921039,
        0.7001627165793711,
        -1.340346724248543,
        -0.06680073668253556,
        -0.4952664949961383,
        0.0036240049935670053,
        0.0025832262937843745,
        -0.007427649675220802,
        0.0048669895269897135,
        0.8938293235817416,
        0.4367811373122854,
        -0.2220043341642272,
        1.3733982017529829,
        0.34342524073961267,
        0.7148492976121379,
        -0.6782226274419264,
        -1.156056195958199,
        -0.5301876233903564,
        0.4891315862958363,
        0.4199004955766314,
        0.647468489413215,
        0.2947180123751788,
        -1.813929833159768,
        0.2880817023644646,
        0.46204459023775224,
    ],
    dfc: [
        -0.13106758447351413,
        0.44184214922691056,
        -0.7572560976219285,
        0.3788629463419402,
        -1.628406351317694,
        -1.595904861960548,
        0.6948576809848483,
        -0.5718807291471901,
        0.006264257807599855,
        -0.35046963786300633,
        -0.21181483192334793,
        0.17721639411315304,
        2.010419408314702,
        -1.1132869964774024,
        0.5760609917342833,
        0.5313301078647087,
        -0.0966080321883227,
        0.08015757637086465,
        -0.5996077921378268,
        0.6865891900520792,
        -0.3199019204708444,
        0.6845319009425331,
        -0.8280343944241164,
        1.0221518896777964,
        -0.16014551799648757,
        -0.6071242624300242,
        0.028117740181052692,
        0.08400962607258636,
        0.8547429964197877,
        0.9698320385406275,
        -2.4837988840051937,
        0.8986386884093133,
        -0.09805457520596061,
        -1.5862782013399324,
        0.6742549959310168,
        -0.01644523800123422,
    ],
};

const PML_MINED_PAIRS: Pml = Pml {
    loss: 2.664922692356766,
    dz: [
        -0.08461519791375122,
        -0.3049407407369475,
        0.12793440433248265,
        -0.2272673741393979,
        8.467102416486144e-05,
        0.0006220984268979646,
        0.00010867813413026949,
        0.00031672792129736776,
        0.2333875721931239,
        -0.44678224141618134,
        -0.022266912227511856,
        -0.1650888316653796,
        0.0036240049935670053,
        0.0025832262937843745,
        -0.007427649675220802,
        0.0048669895269897135,
        0.29794310786058065,
        0.14559371243742847,
        -0.07400144472140911,
        0.4577994005843277,
        0.22895016049307504,
        0.4765661984080916,
        -0.4521484182946174,
        -0.7707041306387991,
        -0.35345841559357094,
        0.3260877241972243,
        0.27993366371775424,
        0.4316456596088101,
        0.09823933745839328,
        -0.6046432777199229,
        0.09602723412148838,
        0.1540148634125843,
    ],
    dfc: [
        -0.048787052237903,
        0.489435983868912,
        -0.2510107589177587,
        0.2363200334769176,
        -0.8668544092663645,
        -0.5263157054501069,
        0.23269994252926302,
        -0.37632803023578226,
        0.009753164408312046,
        -0.2048672851332738,
        -0.1717061444957928,
        0.0641058723329864,
        1.1620385977346004,
        -0.5025155467526888,
        0.18350957347593227,
        0.17822452689834345,
        -0.0008168216425341601,
        0.05655455039574732,
        -0.5016014296903439,
        0.5257029320044714,
        -0.10524091369857308,
        0.4922119089887762,
        -0.49578543180232465,
        0.35597883613431747,
        -0.05283940267535309,
        -0.3619759880675589,
        0.012313176727091691,
        0.0729686516165598,
        0.27599353631818757,
        0.3189630513487621,
        -1.2214984969456664,
        0.50078557269437,
        -0.011573409153195935,
        -0.5292836490015691,
        0.5140706939674619,
        -0.01718454700370633,
    ],
};

const PML_LA_8_GAMMA_05_MARGIN_02: Pml = Pml {
    loss: 3.1918640021623053,
    dz: [
        -0.08410342006618886,
        -0.16800880872132376,
        0.14741271919505256,
        -0.1735380887404041,
        0.020160770809197662,
        0.19340663043226847,
        0.030774378362647653,
        0.10785014491843542,
        0.10270936976544304,
        -0.3887602432287272,
        -0.07384420651413001,
        -0.024614866880535963,
        0.08597402510154195,
        0.07097434198499766,
        -0.15421224994739807,
        0.16243098168557402,
        0.09532841616234704,
        0.42431503125499453,
        0.04534162408927481,
        0.21487014253334066,
        -0.1844432784568535,
        0.27462099952948776,
        -0.09937964919093442,
        -0.2590849588983853,
        0.1227720232096634,
        0.02864834616417239,
        0.009470231281516445,
        0.07323024869411032,
        0.11076831112246432,
        -0.7579037197849718,
        0.0852629065979057,
        0.17700437774617428,
    ],
    dfc: [
        0.0046332459215708,
        -0.09547276528095658,
        -0.28335206756995684,
        -0.019693803630291218,
        -0.43864277987772604,
        -0.5568308525437863,
        0.23673914382836153,
        0.016406507127980724,
        0.04328111954390444,
        -0.021382763181915218,
        -0.2337651789674877,
        0.018521565399746864,
        0.3491221617657523,
        -0.23180406519956703,
        0.3805487414534226,
        0.16833524706103145,
        0.04292449742413934,
        -0.09755090404843234,
        -0.39044562315621567,
        0.405583939400858,
        -0.11782814188676277,
        0.041343969108880885,
        -0.1836764542706292,
        0.3982689509062688,
        0.01673694201877851,
        -0.1547338855437059,
        -0.03943180895113412,
        0.08727624663505029,
        0.348743795826301,
        0.3972522356910653,
        -0.8895646652722239,
        0.13762220495383765,
        -0.3276181089544086,
        -0.37831367392589627,
        0.18262240003679925,
        0.006705052339911602,
    ],
};

const PML_DOT: Pml = Pml {
    loss: 1.4390972526681556,
    dz: [
        -0.054772296345408096,
        -0.012950152893106116,
        0.058347124186228484,
        -0.0666182188195845,
        0.05983083560351059,
        0.07739323433659963,
        -0.017163175575598426,
        0.1015123212319949,
        0.01896877767640011,
        -0.01554565766615612,
        -0.12965071205052664,
        0.1677425830116269,
        0.005048788237113005,
        -0.04221139395042881,
        -0.03162675752980272,
        0.060851204834888234,
        -0.04981014146582286,
        0.14395133756227393,
        0.09856192184293927,
        0.12190820895566654,
        -0.013823997328075873,
        0.03625704268492478,
        -0.03339661179069622,
        -0.08187513857158928,
        0.02295072693130004,
        -0.12057684998048984,
        -0.09126591981235074,
        0.16713237288977473,
        0.1517150907533204,
        -0.2741953792293238,
        0.07184707621142856,
        -0.11777490263167956,
    ],
    dfc: [
        -0.07593038186180782,
        -0.0851521200510834,
        -0.00623269576454856,
        0.12781268449512626,
        -0.21773032335650883,
        -0.15910724586213115,
        0.1950064781500996,
        0.06973392935205494,
        0.15159967489879897,
        0.028420061626060575,
        -0.052328682581861574,
        0.024903687165369538,
        0.039567941159418286,
        -0.01873169168891126,
        0.04763140871870742,
        0.05629689836942141,
        -0.13606717718392516,
        0.010307554415720786,
        -0.1578115269157355,
        0.08899865857398243,
        -0.08138374927294231,
        0.12817614705584585,
        0.09489645288743134,
        0.15057170866913666,
        -0.07492235148873408,
        -0.006197517774990292,
        -0.1423278217339942,
        -0.061377893978736775,
        0.13118195017137702,
        0.15617510534065965,
        -0.3611936395675663,
        0.12550220250924737,
        -0.14409957363186754,
        -0.08626187542483069,
        0.12183476700704286,
        0.1182389575746744,
    ],
};

const PML_TRIPLETS_AS_PAIRS: Pml = Pml {
    loss: 2.3519881881639657,
    dz: [
        -0.021153799478437804,
        -0.07623518518423687,
        0.031983601083120664,
        -0.056816843534849476,
        6.350326812364627e-05,
        0.0004665738201734735,
        8.150860059770238e-05,
        0.00023754594097302598,
        0.7001627165793711,
        -1.340346724248543,
        -0.06680073668253556,
        -0.4952664949961383,
        0.0009060012483917513,
        0.0006458065734460936,
        -0.0018569124188052004,
        0.0012167473817474284,
        0.4469146617908708,
        0.2183905686561427,
        -0.1110021670821136,
        0.6866991008764914,
        0.08585631018490317,
        0.17871232440303447,
        -0.1695556568604816,
        -0.28901404898954974,
        -0.1325469058475891,
        0.12228289657395908,
        0.10497512389415785,
        0.16186712235330375,
        0.0736795030937947,
        -0.453482458289942,
        0.07202042559111616,
        0.11551114755943806,
    ],
    dfc: [
        -0.043328222169425896,
        0.11041510725633996,
        -0.24080687423293212,
        0.13654328773695862,
        -0.5707216008376209,
        -1.6094384357069744,
        0.3464934397633605,
        -0.15745278732567658,
        0.00023737991511493773,
        -0.09511694984359247,
        -0.052986085392564664,
        0.08292374937079794,
        0.5304745193237161,
        -0.45823468679903445,
        0.5991623618372949,
        0.26495765710745034,
        -0.022111754149860552,
        0.018436751580054308,
        -0.13804583409455884,
        0.1716754737505345,
        -0.1572147873014742,
        0.12605314108025317,
        -0.2492564368437057,
        0.9918728150497578,
        -0.08069026797670842,
        -0.14572166107345708,
        0.010066102868023152,
        0.020506713417005468,
        0.21365847109947392,
        0.2167115324833665,
        -0.5909334357410758,
        0.2988933792398341,
        -0.15023811676364351,
        -0.792944952436557,
        0.17567019461439481,
        -0.00138251489423082,
    ],
};

const PML_TRIPLETS: Pml = Pml {
    loss: 3.3574729601169064,
    dz: [
        -0.04230759895687561,
        -0.15247037036847375,
        0.06396720216624133,
        -0.11363368706969895,
        0.00012700653624729254,
        0.000933147640346947,
        0.00016301720119540477,
        0.00047509188194605196,
        0.7001627165793711,
        -1.340346724248543,
        -0.06680073668253556,
        -0.4952664949961383,
        0.0018120024967835026,
        0.0012916131468921873,
        -0.003713824837610401,
        0.0024334947634948568,
        0.4469146617908708,
        0.2183905686561427,
        -0.1110021670821136,
        0.6866991008764914,
        0.17171262036980633,
        0.35742464880606895,
        -0.3391113137209632,
        -0.5780280979790995,
        -0.2650938116951782,
        0.24456579314791815,
        0.2099502477883157,
        0.3237342447066075,
        0.1473590061875894,
        -0.906964916579884,
        0.1440408511822323,
        0.23102229511887612,
    ],
    dfc: [
        -0.07253814113748021,
        0.2208886622695282,
        -0.4129566247809586,
        0.21730693662859724,
        -0.813962160780655,
        -1.6053069880199218,
        0.34742883944599645,
        -0.285952569251341,
        0.006178237527905464,
        -0.18023092793761336,
        -0.10593010460242303,
        0.11435462903407245,
        1.0237786442137766,
        -0.5564863040590738,
        0.5913903592478443,
        0.2656650515117024,
        -0.04830811073712804,
        0.0402310936166376,
        -0.2919178808729943,
        0.34331469067927445,
        -0.21144382419041352,
        0.31222925646075383,
        -0.4141250708067329,
        1.0022300093600356,
        -0.08007275977360895,
        -0.3035533079198451,
        0.013145037503294684,
        0.041661942810383656,
        0.42735529203793027,
        0.4677517312853169,
        -1.2218749793289216,
        0.4495370350623786,
        -0.13249137699872915,
        -0.79313910119318,
        0.33712121070727574,
        -0.009441062450259325,
    ],
};

#[test]
fn matches_pml_on_a_fixed_batch() {
    let k3 = Config { centers_per_class: 3, ..Config::default() };
    let dot = DistanceConfig { measure: Measure::Dot, normalize_embeddings: false };
    let cases = [
        ("K 3, no miner", k3.clone(), None, &PML_DEFAULT),
        ("K 3, mined pairs", k3.clone(), Some(mined()), &PML_MINED_PAIRS),
        (
            "λ 8, γ 0.5, δ 0.2",
            Config { la: 8.0, gamma: 0.5, margin: 0.2, ..k3.clone() },
            None,
            &PML_LA_8_GAMMA_05_MARGIN_02,
        ),
        ("raw dot product, λ 2, γ 1", Config { la: 2.0, gamma: 1.0, distance: dot, ..k3.clone() }, None, &PML_DOT),
        ("mined triplets", k3.clone(), Some(mined_triplets()), &PML_TRIPLETS_AS_PAIRS),
    ];
    for (what, config, tuples, want) in cases {
        let mut loss = Instance::<SoftTriple>::new(config, ctx(4, 3, 0)).unwrap();
        set_fc(&mut loss, &FC);
        let out = loss.forward_backward(&Z, &LABELS, tuples.as_ref()).unwrap();
        assert_parity((out.loss, &out.grad, loss.plugin().fc_gradient().unwrap()), want, what);
    }

    // One SGD step at the context's rate 0.1: fc − 0.1·dL/dfc, with PML's dL/dfc.
    let mut loss = Instance::<SoftTriple>::new(k3, ctx(4, 3, 0)).unwrap();
    set_fc(&mut loss, &FC);
    loss.forward_backward(&Z, &LABELS, None).unwrap();
    loss.step(1.0).unwrap();
    for (j, (&got, (&w, &g))) in loss.plugin().fc().iter().zip(FC.iter().zip(&PML_DEFAULT.dfc)).enumerate() {
        assert_close(f64::from(got), f64::from(w) - 0.1 * g, 1e-6, &format!("fc [{j}] after one step"));
    }
}

#[test]
fn mined_triplets_are_weighted_as_their_pairs_not_as_pml_weights_the_triplet_tuple() {
    // The documented difference: PML given the (a, p, n) tuple counts each anchor once per
    // triplet (PML_TRIPLETS); the loss receives (a, p, a, n) and matches PML given that.
    let config = Config { centers_per_class: 3, ..Config::default() };
    let mut loss = Instance::<SoftTriple>::new(config, ctx(4, 3, 0)).unwrap();
    set_fc(&mut loss, &FC);
    let out = loss.forward_backward(&Z, &LABELS, Some(&mined_triplets())).unwrap();
    let dfc = loss.plugin().fc_gradient().unwrap();
    assert_parity((out.loss, &out.grad, dfc), &PML_TRIPLETS_AS_PAIRS, "triplets as pairs");
    assert!(
        (out.loss - PML_TRIPLETS.loss).abs() > 0.5,
        "{} vs PML's triplet-tuple value {}",
        out.loss,
        PML_TRIPLETS.loss
    );
}

#[test]
fn sgd_steps_are_hand_computed_and_the_rate_defaults_to_the_runs() {
    let (n, d, classes) = (10, 5, 4);
    let optimizer = SgdConfig { lr: Some(0.05), momentum: 0.9, weight_decay: 0.01, nesterov: false };
    let config = Config { centers_per_class: 2, optimizer, ..Config::default() };
    let mut loss = Instance::<SoftTriple>::new(config, ctx(d, classes, 2)).unwrap();
    assert_eq!(loss.plugin().learning_rate(), 0.05);
    let z = random_embeddings(9, n, d);
    let labels = random_labels(9, n, classes);
    let theta0: Vec<f64> = loss.plugin().fc().iter().map(|&v| f64::from(v)).collect();
    loss.forward_backward(&z, &labels, None).unwrap();
    let g1: Vec<f64> = loss.plugin().fc_gradient().unwrap().iter().map(|&v| f64::from(v)).collect();
    loss.step(1.0).unwrap();
    // v₁ = g₁ + wd·θ₀ (PyTorch starts the buffer at the first gradient), θ₁ = θ₀ − lr·v₁.
    let v1: Vec<f64> = g1.iter().zip(&theta0).map(|(g, t)| g + 0.01 * t).collect();
    let theta1: Vec<f64> = theta0.iter().zip(&v1).map(|(t, v)| t - 0.05 * v).collect();
    for (j, (&got, &want)) in loss.plugin().fc().iter().zip(&theta1).enumerate() {
        assert_close(f64::from(got), want, 1e-6, &format!("θ₁[{j}]"));
    }
    // A step without a new gradient leaves fc alone, as PyTorch skips it.
    let before = loss.plugin().fc().to_vec();
    loss.step(1.0).unwrap();
    assert_eq!(loss.plugin().fc(), &before[..]);
    // Second step at lr_scale 0.5: v₂ = 0.9·v₁ + g₂ + wd·θ₁, θ₂ = θ₁ − 0.5·lr·v₂.
    loss.forward_backward(&z, &labels, None).unwrap();
    let g2: Vec<f64> = loss.plugin().fc_gradient().unwrap().iter().map(|&v| f64::from(v)).collect();
    loss.step(0.5).unwrap();
    for j in 0..theta0.len() {
        let v2 = 0.9 * v1[j] + g2[j] + 0.01 * theta1[j];
        assert_close(f64::from(loss.plugin().fc()[j]), theta1[j] - 0.025 * v2, 1e-6, &format!("θ₂[{j}]"));
        assert_close(f64::from(loss.plugin().momentum()[j]), v2, 1e-6, &format!("v₂[{j}]"));
    }
    // Without `lr` the experiment's base rate applies; omitted optimizer fields are plain SGD.
    let loss = Instance::<SoftTriple>::from_config_text("", ctx(d, classes, 0)).unwrap();
    assert_eq!(loss.plugin().learning_rate(), 0.1);
    let config = parse_config::<SoftTriple>("(optimizer: (lr: Some(0.01)))").unwrap();
    assert_eq!(config.optimizer, SgdConfig { lr: Some(0.01), ..SgdConfig::plain() });
    assert_eq!(Config::default().optimizer, SgdConfig::plain());
}

#[test]
fn initial_centres_are_seeded_kaiming_uniform_draws() {
    let (d, classes, k) = (500, 20, 10);
    let config = Config { centers_per_class: k, ..Config::default() };
    let loss = Instance::<SoftTriple>::new(config.clone(), ctx(d, classes, 3)).unwrap();
    let values: Vec<f64> = loss.plugin().fc().iter().map(|&v| f64::from(v)).collect();
    assert_eq!(values.len(), d * classes * k);
    // U(−b, b) with b = 1/√(C·K) = 1/√200: variance b²/3 = 1/600. 100,000 draws: standard
    // errors 1.3e-4 for the mean and 4.7e-6 for the variance.
    let bound = 1.0 / ((classes * k) as f64).sqrt();
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64;
    assert!(mean.abs() < 6e-4 && (var - 1.0 / 600.0).abs() < 2.5e-5, "mean {mean}, variance {var}");
    let largest = values.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(largest <= bound && largest > 0.999 * bound, "largest |value| {largest}, bound {bound}");
    assert!(loss.plugin().momentum().iter().all(|&v| v == 0.0));
    let same = Instance::<SoftTriple>::new(config.clone(), ctx(d, classes, 3)).unwrap();
    assert_eq!(same.plugin().fc(), loss.plugin().fc());
    let other = Instance::<SoftTriple>::new(config, ctx(d, classes, 4)).unwrap();
    assert_ne!(other.plugin().fc(), loss.plugin().fc());
}

#[test]
fn state_round_trip_continues_the_run_exactly() {
    let (n, d, classes) = (8, 4, 3);
    let optimizer = SgdConfig { lr: Some(0.2), momentum: 0.9, weight_decay: 1e-3, nesterov: true };
    let config = Config { centers_per_class: 3, optimizer, ..Config::default() };
    let mut original = Instance::<SoftTriple>::new(config.clone(), ctx(d, classes, 9)).unwrap();
    for s in 0..3 {
        original.forward_backward(&random_embeddings(s, n, d), &random_labels(s, n, classes), None).unwrap();
        original.step(1.0).unwrap();
    }
    assert!(original.plugin().momentum().iter().any(|&v| v != 0.0));
    let bytes = original.save().unwrap();
    let mut restored = Instance::<SoftTriple>::new(config.clone(), ctx(d, classes, 1)).unwrap();
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
        assert_eq!(original.plugin().fc_gradient(), restored.plugin().fc_gradient());
        original.step(1.0).unwrap();
        restored.step(1.0).unwrap();
    }
    assert_eq!(original.save().unwrap(), restored.save().unwrap());

    // Wrong shape, missing or extra tensors, non-finite values and garbage are refused.
    let mut other =
        Instance::<SoftTriple>::new(Config { centers_per_class: 2, ..config.clone() }, ctx(d, classes, 9)).unwrap();
    let e = other.load(&bytes).unwrap_err();
    assert!(e.message().contains("'fc'") && e.message().contains("[4, 6]"), "{e}");
    let shape = [d, classes * 3];
    let zeros = vec![0.0f32; d * classes * 3];
    let mut bad = zeros.clone();
    bad[5] = f32::INFINITY;
    for (tensors, needle) in [
        (vec![("fc", &shape, &zeros[..])], "fc.momentum"),
        (vec![("fc", &shape, &bad[..]), ("fc.momentum", &shape, &zeros[..])], "'fc' holds inf"),
        (vec![("fc", &shape, &zeros[..]), ("fc.momentum", &shape, &bad[..])], "'fc.momentum' holds inf"),
        (
            vec![("fc", &shape, &zeros[..]), ("fc.momentum", &shape, &zeros[..]), ("W", &shape, &zeros[..])],
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
fn edge_batches_are_ordinary_and_stay_finite() {
    let d = 3;
    let z = random_embeddings(6, 4, d);
    // One class in the run: every row's softmax has a single logit, the loss is 0.
    let mut loss = Instance::<SoftTriple>::new(Config::default(), ctx(d, 1, 0)).unwrap();
    let out = loss.forward_backward(&z, &[0, 0, 0, 0], None).unwrap();
    assert_eq!(out.loss, 0.0);
    assert!(out.grad.iter().all(|&g| g == 0.0));
    // One row, and a batch of one class among three: the other classes are its negatives.
    let mut loss = Instance::<SoftTriple>::new(Config::default(), ctx(d, 3, 0)).unwrap();
    let fc = loss.plugin().fc().to_vec();
    for labels in [&[1][..], &[2, 2, 2, 2][..]] {
        let out = loss.forward_backward(&z[..labels.len() * d], labels, None).unwrap();
        let want = reference(&Config::default(), &fc, &z[..labels.len() * d], labels, d, None);
        assert_close(out.loss, want, 1e-6, &format!("{labels:?}"));
        assert!(out.loss > 0.0 && out.grad.iter().any(|&g| g != 0.0));
    }
    // Huge λ and tiny γ: shifted softmaxes neither overflow nor lose the gradient.
    let config = Config { la: 5000.0, gamma: 1e-4, ..Config::default() };
    let mut loss = Instance::<SoftTriple>::new(config, ctx(d, 3, 0)).unwrap();
    let out = loss.forward_backward(&z, &[0, 1, 2, 0], None).unwrap();
    assert!(out.loss.is_finite() && out.loss > 1.0, "{}", out.loss);
    assert!(out.grad.iter().all(|g| g.is_finite()) && out.grad.iter().any(|&g| g != 0.0));
    // A zero embedding (no direction) stays finite.
    let out = loss.forward_backward(&[0.0, 0.0, 0.0, 1.0, 2.0, 3.0], &[0, 2], None).unwrap();
    assert!(out.loss.is_finite() && out.grad.iter().all(|g| g.is_finite()));
}

#[test]
fn bad_configurations_and_contexts_are_refused_naming_the_field() {
    for (text, field) in [
        ("(centers_per_class: 0)", "centers_per_class"),
        ("(la: 0.0)", "la"),
        ("(la: -20.0)", "la"),
        ("(gamma: 0.0)", "gamma"),
        ("(gamma: NaN)", "gamma"),
        ("(margin: inf)", "margin"),
        ("(distance: (measure: euclidean))", "distance"),
        ("(distance: (measure: squared_euclidean, normalize_embeddings: false))", "distance"),
        ("(optimizer: (lr: Some(-1.0)))", "optimizer.lr"),
        ("(optimizer: (momentum: -0.5))", "optimizer.momentum"),
        ("(optimizer: (weight_decay: -0.1))", "optimizer.weight_decay"),
        ("(optimizer: (nesterov: true))", "optimizer.nesterov"),
        ("(optimizer: (rate: 0.1))", "rate"),
        ("(weight_regularizer: 0.2)", "weight_regularizer"),
    ] {
        let e = Instance::<SoftTriple>::from_config_text(text, ctx(4, 3, 0)).err().unwrap();
        assert!(e.message().contains(field), "{text}: {e}");
    }
    for context in [ctx(4, 0, 0), ctx(0, 3, 0)] {
        let e = Instance::<SoftTriple>::from_config_text("", context).err().unwrap();
        assert!(e.message().contains("num_classes") && e.message().contains("embedding_dim"), "{e}");
    }
    let e = Instance::<SoftTriple>::from_config_text("(centers_per_class: 18446744073709551615)", ctx(4, 3, 0))
        .err()
        .unwrap();
    assert!(e.message().contains("centers_per_class"), "{e}");
    // Labels beyond the classes are refused.
    let mut loss = Instance::<SoftTriple>::from_config_text("", ctx(2, 3, 0)).unwrap();
    assert!(loss.forward_backward(&[1.0, 0.0], &[3], None).is_err());
}
