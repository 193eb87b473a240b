//! ProxyNCA against a plain loop written from its definition, finite differences for the
//! embeddings and the proxies, pytorch-metric-learning's `ProxyNCALoss` on a fixed batch, SGD
//! steps by hand, the distribution of the initial proxies and the state round trip.

use dmlbench_loss_proxy_nca::{Config, ProxyNca};
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
fn set_state(loss: &mut Instance<ProxyNca>, proxies: &[f32], momentum: &[f32]) {
    let shape = [loss.context().num_classes, loss.context().embedding_dim];
    let bytes = save_tensors(&[("proxies", &shape, proxies), ("proxies.momentum", &shape, momentum)]).unwrap();
    loss.load(&bytes).unwrap();
}

fn set_proxies(loss: &mut Instance<ProxyNca>, proxies: &[f32]) {
    set_state(loss, proxies, &vec![0.0; proxies.len()]);
}

/// The definition: embeddings and proxies normalised when the distance says so, logits
/// −s·D (s·S for a similarity), the softmax over every proxy, −log of the label's
/// probability, weighted by the row's share of the mined anchors (`anchors`: every anchor
/// index of the tuple, as PML's `get_anchors`), averaged over the rows whose probability is
/// not zero.
fn reference(config: &Config, proxies: &[f32], z: &[f32], labels: &[i64], d: usize, anchors: Option<&[u32]>) -> f64 {
    let n = labels.len();
    let classes = proxies.len() / d;
    let prepare = |x: Vec<f64>| if config.distance.normalize_embeddings { naive::normalized(&x) } else { x };
    let u: Vec<Vec<f64>> = (0..n).map(|i| prepare(naive::row(z, d, i))).collect();
    let q: Vec<Vec<f64>> = (0..classes).map(|c| prepare(naive::row(proxies, d, c))).collect();
    let s = config.softmax_scale;
    let logit = |a: &[f64], b: &[f64]| match config.distance.measure {
        Measure::SquaredEuclidean => -s * naive::squared_euclidean(a, b),
        Measure::Euclidean => -s * naive::euclidean(a, b),
        Measure::Cosine => s * naive::cosine(a, b),
        Measure::Dot => s * naive::dot(a, b),
    };
    let mut weights = vec![1.0; n];
    if let Some(list) = anchors.filter(|l| !l.is_empty()) {
        let mut counts = vec![0.0; n];
        for &i in list {
            counts[i as usize] += 1.0;
        }
        let most = counts.iter().copied().fold(0.0, f64::max);
        weights = counts.iter().map(|c| c / most).collect();
    }
    let mut losses = vec![];
    for i in 0..n {
        let logits: Vec<f64> = q.iter().map(|qc| logit(&u[i], qc)).collect();
        let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let denominator: f64 = logits.iter().map(|x| (x - max).exp()).sum();
        let probability = (logits[labels[i] as usize] - max).exp() / denominator;
        if probability != 0.0 {
            losses.push(-weights[i] * probability.ln());
        }
    }
    if losses.is_empty() { 0.0 } else { losses.iter().sum::<f64>() / losses.len() as f64 }
}

fn configs() -> Vec<Config> {
    let distance = |measure, normalize_embeddings| DistanceConfig { measure, normalize_embeddings };
    vec![
        Config::default(),
        Config { softmax_scale: 3.0, distance: distance(Measure::Euclidean, true), ..Config::default() },
        Config { softmax_scale: 8.0, distance: DistanceConfig::cosine(), ..Config::default() },
        Config { softmax_scale: 0.5, distance: distance(Measure::Dot, false), ..Config::default() },
        Config { softmax_scale: 0.2, distance: distance(Measure::SquaredEuclidean, false), ..Config::default() },
    ]
}

/// Checks dL/dP against finite differences of the reference as a function of the proxies.
fn check_proxy_gradient(
    config: &Config,
    proxies: &[f32],
    dp: &[f32],
    z: &[f32],
    labels: &[i64],
    d: usize,
    anchors: Option<&[u32]>,
) {
    let f = |p: &[f32]| Ok(reference(config, p, z, labels, d, anchors));
    check_gradient(f, proxies, dp, &GradCheck { columns: d, ..GradCheck::default() })
        .unwrap_or_else(|e| panic!("{config:?} dL/dP: {e}"));
}

