//! A linear softmax classifier owned by a loss plugin: label-smoothed cross-entropy with
//! optional dropout, temperature and weight/feature normalisation, and its own SGD.
//!
//! Classification losses (cross-entropy, NormSoftmax, centre loss's softmax term) train a
//! C×d weight matrix W and a bias b next to the backbone. The host never sees them: the
//! plugin computes dL/dZ for the embeddings, keeps dL/dW and dL/db from the same call, and
//! applies them in [`Loss::step`](crate::Loss::step) with the optimizer settings of its own
//! configuration ([`SgdConfig`], PyTorch's `torch.optim.SGD`).
//!
//! For a batch z_1..z_n with labels y_i, C classes, smoothing ε, dropout p, temperature T:
//!
//! ```text
//! x_i = z_i / ‖z_i‖  if normalize_features, else z_i
//! x_i ← x_i ⊙ m_i / (1 − p)        m_i ~ Bernoulli(1 − p) per coordinate (dropout)
//! w_c = W_c / ‖W_c‖  if normalize_weights, else W_c
//! ℓ_ic = (x_i · w_c + b_c) / T
//! t_ic = 1 − ε if c = y_i, else ε / (C − 1)
//! L = −(1/n) Σ_i Σ_c t_ic log softmax(ℓ_i)_c
//! ```
//!
//! This is the classifier of Boudiaf et al. (ECCV 2020, code: jeromerony/dml_cross_entropy,
//! `models/base_model.py`, `utils/utils.py`): zero-initialised W and b, smoothing ε/(C − 1)
//! on the wrong classes, dropout on the classifier input. With both normalisations and a
//! temperature it is NormSoftmax (Zhai and Wu, "Classification is a Strong Baseline for
//! Deep Metric Learning", BMVC 2019). The authors compute the KL divergence to the smoothed
//! target; we report the cross-entropy, which differs from it by the target's entropy, a
//! constant: the gradients are the same.
//!
//! Zero-initialised weights make dL/dZ = G·W exactly zero on the first call (G = dL/dℓ): the
//! backbone receives no gradient until the classifier has taken one step. The authors' code
//! behaves the same way. A zero row has no direction, so with `normalize_weights` the
//! weights start instead from a seeded normal draw N(0, 1/d).
//!
//! ```
//! use dmlbench_sdk::classifier::{Classifier, ClassifierConfig};
//! use dmlbench_sdk::matrix::MatRef;
//! use dmlbench_sdk::{Context, Stats};
//! let context = Context { embedding_dim: 2, num_classes: 2, seed: 0, base_lr: 0.5 };
//! let config = ClassifierConfig { label_smoothing: 0.0, ..ClassifierConfig::default() };
//! let mut head = Classifier::new(config, &context, "").unwrap();
//! let z = [1.0, 0.0, 0.0, 1.0];
//! let mut dz = [0.0; 4];
//! let loss = head.forward_backward(MatRef::new(2, 2, &z), &[0, 1], 1.0, &mut dz, &mut Stats::default()).unwrap();
//! assert!((loss - 2f64.ln()).abs() < 1e-6); // zero weights: uniform prediction
//! assert_eq!(dz, [0.0; 4]); // ... and no gradient for the embeddings yet
//! head.step(1.0);
//! assert!(head.weight()[0] > 0.0); // W₀₀ moved towards z₀
//! ```

use serde::{Deserialize, Serialize};

use crate::checks::{in_range, non_negative, positive};
use crate::error::{Error, Result};
use crate::matrix::{MatRef, Matrix, Op, matmul};
use crate::normalize::{Normalized, l2_normalize, l2_normalize_backward};
use crate::plugin::{Context, Stats};
use crate::rng::{CallRng, decode_counter, encode_counter};
use crate::softmax::log_sum_exp;
use crate::state::TensorMap;

