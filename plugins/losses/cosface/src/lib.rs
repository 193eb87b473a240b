//! CosFace, the large margin cosine loss (Wang, Wang, Zhou, Ji, Gong, Zhou, Li and Liu,
//! "CosFace: Large Margin Cosine Loss for Deep Face Recognition", CVPR 2018), with the
//! defaults of pytorch-metric-learning's `CosFaceLoss`.
//!
//! The plugin owns a class-weight matrix W of d×C (PML's layout: embeddings times W) over the
//! run's `num_classes` classes, and for a batch z_1..z_n with labels y_i:
//!
//! ```text
//! cos_ic = (z_i / ‖z_i‖) · (W[:, c] / ‖W[:, c]‖)
//! ℓ_ic = s · cos_ic            c ≠ y_i
//! ℓ_iy = s · (cos_iy − m)      m = margin = 0.35, s = scale = 64
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
//! and `W.momentum`. With
//! a pretrained backbone, class weights usually learn at a much larger rate than the
//! backbone (Proxy-Anchor's authors train their class proxies at 100× the backbone's rate),
//! for example `optimizer: (lr: Some(0.01))`; fields left out of `optimizer` keep momentum 0
//! and weight decay 0.
//!
//! The loss, its W, its optimiser and its gradients are the margin-softmax core of the
//! `norm_softmax` plugin (`dmlbench_sdk::margin_softmax`).
//!
//! Differences from PML, and why:
//! - PML accepts a miner's tuples and turns them into per-row weights (how often each row
//!   appears); this plugin takes no tuples (a classification loss has no use for them).
//! - Options `reducer`, `weight_regularizer` and `weight_init_func` are not offered: the
//!   plugin is PML's default (mean, none, normal).

use dmlbench_sdk::checks::{non_negative, positive};
use dmlbench_sdk::classifier::SgdConfig;
use dmlbench_sdk::margin_softmax::MarginSoftmax;
use dmlbench_sdk::{Batch, Context, Loss, Plugin, Result, Stats};
use serde::{Deserialize, Serialize};

/// Configuration (PML's defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// m ≥ 0: subtracted from the cosine of each embedding's own class.
    pub margin: f64,
    /// s > 0: every cosine is multiplied by it.
    pub scale: f64,
    /// How W is updated in `step` (omitted fields: no momentum, no weight decay).
    #[serde(deserialize_with = "SgdConfig::deserialize_plain")]
    pub optimizer: SgdConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config { margin: 0.35, scale: 64.0, optimizer: SgdConfig::plain() }
    }
}

/// The CosFace loss and its class weights.
pub struct CosFace {
    margin: f64,
    scale: f64,
    head: MarginSoftmax,
}

impl CosFace {
    /// W, its optimiser state and its pending gradient.
    pub fn head(&self) -> &MarginSoftmax {
        &self.head
    }
}

impl Plugin for CosFace {
    type Config = Config;
    const ID: &'static str = "cosface";
    const NAME: &'static str = "CosFace (large margin cosine loss)";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const SUMMARY: &'static str = "softmax cross-entropy of s·(cos(z_i, W_c) − m·[c = y_i]) over trainable class weights (Wang et al. 2018; PML defaults)";
    const HAS_STATE: bool = true;

    fn new(config: Config, context: &Context) -> Result<Self> {
        non_negative("margin", config.margin)?;
        positive("scale", config.scale)?;
        let head = MarginSoftmax::new(context, 1, config.optimizer)?;
        Ok(CosFace { margin: config.margin, scale: config.scale, head })
    }

    fn save(&self) -> Result<Vec<u8>> {
        self.head.save()
    }

    fn load(&mut self, bytes: &[u8]) -> Result<()> {
        self.head.load(bytes)
    }
}

impl Loss for CosFace {
    const OWNS_PARAMETERS: bool = true;

    fn forward_backward(&mut self, batch: &Batch<'_>, grad: &mut [f32], stats: &mut Stats) -> Result<f64> {
        let m = self.margin;
        self.head.forward_backward(batch.embeddings, batch.labels, self.scale, |s| (s - m, 1.0), grad, stats)
    }

    fn step(&mut self, lr_scale: f64) -> Result<()> {
        self.head.step(lr_scale);
        Ok(())
    }
}

dmlbench_sdk::export_plugins!(loss: CosFace);
