//! Cross-entropy against a plain loop over rows and classes, finite differences, a
//! hand-computed SGD update and a state round trip.

use dmlbench_loss_cross_entropy::CrossEntropy;
use dmlbench_sdk::classifier::{ClassifierConfig, SgdConfig};
use dmlbench_sdk::testing::{GradCheck, assert_close, check_loss_gradient, naive, random_embeddings, random_labels};
use dmlbench_sdk::{Context, Instance};

fn ctx(d: usize, classes: usize, seed: u64) -> Context {
    Context { embedding_dim: d, num_classes: classes, seed, base_lr: 0.5 }
}

/// Trains a few steps on random batches so that W and b are no longer zero.
fn warm_up(loss: &mut Instance<CrossEntropy>, n: usize, d: usize, classes: usize, steps: u64) {
    for s in 0..steps {
        let z = random_embeddings(1000 + s, n, d);
        let labels = random_labels(1000 + s, n, classes);
        loss.forward_backward(&z, &labels, None).unwrap();
        loss.step(1.0).unwrap();
    }
}

#[test]
fn matches_the_definition_and_finite_differences_after_training() {
    let (n, d, classes) = (12, 6, 5);
    let configs = [
        ClassifierConfig::default(),
        ClassifierConfig { label_smoothing: 0.2, temperature: 2.0, ..ClassifierConfig::default() },
        ClassifierConfig {
            label_smoothing: 0.0,
            normalize_features: true,
            normalize_weights: true,
            temperature: 0.05,
            bias: false,
            ..ClassifierConfig::default()
        },
    ];
    for (k, config) in configs.iter().enumerate() {
        let mut loss = Instance::<CrossEntropy>::new(config.clone(), ctx(d, classes, 3)).unwrap();
        warm_up(&mut loss, n, d, classes, 3);
        let head = loss.plugin().classifier();
        let (w, b) = (head.weight().to_vec(), head.bias().to_vec());
        assert!(w.iter().any(|&v| v != 0.0), "config {k}: the classifier did not train");
        let z = random_embeddings(7 + k as u64, n, d);
        let labels = random_labels(7 + k as u64, n, classes);
        let out = loss.forward_backward(&z, &labels, None).unwrap();
        assert_close(
            out.loss,
            naive::classifier_loss(config, &w, &b, &z, &labels, d, None),
            1e-5,
            &format!("config {k}"),
        );
        let accuracy = out.stats.get("accuracy").unwrap();
        assert!((0.0..=1.0).contains(&accuracy));
        check_loss_gradient(&mut loss, &z, &labels, None, &GradCheck::default())
            .unwrap_or_else(|e| panic!("config {k}: {e}"));
    }
}

#[test]
fn dropout_is_seeded_per_step_and_its_gradient_is_exact() {
    let (n, d, classes) = (10, 8, 4);
    let config = ClassifierConfig { dropout: 0.5, ..ClassifierConfig::default() };
    let z = random_embeddings(21, n, d);
    let labels = random_labels(21, n, classes);
    let run = |seed: u64| {
        let mut loss = Instance::<CrossEntropy>::new(config.clone(), ctx(d, classes, seed)).unwrap();
        warm_up(&mut loss, n, d, classes, 2);
        (0..3)
            .map(|_| {
                let value = loss.forward_backward(&z, &labels, None).unwrap().loss;
                loss.step(0.0).unwrap(); // a new mask, the same parameters
                value
            })
            .collect::<Vec<f64>>()
    };
    let first = run(1);
    assert_eq!(first, run(1), "same seed, different results");
    assert_ne!(first, run(2), "the seed does not reach the dropout masks");
    assert_ne!(first[1], first[2], "successive steps reuse one mask");

    // Between two steps the mask is fixed: the loss is a function of the embeddings, equal to
    // the definition with that mask, with an exact gradient.
    let mut loss = Instance::<CrossEntropy>::new(config.clone(), ctx(d, classes, 5)).unwrap();
    warm_up(&mut loss, n, d, classes, 2);
    let head = loss.plugin().classifier();
    let mask = head.dropout_mask(head.steps(), n).unwrap();
    assert!(mask.contains(&0.0) && mask.contains(&2.0), "not a dropout mask");
    let (w, b) = (head.weight().to_vec(), head.bias().to_vec());
    let out = loss.forward_backward(&z, &labels, None).unwrap();
    assert_close(out.loss, naive::classifier_loss(&config, &w, &b, &z, &labels, d, Some(&mask)), 1e-5, "with dropout");
    assert_eq!(loss.forward_backward(&z, &labels, None).unwrap().loss, out.loss, "the mask changed without a step");
    check_loss_gradient(&mut loss, &z, &labels, None, &GradCheck::default()).unwrap();
}

