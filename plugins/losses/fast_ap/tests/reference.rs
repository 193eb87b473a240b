//! FastAP against a plain loop written from its definition, against finite differences, and
//! against pytorch-metric-learning's `FastAPLoss` on a fixed batch.

use dmlbench_loss_fast_ap::{Config, FastAp};
use dmlbench_sdk::distance::DistanceConfig;
use dmlbench_sdk::pairwise::Measure;
use dmlbench_sdk::testing::batches::exact::{LABELS, Z, mined};
use dmlbench_sdk::testing::{
    GradCheck, assert_close, check_gradient, check_loss_gradient, check_piecewise_gradient, context, naive,
    random_embeddings, random_labels,
};
use dmlbench_sdk::tuples::all_pairs;
use dmlbench_sdk::{Instance, Pairs, Triplets, Tuples};

/// A distance between two rows.
type Metric = fn(&[f64], &[f64]) -> f64;

/// The definition: for each anchor with a positive, the triangular memberships of every other
/// embedding's distance in each of the B + 1 bins, the positive and total histograms, their
/// running sums, AP as the sum of h⁺_b·H⁺_b/H_b over the bins where it is positive, divided by
/// the number of positives; 1 − AP weighted by the anchor's share of the mined indices (given
/// as the four lists a1, p, a2, n), averaged over the anchors with a positive.
fn reference(config: &Config, z: &[f32], labels: &[i64], d: usize, mined: Option<[&[u32]; 4]>) -> f64 {
    let n = labels.len();
    let u = naive::normalized_rows(z, d);
    let (distance, max): (Metric, f64) = match config.distance.measure {
        Measure::SquaredEuclidean => (naive::squared_euclidean, 4.0),
        Measure::Euclidean => (naive::euclidean, 2.0),
        other => panic!("reference does not cover {other:?}"),
    };
    let bins = config.num_bins;
    let delta = max / bins as f64;
    let mut weights = vec![1.0; n];
    if let Some(lists) = mined.filter(|lists| lists.iter().any(|l| !l.is_empty())) {
        let mut counts = vec![0.0; n];
        for &i in lists.iter().flat_map(|l| l.iter()) {
            counts[i as usize] += 1.0;
        }
        let most = counts.iter().copied().fold(0.0, f64::max);
        weights = counts.iter().map(|c| c / most).collect();
    }
    let mut losses = vec![];
    for i in 0..n {
        let positives = (0..n).filter(|&j| j != i && labels[j] == labels[i]).count();
        if positives == 0 {
            continue;
        }
        let mut h_pos = vec![0.0; bins + 1];
        let mut h_all = vec![0.0; bins + 1];
        for j in (0..n).filter(|&j| j != i) {
            let dij = distance(&u[i], &u[j]);
            for b in 0..=bins {
                let centre = max * b as f64 / bins as f64;
                let membership = (1.0 - (dij - centre).abs() / delta).max(0.0);
                h_all[b] += membership;
                if labels[j] == labels[i] {
                    h_pos[b] += membership;
                }
            }
        }
        let mut ap = 0.0;
        for b in 0..=bins {
            let below_pos: f64 = h_pos[..=b].iter().sum();
            let below_all: f64 = h_all[..=b].iter().sum();
            if h_pos[b] * below_pos > 0.0 && below_all > 0.0 {
                ap += h_pos[b] * below_pos / below_all;
            }
        }
        losses.push(weights[i] * (1.0 - ap / positives as f64));
    }
    if losses.is_empty() { 0.0 } else { losses.iter().sum::<f64>() / losses.len() as f64 }
}

/// Finite differences of every coordinate that the check can difference on the input's own
/// smooth piece (the loss names it), against the analytic gradient; how many were compared.
fn check_on_pieces(
    loss: &mut Instance<FastAp>,
    z: &[f32],
    labels: &[i64],
    tuples: Option<&Tuples>,
) -> Result<usize, String> {
    check_loss_gradient(loss, z, labels, tuples, &GradCheck::default()).map(|report| report.checked)
}

