//! SPCE against the paper's equation as written (a double loop over pairs, a loop over the
//! classes present), and against finite differences.

use dmlbench_loss_spce::{Config, Spce};
use dmlbench_sdk::Instance;
use dmlbench_sdk::testing::{
    GradCheck, assert_close, check_loss_gradient, context, naive, random_embeddings, random_labels,
};

/// −(1/n²) Σ_i Σ_{j: y_j = y_i} s·z_iᵀz_j + (1/n) Σ_i log Σ_k exp((1/n) Σ_{j: y_j = k} s·z_iᵀz_j).
fn reference(config: &Config, z: &[f32], labels: &[i64], d: usize) -> f64 {
    let n = labels.len();
    let rows: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            let r = naive::row(z, d, i);
            if config.normalize_embeddings { naive::normalized(&r) } else { r }
        })
        .collect();
    let sim = |i: usize, j: usize| config.scale * naive::dot(&rows[i], &rows[j]);
    let mut classes: Vec<i64> = labels.to_vec();
    classes.sort_unstable();
    classes.dedup();
    let nf = n as f64;
    let mut pull = 0.0;
    for i in 0..n {
        for j in 0..n {
            if labels[j] == labels[i] {
                pull += sim(i, j);
            }
        }
    }
    let mut push = 0.0;
    for i in 0..n {
        let inner: f64 = classes
            .iter()
            .map(|&k| ((0..n).filter(|&j| labels[j] == k).map(|j| sim(i, j)).sum::<f64>() / nf).exp())
            .sum();
        push += inner.ln();
    }
    -pull / (nf * nf) + push / nf
}

#[test]
fn matches_the_equation_and_finite_differences() {
    let configs = [
        Config::default(),
        Config { normalize_embeddings: true, scale: 8.0 },
        Config { normalize_embeddings: false, scale: 0.3 },
    ];
    for (k, config) in configs.iter().enumerate() {
        for (n, d, classes) in [(12, 5, 3), (16, 8, 4), (7, 4, 7), (20, 6, 5)] {
            let seed = 700 + 10 * k as u64 + n as u64;
            let z = random_embeddings(seed, n, d);
            let labels = random_labels(seed, n, classes);
            let mut loss = Instance::<Spce>::new(config.clone(), context(d, 0)).unwrap();
            let out = loss.forward_backward(&z, &labels, None).unwrap();
            let what = format!("config {k}, n {n}");
            assert_close(out.loss, reference(config, &z, &labels, d), 1e-5, &what);
            check_loss_gradient(&mut loss, &z, &labels, None, &GradCheck::default())
                .unwrap_or_else(|e| panic!("{what}: {e}"));
        }
    }
}

#[test]
fn labels_need_not_be_contiguous_and_one_class_is_degenerate() {
    let (n, d) = (6, 3);
    let z = random_embeddings(12, n, d);
    let mut loss = Instance::<Spce>::new(Config::default(), context(d, 0)).unwrap();
    let sparse = [40, 7, 40, 1000, 7, 7];
    let out = loss.forward_backward(&z, &sparse, None).unwrap();
    assert_close(out.loss, reference(&Config::default(), &z, &sparse, d), 1e-5, "sparse labels");
    assert_eq!(out.stats.get("classes_in_batch"), Some(3.0));
    let out = loss.forward_backward(&z, &[3; 6], None).unwrap();
    assert_eq!((out.loss, out.stats.get("one_class")), (0.0, Some(1.0)));
    assert!(out.grad.iter().all(|&g| g == 0.0));
    // The equation gives exactly 0 for one class too: log exp(x) − x.
    assert!(reference(&Config::default(), &z, &[3; 6], d).abs() < 1e-12);
    let e = Instance::<Spce>::from_config_text("(scale: -2.0)", context(d, 0)).err().unwrap();
    assert!(e.message().contains("scale"), "{e}");
}