#[test]
fn matches_the_definition_and_finite_differences_on_random_batches() {
    for (k, config) in configs().iter().enumerate() {
        for (n, d, classes) in [(12, 5, 4), (16, 8, 6), (5, 3, 3), (2, 4, 2), (9, 6, 12)] {
            let seed = 300 + k as u64 * 10 + n as u64;
            let z = random_embeddings(seed, n, d);
            // The (5, 3, 3) batch holds one class only.
            let labels = if n == 5 { vec![1; 5] } else { random_labels(seed, n, classes.min(n)) };
            let mut loss = Instance::<ProxyNca>::new(config.clone(), ctx(d, classes, seed)).unwrap();
            let what = format!("config {k}, n {n}");
            // The seeded initial proxies first, then known ones loaded through the state.
            for round in 0..2 {
                if round == 1 {
                    set_proxies(&mut loss, &random_embeddings(seed + 1, classes, d));
                }
                let proxies = loss.plugin().proxies().to_vec();
                let out = loss.forward_backward(&z, &labels, None).unwrap();
                assert_close(out.loss, reference(config, &proxies, &z, &labels, d, None), 1e-5, &what);
                assert_eq!(out.stats.get("skipped_rows"), Some(0.0), "{what}");
                let dp = loss.plugin().proxy_gradient().unwrap().to_vec();
                check_proxy_gradient(config, &proxies, &dp, &z, &labels, d, None);
                check_loss_gradient(&mut loss, &z, &labels, None, &GradCheck::default())
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
            }
        }
    }
}