/// SGD settings, with PyTorch's `torch.optim.SGD` semantics (dampening 0).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SgdConfig {
    /// Learning rate; `None` uses the experiment's base learning rate. Written `Some(0.01)`.
    pub lr: Option<f64>,
    /// Momentum μ (0 disables it).
    pub momentum: f64,
    /// L2 weight decay, added to the gradient of weights (never of biases).
    pub weight_decay: f64,
    /// Nesterov momentum (needs μ > 0).
    pub nesterov: bool,
}

impl Default for SgdConfig {
    /// The defaults of Boudiaf et al.'s `experiment.py`: no momentum, weight decay 5e-4.
    fn default() -> Self {
        SgdConfig { lr: None, momentum: 0.0, weight_decay: 5e-4, nesterov: false }
    }
}

impl SgdConfig {
    /// Plain SGD at the experiment's learning rate: no momentum, no weight decay. The
    /// defaults of the losses that train proxies or class weights.
    pub fn plain() -> Self {
        SgdConfig { lr: None, momentum: 0.0, weight_decay: 0.0, nesterov: false }
    }

    /// Reads an `optimizer` setting whose omitted fields take [`SgdConfig::plain`]'s values,
    /// for `#[serde(deserialize_with = "SgdConfig::deserialize_plain")]`: with the derived
    /// defaults (Boudiaf et al.'s weight decay 5e-4), `optimizer: (lr: Some(0.01))` would add
    /// a weight decay nobody asked for.
    ///
    /// ```
    /// use dmlbench_sdk::classifier::SgdConfig;
    /// #[derive(serde::Deserialize)]
    /// struct Config {
    ///     #[serde(deserialize_with = "SgdConfig::deserialize_plain")]
    ///     optimizer: SgdConfig,
    /// }
    /// let c: Config = ron::from_str("(optimizer: (lr: Some(0.01)))").unwrap();
    /// assert_eq!(c.optimizer, SgdConfig { lr: Some(0.01), ..SgdConfig::plain() });
    /// assert!(ron::from_str::<Config>("(optimizer: (rate: 1.0))").is_err());
    /// ```
    pub fn deserialize_plain<'de, D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(default, deny_unknown_fields)]
        struct Fields {
            lr: Option<f64>,
            momentum: f64,
            weight_decay: f64,
            nesterov: bool,
        }
        impl Default for Fields {
            fn default() -> Self {
                let SgdConfig { lr, momentum, weight_decay, nesterov } = SgdConfig::plain();
                Fields { lr, momentum, weight_decay, nesterov }
            }
        }
        let Fields { lr, momentum, weight_decay, nesterov } = Fields::deserialize(deserializer)?;
        Ok(SgdConfig { lr, momentum, weight_decay, nesterov })
    }

    /// Checks every field; `prefix` is prepended to field names in messages ("classifier.").
    pub fn validate(&self, prefix: &str) -> Result<()> {
        if let Some(lr) = self.lr {
            positive(&format!("{prefix}optimizer.lr"), lr)?;
        }
        in_range(&format!("{prefix}optimizer.momentum"), self.momentum, 0.0..1.0)?;
        non_negative(&format!("{prefix}optimizer.weight_decay"), self.weight_decay)?;
        if self.nesterov && self.momentum == 0.0 {
            return Err(Error::bad_config(format!(
                "{prefix}optimizer.nesterov needs a momentum above 0 (as torch.optim.SGD)"
            )));
        }
        Ok(())
    }

    /// The learning rate to use: `lr`, or the context's base learning rate when unset.
    pub fn learning_rate(&self, context: &Context) -> f64 {
        self.lr.unwrap_or(context.base_lr)
    }
}

/// One parameter tensor with its momentum buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct SgdParam {
    /// The values.
    pub value: Vec<f32>,
    /// The momentum buffer (zeros until the first step with μ > 0).
    pub velocity: Vec<f32>,
}

impl SgdParam {
    /// A parameter starting at `value`, with an empty momentum buffer.
    pub fn new(value: Vec<f32>) -> Self {
        let velocity = vec![0.0; value.len()];
        SgdParam { value, velocity }
    }

