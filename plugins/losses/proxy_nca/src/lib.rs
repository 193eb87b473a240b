//! ProxyNCA (Movshovitz-Attias, Toshev, Leung, Ioffe and Singh, "No Fuss Distance Metric
//! Learning using Proxies", ICCV 2017), with the definitions and defaults of
//! pytorch-metric-learning's `ProxyNCALoss` (an `NCALoss` whose neighbours are learned proxies).
//!
//! The plugin owns one proxy p_c per training class (C×d, the run's `num_classes` and
//! `embedding_dim`) and, for a batch z_1..z_n with labels y_i, a scale s and by default the
//! squared Euclidean distance between L2-normalised embeddings and proxies:
//!
//! ```text
//! u_i  = z_i / ‖z_i‖        q_c = p_c / ‖p_c‖           (normalize_embeddings)
//! D_ic = ‖u_i − q_c‖²                                     (the distance)
//! P_ic = exp(−s·D_ic) / Σ_k exp(−s·D_ik)                  (softmax over all C proxies)
//! ℓ_i  = −log P_{i,y_i}
//! L    = (1/|K|) Σ_{i∈K} w_i ℓ_i
//! ```
//!
//! K holds the rows whose P_{i,y_i} is not 0 in floating point (every row, unless s is so
//! large that the probability underflows; PML drops such rows the same way), and w_i = 1
//! without a miner. With a similarity measure (cosine, dot) the logits are +s·S_ic instead
//! of −s·D_ic, as PML's `NCALoss` does for an inverted distance. Defaults, all PML's:
//! s = `softmax_scale` = 1 and `LpDistance(power=2)` on normalised vectors (which normalises
//! the proxies too). On unit vectors D = 2 − 2·cos, so s is a cosine temperature of 1/(2s);
//! ProxyNCA++ (Teh, DeVries and Taylor, ECCV 2020) found a low temperature, that is a large
//! `softmax_scale`, to be essential.
//!
//! The paper leaves the label's own proxy out of the denominator; PML, and so this plugin,
//! takes the softmax over every proxy, which keeps ℓ_i ≥ 0.
//!
//! **Tuples.** As in PML, mined tuples do not choose pairs (every row meets every proxy):
//! they weight the rows, w_i = c_i / max_k c_k, where c_i counts how often row i is an
//! anchor of a mined tuple (in a1 or a2 of pairs, in a of triplets). PML's
//! `convert_to_weights` counts anchors only here because the reference set is the proxies.
//! A row that anchors no tuple gets w_i = 0 but still counts in |K|; when every mined list
//! is empty, w_i = 1. Triplets reach the loss as their pairs (a, p) and (a, n), which makes
//! every anchor count twice, and the weights, being ratios, are PML's for the triplets too.
//!
//! **Proxies and their optimiser.** The proxies start from N(0, 1), PML's default
//! (`torch.nn.init.normal_` through `WeightMixin`), drawn from the run's seed with the SDK's
//! ChaCha generator: the same distribution as PyTorch's draw, not the same numbers.
//! `forward_backward` keeps dL/dP and [`Loss::step`] applies it with plain SGD
//! (`optimizer`, PyTorch's `torch.optim.SGD`): the experiment's base learning rate times
//! `lr_scale` unless `optimizer.lr` is set, momentum 0 and weight decay 0. Proxies usually
//! need a far larger rate than the backbone: the gradient reaching p_c is divided by ‖p_c‖
//! (√d at the start), and ProxyNCA++'s "fast moving proxies" train them with a rate 10⁵
//! times the network's (Adam, 4e2 against 4e-3 in their CUB configuration); Proxy-Anchor's
//! authors use 100 times. Set it with, for example, `optimizer: (lr: Some(0.01))`; omitted
//! optimizer fields keep the plain defaults above.
//!
//! The gradient is exact, through both normalisations. State: `proxies` (C×d) and
//! `proxies.momentum` (C×d), PML's parameter name and shape.
//!
//! Differences from PML, and why:
//! - When every row's probability underflows (K empty) PML averages an empty tensor and
//!   returns NaN; this returns 0 and a zero gradient with `no_rows`.
//! - PML's `weight_regularizer`, `embedding_regularizer`, `reducer` and `weight_init_func`
//!   options are not offered (their defaults, none, none, `MeanReducer` and `normal_`, are
//!   what this computes); `optimizer.weight_decay` gives an L2 penalty on the proxies.

