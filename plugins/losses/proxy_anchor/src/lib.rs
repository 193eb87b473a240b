//! Proxy-Anchor loss (Kim, Kim, Cho and Kwak, "Proxy Anchor Loss for Deep Metric Learning",
//! CVPR 2020), with the definitions and defaults of pytorch-metric-learning's
//! `ProxyAnchorLoss`.
//!
//! The plugin owns one proxy p_c per training class (C×d, the run's `num_classes` and
//! `embedding_dim`). Each proxy is an anchor: it pulls the batch's rows of its class and
//! pushes the others, with a margin δ and a scale α, over cosine similarities by default:
//!
//! ```text
//! S_ic = (z_i / ‖z_i‖) · (p_c / ‖p_c‖)
//! P⁺   = {c : some y_i = c}                                  proxies with a positive in the batch
//! L⁺   = (1/|P⁺|) Σ_{c∈P⁺} log(1 + Σ_{i: y_i = c} exp(−α(S_ic − δ) + b_i))
//! L⁻   = (1/C)    Σ_c      log(1 + Σ_{i: y_i ≠ c} exp( α(S_ic + δ) + b_i))
//! L    = L⁺ + L⁻
//! ```
//!
//! b_i = 0 without a miner. A proxy with no negative in the batch (a batch of its class
//! alone) contributes 0 to L⁻ and still counts in C, as in the paper and PML. Defaults, all
//! PML's (and the paper's): δ = `margin` = 0.1, α = `alpha` = 32, `CosineSimilarity()`. With
//! a distance D instead of a similarity the exponents are α(D_ic − δ) and −α(D_ic + δ), as
//! PML's `distance.margin` gives them; embeddings and proxies are normalised when the
//! distance says so.
//!
//! Every row has a proxy, so P⁺ is never empty and each term is at least log 1 = 0: there is
//! no degenerate batch that gives an undefined loss. Statistics: `pos_loss` (L⁺), `neg_loss`
//! (L⁻), `proxies_with_positives` (|P⁺|) and `proxies_with_negatives`.
//!
//! **Tuples.** As in PML, mined tuples do not choose pairs (every row meets every proxy):
//! they weight the rows through b_i = w_i − 1 inside the exponents, where w_i = c_i / max_k c_k
//! and c_i counts how often row i appears anywhere in the mined a1, p, a2 and n lists (PML's
//! `convert_to_weights`). A row in no tuple is damped by a factor e⁻¹, not removed; when every
//! mined list is empty, b_i = 0.
//!
//! **Proxies and their optimiser.** The proxies start from N(0, 2/C), PML's and the authors'
//! `torch.nn.init.kaiming_normal_(mode="fan_out")` on a C×d tensor (fan-out C, gain √2),
//! drawn from the run's seed with the SDK's ChaCha generator: the same distribution as
//! PyTorch's draw, not the same numbers. `forward_backward` keeps dL/dP and [`Loss::step`]
//! applies it with plain SGD (`optimizer`, PyTorch's `torch.optim.SGD`): the experiment's
//! base learning rate times `lr_scale` unless `optimizer.lr` is set, momentum 0 and weight
//! decay 0. The authors train the proxies 100 times faster than the backbone (AdamW at 1e-4
//! for the network, 1e-2 for the proxies, weight decay 1e-4): with a backbone at 1e-4, write
//! `optimizer: (lr: Some(0.01))`. Omitted optimizer fields keep the plain defaults above.
//!
//! The gradient is exact, through both normalisations. State: `proxies` (C×d) and
//! `proxies.momentum` (C×d), PML's parameter name and shape.
//!
//! Differences from PML, and why:
//! - Mined triplets reach the loss as their pairs (a, p) and (a, n), so an anchor counts
//!   twice per triplet in c_i where PML, given the triplet tuple itself, counts it once: the
//!   SDK hands the loss one tuple form, and pairs keep a pair miner's tuples exactly as PML
//!   sees them. With mined pairs the weights are PML's.
//! - PML's `weight_regularizer`, `embedding_regularizer`, `reducer` and `weight_init_func`
//!   options are not offered (their defaults, none, none, `DivisorReducer` and
//!   `kaiming_normal_`, are what this computes); `optimizer.weight_decay` gives an L2 penalty
//!   on the proxies.

