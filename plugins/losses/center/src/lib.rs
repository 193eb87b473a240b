//! Centre loss (Wen, Zhang, Li and Qiao, "A Discriminative Feature Learning Approach for Deep
//! Face Recognition", ECCV 2016), optionally added to cross-entropy.
//!
//! The plugin owns one centre c_j per training class (C×d, zero at the start) and, for a
//! batch z_1..z_n with labels y_i:
//!
//! ```text
//! L_C = (1/n) Σ_i ½ ‖z_i − c_{y_i}‖²
//! L   = L_S + λ·L_C          L_S: the softmax cross-entropy of a linear classifier
//! ```
//!
//! The centres are not trained by gradient descent but by the paper's rule (its eq. 4 and
//! Algorithm 1), applied in `step`:
//!
//! ```text
//! Δc_j = Σ_{i: y_i = j} (c_j − z_i) / (1 + n_j)        n_j = #{i : y_i = j}
//! c_j ← c_j − α·Δc_j
//! ```
//!
//! so a class absent from the batch keeps its centre. α is the paper's separate centre
//! rate: it does not follow the learning-rate schedule (`lr_scale`), which applies to the
//! classifier only.
//!
//! Defaults: α = 0.5 and λ = 0.003 (the paper's face-recognition values); `cross_entropy`
//! on, with the classifier of the `cross_entropy` plugin and its defaults (label smoothing
//! 0.1, zero-initialised weights, SGD at the experiment's learning rate; see
//! [`ClassifierConfig`]), so that centre loss differs from plain cross-entropy by the centre
//! term alone. Wen et al. used an unsmoothed softmax: `classifier: (label_smoothing: 0.0)`.
//! With `cross_entropy: false` the loss is λ·L_C alone (then set λ = 1 to train on L_C).
//!
//! The paper sums both terms over the mini-batch; we average both, which leaves their ratio,
//! and so λ, unchanged. Centres start at zero, the default of the paper's Caffe layer
//! (`center_filler`). The pytorch-metric-learning library has no centre loss to compare with.
//!
//! State: `centres` (C×d) and, with cross-entropy, the classifier's `classifier.*` tensors.

use dmlbench_sdk::checks::{in_range, non_negative};
use dmlbench_sdk::classifier::{Classifier, ClassifierConfig};
use dmlbench_sdk::state::{TensorMap, save_tensors};
use dmlbench_sdk::{Batch, Context, Error, Loss, Plugin, Result, Stats};
use serde::{Deserialize, Serialize};

/// Configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// α ∈ [0, 1]: rate of the centre update.
    pub alpha: f64,
    /// λ ≥ 0: weight of the centre term.
    pub lambda: f64,
    /// Add the softmax cross-entropy of a linear classifier (Wen et al.'s joint supervision).
    pub cross_entropy: bool,
    /// The classifier, when `cross_entropy` is on.
    pub classifier: ClassifierConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config { alpha: 0.5, lambda: 0.003, cross_entropy: true, classifier: ClassifierConfig::default() }
    }
}

/// The centre loss, its centres and its optional classifier.
pub struct Center {
    alpha: f64,
    lambda: f64,
    classes: usize,
    dim: usize,
    centres: Vec<f32>,
    head: Option<Classifier>,
    /// Δc of the last call, waiting for `step`.
    pending: Option<Vec<f32>>,
}

impl Center {
    /// The centres, C×d row-major.
    pub fn centres(&self) -> &[f32] {
        &self.centres
    }

    /// The classifier, when cross-entropy is on.
    pub fn classifier(&self) -> Option<&Classifier> {
        self.head.as_ref()
    }
}

impl Plugin for Center {
    type Config = Config;
    const ID: &'static str = "center";
    const NAME: &'static str = "Centre loss";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const SUMMARY: &'static str = "cross-entropy + λ·mean ½‖z_i − c_{y_i}‖², centres moved by rate α (Wen et al. 2016)";
    const HAS_STATE: bool = true;