use dmlbench_sdk::checks::positive;
use dmlbench_sdk::classifier::SgdConfig;
use dmlbench_sdk::distance::DistanceConfig;
use dmlbench_sdk::matrix::{MatRef, Matrix};
use dmlbench_sdk::pairwise::Measure;
use dmlbench_sdk::rng::CallRng;
use dmlbench_sdk::trainable::Trainable;
use dmlbench_sdk::{Batch, Context, Error, Loss, Plugin, Result, Stats, TupleForm, TupleUse};
use serde::{Deserialize, Serialize};

/// Configuration (PML's defaults; the optimiser's are plain SGD).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// s > 0: the logits are −s·D (or s·S for a similarity).
    pub softmax_scale: f64,
    /// How embeddings are compared with proxies (squared Euclidean on normalised vectors by
    /// default; normalisation applies to the proxies too).
    pub distance: DistanceConfig,
    /// How the proxies are updated in `step`. Omitted fields take [`SgdConfig::plain`]'s values.
    #[serde(deserialize_with = "SgdConfig::deserialize_plain")]
    pub optimizer: SgdConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            softmax_scale: 1.0,
            distance: DistanceConfig { measure: Measure::SquaredEuclidean, normalize_embeddings: true },
            optimizer: SgdConfig::plain(),
        }
    }
}

/// The ProxyNCA loss and its proxies.
pub struct ProxyNca {
    softmax_scale: f64,
    distance: DistanceConfig,
    classes: usize,
    dim: usize,
    /// The proxies, C×d, with their optimiser and the dL/dP of the last call.
    proxies: Trainable,
}

/// Names of the state tensors.
pub const STATE_NAMES: [&str; 2] = ["proxies", "proxies.momentum"];

impl ProxyNca {
    /// The proxies, C×d row-major.
    pub fn proxies(&self) -> &[f32] {
        self.proxies.value()
    }

    /// The proxies' momentum buffer, C×d.
    pub fn momentum(&self) -> &[f32] {
        self.proxies.momentum()
    }

    /// dL/dP of the last `forward_backward`, C×d, until `step` applies it.
    pub fn proxy_gradient(&self) -> Option<&[f32]> {
        self.proxies.pending_gradient()
    }

    /// The learning rate `step(1.0)` uses.
    pub fn learning_rate(&self) -> f64 {
        self.proxies.learning_rate()
    }
}

impl Plugin for ProxyNca {
    type Config = Config;
    const ID: &'static str = "proxy_nca";
    const NAME: &'static str = "ProxyNCA";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const SUMMARY: &'static str = "−log softmax_c(−s·‖u_i − q_c‖²) at the label's proxy, trainable proxies, mean over rows (Movshovitz-Attias et al. 2017; PML defaults)";
    const HAS_STATE: bool = true;

    fn new(config: Config, context: &Context) -> Result<Self> {
        positive("softmax_scale", config.softmax_scale)?;
        config.optimizer.validate("")?;
        let (classes, dim) = (context.num_classes, context.embedding_dim);
        if classes == 0 || dim == 0 {
            return Err(Error::bad_config(format!(
                "ProxyNCA keeps one proxy per training class and needs num_classes and embedding_dim, the run gave {classes} and {dim}"
            )));
        }
        let mut rng = CallRng::new(context.seed, "proxy_nca.proxies", 0);
        let proxies = (0..classes * dim).map(|_| rng.normal() as f32).collect();
        Ok(ProxyNca {
            softmax_scale: config.softmax_scale,
            distance: config.distance,
            classes,
            dim,
            proxies: Trainable::new(STATE_NAMES[0], vec![classes, dim], proxies, config.optimizer, context),
        })
    }