use dmlbench_sdk::checks::{finite, positive};
use dmlbench_sdk::classifier::SgdConfig;
use dmlbench_sdk::distance::DistanceConfig;
use dmlbench_sdk::matrix::{MatRef, Matrix};
use dmlbench_sdk::rng::CallRng;
use dmlbench_sdk::trainable::Trainable;
use dmlbench_sdk::{Batch, Context, Error, Loss, Plugin, Result, Stats, TupleForm, TupleUse};
use serde::{Deserialize, Serialize};

/// Configuration (PML's defaults; the optimiser's are plain SGD).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// δ: the margin added to negative and taken from positive similarities.
    pub margin: f64,
    /// α > 0: the scale of the similarities inside the exponentials.
    pub alpha: f64,
    /// How embeddings are compared with proxies (cosine similarity by default).
    pub distance: DistanceConfig,
    /// How the proxies are updated in `step`. Omitted fields take [`SgdConfig::plain`]'s values.
    #[serde(deserialize_with = "SgdConfig::deserialize_plain")]
    pub optimizer: SgdConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config { margin: 0.1, alpha: 32.0, distance: DistanceConfig::cosine(), optimizer: SgdConfig::plain() }
    }
}

/// log(1 + Σ_k e^{a_k}) over the terms of each proxy, accumulated row by row: the running
/// maximum of the exponents (and of the 1's exponent, 0) shifts the sums so that none
/// overflows.
#[derive(Clone)]
struct SoftPlusSums {
    max: Vec<f64>,
    sum: Vec<f64>,
    count: Vec<usize>,
}

impl SoftPlusSums {
    fn new(classes: usize) -> Self {
        SoftPlusSums { max: vec![0.0; classes], sum: vec![0.0; classes], count: vec![0; classes] }
    }

    /// First pass: the largest exponent of each proxy.
    fn see(&mut self, c: usize, a: f64) {
        self.max[c] = self.max[c].max(a);
        self.count[c] += 1;
    }

    /// Second pass: Σ_k e^{a_k − max}.
    fn add(&mut self, c: usize, a: f64) {
        self.sum[c] += (a - self.max[c]).exp();
    }

    /// log(1 + Σ_k e^{a_k}) of proxy c, 0 when it has no term.
    fn value(&self, c: usize) -> f64 {
        if self.count[c] == 0 { 0.0 } else { self.max[c] + self.denominator(c).ln() }
    }

    /// e^{−max} + Σ_k e^{a_k − max}: the shifted 1 + Σ e^{a_k}.
    fn denominator(&self, c: usize) -> f64 {
        (-self.max[c]).exp() + self.sum[c]
    }

    /// d value(c) / d a = e^{a} / (1 + Σ_k e^{a_k}).
    fn slope(&self, c: usize, a: f64) -> f64 {
        (a - self.max[c]).exp() / self.denominator(c)
    }
}

/// The Proxy-Anchor loss and its proxies.
pub struct ProxyAnchor {
    margin: f64,
    alpha: f64,
    distance: DistanceConfig,
    classes: usize,
    dim: usize,
    /// The proxies, C×d, with their optimiser and the dL/dP of the last call.
    proxies: Trainable,
}

/// Names of the state tensors.
pub const STATE_NAMES: [&str; 2] = ["proxies", "proxies.momentum"];

impl ProxyAnchor {
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

impl Plugin for ProxyAnchor {
    type Config = Config;
    const ID: &'static str = "proxy_anchor";
    const NAME: &'static str = "Proxy-Anchor loss";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const SUMMARY: &'static str = "per proxy, log(1+Σ_pos e^{−α(S−δ)}) over proxies with positives + log(1+Σ_neg e^{α(S+δ)}) over all, trainable proxies (Kim et al. 2020; PML defaults)";
    const HAS_STATE: bool = true;

