//! Cross-entropy with a linear classifier, the main method of Boudiaf et al., "A unifying
//! mutual information view of metric learning: cross-entropy vs. pairwise losses" (ECCV
//! 2020; code: jeromerony/dml_cross_entropy).
//!
//! The plugin owns a C×d weight matrix W and a bias b over the run's `num_classes` classes
//! (an error if the run does not know it), and for a batch z_1..z_n with labels y_i:
//!
//! ```text
//! x_i = z_i / ‖z_i‖  if normalize_features, else z_i
//! x_i ← x_i ⊙ m_i / (1 − p)            dropout, m_i ~ Bernoulli(1 − p)
//! w_c = W_c / ‖W_c‖  if normalize_weights, else W_c
//! ℓ_ic = (x_i · w_c + b_c) / T
//! t_ic = 1 − ε  if c = y_i,  ε / (C − 1) otherwise
//! L = −(1/n) Σ_i Σ_c t_ic log softmax(ℓ_i)_c
//! ```
//!
//! Defaults are the authors' (`experiment.py`, `models/ingredient.py`): label smoothing
//! ε = 0.1, dropout p = 0 (their ResNet-50 recipe sets 0.5), T = 1, no normalisation, W and b
//! initialised to zero, SGD with the experiment's learning rate, no momentum, weight decay
//! 5e-4 on W and none on b (`no_bias_decay`). Their SOP and In-Shop recipes add momentum 0.9
//! with Nesterov: `optimizer: (momentum: 0.9, nesterov: true)`. With
//! `normalize_features: true, normalize_weights: true, temperature: 0.05` it is NormSoftmax
//! (Zhai and Wu, BMVC 2019).
//!
//! Differences from the authors' code, and why:
//! - They report the KL divergence to the smoothed target; this reports the cross-entropy,
//!   larger by the target's entropy (a constant), with the same gradients.
//! - `normalize_features` normalises the classifier's input only; their `normalize` option
//!   also normalises the embeddings the model outputs. Retrieval on cosine distances (the
//!   harness's default) sees no difference.
//! - A zero weight row has no direction, so with `normalize_weights` W starts from a seeded
//!   N(0, 1/d) draw instead of zeros (zeros would give a 1/ε gradient through the norm).
//!
//! Because W starts at zero, dL/dZ = G·W is exactly zero on the first call: the backbone
//! gets its first gradient after the classifier's first [`Loss::step`]. The authors' code
//! behaves the same way.
//!
//! Dropout masks are drawn from the run's seed and the number of steps taken, so a run is
//! reproducible and a fresh mask is drawn at every step; calls between two steps share one
//! mask, so that the plugin's state changes in `step` only. `step(lr_scale)` applies the
//! gradients of the last `forward_backward` once. The state (W, b, momentum buffers, step
//! counter) is saved in the safetensors layout under `classifier.*`.

use dmlbench_sdk::classifier::{Classifier, ClassifierConfig};
use dmlbench_sdk::state::{TensorMap, save_tensors};
use dmlbench_sdk::{Batch, Context, Loss, Plugin, Result, Stats};

/// The cross-entropy loss and its classifier.
pub struct CrossEntropy {
    head: Classifier,
}

impl CrossEntropy {
    /// The classifier (weights, bias, optimizer state).
    pub fn classifier(&self) -> &Classifier {
        &self.head
    }
}

impl Plugin for CrossEntropy {
    type Config = ClassifierConfig;
    const ID: &'static str = "cross_entropy";
    const NAME: &'static str = "Cross-entropy";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const SUMMARY: &'static str =
        "label-smoothed softmax cross-entropy of a zero-initialised linear classifier (Boudiaf et al. 2020)";
    const HAS_STATE: bool = true;

    fn new(config: ClassifierConfig, context: &Context) -> Result<Self> {
        Ok(CrossEntropy { head: Classifier::new(config, context, "")? })
    }

    fn save(&self) -> Result<Vec<u8>> {
        let tensors = self.head.tensors();
        let refs: Vec<(&str, &[usize], &[f32])> = tensors.iter().map(|(n, s, v)| (*n, &s[..], &v[..])).collect();
        save_tensors(&refs)
    }

    fn load(&mut self, bytes: &[u8]) -> Result<()> {
        let mut map = TensorMap::parse(bytes)?;
        self.head.load(&mut map)?;
        map.finish()
    }
}

impl Loss for CrossEntropy {
    const OWNS_PARAMETERS: bool = true;

    fn forward_backward(&mut self, batch: &Batch<'_>, grad: &mut [f32], stats: &mut Stats) -> Result<f64> {
        self.head.forward_backward(batch.embeddings, batch.labels, 1.0, grad, stats)
    }

    fn step(&mut self, lr_scale: f64) -> Result<()> {
        self.head.step(lr_scale);
        Ok(())
    }
}

dmlbench_sdk::export_plugins!(loss: CrossEntropy);