    fn new(config: Config, context: &Context) -> Result<Self> {
        in_range("alpha", config.alpha, 0.0..=1.0)?;
        non_negative("lambda", config.lambda)?;
        let (classes, dim) = (context.num_classes, context.embedding_dim);
        if classes == 0 || dim == 0 {
            return Err(Error::bad_config(format!(
                "centre loss keeps one centre per training class and needs num_classes and embedding_dim, the run gave {classes} and {dim}"
            )));
        }
        let head =
            if config.cross_entropy { Some(Classifier::new(config.classifier, context, "classifier.")?) } else { None };
        Ok(Center {
            alpha: config.alpha,
            lambda: config.lambda,
            classes,
            dim,
            centres: vec![0.0; classes * dim],
            head,
            pending: None,
        })
    }

    fn save(&self) -> Result<Vec<u8>> {
        let mut tensors = vec![("centres", vec![self.classes, self.dim], self.centres.clone())];
        if let Some(head) = &self.head {
            tensors.extend(head.tensors());
        }
        let refs: Vec<(&str, &[usize], &[f32])> = tensors.iter().map(|(n, s, v)| (*n, &s[..], &v[..])).collect();
        save_tensors(&refs)
    }

    fn load(&mut self, bytes: &[u8]) -> Result<()> {
        let mut map = TensorMap::parse(bytes)?;
        let centres = map.take("centres", &[self.classes, self.dim])?;
        if let Some(i) = centres.iter().position(|v| !v.is_finite()) {
            return Err(Error::bad_input(format!("state tensor 'centres' holds {} at index {i}", centres[i])));
        }
        if let Some(head) = &mut self.head {
            head.load(&mut map)?;
        }
        map.finish()?;
        self.centres = centres;
        self.pending = None;
        Ok(())
    }
}

impl Loss for Center {
    const OWNS_PARAMETERS: bool = true;

    fn forward_backward(&mut self, batch: &Batch<'_>, grad: &mut [f32], stats: &mut Stats) -> Result<f64> {
        let (n, d) = (batch.n(), batch.d());
        if d != self.dim {
            return Err(Error::bad_input(format!("centre loss expects embeddings of size {}, got {d}", self.dim)));
        }
        if let Some((i, &l)) = batch.labels.iter().enumerate().find(|&(_, &l)| l < 0 || l as u64 >= self.classes as u64)
        {
            return Err(Error::bad_input(format!("label {l} of row {i} is outside 0..{}", self.classes)));
        }
        let cross_entropy = match &mut self.head {
            Some(head) => head.forward_backward(batch.embeddings, batch.labels, 1.0, grad, stats)?,
            None => 0.0,
        };

        let mut centre_loss = 0.0;
        let mut delta = vec![0.0f64; self.classes * d];
        let mut counts = vec![0usize; self.classes];
        let g_scale = self.lambda / n as f64;
        for (i, &label) in batch.labels.iter().enumerate() {
            let y = label as usize;
            counts[y] += 1;
            let centre = &self.centres[y * d..(y + 1) * d];
            let z = batch.embeddings.row(i);
            let g = &mut grad[i * d..(i + 1) * d];
            for k in 0..d {
                let diff = f64::from(z[k]) - f64::from(centre[k]);
                centre_loss += 0.5 * diff * diff;
                g[k] += (g_scale * diff) as f32;
                delta[y * d + k] -= diff; // Σ (c_j − z_i)
            }
        }
        centre_loss /= n as f64;
        for (j, &count) in counts.iter().enumerate() {
            for v in &mut delta[j * d..(j + 1) * d] {
                *v /= 1.0 + count as f64;
            }
        }
        self.pending = Some(delta.into_iter().map(|v| v as f32).collect());
        stats.record("centre_loss", centre_loss);
        stats.record("cross_entropy", cross_entropy);
        stats.record("classes_in_batch", counts.iter().filter(|&&c| c > 0).count() as f64);
        Ok(cross_entropy + self.lambda * centre_loss)
    }

    fn step(&mut self, lr_scale: f64) -> Result<()> {
        if let Some(head) = &mut self.head {
            head.step(lr_scale);
        }
        if let Some(delta) = self.pending.take() {
            for (c, dc) in self.centres.iter_mut().zip(&delta) {
                *c = (f64::from(*c) - self.alpha * f64::from(*dc)) as f32;
            }
        }
        Ok(())
    }
}

dmlbench_sdk::export_plugins!(loss: Center);