    fn save(&self) -> Result<Vec<u8>> {
        self.proxies.save_state()
    }

    fn load(&mut self, bytes: &[u8]) -> Result<()> {
        self.proxies.load_state(bytes)
    }
}

impl Loss for ProxyNca {
    const TUPLES: TupleUse = TupleUse::Optional(TupleForm::Pairs);
    const OWNS_PARAMETERS: bool = true;

    fn forward_backward(&mut self, batch: &Batch<'_>, grad: &mut [f32], stats: &mut Stats) -> Result<f64> {
        let (n, d, classes) = (batch.n(), batch.d(), self.classes);
        if d != self.dim {
            return Err(Error::bad_input(format!("ProxyNCA expects embeddings of size {}, got {d}", self.dim)));
        }
        if let Some((i, &l)) = batch.labels.iter().enumerate().find(|&(_, &l)| l < 0 || l as u64 >= classes as u64) {
            return Err(Error::bad_input(format!("label {l} of row {i} is outside 0..{classes}")));
        }
        // Until a gradient exists the proxies' gradient is zero, as after a backward pass
        // through a constant loss.
        self.proxies.set_gradient(vec![0.0; classes * d]);
        if classes == 1 {
            // One proxy: P_{i,y_i} = 1 for every row, ℓ = 0 and nothing to learn.
            stats.record("no_negative_proxies", 1.0);
            return Ok(0.0);
        }
        let weights = match batch.mined_pairs() {
            Some(pairs) => pairs.anchor_weights(n),
            None => vec![1.0; n],
        };
        if batch.tuples.is_some() {
            stats.record("zero_weight_rows", weights.iter().filter(|&&w| w == 0.0).count() as f64);
        }

        let proxies = MatRef::new(classes, d, self.proxies.value());
        let measured = self.distance.between(batch.embeddings, proxies);
        let values = measured.values();
        // Logit x_ic = sign·s·v_ic: −s·D for a distance, s·S for a similarity.
        let factor = if self.distance.is_similarity() { self.softmax_scale } else { -self.softmax_scale };
        let mut dvalues = Matrix::zeros(n, classes);
        let mut logits = vec![0.0f64; classes];
        let mut kept = Vec::with_capacity(n);
        let mut total = 0.0;
        for (i, &label) in batch.labels.iter().enumerate() {
            let y = label as usize;
            let mut max = f64::NEG_INFINITY;
            for (x, &v) in logits.iter_mut().zip(values.row(i)) {
                *x = factor * f64::from(v);
                max = max.max(*x);
            }
            let lse = max + logits.iter().map(|&x| (x - max).exp()).sum::<f64>().ln();
            let log_p = logits[y] - lse;
            if log_p.exp() == 0.0 {
                continue; // PML keeps the rows whose probability is non-zero.
            }
            total += weights[i] * -log_p;
            kept.push(i);
            // dℓ_i/dx_ic = P_ic − [c = y_i]; the weight and 1/|K| are applied below.
            for (c, (g, &x)) in dvalues.row_mut(i).iter_mut().zip(&logits).enumerate() {
                let target = if c == y { 1.0 } else { 0.0 };
                *g = ((x - lse).exp() - target) as f32;
            }
        }
        stats.record("skipped_rows", (n - kept.len()) as f64);
        if kept.is_empty() {
            stats.record("no_rows", 1.0);
            return Ok(0.0);
        }
        let inv_kept = 1.0 / kept.len() as f64;
        for &i in &kept {
            let scale = (factor * weights[i] * inv_kept) as f32;
            for g in dvalues.row_mut(i) {
                *g *= scale;
            }
        }
        let (dz, dp) = measured.backward(batch.embeddings, proxies, dvalues.view());
        grad.copy_from_slice(&dz.data);
        self.proxies.set_gradient(dp.data);
        Ok(total * inv_kept)
    }

    fn step(&mut self, lr_scale: f64) -> Result<()> {
        self.proxies.step(lr_scale);
        Ok(())
    }
}

dmlbench_sdk::export_plugins!(loss: ProxyNca);