    /// One SGD step: g ← grad + wd·θ; v ← μ·v + g; g ← g + μ·v (Nesterov) or v (μ > 0);
    /// θ ← θ − lr·g. PyTorch starts v at g on the first step, which is μ·0 + g: the same.
    ///
    /// ```
    /// use dmlbench_sdk::classifier::SgdParam;
    /// let mut p = SgdParam::new(vec![1.0]);
    /// p.step(&[0.5], 0.1, 0.9, 0.0, false);
    /// assert!((p.value[0] - 0.95).abs() < 1e-7);
    /// p.step(&[0.5], 0.1, 0.9, 0.0, false); // v = 0.9·0.5 + 0.5
    /// assert!((p.value[0] - (0.95 - 0.1 * 0.95)).abs() < 1e-6);
    /// ```
    pub fn step(&mut self, grad: &[f32], lr: f64, momentum: f64, weight_decay: f64, nesterov: bool) {
        assert_eq!(grad.len(), self.value.len(), "SgdParam::step: gradient length");
        for ((theta, v), &g) in self.value.iter_mut().zip(&mut self.velocity).zip(grad) {
            let mut g = f64::from(g) + weight_decay * f64::from(*theta);
            if momentum != 0.0 {
                let velocity = momentum * f64::from(*v) + g;
                *v = velocity as f32;
                g = if nesterov { g + momentum * velocity } else { velocity };
            }
            *theta = (f64::from(*theta) - lr * g) as f32;
        }
    }
}

/// Configuration of a [`Classifier`]. The defaults are Boudiaf et al.'s.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClassifierConfig {
    /// ε: the target puts 1 − ε on the true class and ε/(C − 1) on each other class.
    pub label_smoothing: f64,
    /// Dropout probability on the classifier input (the paper's recipe uses 0.5 with
    /// ResNet-50). The mask is drawn from the run's seed and the number of steps taken, so it
    /// changes at every step and a resumed run draws the same masks.
    pub dropout: f64,
    /// T: logits are divided by it.
    pub temperature: f64,
    /// L2-normalise the embeddings before the classifier.
    pub normalize_features: bool,
    /// L2-normalise each class's weight row (NormSoftmax, with `normalize_features`).
    pub normalize_weights: bool,
    /// Learn a bias (kept at 0 otherwise).
    pub bias: bool,
    /// How W and b are updated in `step`.
    pub optimizer: SgdConfig,
}

impl Default for ClassifierConfig {
    fn default() -> Self {
        ClassifierConfig {
            label_smoothing: 0.1,
            dropout: 0.0,
            temperature: 1.0,
            normalize_features: false,
            normalize_weights: false,
            bias: true,
            optimizer: SgdConfig::default(),
        }
    }
}

impl ClassifierConfig {
    /// Checks every field against a class count; `prefix` is prepended to field names.
    pub fn validate(&self, classes: usize, prefix: &str) -> Result<()> {
        in_range(&format!("{prefix}label_smoothing"), self.label_smoothing, 0.0..1.0)?;
        if self.label_smoothing > 0.0 && classes < 2 {
            return Err(Error::bad_config(format!(
                "{prefix}label_smoothing spreads mass over the other classes and needs at least 2, the run has {classes}"
            )));
        }
        in_range(&format!("{prefix}dropout"), self.dropout, 0.0..1.0)?;
        positive(&format!("{prefix}temperature"), self.temperature)?;
        self.optimizer.validate(prefix)
    }
}

/// Gradients of the last call, waiting for `step`.
#[derive(Clone, Debug)]
struct Pending {
    weight: Vec<f32>,
    bias: Vec<f32>,
}

/// A linear softmax classifier with its optimizer state.
#[derive(Clone, Debug)]
pub struct Classifier {
    config: ClassifierConfig,
    classes: usize,
    dim: usize,
    lr: f64,
    seed: u64,
    weight: SgdParam,
    bias: SgdParam,
    pending: Option<Pending>,
    steps: u64,
}

