//! Normalised softmax (NormSoftmax): Wang, Xiang, Cheng and Yuille, "NormFace: L2 Hypersphere
//! Embedding for Face Verification" (ACM MM 2017), and Zhai and Wu, "Classification is a
//! Strong Baseline for Deep Metric Learning" (BMVC 2019), with the defaults of
//! pytorch-metric-learning's `NormalizedSoftmaxLoss`.
//!
//! The plugin owns a class-weight matrix W of d×C (PML's layout: embeddings times W) over the
//! run's `num_classes` classes, and for a batch z_1..z_n with labels y_i:
//!
//! ```text
//! x_i = z_i / ‖z_i‖        w_c = W[:, c] / ‖W[:, c]‖
//! ℓ_ic = x_i · w_c / T      T = temperature = 0.05
//! L = (1/n) Σ_i −log softmax(ℓ_i)_{y_i}
//! ```
//!
//! Every batch is a valid input: a batch of one class or one row has a well-defined loss
//! (the other classes' weights are its negatives), so there is no degenerate case. Mined
//! tuples are not used. The gradients for Z and W are exact, through both normalisations.
//!
//! W starts as in PML, each entry from N(0, 1) (`torch.nn.init.normal_`), drawn from the
//! run's seed instead of PyTorch's generator: the same distribution, other numbers. `step`
//! applies the last gradient of W with SGD (`optimizer`, PyTorch's semantics) at the
//! experiment's learning rate, no momentum and no weight decay by default; the state is `W`
//! and `W.momentum`. Class weights usually learn at a much larger rate than a pretrained
//! backbone (Proxy-Anchor's authors train their class proxies at 100× the backbone's rate),
//! for example `optimizer: (lr: Some(0.01))`; fields left out of `optimizer` keep momentum 0
//! and weight decay 0.
//!
//! The loss, its W, its optimiser and its gradients are the margin-softmax core in
//! `dmlbench_sdk::margin_softmax`, shared with the `cosface`, `arcface` and `sub_center_arcface` plugins
//! (NormSoftmax is that core with scale 1/T and no margin).
//!
//! Differences from PML, and why:
//! - PML accepts a miner's tuples and turns them into per-row weights (how often each row
//!   appears); this plugin takes no tuples (a classification loss has no use for them).
//! - Options `distance`, `reducer`, `weight_regularizer` and `weight_init_func` are not
//!   offered: the plugin is PML's default (dot product of normalised vectors, mean, none,
//!   normal).
//! - Cross-entropy with the cross_entropy plugin (`normalize_features: true,
//!   normalize_weights: true, temperature: 0.05, label_smoothing: 0.0, bias: false`) is the
//!   same function with W stored C×d and initialised N(0, 1/d).

use dmlbench_sdk::checks::positive;
use dmlbench_sdk::classifier::SgdConfig;
use dmlbench_sdk::margin_softmax::MarginSoftmax;
use dmlbench_sdk::{Batch, Context, Loss, Plugin, Result, Stats};
use serde::{Deserialize, Serialize};

/// Configuration (PML's defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// T > 0: cosines are divided by it.
    pub temperature: f64,
    /// How W is updated in `step` (omitted fields: no momentum, no weight decay).
    #[serde(deserialize_with = "SgdConfig::deserialize_plain")]
    pub optimizer: SgdConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config { temperature: 0.05, optimizer: SgdConfig::plain() }
    }
}

/// The NormSoftmax loss and its class weights.
pub struct NormSoftmax {
    temperature: f64,
    head: MarginSoftmax,
}

impl NormSoftmax {
    /// W, its optimiser state and its pending gradient.
    pub fn head(&self) -> &MarginSoftmax {
        &self.head
    }
}

impl Plugin for NormSoftmax {
    type Config = Config;
    const ID: &'static str = "norm_softmax";
    const NAME: &'static str = "Normalised softmax (NormSoftmax)";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const SUMMARY: &'static str =
        "softmax cross-entropy of cos(z_i, W_c)/T over trainable class weights (Zhai and Wu 2019; PML defaults)";
    const HAS_STATE: bool = true;

    fn new(config: Config, context: &Context) -> Result<Self> {
        positive("temperature", config.temperature)?;
        Ok(NormSoftmax { temperature: config.temperature, head: MarginSoftmax::new(context, 1, config.optimizer)? })
    }

    fn save(&self) -> Result<Vec<u8>> {
        self.head.save()
    }

    fn load(&mut self, bytes: &[u8]) -> Result<()> {
        self.head.load(bytes)
    }
}

impl Loss for NormSoftmax {
    const OWNS_PARAMETERS: bool = true;

    fn forward_backward(&mut self, batch: &Batch<'_>, grad: &mut [f32], stats: &mut Stats) -> Result<f64> {
        let scale = 1.0 / self.temperature;
        self.head.forward_backward(batch.embeddings, batch.labels, scale, |s| (s, 1.0), grad, stats)
    }

    fn step(&mut self, lr_scale: f64) -> Result<()> {
        self.head.step(lr_scale);
        Ok(())
    }
}

dmlbench_sdk::export_plugins!(loss: NormSoftmax);
