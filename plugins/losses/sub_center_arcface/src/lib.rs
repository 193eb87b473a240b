//! Sub-centre ArcFace (Deng, Guo, Liu, Gong and Zafeiriou, "Sub-center ArcFace: Boosting Face
//! Recognition by Large-Scale Noisy Web Faces", ECCV 2020), with the defaults of
//! pytorch-metric-learning's `SubCenterArcFaceLoss`.
//!
//! The plugin owns K sub-centres per class, a weight matrix W of d×C·K (PML's layout:
//! embeddings times W; column c·K + k is sub-centre k of class c), and for a batch
//! z_1..z_n with labels y_i:
//!
//! ```text
//! s_ic = max_k (z_i / ‖z_i‖) · (W[:, cK+k] / ‖W[:, cK+k]‖)     K = sub_centers = 3
//! θ_i  = acos(clamp(s_iy, −1, 1))                              y = y_i
//! φ_i  = cos(θ_i + m)        if θ_i ≤ π − m
//!        cos θ_i − m·sin m   otherwise                         m = margin = 28.6° (0.499 rad)
//! ℓ_ic = s · s_ic (c ≠ y_i),  ℓ_iy = s · φ_i                   s = scale = 64
//! L = (1/n) Σ_i −log softmax(ℓ_i)_{y_i}
//! ```
//!
//! The maximum picks, for each row and class, the closest sub-centre; the gradient goes to
//! that sub-centre alone, and on a tie to the first one reaching the maximum (torch's
//! `max(dim)` returns that index and autograd routes the gradient through it). The rest is
//! ArcFace, as in the `arcface` plugin: `margin` in degrees, dφ/ds = sin(θ + m)/√(1 − s²) on
//! the first branch, 1 on the second, 0 where the clamp is active (|s| > 1 by rounding), and
//! 0 at |s| = 1 exactly, where PML's gradient is NaN.
//!
//! Every batch is a valid input: a batch of one class or one row has a well-defined loss
//! (the other classes' weights are its negatives), so there is no degenerate case. Mined
//! tuples are not used. The gradients for Z and W are exact, through both normalisations.
//! PML's `get_outliers` (dropping samples far from their dominant sub-centre after training)
//! is a data-cleaning tool, not part of the loss, and is not offered.
//!
//! W starts as in PML, each entry from N(0, 1) (`torch.nn.init.normal_`), drawn from the
//! run's seed instead of PyTorch's generator: the same distribution, other numbers. `step`
//! applies the last gradient of W with SGD (`optimizer`, PyTorch's semantics) at the
//! experiment's learning rate, no momentum and no weight decay by default; the state is `W`
//! and `W.momentum`, d×C·K. With a pretrained backbone, class weights usually learn at a
//! much larger rate than the backbone (Proxy-Anchor's authors train their class proxies at
//! 100× the backbone's rate), for example `optimizer: (lr: Some(0.01))`; fields left out of
//! `optimizer` keep momentum 0 and weight decay 0.
//!
//! The loss, its W, its optimiser and its gradients are the margin-softmax core of the
//! `norm_softmax` plugin (`dmlbench_sdk::margin_softmax`).
//!
//! Differences from PML, and why:
//! - At |s| = 1 exactly the gradient is finite (see above), where PML's is NaN.
//! - PML accepts a miner's tuples and turns them into per-row weights (how often each row
//!   appears); this plugin takes no tuples (a classification loss has no use for them).
//! - Options `reducer`, `weight_regularizer` and `weight_init_func` are not offered: the
//!   plugin is PML's default (mean, none, normal).

use dmlbench_sdk::checks::{in_range, positive};
use dmlbench_sdk::classifier::SgdConfig;
use dmlbench_sdk::margin_softmax::{MarginSoftmax, arcface_target};
use dmlbench_sdk::{Batch, Context, Loss, Plugin, Result, Stats};
use serde::{Deserialize, Serialize};

/// Configuration (PML's defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// K ≥ 1: sub-centres per class.
    pub sub_centers: usize,
    /// m in degrees, in [0, 180]: added to the angle of each embedding's own class.
    pub margin: f64,
    /// s > 0: every logit is multiplied by it.
    pub scale: f64,
    /// How W is updated in `step` (omitted fields: no momentum, no weight decay).
    #[serde(deserialize_with = "SgdConfig::deserialize_plain")]
    pub optimizer: SgdConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config { sub_centers: 3, margin: 28.6, scale: 64.0, optimizer: SgdConfig::plain() }
    }
}

/// The sub-centre ArcFace loss and its sub-centre weights.
pub struct SubCenterArcFace {
    /// m in radians.
    margin: f64,
    scale: f64,
    head: MarginSoftmax,
}

impl SubCenterArcFace {
    /// W, its optimiser state and its pending gradient.
    pub fn head(&self) -> &MarginSoftmax {
        &self.head
    }
}

impl Plugin for SubCenterArcFace {
    type Config = Config;
    const ID: &'static str = "sub_center_arcface";
    const NAME: &'static str = "Sub-centre ArcFace";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const SUMMARY: &'static str =
        "ArcFace over the closest of K trainable sub-centres per class (Deng et al. 2020; PML defaults)";
    const HAS_STATE: bool = true;

    fn new(config: Config, context: &Context) -> Result<Self> {
        positive("sub_centers", config.sub_centers as f64)?;
        in_range("margin", config.margin, 0.0..=180.0)?;
        positive("scale", config.scale)?;
        let head = MarginSoftmax::new(context, config.sub_centers, config.optimizer)?;
        Ok(SubCenterArcFace { margin: config.margin.to_radians(), scale: config.scale, head })
    }

    fn save(&self) -> Result<Vec<u8>> {
        self.head.save()
    }

    fn load(&mut self, bytes: &[u8]) -> Result<()> {
        self.head.load(bytes)
    }
}

impl Loss for SubCenterArcFace {
    const OWNS_PARAMETERS: bool = true;

    fn forward_backward(&mut self, batch: &Batch<'_>, grad: &mut [f32], stats: &mut Stats) -> Result<f64> {
        let m = self.margin;
        self.head.forward_backward(batch.embeddings, batch.labels, self.scale, |s| arcface_target(m, s), grad, stats)
    }

    fn step(&mut self, lr_scale: f64) -> Result<()> {
        self.head.step(lr_scale);
        Ok(())
    }
}

dmlbench_sdk::export_plugins!(loss: SubCenterArcFace);