fn configs() -> Vec<Config> {
    let euclidean = DistanceConfig { measure: Measure::Euclidean, normalize_embeddings: true };
    vec![
        Config::default(),
        Config { num_bins: 1, ..Config::default() },
        Config { num_bins: 3, ..Config::default() },
        Config { num_bins: 25, ..Config::default() },
        Config { num_bins: 7, distance: euclidean },
    ]
}

#[test]
fn matches_the_definition_on_random_batches() {
    for (k, config) in configs().iter().enumerate() {
        for (n, d, classes) in [(12, 5, 3), (16, 8, 4), (9, 4, 7), (24, 6, 6), (5, 3, 1), (2, 3, 2)] {
            let seed = 500 + k as u64 * 10 + n as u64;
            let z = random_embeddings(seed, n, d);
            let labels = random_labels(seed, n, classes);
            let mut loss = Instance::<FastAp>::new(config.clone(), context(d, 0)).unwrap();
            let out = loss.forward_backward(&z, &labels, None).unwrap();
            let what = format!("config {k}, n {n}");
            assert_close(out.loss, reference(config, &z, &labels, d, None), 1e-5, &what);
            let skipped = (0..n).filter(|&i| !(0..n).any(|j| j != i && labels[j] == labels[i])).count();
            assert_eq!(out.stats.get("skipped_anchors"), Some(skipped as f64), "{what}");
            let checked = check_on_pieces(&mut loss, &z, &labels, None).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(checked >= n * d * 4 / 5, "{what}: only {checked} of {} coordinates compared", n * d);
        }
    }
}

#[test]
fn a_kink_just_inside_the_step_is_a_true_kink() {
    // The conformance suite's batch of 16 rows: rows 0 and 15 lie 1e-5 from the bin centre 2.
    let (n, d) = (16, 8);
    let z = random_embeddings(1, n, d);
    let labels: Vec<i64> = (0..n as i64).map(|i| i % 4).collect();
    let u = naive::normalized_rows(&z, d);
    assert!((naive::squared_euclidean(&u[0], &u[15]) - 2.0).abs() < 1e-4);
    let mut loss = Instance::<FastAp>::new(Config::default(), context(d, 0)).unwrap();
    let value = |loss: &mut Instance<FastAp>, x0: f32| {
        let mut x = z.clone();
        x[0] = x0;
        loss.forward_backward(&x, &labels, None).unwrap()
    };
    // Increasing z[0, 0] by about 1e-4 moves that distance across the centre. The gradient on
    // each side is that side's slope; the central difference across the kink is neither.
    let (x0, h) = (z[0], 1e-3f32);
    let here = value(&mut loss, x0);
    let left = (here.loss - value(&mut loss, x0 - h).loss) / f64::from(h);
    let beyond = value(&mut loss, x0 + h);
    let right = (value(&mut loss, x0 + 2.0 * h).loss - beyond.loss) / f64::from(h);
    assert_close(f64::from(here.grad[0]), left, 1e-2 * left.abs(), "left of the kink");
    assert_close(f64::from(beyond.grad[0]), right, 1e-2 * right.abs(), "right of the kink");
    assert!(right - left > 0.1 * left.abs(), "slope {left} then {right}: no kink");
    // Differences that straddle the kink fail a correct gradient at both steps the check
    // tries; on the named pieces every coordinate is compared, those of rows 0 and 15 from the
    // side of the kink they lie on.
    let out = loss.forward_backward(&z, &labels, None).unwrap();
    let options = GradCheck { columns: d, ..GradCheck::default() };
    let plain = |x: &[f32]| loss.forward_backward(x, &labels, None).map(|v| v.loss).map_err(|e| e.to_string());
    let error = check_gradient(plain, &z, &out.grad, &options).unwrap_err();
    assert!(error.starts_with("gradient mismatch at row 0,"), "{error}");
    let report = check_loss_gradient(&mut loss, &z, &labels, None, &options).unwrap();
    assert_eq!((report.checked, report.kinks), (n * d, 0));
    // A wrong gradient still fails there: 5% too large everywhere, or only at the largest
    // coordinate of row 0, one end of the pair at the kink.
    let pieces = |loss: &mut Instance<FastAp>, x: &[f32]| {
        let v = loss.forward_backward(x, &labels, None).map_err(|e| e.to_string())?;
        Ok((v.loss, v.stats.get("piece").unwrap().to_bits()))
    };
    let scaled: Vec<f32> = out.grad.iter().map(|g| 1.05 * g).collect();
    let error = check_piecewise_gradient(|x: &[f32]| pieces(&mut loss, x), &z, &scaled, &options).unwrap_err();
    assert!(error.starts_with("gradient mismatch"), "{error}");
    let column = (0..d).max_by(|&a, &b| out.grad[a].abs().total_cmp(&out.grad[b].abs())).unwrap();
    let mut one = out.grad.clone();
    one[column] *= 1.05;
    let error = check_piecewise_gradient(|x: &[f32]| pieces(&mut loss, x), &z, &one, &options).unwrap_err();
    assert!(error.starts_with(&format!("gradient mismatch at row 0, column {column}")), "{error}");
}