#[test]
fn first_call_has_no_embedding_gradient_and_step_is_hand_computed_sgd() {
    // d = 2, C = 3, n = 2, ε = 0.1, lr = 0.1, μ = 0.9, weight decay 0.01.
    let (d, classes) = (2, 3);
    let config = ClassifierConfig {
        optimizer: SgdConfig { lr: Some(0.1), momentum: 0.9, weight_decay: 0.01, nesterov: false },
        ..ClassifierConfig::default()
    };
    let mut loss = Instance::<CrossEntropy>::new(config, ctx(d, classes, 0)).unwrap();
    let z = [1.0f32, 2.0, -1.0, 0.5];
    let labels = [0i64, 2];
    let zr = |i: usize, k: usize| f64::from(z[i * d + k]);
    let target = |i: usize, c: usize| if c as i64 == labels[i] { 0.9 } else { 0.05 };

    // Zero weights: every class has probability 1/3, the loss is ln 3 whatever the target,
    // and dL/dZ = G·W = 0.
    let out = loss.forward_backward(&z, &labels, None).unwrap();
    assert_close(out.loss, 3f64.ln(), 1e-6, "first loss");
    assert!(out.grad.iter().all(|&g| g == 0.0), "{:?}", out.grad);

    // G_ic = (p_ic − t_ic)/n, dW_c = Σ_i G_ic z_i, db_c = Σ_i G_ic; first step: v = g.
    let grads = |w: &[f64], b: &[f64]| {
        let mut dw = vec![0.0; classes * d];
        let mut db = vec![0.0; classes];
        for i in 0..2 {
            let logits: Vec<f64> = (0..classes).map(|c| w[c * d] * zr(i, 0) + w[c * d + 1] * zr(i, 1) + b[c]).collect();
            let norm: f64 = logits.iter().map(|l| l.exp()).sum();
            for c in 0..classes {
                let g = (logits[c].exp() / norm - target(i, c)) / 2.0;
                db[c] += g;
                for k in 0..d {
                    dw[c * d + k] += g * zr(i, k);
                }
            }
        }
        (dw, db)
    };
    let (dw1, db1) = grads(&[0.0; 6], &[0.0; 3]);
    let w1: Vec<f64> = dw1.iter().map(|g| -0.1 * g).collect();
    let b1: Vec<f64> = db1.iter().map(|g| -0.1 * g).collect();
    loss.step(1.0).unwrap();
    let head = loss.plugin().classifier();
    for (k, (&got, &want)) in head.weight().iter().zip(&w1).enumerate() {
        assert_close(f64::from(got), want, 1e-6, &format!("W after step 1 [{k}]"));
    }
    for (c, (&got, &want)) in head.bias().iter().zip(&b1).enumerate() {
        assert_close(f64::from(got), want, 1e-6, &format!("b after step 1 [{c}]"));
    }

    // Second step at lr_scale 0.5: v ← 0.9 v + (g + wd·W) for W, v ← 0.9 v + g for b.
    let out = loss.forward_backward(&z, &labels, None).unwrap();
    assert!(out.grad.iter().any(|&g| g != 0.0), "the embeddings still get no gradient");
    let (dw2, db2) = grads(&w1, &b1);
    loss.step(0.5).unwrap();
    let head = loss.plugin().classifier();
    for k in 0..6 {
        let v = 0.9 * dw1[k] + (dw2[k] + 0.01 * w1[k]);
        assert_close(f64::from(head.weight()[k]), w1[k] - 0.05 * v, 1e-6, &format!("W after step 2 [{k}]"));
    }
    for c in 0..3 {
        let v = 0.9 * db1[c] + db2[c];
        assert_close(f64::from(head.bias()[c]), b1[c] - 0.05 * v, 1e-6, &format!("b after step 2 [{c}]"));
    }
}