    fn new(config: Config, context: &Context) -> Result<Self> {
        finite("margin", config.margin)?;
        positive("alpha", config.alpha)?;
        config.optimizer.validate("")?;
        let (classes, dim) = (context.num_classes, context.embedding_dim);
        if classes == 0 || dim == 0 {
            return Err(Error::bad_config(format!(
                "Proxy-Anchor keeps one proxy per training class and needs num_classes and embedding_dim, the run gave {classes} and {dim}"
            )));
        }
        // kaiming_normal_(mode="fan_out"): std = gain / √fan_out = √2 / √C.
        let std = (2.0 / classes as f64).sqrt();
        let mut rng = CallRng::new(context.seed, "proxy_anchor.proxies", 0);
        let proxies = (0..classes * dim).map(|_| (rng.normal() * std) as f32).collect();
        Ok(ProxyAnchor {
            margin: config.margin,
            alpha: config.alpha,
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

impl Loss for ProxyAnchor {
    const TUPLES: TupleUse = TupleUse::Optional(TupleForm::Pairs);
    const OWNS_PARAMETERS: bool = true;

    fn forward_backward(&mut self, batch: &Batch<'_>, grad: &mut [f32], stats: &mut Stats) -> Result<f64> {
        let (n, d, classes) = (batch.n(), batch.d(), self.classes);
        if d != self.dim {
            return Err(Error::bad_input(format!("Proxy-Anchor expects embeddings of size {}, got {d}", self.dim)));
        }
        if let Some((i, &l)) = batch.labels.iter().enumerate().find(|&(_, &l)| l < 0 || l as u64 >= classes as u64) {
            return Err(Error::bad_input(format!("label {l} of row {i} is outside 0..{classes}")));
        }
        let offsets: Vec<f64> = match batch.mined_pairs() {
            Some(pairs) => pairs.row_weights(n).into_iter().map(|w| w - 1.0).collect(),
            None => vec![0.0; n],
        };

        let proxies = MatRef::new(classes, d, self.proxies.value());
        let measured = self.distance.between(batch.embeddings, proxies);
        let values = measured.values();
        // Exponents a = α·sign·(v ∓ δ): for a similarity −α(S − δ) (positives) and α(S + δ)
        // (negatives); for a distance α(D − δ) and −α(D + δ). `sign` is da/dv of a positive.
        let sign = if self.distance.is_similarity() { -1.0 } else { 1.0 };
        let (alpha, margin) = (self.alpha, self.margin);
        let exponent = |i: usize, c: usize, positive: bool| {
            let v = f64::from(values.get(i, c));
            let a = if positive { sign * alpha * (v - margin) } else { -sign * alpha * (v + margin) };
            a + offsets[i]
        };
        let labels = batch.labels;
        let mut pos = SoftPlusSums::new(classes);
        let mut neg = SoftPlusSums::new(classes);
        for pass in 0..2 {
            for (i, &label) in labels.iter().enumerate() {
                for c in 0..classes {
                    let positive = c as i64 == label;
                    let sums = if positive { &mut pos } else { &mut neg };
                    let a = exponent(i, c, positive);
                    if pass == 0 { sums.see(c, a) } else { sums.add(c, a) }
                }
            }
        }
        let with_positives = pos.count.iter().filter(|&&k| k > 0).count();
        let with_negatives = neg.count.iter().filter(|&&k| k > 0).count();
        let pos_loss = (0..classes).map(|c| pos.value(c)).sum::<f64>() / with_positives as f64;
        let neg_loss = (0..classes).map(|c| neg.value(c)).sum::<f64>() / classes as f64;
        stats.record("pos_loss", pos_loss);
        stats.record("neg_loss", neg_loss);
        stats.record("proxies_with_positives", with_positives as f64);
        stats.record("proxies_with_negatives", with_negatives as f64);

        // dL/dv_ic = (1/|P⁺|)·slope·sign·α for a positive, −(1/C)·slope·sign·α for a negative.
        let pos_scale = sign * alpha / with_positives as f64;
        let neg_scale = -sign * alpha / classes as f64;
        let mut dvalues = Matrix::zeros(n, classes);
        for (i, &label) in labels.iter().enumerate() {
            let row = dvalues.row_mut(i);
            for (c, g) in row.iter_mut().enumerate() {
                let positive = c as i64 == label;
                let a = exponent(i, c, positive);
                *g = if positive { pos_scale * pos.slope(c, a) } else { neg_scale * neg.slope(c, a) } as f32;
            }
        }
        let (dz, dp) = measured.backward(batch.embeddings, proxies, dvalues.view());
        grad.copy_from_slice(&dz.data);
        self.proxies.set_gradient(dp.data);
        Ok(pos_loss + neg_loss)
    }

    fn step(&mut self, lr_scale: f64) -> Result<()> {
        self.proxies.step(lr_scale);
        Ok(())
    }
}

dmlbench_sdk::export_plugins!(loss: ProxyAnchor);