#[test]
fn mined_tuples_weight_the_anchors() {
    let (n, d) = (16, 6);
    for (k, config) in configs().iter().enumerate() {
        let seed = 60 + k as u64;
        let z = random_embeddings(seed, n, d);
        let labels = random_labels(seed, n, 4);
        let mut loss = Instance::<FastAp>::new(config.clone(), context(d, 0)).unwrap();
        // A third of the batch's pairs: some rows appear often, some never.
        let every = all_pairs(&labels);
        let keep = |list: &[u32], step: usize| list.iter().copied().step_by(step).collect::<Vec<u32>>();
        let pairs =
            Pairs { a1: keep(&every.a1, 3), p: keep(&every.p, 3), a2: keep(&every.a2, 5), n: keep(&every.n, 5) };
        let lists = [&pairs.a1[..], &pairs.p[..], &pairs.a2[..], &pairs.n[..]];
        let want = reference(config, &z, &labels, d, Some(lists));
        let tuples = Tuples::Pairs(pairs.clone());
        let out = loss.forward_backward(&z, &labels, Some(&tuples)).unwrap();
        let what = format!("config {k}, mined pairs");
        assert_close(out.loss, want, 1e-5, &what);
        let checked = check_on_pieces(&mut loss, &z, &labels, Some(&tuples)).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(checked >= n * d * 4 / 5, "{what}: only {checked} of {} coordinates compared", n * d);
    }
    // Triplets reach the loss as (a, p, a, n): the anchor counts twice per triplet.
    let (n, d) = (10, 4);
    let z = random_embeddings(11, n, d);
    let labels = [0, 1, 2, 0, 1, 2, 0, 1, 2, 3];
    let triplets = Triplets { a: vec![4, 4, 0, 3], p: vec![7, 1, 3, 6], n: vec![0, 9, 1, 2] };
    let lists = [&triplets.a[..], &triplets.p[..], &triplets.a[..], &triplets.n[..]];
    let want = reference(&Config::default(), &z, &labels, d, Some(lists));
    let mut loss = Instance::<FastAp>::new(Config::default(), context(d, 0)).unwrap();
    let out = loss.forward_backward(&z, &labels, Some(&Tuples::Triplets(triplets))).unwrap();
    assert_close(out.loss, want, 1e-5, "triplets");
    // Anchors 5 and 8 appear in no tuple (row 2 does, as a negative): weight 0, still in the
    // mean; row 9 has no positive.
    assert_eq!((out.stats.get("zero_weight_anchors"), out.stats.get("skipped_anchors")), (Some(2.0), Some(1.0)));
    // Empty mined lists weigh every anchor 1, as PML does: the same as no miner.
    let plain = loss.forward_backward(&z, &labels, None).unwrap();
    let empty = loss.forward_backward(&z, &labels, Some(&Tuples::Pairs(Pairs::default()))).unwrap();
    assert_eq!((plain.loss, &plain.grad), (empty.loss, &empty.grad));
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

/// Row 7 alone in its class.
const LABELS_WITH_SINGLETON: [i64; 8] = [2, 0, 1, 0, 2, 1, 0, 3];

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
// a, p, n = (torch.tensor(x) for x in ([7, 7, 1], [2, 5, 6], [0, 3, 2]))
// def run(loss, tuples=None, labels=labels):
//     z = torch.tensor(Z, dtype=torch.float64, requires_grad=True)
//     value = loss(z, labels, tuples)
//     value.backward()
//     print(repr(value.item()), [float(g) for g in z.grad.flatten()])
// run(losses.FastAPLoss())                                                               # PML_DEFAULT
// run(losses.FastAPLoss(), pairs)                                                        # PML_MINED_PAIRS
// run(losses.FastAPLoss(num_bins=5, distance=distances.LpDistance(power=1)))             # PML_FIVE_BINS_EUCLIDEAN
// run(losses.FastAPLoss(num_bins=7), labels=torch.tensor([2, 0, 1, 0, 2, 1, 0, 3]))     # PML_SINGLETON_SEVEN_BINS
// run(losses.FastAPLoss(), (a, p, a, n))                                                 # PML_TRIPLETS_AS_PAIRS
// run(losses.FastAPLoss(), (a, p, n))                                                    # PML_TRIPLETS

const PML_DEFAULT: (f64, [f64; 32]) = (
    0.3352046694246687,
    [
        0.2893142093964638,
        0.3137371531456509,
        -0.03137300541957705,
        -0.2787984879379365,
        -0.019395904610486375,
        -0.16452019114103988,
        0.11594545904054913,
        0.11222925693487254,
        -0.1275187293558213,
        -0.1885379420159338,
        0.05629982926771251,
        0.21706831697138818,
        0.004890425003127653,
        0.0006283560393751386,
        -0.0015246469243311118,
        -0.008823001341581208,
        -0.2655146359805072,
        0.1757967588666812,
        -0.2748488979812287,
        0.08978552671333875,
        0.016351985056674942,
        0.03661347247382192,
        -0.017614229983664895,
        0.08446856650660789,
        0.0022010501713590506,
        0.0028356209049854413,
        -0.0027825943782791088,
        -0.010268034900903006,
        0.040151768682030825,
        -0.006287055083161657,
        -0.002706386182109108,
        0.03861462341112143,
    ],
);

const PML_MINED_PAIRS: (f64, [f64; 32]) = (
    0.150586988721166,
    [
        0.17531911763169883,
        0.1819098143505622,
        -0.022032752648551715,
        -0.1611948206372571,
        -0.015032018621058268,
        -0.0837895832242683,
        0.06386379345831558,
        0.06169418249983695,
        -0.052871195871694615,
        -0.10271194024048608,
        0.030118161045843056,
        0.0845045826689893,
        -0.0014678104384377977,
        0.000712203720801136,
        0.0005958047747422243,
        -0.0006786650414282292,
        -0.1506194349144504,
        0.09310600915194042,
        -0.1639519065056202,
        0.04566495880778739,
        0.006703296859152389,
        0.014177199287524518,
        -0.0076408798031695445,
        0.03232843528954864,
        -0.00168651909123449,
        0.0006784577103654877,
        -0.0004353062285919237,
        -0.0035404558830452806,
        0.002781856320484829,
        -0.005720168271263751,
        0.026248060113651068,
        0.002013200901849709,
    ],
);

const PML_FIVE_BINS_EUCLIDEAN: (f64, [f64; 32]) = (
    0.4415266051725358,
    [
        0.10215918687298059,
        0.10495713716406295,
        -0.012512610064493945,
        -0.09862159264784495,
        0.04120620808679902,
        -0.1012919815413226,
        0.08804532226047361,
        0.04220666444259171,
        -0.0388889051332194,
        -0.007703309573319288,
        -0.016568721594960173,
        0.05735743388481898,
        -0.02575535575991629,
        0.01885330146070307,
        0.0016036758382760004,
        -0.055035616992982754,
        -0.07196446840107869,
        0.03996299684296001,
        -0.12119158837604437,
        0.028894972784339328,
        -0.0020670443718696155,
        0.036977979850800584,
        0.01368408206040412,
        0.08037547525379792,
        -0.05662904384299761,
        -0.01744623942823675,
        -0.004024915114868872,
        -0.022003151670006077,
        -0.016901718388031624,
        -0.04033610452620397,
        -0.03337266580042779,
        0.009550631898627787,
    ],
);

const PML_SINGLETON_SEVEN_BINS: (f64, [f64; 32]) = (
    0.4344064790436325,
    [
        0.08577948071521135,
        0.13120083345348468,
        0.0020926802337941086,
        -0.09745769782422876,
        0.04600066914763379,
        -0.05111090400062034,
        0.08253667739986778,
        0.017604963331628212,
        -0.004393838626595023,
        -0.04592723345174043,
        0.051527721540011055,
        0.03735178206733086,
        -0.007758848195662136,
        0.004253735483423282,
        -0.00014865427702760638,
        -0.01213968502397359,
        -0.08950181912811565,
        0.04904648198797684,
        -0.10800653797626598,
        0.022982262316538354,
        0.01148187567605534,
        0.029805645263107184,
        -0.014130391824501182,
        0.06105092887565684,
        -0.0071976036494506915,
        0.0014951685359572795,
        -0.0017431477532304737,
        -0.012372617058089442,
        -7.585923625516534e-05,
        -0.0002379841714659622,
        0.0026441282314913434,
        -0.00027790077492670677,
    ],
);

const PML_TRIPLETS_AS_PAIRS: (f64, [f64; 32]) = (
    0.12768352255360088,
    [
        0.03066201293346692,
        0.02504123777773674,
        -0.006346249938763174,
        -0.021795576668288838,
        0.039606131310538396,
        -0.0005615236461211318,
        0.025526335067913096,
        -0.015881168807500665,
        -0.01361597719183611,
        0.01931158122940886,
        0.002502800812807463,
        0.03939054581118413,
        0.006358235441565451,
        -8.384768142599697e-05,
        -0.0021204516990733354,
        -0.008144336300152977,
        -0.011496936195500613,
        -0.0010472825460976984,
        -0.024223416310045407,
        -0.0024880155323134074,
        0.0067032968591523925,
        0.014177199287524497,
        -0.007640879803169562,
        0.03232843528954862,
        0.0010308286665424691,
        0.00014039581603950222,
        -0.002825490723989767,
        -0.006536297988136693,
        0.04188043288130044,
        0.0033430480951718356,
        -0.0245910079668673,
        0.038047730719410366,
    ],
);

const PML_TRIPLETS: (f64, [f64; 32]) = (
    0.21550477026802511,
    [
        0.06132402586693384,
        0.05008247555547348,
        -0.012692499877526348,
        -0.043591153336577676,
        0.04733287548850827,
        -0.001369406900173259,
        0.03599897824611095,
        -0.01705226905920238,
        -0.006259615467925174,
        0.021926737302591932,
        0.007245365975840343,
        0.030727965562986674,
        0.004890425003127653,
        0.0006283560393751386,
        -0.0015246469243311118,
        -0.008823001341581208,
        -0.025520782178916332,
        0.0017783184143914735,
        -0.048373482553678175,
        -0.0023757712102990755,
        0.004441999392169736,
        0.020461433915486434,
        -0.004730329043164061,
        0.038855325530083286,
        0.002459198964568005,
        0.0011487795053297285,
        -0.0025863894368384766,
        -0.006631938502997211,
        0.038487878167972,
        0.0005476008399248923,
        -0.015566304947537418,
        0.035348881095455226,
    ],
);

#[test]
fn matches_pml_on_a_fixed_batch() {
    let d = 4;
    let five_euclidean =
        Config { num_bins: 5, distance: DistanceConfig { measure: Measure::Euclidean, normalize_embeddings: true } };
    let cases = [
        ("default, no miner", Config::default(), &LABELS, None, PML_DEFAULT),
        ("default, mined pairs", Config::default(), &LABELS, Some(mined()), PML_MINED_PAIRS),
        ("5 bins, Euclidean", five_euclidean, &LABELS, None, PML_FIVE_BINS_EUCLIDEAN),
        (
            "7 bins, a singleton",
            Config { num_bins: 7, ..Config::default() },
            &LABELS_WITH_SINGLETON,
            None,
            PML_SINGLETON_SEVEN_BINS,
        ),
        ("mined triplets", Config::default(), &LABELS, Some(mined_triplets()), PML_TRIPLETS_AS_PAIRS),
    ];
    for (what, config, labels, tuples, (want_loss, want_grad)) in cases {
        let mut loss = Instance::<FastAp>::new(config, context(d, 4)).unwrap();
        let out = loss.forward_backward(&Z, labels, tuples.as_ref()).unwrap();
        assert_parity((out.loss, &out.grad), (want_loss, &want_grad), what);
    }
}

#[test]
fn mined_triplets_are_weighted_as_their_pairs_not_as_pml_weights_the_triplet_tuple() {
    // The documented difference: PML given the (a, p, n) tuple counts each anchor once per
    // triplet (PML_TRIPLETS); the loss receives (a, p, a, n) and matches PML given that.
    let mut loss = Instance::<FastAp>::new(Config::default(), context(4, 4)).unwrap();
    let out = loss.forward_backward(&Z, &LABELS, Some(&mined_triplets())).unwrap();
    assert_parity((out.loss, &out.grad), (PML_TRIPLETS_AS_PAIRS.0, &PML_TRIPLETS_AS_PAIRS.1), "triplets as pairs");
    assert!((out.loss - PML_TRIPLETS.0).abs() > 0.05, "{} vs PML's triplet-tuple value {}", out.loss, PML_TRIPLETS.0);
}

#[test]
fn degenerate_batches_give_zero_without_nan() {
    let d = 3;
    let mut loss = Instance::<FastAp>::new(Config::default(), context(d, 0)).unwrap();
    let z = random_embeddings(5, 4, d);
    // Every label alone: no anchor has a positive.
    let out = loss.forward_backward(&z, &[0, 1, 2, 3], None).unwrap();
    assert_eq!(
        (out.loss, out.stats.get("no_positive_pairs"), out.stats.get("skipped_anchors")),
        (0.0, Some(1.0), Some(4.0))
    );
    assert!(out.grad.iter().all(|&g| g == 0.0));
    // A single embedding.
    let out = loss.forward_backward(&z[..d], &[0], None).unwrap();
    assert_eq!((out.loss, out.stats.get("no_positive_pairs")), (0.0, Some(1.0)));
    // One class: every neighbour is a positive, AP = 1 for every anchor, and the memberships of
    // each distance sum to 1 whatever it is, so the gradient vanishes.
    let out = loss.forward_backward(&z, &[7, 7, 7, 7], None).unwrap();
    assert!(out.loss.abs() < 1e-12, "{}", out.loss);
    assert!(out.grad.iter().all(|&g| g.abs() < 1e-6), "{:?}", out.grad);
    // Identical embeddings (every distance 0, on the first bin centre) stay finite.
    let same = [1.0f32, 2.0, 3.0].repeat(4);
    let out = loss.forward_backward(&same, &[0, 0, 1, 1], None).unwrap();
    assert!(out.loss.is_finite() && out.grad.iter().all(|g| g.is_finite()));
}

#[test]
fn bad_configurations_are_refused_naming_the_field() {
    for (text, field) in [
        ("(num_bins: 0)", "num_bins"),
        ("(distance: (measure: cosine))", "distance"),
        ("(distance: (measure: dot))", "distance"),
        ("(distance: (measure: squared_euclidean, normalize_embeddings: false))", "distance"),
        ("(distance: (measure: euclidean, normalize_embeddings: false))", "distance"),
    ] {
        let e = Instance::<FastAp>::from_config_text(text, context(4, 0)).err().unwrap();
        assert!(e.message().contains(field), "{text}: {e}");
    }
    let ok = Instance::<FastAp>::from_config_text("(num_bins: 1, distance: (measure: euclidean))", context(4, 0));
    assert!(ok.is_ok());
}
