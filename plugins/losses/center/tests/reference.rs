//! Centre loss against a plain loop, finite differences, the paper's centre update computed
//! by hand, and a state round trip.

use dmlbench_loss_center::{Center, Config};
use dmlbench_sdk::classifier::ClassifierConfig;
use dmlbench_sdk::testing::{GradCheck, assert_close, check_loss_gradient, random_embeddings, random_labels};
use dmlbench_sdk::{Context, Instance};

fn ctx(d: usize, classes: usize) -> Context {
    Context { embedding_dim: d, num_classes: classes, seed: 4, base_lr: 0.3 }
}

/// Cross-entropy of the plain classifier (no normalisation, no dropout, T = 1) in f64.
fn cross_entropy(eps: f64, w: &[f32], b: &[f32], z: &[f32], labels: &[i64], d: usize) -> f64 {
    let classes = b.len();
    let mut total = 0.0;
    for (i, &label) in labels.iter().enumerate() {
        let logits: Vec<f64> = (0..classes)
            .map(|c| (0..d).map(|k| f64::from(w[c * d + k]) * f64::from(z[i * d + k])).sum::<f64>() + f64::from(b[c]))
            .collect();
        let norm: f64 = logits.iter().map(|l| l.exp()).sum();
        for (c, l) in logits.iter().enumerate() {
            let t = if c as i64 == label { 1.0 - eps } else { eps / (classes - 1) as f64 };
            total -= t * (l.exp() / norm).ln();
        }
    }
    total / labels.len() as f64
}

/// (1/n) Σ_i ½‖z_i − c_{y_i}‖².
fn centre_term(centres: &[f32], z: &[f32], labels: &[i64], d: usize) -> f64 {
    let mut total = 0.0;
    for (i, &label) in labels.iter().enumerate() {
        for k in 0..d {
            let diff = f64::from(z[i * d + k]) - f64::from(centres[label as usize * d + k]);
            total += 0.5 * diff * diff;
        }
    }
    total / labels.len() as f64
}

#[test]
fn matches_the_definition_and_finite_differences_after_training() {
    let (n, d, classes) = (12, 5, 4);
    for (k, config) in [Config::default(), Config { lambda: 0.7, alpha: 0.2, ..Config::default() }].iter().enumerate() {
        let mut loss = Instance::<Center>::new(config.clone(), ctx(d, classes)).unwrap();
        for s in 0..3 {
            let z = random_embeddings(200 + s, n, d);
            loss.forward_backward(&z, &random_labels(200 + s, n, classes), None).unwrap();
            loss.step(1.0).unwrap();
        }
        let plugin = loss.plugin();
        let centres = plugin.centres().to_vec();
        let head = plugin.classifier().unwrap();
        let (w, b) = (head.weight().to_vec(), head.bias().to_vec());
        assert!(centres.iter().any(|&c| c != 0.0) && w.iter().any(|&v| v != 0.0));
        let z = random_embeddings(9, n, d);
        let labels = random_labels(9, n, classes);
        let out = loss.forward_backward(&z, &labels, None).unwrap();
        let ce = cross_entropy(0.1, &w, &b, &z, &labels, d);
        let lc = centre_term(&centres, &z, &labels, d);
        assert_close(out.loss, ce + config.lambda * lc, 1e-5, &format!("config {k}"));
        assert_close(out.stats.get("centre_loss").unwrap(), lc, 1e-5, "centre_loss statistic");
        assert_close(out.stats.get("cross_entropy").unwrap(), ce, 1e-5, "cross_entropy statistic");
        check_loss_gradient(&mut loss, &z, &labels, None, &GradCheck::default())
            .unwrap_or_else(|e| panic!("config {k}: {e}"));
    }
}