/// Names of the classifier's state tensors.
pub const STATE_NAMES: [&str; 5] = [
    "classifier.weight",
    "classifier.bias",
    "classifier.weight_momentum",
    "classifier.bias_momentum",
    "classifier.steps",
];

impl Classifier {
    /// A classifier over `context.num_classes` classes of `context.embedding_dim` features.
    /// `prefix` is prepended to config field names in error messages ("classifier.").
    pub fn new(config: ClassifierConfig, context: &Context, prefix: &str) -> Result<Self> {
        let (classes, dim) = (context.num_classes, context.embedding_dim);
        if classes == 0 {
            return Err(Error::bad_config(
                "a classifier needs the number of training classes, and the run gave 0 (num_classes)",
            ));
        }
        if dim == 0 {
            return Err(Error::bad_config("a classifier needs the embedding size, and the run gave 0 (embedding_dim)"));
        }
        config.validate(classes, prefix)?;
        let weight = if config.normalize_weights {
            let mut rng = CallRng::new(context.seed, "classifier.init", 0);
            let scale = 1.0 / (dim as f64).sqrt();
            (0..classes * dim).map(|_| (rng.normal() * scale) as f32).collect()
        } else {
            vec![0.0; classes * dim]
        };
        Ok(Classifier {
            lr: config.optimizer.learning_rate(context),
            config,
            classes,
            dim,
            seed: context.seed,
            weight: SgdParam::new(weight),
            bias: SgdParam::new(vec![0.0; classes]),
            pending: None,
            steps: 0,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ClassifierConfig {
        &self.config
    }

    /// W, C×d row-major.
    pub fn weight(&self) -> &[f32] {
        &self.weight.value
    }

    /// b, C values.
    pub fn bias(&self) -> &[f32] {
        &self.bias.value
    }

    /// W and b with their momentum buffers.
    pub fn parameters(&self) -> (&SgdParam, &SgdParam) {
        (&self.weight, &self.bias)
    }

    /// Replaces W (C×d) and b (C), for tests and warm starts. Drops pending gradients.
    pub fn set_parameters(&mut self, weight: &[f32], bias: &[f32]) -> Result<()> {
        if weight.len() != self.classes * self.dim || bias.len() != self.classes {
            return Err(Error::bad_input(format!(
                "classifier parameters must be {}×{} and {}, got {} and {} values",
                self.classes,
                self.dim,
                self.classes,
                weight.len(),
                bias.len()
            )));
        }
        self.weight.value.copy_from_slice(weight);
        self.bias.value.copy_from_slice(bias);
        self.pending = None;
        Ok(())
    }

    /// The learning rate `step(1.0)` uses.
    pub fn learning_rate(&self) -> f64 {
        self.lr
    }

    /// Number of steps taken (it seeds the dropout masks).
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The dropout mask used after `step` steps, already scaled: n·d values of 0 or
    /// 1/(1 − p). `None` when dropout is off.
    pub fn dropout_mask(&self, step: u64, n: usize) -> Option<Vec<f32>> {
        let p = self.config.dropout;
        if p == 0.0 {
            return None;
        }
        let keep_scale = (1.0 / (1.0 - p)) as f32;
        let mut rng = CallRng::new(self.seed, "classifier.dropout", step);
        Some((0..n * self.dim).map(|_| if rng.uniform() >= p { keep_scale } else { 0.0 }).collect())
    }

    /// The cross-entropy of one batch. Adds `scale`·dL/dZ into `dz` (n×d) and keeps
    /// `scale`·dL/dW and `scale`·dL/db for the next [`Classifier::step`]; returns L itself.
    /// Records `accuracy` (share of rows whose largest logit is the label's).
    pub fn forward_backward(
        &mut self,
        z: MatRef<'_>,
        labels: &[i64],
        scale: f64,
        dz: &mut [f32],
        stats: &mut Stats,
    ) -> Result<f64> {
        let (n, d, classes) = (z.rows, z.cols, self.classes);
        if d != self.dim {
            return Err(Error::bad_input(format!("classifier expects embeddings of size {}, got {d}", self.dim)));
        }
        if labels.len() != n || dz.len() != n * d {
            return Err(Error::bad_input(format!(
                "classifier: {n} embeddings, {} labels, gradient buffer of {}",
                labels.len(),
                dz.len()
            )));
        }
        if let Some((i, &label)) = labels.iter().enumerate().find(|&(_, &l)| l < 0 || l as u64 >= classes as u64) {
            return Err(Error::bad_input(format!("label {label} of row {i} is outside 0..{classes}")));
        }
        if n == 0 {
            return Ok(0.0);
        }

        // Classifier input: normalised, then dropped out.
        let normalized: Option<Normalized> = self.config.normalize_features.then(|| l2_normalize(z));
        let features = normalized.as_ref().map_or(z, |nz| nz.unit.view());
        // The state changes in `step` only: calls between two steps share one mask, so the
        // loss is a function of the batch alone between steps.
        let mask = self.dropout_mask(self.steps, n);
        let dropped: Option<Matrix> = mask.as_ref().map(|m| {
            let mut x = features.to_matrix();
            for (v, &k) in x.data.iter_mut().zip(m) {
                *v *= k;
            }
            x
        });
        let input = dropped.as_ref().map_or(features, Matrix::view);
        let w_raw = MatRef::new(classes, d, &self.weight.value);
        let w_normalized: Option<Normalized> = self.config.normalize_weights.then(|| l2_normalize(w_raw));
        let w = w_normalized.as_ref().map_or(w_raw, |nw| nw.unit.view());

        let mut logits = matmul(input, Op::N, w, Op::T);
        let inv_t = 1.0 / self.config.temperature;
        let eps = self.config.label_smoothing;
        let (on, off) = if classes > 1 { (1.0 - eps, eps / (classes - 1) as f64) } else { (1.0, 0.0) };
        let mut total = 0.0;
        let mut correct = 0usize;
        // G = dL/d(x·wᵀ + b) = (softmax − t) · scale / (n·T), written over the logits.
        let g_scale = scale / (n as f64 * self.config.temperature);
        for (i, &label) in labels.iter().enumerate() {
            let y = label as usize;
            let row = logits.row_mut(i);
            for (c, v) in row.iter_mut().enumerate() {
                *v = ((f64::from(*v) + f64::from(self.bias.value[c])) * inv_t) as f32;
            }
            let argmax = (0..classes).fold(0, |best, c| if row[c] > row[best] { c } else { best });
            correct += usize::from(argmax == y);
            let lse = log_sum_exp(row);
            let sum: f64 = row.iter().map(|&v| f64::from(v)).sum();
            let target_dot = on * f64::from(row[y]) + off * (sum - f64::from(row[y]));
            total += lse - target_dot;
            for (c, v) in row.iter_mut().enumerate() {
                let target = if c == y { on } else { off };
                *v = (((f64::from(*v) - lse).exp() - target) * g_scale) as f32;
            }
        }
        let grad = logits;
        stats.record("accuracy", correct as f64 / n as f64);

        let mut d_bias = vec![0.0f32; classes];
        if self.config.bias {
            for i in 0..n {
                for (b, &g) in d_bias.iter_mut().zip(grad.row(i)) {
                    *b += g;
                }
            }
        }
        let d_w_used = matmul(grad.view(), Op::T, input, Op::N);
        let d_weight = match &w_normalized {
            Some(nw) => l2_normalize_backward(nw, d_w_used.view()).data,
            None => d_w_used.data,
        };
        let mut d_input = matmul(grad.view(), Op::N, w, Op::N);
        if let Some(m) = &mask {
            for (v, &k) in d_input.data.iter_mut().zip(m) {
                *v *= k;
            }
        }
        let d_features = match &normalized {
            Some(nz) => l2_normalize_backward(nz, d_input.view()),
            None => d_input,
        };
        for (o, &g) in dz.iter_mut().zip(&d_features.data) {
            *o += g;
        }
        self.pending = Some(Pending { weight: d_weight, bias: d_bias });
        Ok(total / n as f64)
    }

    /// Applies the gradients of the last [`Classifier::forward_backward`] with learning rate
    /// lr·`lr_scale`, weight decay on W only. Without a pending gradient (no call since the
    /// last step) the parameters stay as they are, as PyTorch skips parameters whose gradient
    /// is unset; the step still counts for the dropout masks.
    pub fn step(&mut self, lr_scale: f64) {
        self.steps += 1;
        let Some(pending) = self.pending.take() else { return };
        let o = &self.config.optimizer;
        let lr = self.lr * lr_scale;
        self.weight.step(&pending.weight, lr, o.momentum, o.weight_decay, o.nesterov);
        if self.config.bias {
            self.bias.step(&pending.bias, lr, o.momentum, 0.0, o.nesterov);
        }
    }

    /// The state: W, b, their momentum buffers and the step counter, named by
    /// [`STATE_NAMES`]. Pending gradients are not saved: save after `step`.
    pub fn tensors(&self) -> Vec<(&'static str, Vec<usize>, Vec<f32>)> {
        let (c, d) = (self.classes, self.dim);
        vec![
            (STATE_NAMES[0], vec![c, d], self.weight.value.clone()),
            (STATE_NAMES[1], vec![c], self.bias.value.clone()),
            (STATE_NAMES[2], vec![c, d], self.weight.velocity.clone()),
            (STATE_NAMES[3], vec![c], self.bias.velocity.clone()),
            (STATE_NAMES[4], vec![4], encode_counter(self.steps).to_vec()),
        ]
    }

    /// Restores what [`Classifier::tensors`] saved, taking its tensors out of `map`.
    pub fn load(&mut self, map: &mut TensorMap) -> Result<()> {
        let (c, d) = (self.classes, self.dim);
        let weight = map.take(STATE_NAMES[0], &[c, d])?;
        let bias = map.take(STATE_NAMES[1], &[c])?;
        let weight_momentum = map.take(STATE_NAMES[2], &[c, d])?;
        let bias_momentum = map.take(STATE_NAMES[3], &[c])?;
        let steps = decode_counter(&map.take(STATE_NAMES[4], &[4])?, STATE_NAMES[4])?;
        for (name, values) in [
            (STATE_NAMES[0], &weight),
            (STATE_NAMES[1], &bias),
            (STATE_NAMES[2], &weight_momentum),
            (STATE_NAMES[3], &bias_momentum),
        ] {
            if let Some(i) = values.iter().position(|v| !v.is_finite()) {
                return Err(Error::bad_input(format!("state tensor '{name}' holds {} at index {i}", values[i])));
            }
        }
        self.weight = SgdParam { value: weight, velocity: weight_momentum };
        self.bias = SgdParam { value: bias, velocity: bias_momentum };
        self.steps = steps;
        self.pending = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{GradCheck, check_gradient, context, naive, random_embeddings, random_labels};

    fn configs() -> Vec<ClassifierConfig> {
        vec![
            ClassifierConfig::default(),
            ClassifierConfig { dropout: 0.5, temperature: 0.5, ..ClassifierConfig::default() },
            ClassifierConfig {
                normalize_features: true,
                normalize_weights: true,
                temperature: 0.1,
                label_smoothing: 0.0,
                bias: false,
                ..ClassifierConfig::default()
            },
        ]
    }

    #[test]
    fn loss_and_all_gradients_match_the_definition() {
        let (n, d, classes) = (9, 5, 4);
        let ctx = context(d, classes);
        let z = random_embeddings(1, n, d);
        let labels = random_labels(1, n, classes);
        for (k, config) in configs().into_iter().enumerate() {
            let mut head = Classifier::new(config.clone(), &ctx, "").unwrap();
            // Non-zero parameters, so that every gradient is exercised.
            let w = random_embeddings(2, classes, d);
            let b: Vec<f32> = random_embeddings(3, 1, classes).iter().map(|v| 0.3 * v).collect();
            head.set_parameters(&w, &b).unwrap();
            let mask = head.dropout_mask(0, n);
            let mut dz = vec![0.0; n * d];
            let loss =
                head.forward_backward(MatRef::new(n, d, &z), &labels, 1.0, &mut dz, &mut Stats::default()).unwrap();
            let want = naive::classifier_loss(&config, &w, &b, &z, &labels, d, mask.as_deref());
            assert!((loss - want).abs() < 1e-5 * want.abs().max(1.0), "config {k}: {loss} vs {want}");
            let pending = head.pending.clone().unwrap();
            let opts = GradCheck::default();
            let f = |x: &[f32]| Ok(naive::classifier_loss(&config, &w, &b, x, &labels, d, mask.as_deref()));
            check_gradient(f, &z, &dz, &opts).unwrap_or_else(|e| panic!("config {k} dZ: {e}"));
            let f = |x: &[f32]| Ok(naive::classifier_loss(&config, x, &b, &z, &labels, d, mask.as_deref()));
            check_gradient(f, &w, &pending.weight, &opts).unwrap_or_else(|e| panic!("config {k} dW: {e}"));
            if config.bias {
                let f = |x: &[f32]| Ok(naive::classifier_loss(&config, &w, x, &z, &labels, d, mask.as_deref()));
                check_gradient(f, &b, &pending.bias, &opts).unwrap_or_else(|e| panic!("config {k} db: {e}"));
            } else {
                assert!(pending.bias.iter().all(|&g| g == 0.0));
            }
        }
    }

    #[test]
    fn dropout_masks_are_seeded_by_call_and_scaled() {
        let ctx = context(6, 3);
        let config = ClassifierConfig { dropout: 0.25, ..ClassifierConfig::default() };
        let head = Classifier::new(config, &ctx, "").unwrap();
        let m0 = head.dropout_mask(0, 200).unwrap();
        assert_eq!(m0, head.dropout_mask(0, 200).unwrap());
        assert_ne!(m0, head.dropout_mask(1, 200).unwrap());
        assert!(m0.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-6));
        // 1,200 Bernoulli(0.25) drops: standard error 0.0125.
        let dropped = m0.iter().filter(|&&v| v == 0.0).count() as f64 / m0.len() as f64;
        assert!((dropped - 0.25).abs() < 0.05, "dropped share {dropped}");
    }

    #[test]
    fn step_is_torch_sgd_with_no_decay_on_the_bias() {
        let ctx = Context { embedding_dim: 2, num_classes: 2, seed: 0, base_lr: 0.1 };
        let config = ClassifierConfig {
            label_smoothing: 0.0,
            optimizer: SgdConfig { lr: None, momentum: 0.5, weight_decay: 0.1, nesterov: true },
            ..ClassifierConfig::default()
        };
        let mut head = Classifier::new(config, &ctx, "").unwrap();
        head.set_parameters(&[1.0, 0.0, 0.0, 1.0], &[0.5, -0.5]).unwrap();
        let z = [2.0, 0.0];
        let mut dz = [0.0; 2];
        head.forward_backward(MatRef::new(1, 2, &z), &[1], 1.0, &mut dz, &mut Stats::default()).unwrap();
        // Logits (2.5, −0.5): p = (σ(3), σ(−3)), G = p − (0, 1) = (σ(3), −σ(3)).
        let s = 1.0 / (1.0 + (-3.0f64).exp());
        let (g_w, g_b) = ([2.0 * s, 0.0, -2.0 * s, 0.0], [s, -s]);
        let w0 = [1.0, 0.0, 0.0, 1.0];
        let b0 = [0.5, -0.5];
        head.step(2.0); // lr = 0.1 · 2
        for k in 0..4 {
            let g = g_w[k] + 0.1 * w0[k];
            let v = g; // first step: v = g
            let want = w0[k] - 0.2 * (g + 0.5 * v);
            assert!((f64::from(head.weight()[k]) - want).abs() < 1e-6, "W[{k}]");
        }
        for c in 0..2 {
            let want = b0[c] - 0.2 * (g_b[c] + 0.5 * g_b[c]);
            assert!((f64::from(head.bias()[c]) - want).abs() < 1e-6, "b[{c}]");
        }
        // No pending gradient: a second step changes nothing.
        let before = head.weight().to_vec();
        head.step(1.0);
        assert_eq!(head.weight(), &before[..]);
    }

    #[test]
    fn state_round_trips_and_rejects_wrong_shapes() {
        let ctx = context(3, 4);
        let config = ClassifierConfig {
            dropout: 0.5,
            optimizer: SgdConfig { momentum: 0.9, ..SgdConfig::default() },
            ..ClassifierConfig::default()
        };
        let mut head = Classifier::new(config.clone(), &ctx, "").unwrap();
        let z = random_embeddings(4, 8, 3);
        let labels = random_labels(4, 8, 4);
        for _ in 0..3 {
            let mut dz = vec![0.0; 24];
            head.forward_backward(MatRef::new(8, 3, &z), &labels, 1.0, &mut dz, &mut Stats::default()).unwrap();
            head.step(1.0);
        }
        let tensors = head.tensors();
        let refs: Vec<(&str, &[usize], &[f32])> = tensors.iter().map(|(n, s, v)| (*n, &s[..], &v[..])).collect();
        let bytes = crate::state::save_tensors(&refs).unwrap();
        let mut fresh = Classifier::new(config.clone(), &ctx, "").unwrap();
        let mut map = TensorMap::parse(&bytes).unwrap();
        fresh.load(&mut map).unwrap();
        map.finish().unwrap();
        assert_eq!((fresh.parameters(), fresh.steps()), (head.parameters(), 3));
        // The restored copy continues exactly as the original.
        let mut g1 = vec![0.0; 24];
        let mut g2 = vec![0.0; 24];
        let l1 = head.forward_backward(MatRef::new(8, 3, &z), &labels, 1.0, &mut g1, &mut Stats::default()).unwrap();
        let l2 = fresh.forward_backward(MatRef::new(8, 3, &z), &labels, 1.0, &mut g2, &mut Stats::default()).unwrap();
        assert_eq!((l1, g1), (l2, g2));
        let other = Classifier::new(config, &context(3, 5), "").unwrap();
        let mut map = TensorMap::parse(&bytes).unwrap();
        let e = {
            let mut o = other;
            o.load(&mut map).unwrap_err()
        };
        assert!(e.message().contains("classifier.weight"), "{e}");
    }

    #[test]
    fn invalid_settings_name_their_field() {
        let ctx = context(3, 4);
        let cases = [
            (ClassifierConfig { label_smoothing: 1.0, ..Default::default() }, "c.label_smoothing"),
            (ClassifierConfig { dropout: -0.1, ..Default::default() }, "c.dropout"),
            (ClassifierConfig { temperature: 0.0, ..Default::default() }, "c.temperature"),
            (
                ClassifierConfig {
                    optimizer: SgdConfig { lr: Some(-1.0), ..Default::default() },
                    ..Default::default()
                },
                "c.optimizer.lr",
            ),
            (
                ClassifierConfig {
                    optimizer: SgdConfig { nesterov: true, ..Default::default() },
                    ..Default::default()
                },
                "c.optimizer.nesterov",
            ),
        ];
        for (config, field) in cases {
            let e = Classifier::new(config, &ctx, "c.").unwrap_err();
            assert!(e.message().contains(field), "{e} does not name {field}");
        }
        let e = Classifier::new(ClassifierConfig::default(), &context(3, 0), "").unwrap_err();
        assert!(e.message().contains("num_classes"), "{e}");
    }
}