#[test]
fn state_round_trip_continues_the_run_exactly() {
    let (n, d, classes) = (8, 4, 3);
    let config = ClassifierConfig {
        dropout: 0.3,
        optimizer: SgdConfig { momentum: 0.9, nesterov: true, ..SgdConfig::default() },
        ..ClassifierConfig::default()
    };
    let mut original = Instance::<CrossEntropy>::new(config.clone(), ctx(d, classes, 9)).unwrap();
    warm_up(&mut original, n, d, classes, 3);
    let bytes = original.save().unwrap();
    let mut restored = Instance::<CrossEntropy>::new(config.clone(), ctx(d, classes, 9)).unwrap();
    restored.load(&bytes).unwrap();
    assert_eq!(restored.save().unwrap(), bytes);
    // A forward pass alone leaves the state as it was: it changes in `step` only.
    let probe = random_embeddings(49, n, d);
    restored.forward_backward(&probe, &random_labels(49, n, classes), None).unwrap();
    assert_eq!(restored.save().unwrap(), bytes);
    for s in 0..2 {
        let z = random_embeddings(50 + s, n, d);
        let labels = random_labels(50 + s, n, classes);
        let a = original.forward_backward(&z, &labels, None).unwrap();
        let b = restored.forward_backward(&z, &labels, None).unwrap();
        assert_eq!((a.loss, &a.grad), (b.loss, &b.grad), "step {s}");
        original.step(1.0).unwrap();
        restored.step(1.0).unwrap();
    }
    assert_eq!(original.save().unwrap(), restored.save().unwrap());

    let mut other = Instance::<CrossEntropy>::new(config, ctx(d, classes + 1, 9)).unwrap();
    let e = other.load(&bytes).unwrap_err();
    assert!(e.message().contains("classifier.weight"), "{e}");
    assert!(other.load(b"not a state").is_err());
}

#[test]
fn rejects_runs_without_classes_and_bad_fields() {
    let e = Instance::<CrossEntropy>::from_config_text("", ctx(4, 0, 0)).err().unwrap();
    assert!(e.message().contains("num_classes"), "{e}");
    for (text, field) in [
        ("(dropout: 1.5)", "dropout"),
        ("(label_smoothing: -0.1)", "label_smoothing"),
        ("(temperature: 0.0)", "temperature"),
        ("(optimizer: (momentum: 1.0))", "optimizer.momentum"),
        ("(lr: 0.1)", "lr"),
    ] {
        let e = Instance::<CrossEntropy>::from_config_text(text, ctx(4, 3, 0)).err().unwrap();
        assert!(e.message().contains(field), "{text}: {e}");
    }
    // The learning rate falls back to the run's base rate, and an explicit one wins.
    let loss = Instance::<CrossEntropy>::from_config_text("", ctx(4, 3, 0)).unwrap();
    assert_eq!(loss.plugin().classifier().learning_rate(), 0.5);
    let loss = Instance::<CrossEntropy>::from_config_text("(optimizer: (lr: Some(0.02)))", ctx(4, 3, 0)).unwrap();
    assert_eq!(loss.plugin().classifier().learning_rate(), 0.02);
}