#[test]
fn mined_tuples_weight_the_anchors() {
    let (n, d, classes) = (16, 6, 5);
    for (k, config) in configs().iter().enumerate() {
        let seed = 70 + k as u64;
        let z = random_embeddings(seed, n, d);
        let labels = random_labels(seed, n, classes);
        let mut loss = Instance::<ProxyNca>::new(config.clone(), ctx(d, classes, seed)).unwrap();
        let proxies = loss.plugin().proxies().to_vec();
        // A share of the batch's pairs: some rows anchor often, some never.
        let every = all_pairs(&labels);
        let keep = |list: &[u32], step: usize| list.iter().copied().step_by(step).collect::<Vec<u32>>();
        let pairs =
            Pairs { a1: keep(&every.a1, 7), p: keep(&every.p, 7), a2: keep(&every.a2, 11), n: keep(&every.n, 11) };
        let anchors: Vec<u32> = pairs.a1.iter().chain(&pairs.a2).copied().collect();
        let tuples = Tuples::Pairs(pairs);
        let out = loss.forward_backward(&z, &labels, Some(&tuples)).unwrap();
        let what = format!("config {k}, mined pairs");
        assert_close(out.loss, reference(config, &proxies, &z, &labels, d, Some(&anchors)), 1e-5, &what);
        let dp = loss.plugin().proxy_gradient().unwrap().to_vec();
        check_proxy_gradient(config, &proxies, &dp, &z, &labels, d, Some(&anchors));
        check_loss_gradient(&mut loss, &z, &labels, Some(&tuples), &GradCheck::default())
            .unwrap_or_else(|e| panic!("{what}: {e}"));
    }
    // Triplets: PML counts each anchor once per triplet; as pairs it counts twice, and the
    // ratios, so the loss, are the same.
    let (n, d) = (10, 4);
    let z = random_embeddings(11, n, d);
    let labels = [0, 1, 2, 0, 1, 2, 0, 1, 2, 3];
    let triplets = Triplets { a: vec![4, 4, 0, 3], p: vec![7, 1, 3, 6], n: vec![0, 9, 1, 2] };
    let mut loss = Instance::<ProxyNca>::new(Config::default(), ctx(d, 4, 1)).unwrap();
    let proxies = loss.plugin().proxies().to_vec();
    let want = reference(&Config::default(), &proxies, &z, &labels, d, Some(&triplets.a));
    let out = loss.forward_backward(&z, &labels, Some(&Tuples::Triplets(triplets.clone()))).unwrap();
    assert_close(out.loss, want, 1e-5, "triplets");
    // Rows 1, 2, 5, 6, 7, 8 and 9 anchor nothing: weight 0, no gradient, still in the mean.
    assert_eq!(out.stats.get("zero_weight_rows"), Some(7.0));
    assert!(out.grad[d..3 * d].iter().all(|&g| g == 0.0) && out.grad[..d].iter().any(|&g| g != 0.0));
    let as_pairs = loss.forward_backward(&z, &labels, Some(&Tuples::Pairs(triplets.to_pairs()))).unwrap();
    assert_eq!((as_pairs.loss, &as_pairs.grad), (out.loss, &out.grad));
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
// def run(loss, tuples=None):
//     loss.proxies.data = torch.tensor(P, dtype=torch.float64)
//     z = torch.tensor(Z, dtype=torch.float64, requires_grad=True)
//     value = loss(z, labels, tuples)
//     value.backward()
//     print(repr(value.item()), [float(g) for g in z.grad.flatten()], [float(g) for g in loss.proxies.grad.flatten()])
// run(losses.ProxyNCALoss(3, 4))                                                                   # PML_DEFAULT
// run(losses.ProxyNCALoss(3, 4), pairs)                                                            # PML_MINED_PAIRS
// run(losses.ProxyNCALoss(3, 4, softmax_scale=4, distance=distances.LpDistance()))                 # PML_SCALE_4_EUCLIDEAN
// run(losses.ProxyNCALoss(3, 4, softmax_scale=8, distance=distances.CosineSimilarity()))           # PML_SCALE_8_COSINE
// run(losses.ProxyNCALoss(3, 4, softmax_scale=0.5, distance=distances.LpDistance(power=2, normalize_embeddings=False)))  # PML_UNNORMALIZED
// run(losses.ProxyNCALoss(3, 4), (a, p, a, n))                                                     # PML_TRIPLETS_AS_PAIRS
// run(losses.ProxyNCALoss(3, 4), (a, p, n))                                                        # PML_TRIPLETS

const PML_DEFAULT: Pml = Pml {
    loss: 1.4633570654516506,
    dz: [
        -0.09679031117983641,
        -0.10993013558959536,
        0.0842933281936879,
        -0.09398748614510449,
        -0.13989502718329805,
        0.11613477166061452,
        -0.12114284956075054,
        0.1655192546670513,
        0.050857137952709935,
        0.03368423678539847,
        0.030393122115609142,
        -0.08138777032105499,
        -0.04249766337013574,
        -0.018131785646090616,
        0.05776908289249143,
        -0.036092451348686355,
        -0.06475750345804515,
        0.11641641717360238,
        -0.13900115003838429,
        0.07908934338880166,
        0.12391447228682217,
        -0.05976026860793332,
        -0.030956510225765604,
        -0.08175204592426819,
        0.07182362548471549,
        -0.02280379349157668,
        -0.01113845390523298,
        -0.011905273226302061,
        -0.1004714012910954,
        -0.16251755226490147,
        0.13147152595476858,
        -0.01970753373023712,
    ],
    dp: [
        -0.05923223222221578,
        -0.04736565772275668,
        -0.1385414400644593,
        0.056461885090333036,
        -0.09416815948896481,
        -0.0793462084667511,
        0.07206620385466574,
        -0.13390674917185108,
        0.23117964209331432,
        0.04306834082091292,
        -0.057327469332993534,
        -0.06320018766036424,
    ],
};

const PML_MINED_PAIRS: Pml = Pml {
    loss: 0.5414633651896557,
    dz: [
        -0.09679031117983641,
        -0.10993013558959536,
        0.0842933281936879,
        -0.09398748614510449,
        -0.06994751359164902,
        0.05806738583030726,
        -0.06057142478037527,
        0.08275962733352565,
        0.0,
        0.0,
        0.0,
        0.0,
        -0.04249766337013574,
        -0.018131785646090616,
        0.05776908289249143,
        -0.036092451348686355,
        -0.032378751729022576,
        0.05820820858680119,
        -0.06950057501919214,
        0.03954467169440083,
        0.06195723614341109,
        -0.02988013430396666,
        -0.015478255112882802,
        -0.04087602296213409,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
    ],
    dp: [
        -0.016283205751504493,
        0.0358860976737691,
        -0.0716485009066462,
        -0.06087549336623785,
        -0.00452568699514618,
        -0.03886228972812305,
        0.007763036498896772,
        0.0001769454386496474,
        0.09321083258380235,
        0.030446153806761127,
        -0.002130575420417225,
        0.017847167466458386,
    ],
};

const PML_SCALE_4_EUCLIDEAN: Pml = Pml {
    loss: 2.074386568626418,
    dz: [
        -0.16697041246260347,
        -0.18061166227121805,
        0.1599657068556138,
        -0.16853750816166851,
        -0.30774460554563754,
        0.20791622967897946,
        -0.2433173892788893,
        0.3866848501458049,
        0.0056483089930513125,
        0.20338561548593537,
        0.0971332542817725,
        -0.0181359481778953,
        -0.04317386343083369,
        -0.01985963625381654,
        0.05186506613578086,
        -0.046013364565812453,
        -0.21361324129767073,
        0.4106669731221563,
        -0.3440206037402357,
        0.1743573793102992,
        0.18445906757479288,
        -0.1920160136777184,
        0.006352852059783726,
        -0.16506812955136688,
        0.08643730886942876,
        -0.02938402740309696,
        -0.020183683836799818,
        -0.020418905261873923,
        -0.14276246724654595,
        -0.2716098123794552,
        0.2810505775421648,
        -0.0025404262239434594,
    ],
    dp: [
        0.06096380122559138,
        -0.12040107964651355,
        -0.33682576072989706,
        0.0076169851349915385,
        -0.13229028462523248,
        -0.3279094378340818,
        0.23574363266577872,
        -0.20125731265590951,
        0.464353161653658,
        0.13095094531791407,
        -0.09734486847934004,
        -0.1401961521746478,
    ],
};

const PML_SCALE_8_COSINE: Pml = Pml {
    loss: 4.081156336395399,
    dz: [
        -0.42922601929393667,
        -0.5592596131543366,
        0.43315901699841536,
        -0.4971925645024956,
        -0.7858437524734151,
        0.5299548328403996,
        -0.6558048753988753,
        0.9179770468059866,
        0.18137102229063673,
        0.1892363510541578,
        0.11392548761197469,
        -0.3337810764539296,
        -0.008331134319558899,
        -0.0022192676996606727,
        0.00851619696200735,
        -0.004497139130716973,
        -0.34072231776881645,
        0.5282541795138768,
        -0.6680153950871477,
        0.3352548516802958,
        0.5348257437290299,
        -0.5384998415746971,
        0.0009285254449782343,
        -0.5448395039525612,
        0.029350886243012148,
        -0.007537284609313089,
        -0.00598666835083175,
        -0.0036490253988296327,
        -0.45785975017449665,
        -0.7741766309439398,
        0.6235306170123349,
        -0.08065784845315227,
    ],
    dp: [
        -0.25774358739119085,
        -0.018471575298174225,
        -0.7442361343626958,
        -0.05162088612920568,
        -0.4677629531104952,
        -0.6954910808691259,
        0.20109788528165312,
        -0.511379863811664,
        1.1567862514702445,
        0.29655237674643203,
        -0.24379003780268585,
        -0.3086089899250224,
    ],
};

const PML_UNNORMALIZED: Pml = Pml {
    loss: 1.5143154970030699,
    dz: [
        -0.08453692625098645,
        -0.11216007730365332,
        0.11216007730365332,
        -0.0446709550896419,
        -0.09367162631224242,
        0.10602721164288895,
        -0.10602721164288895,
        0.12262614299351349,
        0.20790790643436025,
        0.08246975824951103,
        -0.082469758249511,
        -0.034658895235753336,
        -0.03558468172704761,
        -0.03734989356771851,
        0.03734989356771851,
        -0.011432804708609686,
        -0.15289910015657715,
        0.12076791312754313,
        -0.12076791312754312,
        0.16107454988363112,
        0.18218639683194884,
        -0.02793283655897058,
        0.027932836558970595,
        -0.10525718796097538,
        0.09765094617156952,
        0.012918499983732292,
        -0.012918499983732304,
        -0.03557292771267438,
        -0.019240470413139928,
        -0.16943733601795424,
        0.16943733601795424,
        -0.11772073851680628,
    ],
    dp: [
        -0.012435329651920513,
        0.027707729444786194,
        -0.12727740250266215,
        0.10946542423190461,
        -0.3391891029140653,
        -0.05540008300648437,
        0.15529365591376848,
        0.05478442194776883,
        0.24981198798810075,
        0.05238911400631944,
        -0.05271301385572762,
        -0.09863702983235709,
    ],
};

const PML_TRIPLETS_AS_PAIRS: Pml = Pml {
    loss: 0.4283853962730231,
    dz: [
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.050857137952709935,
        0.03368423678539847,
        0.030393122115609142,
        -0.08138777032105499,
        0.0,
        0.0,
        0.0,
        0.0,
        -0.032378751729022576,
        0.05820820858680119,
        -0.06950057501919214,
        0.03954467169440083,
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
    ],
    dp: [
        0.06395135677374786,
        -0.044205719873515716,
        -0.058709196511523766,
        -0.0032630101883188954,
        -0.052115754367204836,
        -0.06294763650737152,
        0.06617922905941204,
        -0.08249739836186917,
        0.0481220548608825,
        0.007102004617073817,
        -0.019652528155366784,
        -0.03351905024604922,
    ],
};

const PML_TRIPLETS: Pml = Pml {
    loss: 0.4283853962730231,
    dz: [
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.050857137952709935,
        0.03368423678539847,
        0.030393122115609142,
        -0.08138777032105499,
        0.0,
        0.0,
        0.0,
        0.0,
        -0.032378751729022576,
        0.05820820858680119,
        -0.06950057501919214,
        0.03954467169440083,
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
    ],
    dp: [
        0.06395135677374786,
        -0.044205719873515716,
        -0.058709196511523766,
        -0.0032630101883188954,
        -0.052115754367204836,
        -0.06294763650737152,
        0.06617922905941204,
        -0.08249739836186917,
        0.0481220548608825,
        0.007102004617073817,
        -0.019652528155366784,
        -0.03351905024604922,
    ],
};

#[test]
fn matches_pml_on_a_fixed_batch() {
    let d = 4;
    let distance = |measure, normalize_embeddings| DistanceConfig { measure, normalize_embeddings };
    let cases = [
        ("default, no miner", Config::default(), None, &PML_DEFAULT),
        ("default, mined pairs", Config::default(), Some(mined()), &PML_MINED_PAIRS),
        (
            "scale 4, Euclidean",
            Config { softmax_scale: 4.0, distance: distance(Measure::Euclidean, true), ..Config::default() },
            None,
            &PML_SCALE_4_EUCLIDEAN,
        ),
        (
            "scale 8, cosine",
            Config { softmax_scale: 8.0, distance: DistanceConfig::cosine(), ..Config::default() },
            None,
            &PML_SCALE_8_COSINE,
        ),
        (
            "scale 0.5, not normalised",
            Config { softmax_scale: 0.5, distance: distance(Measure::SquaredEuclidean, false), ..Config::default() },
            None,
            &PML_UNNORMALIZED,
        ),
        ("mined triplets", Config::default(), Some(mined_triplets()), &PML_TRIPLETS),
    ];
    for (what, config, tuples, want) in cases {
        let mut loss = Instance::<ProxyNca>::new(config, ctx(d, 3, 0)).unwrap();
        set_proxies(&mut loss, &P);
        let out = loss.forward_backward(&Z, &LABELS, tuples.as_ref()).unwrap();
        assert_parity((out.loss, &out.grad, loss.plugin().proxy_gradient().unwrap()), want, what);
    }
    // PML given the triplets as pairs weighs the rows the same way.
    assert_eq!(PML_TRIPLETS_AS_PAIRS.loss, PML_TRIPLETS.loss);

    // One SGD step at the context's rate 0.1: P − 0.1·dL/dP, with PML's dL/dP.
    let mut loss = Instance::<ProxyNca>::new(Config::default(), ctx(d, 3, 0)).unwrap();
    set_proxies(&mut loss, &P);
    loss.forward_backward(&Z, &LABELS, None).unwrap();
    loss.step(1.0).unwrap();
    for (k, (&got, (&p, &g))) in loss.plugin().proxies().iter().zip(P.iter().zip(&PML_DEFAULT.dp)).enumerate() {
        assert_close(f64::from(got), f64::from(p) - 0.1 * g, 1e-6, &format!("proxy [{k}] after one step"));
    }
}

#[test]
fn sgd_steps_are_hand_computed_and_the_rate_defaults_to_the_runs() {
    let (n, d, classes) = (10, 5, 4);
    let optimizer = SgdConfig { lr: Some(0.05), momentum: 0.9, weight_decay: 0.01, nesterov: false };
    let mut loss = Instance::<ProxyNca>::new(Config { optimizer, ..Config::default() }, ctx(d, classes, 2)).unwrap();
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
    let loss = Instance::<ProxyNca>::from_config_text("", ctx(d, classes, 0)).unwrap();
    assert_eq!(loss.plugin().learning_rate(), 0.1);
    let config = parse_config::<ProxyNca>("(optimizer: (lr: Some(0.01)))").unwrap();
    assert_eq!(config.optimizer, SgdConfig { lr: Some(0.01), ..SgdConfig::plain() });
    assert_eq!(parse_config::<ProxyNca>("(optimizer: (momentum: 0.5))").unwrap().optimizer.weight_decay, 0.0);
    assert_eq!(Config::default().optimizer, SgdConfig::plain());
}

#[test]
fn initial_proxies_are_seeded_standard_normal_draws() {
    let (d, classes) = (500, 200);
    let loss = Instance::<ProxyNca>::new(Config::default(), ctx(d, classes, 3)).unwrap();
    let values: Vec<f64> = loss.plugin().proxies().iter().map(|&v| f64::from(v)).collect();
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64;
    // 100,000 draws: standard errors 0.003 for the mean and 0.0045 for the variance.
    assert!(mean.abs() < 0.02 && (var - 1.0).abs() < 0.03, "mean {mean}, variance {var}");
    assert!(loss.plugin().momentum().iter().all(|&v| v == 0.0));
    let same = Instance::<ProxyNca>::new(Config::default(), ctx(d, classes, 3)).unwrap();
    assert_eq!(same.plugin().proxies(), loss.plugin().proxies());
    let other = Instance::<ProxyNca>::new(Config::default(), ctx(d, classes, 4)).unwrap();
    assert_ne!(other.plugin().proxies(), loss.plugin().proxies());
}

#[test]
fn state_round_trip_continues_the_run_exactly() {
    let (n, d, classes) = (8, 4, 3);
    let optimizer = SgdConfig { lr: Some(0.2), momentum: 0.9, weight_decay: 1e-3, nesterov: true };
    let config = Config { optimizer, ..Config::default() };
    let mut original = Instance::<ProxyNca>::new(config.clone(), ctx(d, classes, 9)).unwrap();
    for s in 0..3 {
        original.forward_backward(&random_embeddings(s, n, d), &random_labels(s, n, classes), None).unwrap();
        original.step(1.0).unwrap();
    }
    assert!(original.plugin().momentum().iter().any(|&v| v != 0.0));
    let bytes = original.save().unwrap();
    let mut restored = Instance::<ProxyNca>::new(config.clone(), ctx(d, classes, 1)).unwrap();
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
    let mut other = Instance::<ProxyNca>::new(config.clone(), ctx(d, classes + 1, 9)).unwrap();
    let e = other.load(&bytes).unwrap_err();
    assert!(e.message().contains("'proxies'"), "{e}");
    let shape = [classes, d];
    let zeros = vec![0.0f32; classes * d];
    let mut bad = zeros.clone();
    bad[5] = f32::NAN;
    for (tensors, needle) in [
        (vec![("proxies", &shape, &zeros[..])], "proxies.momentum"),
        (vec![("proxies", &shape, &bad[..]), ("proxies.momentum", &shape, &zeros[..])], "'proxies' holds NaN"),
        (vec![("proxies", &shape, &zeros[..]), ("proxies.momentum", &shape, &bad[..])], "'proxies.momentum' holds NaN"),
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
fn degenerate_batches_give_zero_without_nan() {
    let d = 3;
    let z = random_embeddings(5, 4, d);
    // One proxy: every row's probability is 1.
    let mut loss = Instance::<ProxyNca>::new(Config::default(), ctx(d, 1, 0)).unwrap();
    let out = loss.forward_backward(&z, &[0, 0, 0, 0], None).unwrap();
    assert_eq!((out.loss, out.stats.get("no_negative_proxies")), (0.0, Some(1.0)));
    assert!(out.grad.iter().all(|&g| g == 0.0));
    assert!(loss.plugin().proxy_gradient().unwrap().iter().all(|&g| g == 0.0));

    // Proxies e₀ and e₁; rows sitting on the other class's proxy, at a scale where their
    // probability underflows (s·ΔD = 2000): PML drops them, and with none left returns NaN;
    // here the loss is 0 with `no_rows`.
    let proxies = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0];
    let config = Config { softmax_scale: 1000.0, ..Config::default() };
    let mut loss = Instance::<ProxyNca>::new(config.clone(), ctx(d, 2, 0)).unwrap();
    set_proxies(&mut loss, &proxies);
    let wrong = [0.0, 2.0, 0.0, 3.0, 0.0, 0.0];
    let out = loss.forward_backward(&wrong, &[0, 1], None).unwrap();
    assert_eq!((out.loss, out.stats.get("no_rows"), out.stats.get("skipped_rows")), (0.0, Some(1.0), Some(2.0)));
    assert!(out.grad.iter().all(|&g| g == 0.0));
    assert!(loss.plugin().proxy_gradient().unwrap().iter().all(|&g| g == 0.0));
    // One row skipped, one kept: the mean runs over the kept one.
    let mixed = [0.0, 2.0, 0.0, 0.5, 0.5, 0.2];
    let out = loss.forward_backward(&mixed, &[0, 1], None).unwrap();
    assert_eq!(out.stats.get("skipped_rows"), Some(1.0));
    assert_close(out.loss, reference(&config, &proxies, &mixed, &[0, 1], d, None), 1e-5, "one row skipped");
    assert!(out.grad[..d].iter().all(|&g| g == 0.0) && out.grad[d..].iter().any(|&g| g != 0.0));

    // A zero embedding (no direction) and a single row stay finite.
    let mut loss = Instance::<ProxyNca>::new(Config::default(), ctx(d, 3, 0)).unwrap();
    let out = loss.forward_backward(&[0.0, 0.0, 0.0, 1.0, 2.0, 3.0], &[0, 2], None).unwrap();
    assert!(out.loss.is_finite() && out.grad.iter().all(|g| g.is_finite()));
    let out = loss.forward_backward(&z[..d], &[1], None).unwrap();
    assert!(out.loss > 0.0 && out.grad.iter().all(|g| g.is_finite()));
}

#[test]
fn bad_configurations_and_contexts_are_refused_naming_the_field() {
    for (text, field) in [
        ("(softmax_scale: 0.0)", "softmax_scale"),
        ("(softmax_scale: -1.0)", "softmax_scale"),
        ("(optimizer: (lr: Some(0.0)))", "optimizer.lr"),
        ("(optimizer: (momentum: 1.0))", "optimizer.momentum"),
        ("(optimizer: (weight_decay: -0.1))", "optimizer.weight_decay"),
        ("(optimizer: (nesterov: true))", "optimizer.nesterov"),
        ("(optimizer: (learning_rate: 0.1))", "learning_rate"),
        ("(scale: 2.0)", "scale"),
    ] {
        let e = Instance::<ProxyNca>::from_config_text(text, ctx(4, 3, 0)).err().unwrap();
        assert!(e.message().contains(field), "{text}: {e}");
    }
    for context in [ctx(4, 0, 0), ctx(0, 3, 0)] {
        let e = Instance::<ProxyNca>::from_config_text("", context).err().unwrap();
        assert!(e.message().contains("num_classes") && e.message().contains("embedding_dim"), "{e}");
    }
    // Labels beyond the proxies are refused.
    let mut loss = Instance::<ProxyNca>::from_config_text("", ctx(2, 3, 0)).unwrap();
    assert!(loss.forward_backward(&[1.0, 0.0], &[3], None).is_err());
}
