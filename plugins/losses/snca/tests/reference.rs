//! SNCA against a plain loop written from the paper's formula, against pytorch-metric-learning's
//! NCA formulation (softmax of scaled squared distances), and against finite differences.

use dmlbench_loss_snca::{Config, Snca};
use dmlbench_sdk::Instance;
use dmlbench_sdk::testing::{
    GradCheck, assert_close, check_loss_gradient, context, naive, random_embeddings, random_labels,
};

/// The definition: p_ij over k ≠ i, −log of the positive mass, mean over anchors that have
/// a positive.
fn reference(sigma: f64, z: &[f32], labels: &[i64], d: usize) -> f64 {
    let u = naive::normalized_rows(z, d);
    let n = labels.len();
    let (mut total, mut anchors) = (0.0, 0);
    for i in 0..n {
        if !(0..n).any(|j| j != i && labels[j] == labels[i]) {
            continue;
        }
        let denominator: f64 = (0..n).filter(|&k| k != i).map(|k| (naive::dot(&u[i], &u[k]) / sigma).exp()).sum();
        let positive: f64 = (0..n)
            .filter(|&j| j != i && labels[j] == labels[i])
            .map(|j| (naive::dot(&u[i], &u[j]) / sigma).exp() / denominator)
            .sum();
        total -= positive.ln();
        anchors += 1;
    }
    if anchors == 0 { 0.0 } else { total / anchors as f64 }
}

/// PML's NCALoss with its default distance: softmax over k ≠ i of −scale·‖u_i − u_k‖².
fn pml_nca(scale: f64, z: &[f32], labels: &[i64], d: usize) -> f64 {
    let u = naive::normalized_rows(z, d);
    let n = labels.len();
    let mut losses = vec![];
    for i in 0..n {
        let weights: Vec<f64> = (0..n)
            .map(|k| if k == i { 0.0 } else { (-scale * naive::squared_euclidean(&u[i], &u[k])).exp() })
            .collect();
        let total: f64 = weights.iter().sum();
        let same: f64 = (0..n).filter(|&j| labels[j] == labels[i]).map(|j| weights[j] / total).sum();
        if same != 0.0 {
            losses.push(-same.ln());
        }
    }
    losses.iter().sum::<f64>() / losses.len() as f64
}

#[test]
fn matches_the_definition_and_finite_differences() {
    for sigma in [0.05, 0.3, 1.0] {
        for (n, d, classes) in [(12, 5, 4), (16, 8, 4), (9, 4, 7), (5, 3, 1)] {
            let seed = 40 + n as u64;
            let z = random_embeddings(seed, n, d);
            let labels = random_labels(seed, n, classes);
            let mut loss = Instance::<Snca>::new(Config { sigma }, context(d, 0)).unwrap();
            let out = loss.forward_backward(&z, &labels, None).unwrap();
            let what = format!("σ {sigma}, n {n}");
            assert_close(out.loss, reference(sigma, &z, &labels, d), 1e-5, &what);
            let skipped = (0..n).filter(|&i| !(0..n).any(|j| j != i && labels[j] == labels[i])).count();
            assert_eq!(out.stats.get("skipped_anchors"), Some(skipped as f64), "{what}");
            check_loss_gradient(&mut loss, &z, &labels, None, &GradCheck::default())
                .unwrap_or_else(|e| panic!("{what}: {e}"));
        }
    }
}

#[test]
fn equals_pml_nca_with_scale_one_over_two_sigma() {
    let (n, d) = (14, 6);
    let z = random_embeddings(8, n, d);
    let labels = random_labels(8, n, 5);
    for sigma in [0.05, 0.5] {
        let mut loss = Instance::<Snca>::new(Config { sigma }, context(d, 0)).unwrap();
        let out = loss.forward_backward(&z, &labels, None).unwrap();
        assert_close(out.loss, pml_nca(1.0 / (2.0 * sigma), &z, &labels, d), 1e-5, &format!("σ {sigma}"));
    }
}

#[test]
fn batches_without_positives_give_zero_and_a_statistic() {
    let d = 3;
    let mut loss = Instance::<Snca>::new(Config::default(), context(d, 0)).unwrap();
    let z = random_embeddings(2, 4, d);
    let out = loss.forward_backward(&z, &[0, 1, 2, 3], None).unwrap();
    assert_eq!((out.loss, out.stats.get("no_positive_pairs")), (0.0, Some(1.0)));
    assert!(out.grad.iter().all(|&g| g == 0.0));
    // One class: all the mass is on positives, ℓ = 0, and the gradient vanishes.
    let out = loss.forward_backward(&z, &[5, 5, 5, 5], None).unwrap();
    assert!(out.loss.abs() < 1e-12);
    assert!(out.grad.iter().all(|&g| g.abs() < 1e-6));
    // A single embedding.
    let out = loss.forward_backward(&z[..d], &[0], None).unwrap();
    assert_eq!(out.loss, 0.0);
    let e = Instance::<Snca>::from_config_text("(sigma: 0.0)", context(d, 0)).err().unwrap();
    assert!(e.message().contains("sigma"), "{e}");
}