#[test]
fn centres_follow_the_papers_update_rule() {
    // Three classes in 2-D, class 2 absent from the batch; α = 0.5, no cross-entropy.
    let config = Config { alpha: 0.5, lambda: 1.0, cross_entropy: false, ..Config::default() };
    let mut loss = Instance::<Center>::new(config, ctx(2, 3)).unwrap();
    let z = [1.0, 0.0, 3.0, 0.0, 0.0, 2.0];
    let labels = [0, 0, 1];
    // Centres at zero: L = mean ½‖z‖² = (1 + 9 + 4) / 2 / 3.
    let out = loss.forward_backward(&z, &labels, None).unwrap();
    assert_close(out.loss, 14.0 / 6.0, 1e-6, "loss at zero centres");
    // Δc_0 = ((0 − 1) + (0 − 3), 0) / (1 + 2) = (−4/3, 0) → c_0 = (2/3, 0);
    // Δc_1 = (0, 0 − 2) / (1 + 1) = (0, −1) → c_1 = (0, 1/2); c_2 stays 0.
    // α is not scaled by the schedule: lr_scale 0 still moves the centres.
    loss.step(0.0).unwrap();
    let want = [2.0 / 3.0, 0.0, 0.0, 0.5, 0.0, 0.0];
    for (k, (&got, &w)) in loss.plugin().centres().iter().zip(&want).enumerate() {
        assert_close(f64::from(got), w, 1e-6, &format!("centre value {k} after step 1"));
    }
    // Again: Δc_0 = ((2/3 − 1) + (2/3 − 3), 0) / 3 = (−8/9, 0) → c_0 = (2/3 + 4/9, 0);
    // Δc_1 = (0, 1/2 − 2) / 2 = (0, −3/4) → c_1 = (0, 1/2 + 3/8).
    loss.forward_backward(&z, &labels, None).unwrap();
    loss.step(1.0).unwrap();
    let want = [10.0 / 9.0, 0.0, 0.0, 7.0 / 8.0, 0.0, 0.0];
    for (k, (&got, &w)) in loss.plugin().centres().iter().zip(&want).enumerate() {
        assert_close(f64::from(got), w, 1e-6, &format!("centre value {k} after step 2"));
    }
    // A step without a new forward pass changes nothing.
    let before = loss.plugin().centres().to_vec();
    loss.step(1.0).unwrap();
    assert_eq!(loss.plugin().centres(), &before[..]);
    // Embeddings on their centres: zero loss and zero gradient.
    let on_centres: Vec<f32> = [0usize, 1].iter().flat_map(|&j| before[j * 2..j * 2 + 2].to_vec()).collect();
    let out = loss.forward_backward(&on_centres, &[0, 1], None).unwrap();
    assert_eq!(out.loss, 0.0);
    assert!(out.grad.iter().all(|&g| g == 0.0));
}

#[test]
fn state_round_trip_continues_the_run_exactly() {
    let (n, d, classes) = (8, 3, 4);
    let config =
        Config { classifier: ClassifierConfig { dropout: 0.2, ..ClassifierConfig::default() }, ..Config::default() };
    let mut original = Instance::<Center>::new(config.clone(), ctx(d, classes)).unwrap();
    for s in 0..2 {
        original.forward_backward(&random_embeddings(s, n, d), &random_labels(s, n, classes), None).unwrap();
        original.step(1.0).unwrap();
    }
    let bytes = original.save().unwrap();
    let mut restored = Instance::<Center>::new(config, ctx(d, classes)).unwrap();
    restored.load(&bytes).unwrap();
    assert_eq!(restored.save().unwrap(), bytes);
    // A forward pass alone leaves the state as it was: it changes in `step` only.
    restored.forward_backward(&random_embeddings(49, n, d), &random_labels(49, n, classes), None).unwrap();
    assert_eq!(restored.save().unwrap(), bytes);
    let z = random_embeddings(77, n, d);
    let labels = random_labels(77, n, classes);
    let a = original.forward_backward(&z, &labels, None).unwrap();
    let b = restored.forward_backward(&z, &labels, None).unwrap();
    assert_eq!((a.loss, a.grad), (b.loss, b.grad));
    original.step(0.5).unwrap();
    restored.step(0.5).unwrap();
    assert_eq!(original.save().unwrap(), restored.save().unwrap());

    // Without cross-entropy the state is the centres alone, and a state with a classifier
    // is refused rather than half-loaded.
    let mut centres_only =
        Instance::<Center>::new(Config { cross_entropy: false, ..Config::default() }, ctx(d, classes)).unwrap();
    let e = centres_only.load(&bytes).unwrap_err();
    assert!(e.message().contains("unexpected tensors"), "{e}");
    let own = centres_only.save().unwrap();
    centres_only.load(&own).unwrap();
}

#[test]
fn invalid_settings_name_their_field() {
    for (text, field) in [
        ("(alpha: 1.5)", "alpha"),
        ("(lambda: -1.0)", "lambda"),
        ("(classifier: (dropout: 2.0))", "classifier.dropout"),
    ] {
        let e = Instance::<Center>::from_config_text(text, ctx(3, 4)).err().unwrap();
        assert!(e.message().contains(field), "{text}: {e}");
    }
    let e = Instance::<Center>::from_config_text("", ctx(3, 0)).err().unwrap();
    assert!(e.message().contains("num_classes"), "{e}");
}
