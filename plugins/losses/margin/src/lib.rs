//! Margin loss (Wu, Manmatha, Smola and Krähenbühl, "Sampling Matters in Deep Embedding
//! Learning", ICCV 2017), with the definitions and defaults of pytorch-metric-learning's
//! `MarginLoss`.
//!
//! With a distance d (Euclidean on L2-normalised embeddings by default), a boundary β
//! between positive and negative distances, and triplets (a, p, n):
//!
//! ```text
//! ℓ⁺(a, p, n) = [d(a, p) − β_a + α]₊          α = margin = 0.2, β = beta = 1.2
//! ℓ⁻(a, p, n) = [β_a − d(a, n) + α]₊
//! L = Σ_triplets (ℓ⁺ + ℓ⁻) / (#{ℓ⁺ > 0} + #{ℓ⁻ > 0})  +  R(β)
//! ```
//!
//! Both terms are summed over the triplets and divided by the number of active pair terms,
//! counted per triplet (PML's `DivisorReducer` with divisor num_pos_pairs + num_neg_pairs);
//! with no active term the first part is 0. With a similarity (cosine, dot) the differences
//! flip as in PML's `distance.margin`: ℓ⁺ = [β_a − s(a, p) + α]₊, ℓ⁻ = [s(a, n) − β_a + α]₊.
//! The triplets are the mined ones when a miner ran (mined pairs are joined per anchor into
//! triplets, PML's `convert_to_triplets`), and otherwise every triplet of the batch (PML's
//! `triplets_per_anchor = "all"`). Without a miner the sums are taken per pair, each
//! (a, p) term counted once per negative of a and each (a, n) term once per positive, which
//! is the same sum without listing the triplets. The gradient is exact; at a hinge (ℓ = 0
//! exactly) it is 0, as torch's `relu`.
//!
//! **β.** β_a = β, one value, or β_{y_a}, the anchor's class's own, with `per_class_beta`
//! (PML's `num_classes` argument; here the run's `num_classes`, which must then be known).
//! With `learn_beta` (default false, as PML) β is trained: `forward_backward` keeps ∂L/∂β and
//! [`Loss::step`] applies it with plain SGD (`optimizer`, PyTorch's `torch.optim.SGD`) at the
//! experiment's base learning rate unless `optimizer.lr` is set, momentum 0 and weight decay 0
//! (omitted optimizer fields keep these plain values). The learnt β adds PML's regulariser:
//!
//! ```text
//! R(β) = ν·β                                     one β (added even when no term is active)
//! R(β) = ν·Σ_triplets β_{y_a} / (#{ℓ⁺ > 0} + #{ℓ⁻ > 0})   per-class β (0 without an active term)
//! ```
//!
//! with ν = `nu` = 0; without `learn_beta` R = 0 and ν is unused, as in PML. β moves far
//! faster than the network in the authors' training: their MXNet example
//! (`example/gluon/embedding_learning`) trains the network at 1e-4 and β by SGD at 0.1 with
//! momentum 0.9 (1,000 times faster); with a backbone at 1e-4, write
//! `learn_beta: true, optimizer: (lr: Some(0.1), momentum: 0.9)`.
//!
//! State: `beta` ([1], or [C] with `per_class_beta`) and `beta.momentum` (same shape). The
//! state holds β even when it is fixed, so that `dmlbench plugins show` lists it and
//! `dmlbench loss margin --state FILE` evaluates a given β; a loaded β is used as it is, and
//! stays fixed without `learn_beta`. The loss's capability flag `OWNS_PARAMETERS` is off: the
//! default (PML's) learns nothing, and the flag is fixed per plugin, not per configuration.
//! The host calls [`Loss::step`] after every batch whatever the flag says, so `learn_beta`
//! trains β all the same.
//!
//! **Degenerate batches.** No triplet (one class, all singletons): loss 0, zero gradient,
//! statistic `no_triplets`, and β gets no gradient (a following `step` leaves it, and its
//! momentum, alone, as PyTorch skips a parameter without a gradient). Triplets but no active
//! term: the margin part is 0 with a zero gradient for Z and the statistic
//! `all_triplets_inactive`; with a learnt single β the loss is still ν·β (PML's regulariser
//! is reduced on its own), with a learnt per-class β it is 0 and β gets no gradient, as in
//! PML. Statistics: `triplets`, `active_pos_pairs`, `active_neg_pairs`, `margin_loss` and
//! `beta_reg_loss`.
//!
//! Differences from PML, and why:
//! - `triplets_per_anchor` as a number (random triplets drawn inside the loss) is not
//!   offered; use a miner instead. Its default, `"all"`, is what this computes.
//! - PML's `num_classes` is the boolean `per_class_beta`, taking the class count from the run.
//! - PML's `reducer` and `embedding_regularizer` are not offered (their defaults,
//!   `DivisorReducer` and none, are what this computes).

use dmlbench_sdk::checks::{finite, non_negative};
use dmlbench_sdk::classifier::SgdConfig;
use dmlbench_sdk::distance::DistanceConfig;
use dmlbench_sdk::matrix::Matrix;
use dmlbench_sdk::trainable::Trainable;
use dmlbench_sdk::{Batch, Context, Error, Loss, Plugin, Result, Stats, Triplets, TupleForm, TupleUse};
use serde::{Deserialize, Serialize};

/// Configuration (PML's defaults; the optimiser's are plain SGD).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// α: how far on its side of β each distance must be.
    pub margin: f64,
    /// ν ≥ 0: weight of the regulariser on a learnt β.
    pub nu: f64,
    /// The initial (or fixed) β.
    pub beta: f64,
    /// Train β with the plugin's optimizer.
    pub learn_beta: bool,
    /// One β per training class (PML's `num_classes`), chosen by the anchor's label.
    pub per_class_beta: bool,
    /// How embeddings are compared.
    pub distance: DistanceConfig,
    /// How β is updated in `step` when learnt. Omitted fields take [`SgdConfig::plain`]'s
    /// values.
    #[serde(deserialize_with = "SgdConfig::deserialize_plain")]
    pub optimizer: SgdConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            margin: 0.2,
            nu: 0.0,
            beta: 1.2,
            learn_beta: false,
            per_class_beta: false,
            distance: DistanceConfig::default(),
            optimizer: SgdConfig::plain(),
        }
    }
}

/// Names of the state tensors.
pub const STATE_NAMES: [&str; 2] = ["beta", "beta.momentum"];

/// The margin loss and its β.
pub struct Margin {
    margin: f64,
    nu: f64,
    learn_beta: bool,
    per_class: bool,
    distance: DistanceConfig,
    /// β, with its optimiser and the ∂L/∂β of the last call waiting for `step` (none when β
    /// got no gradient).
    beta: Trainable,
}

impl Margin {
    /// β: one value, or one per class.
    pub fn beta(&self) -> &[f32] {
        self.beta.value()
    }

    /// β's momentum buffer.
    pub fn momentum(&self) -> &[f32] {
        self.beta.momentum()
    }

    /// ∂L/∂β of the last `forward_backward`, until `step` applies it; `None` without
    /// `learn_beta` or when β had no part in the loss.
    pub fn beta_gradient(&self) -> Option<&[f32]> {
        self.beta.pending_gradient()
    }

    /// The learning rate `step(1.0)` uses.
    pub fn learning_rate(&self) -> f64 {
        self.beta.learning_rate()
    }
}

impl Plugin for Margin {
    type Config = Config;
    const ID: &'static str = "margin";
    const NAME: &'static str = "Margin loss";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const SUMMARY: &'static str = "[d(a,p) − β + α]₊ + [β − d(a,n) + α]₊ over triplets, divided by the active terms; β optionally learnt, per class (Wu et al. 2017; PML defaults)";
    const HAS_STATE: bool = true;

    fn new(config: Config, context: &Context) -> Result<Self> {
        finite("margin", config.margin)?;
        non_negative("nu", config.nu)?;
        finite("beta", config.beta)?;
        config.optimizer.validate("")?;
        let size = if config.per_class_beta {
            if context.num_classes == 0 {
                return Err(Error::bad_config(
                    "per_class_beta keeps one β per training class and needs num_classes, the run gave 0",
                ));
            }
            context.num_classes
        } else {
            1
        };
        Ok(Margin {
            margin: config.margin,
            nu: config.nu,
            learn_beta: config.learn_beta,
            per_class: config.per_class_beta,
            distance: config.distance,
            beta: Trainable::new(STATE_NAMES[0], vec![size], vec![config.beta as f32; size], config.optimizer, context),
        })
    }

    fn save(&self) -> Result<Vec<u8>> {
        self.beta.save_state()
    }

    fn load(&mut self, bytes: &[u8]) -> Result<()> {
        self.beta.load_state(bytes)
    }
}

/// Sums over the triplets, before the division by the active terms.
struct Sums {
    /// Σ (ℓ⁺ + ℓ⁻).
    total: f64,
    /// Number of triplets.
    triplets: usize,
    /// #{ℓ⁺ > 0} and #{ℓ⁻ > 0}, per triplet.
    active_pos: usize,
    active_neg: usize,
    /// ∂Σ/∂value for each pair value (n×n, row-major).
    slopes: Vec<f64>,
    /// ∂Σ/∂β for each β.
    beta_slopes: Vec<f64>,
    /// Number of triplets anchored on each β.
    anchored: Vec<f64>,
}

impl Margin {
    /// The β index of anchor `a`.
    fn beta_index(&self, labels: &[i64], a: usize) -> usize {
        if self.per_class { labels[a] as usize } else { 0 }
    }

    /// Sums the pair terms over `triplets` (mined), or over every triplet of the batch.
    fn sums(&self, values: &Matrix, labels: &[i64], mined: Option<&Triplets>) -> Sums {
        let n = labels.len();
        let sigma = if self.distance.is_similarity() { -1.0 } else { 1.0 };
        let mut sums = Sums {
            total: 0.0,
            triplets: 0,
            active_pos: 0,
            active_neg: 0,
            slopes: vec![0.0; n * n],
            beta_slopes: vec![0.0; self.beta.value().len()],
            anchored: vec![0.0; self.beta.value().len()],
        };
        // ℓ⁺ = [σ(v_ap − β) + α]₊ and ℓ⁻ = [σ(β − v_an) + α]₊, each counted `times` times:
        // the term's value and whether it is active.
        let pos_term = |a: usize, p: usize, beta: f64| sigma * (f64::from(values.get(a, p)) - beta) + self.margin;
        let neg_term = |a: usize, x: usize, beta: f64| sigma * (beta - f64::from(values.get(a, x))) + self.margin;
        let add_pos = |sums: &mut Sums, a: usize, p: usize, b: usize, times: usize| {
            let v = pos_term(a, p, f64::from(self.beta.value()[b]));
            if v > 0.0 {
                let t = times as f64;
                sums.total += t * v;
                sums.active_pos += times;
                sums.slopes[a * n + p] += t * sigma;
                sums.beta_slopes[b] -= t * sigma;
            }
        };
        let add_neg = |sums: &mut Sums, a: usize, x: usize, b: usize, times: usize| {
            let v = neg_term(a, x, f64::from(self.beta.value()[b]));
            if v > 0.0 {
                let t = times as f64;
                sums.total += t * v;
                sums.active_neg += times;
                sums.slopes[a * n + x] -= t * sigma;
                sums.beta_slopes[b] += t * sigma;
            }
        };
        match mined {
            Some(t) => {
                for ((&a, &p), &x) in t.a.iter().zip(&t.p).zip(&t.n) {
                    let (a, p, x) = (a as usize, p as usize, x as usize);
                    let b = self.beta_index(labels, a);
                    sums.triplets += 1;
                    sums.anchored[b] += 1.0;
                    add_pos(&mut sums, a, p, b, 1);
                    add_neg(&mut sums, a, x, b, 1);
                }
            }
            None => {
                let (mut positives, mut negatives) = (Vec::with_capacity(n), Vec::with_capacity(n));
                for a in 0..n {
                    positives.clear();
                    negatives.clear();
                    for (j, &label) in labels.iter().enumerate() {
                        if label != labels[a] {
                            negatives.push(j);
                        } else if j != a {
                            positives.push(j);
                        }
                    }
                    let (np, nn) = (positives.len(), negatives.len());
                    if np == 0 || nn == 0 {
                        continue;
                    }
                    let b = self.beta_index(labels, a);
                    sums.triplets += np * nn;
                    sums.anchored[b] += (np * nn) as f64;
                    for &p in &positives {
                        add_pos(&mut sums, a, p, b, nn);
                    }
                    for &x in &negatives {
                        add_neg(&mut sums, a, x, b, np);
                    }
                }
            }
        }
        sums
    }
}

impl Loss for Margin {
    const TUPLES: TupleUse = TupleUse::Optional(TupleForm::Triplets);

    fn forward_backward(&mut self, batch: &Batch<'_>, grad: &mut [f32], stats: &mut Stats) -> Result<f64> {
        let labels = batch.labels;
        let size = self.beta.value().len();
        if self.per_class
            && let Some((i, &l)) = labels.iter().enumerate().find(|&(_, &l)| l < 0 || l as u64 >= size as u64)
        {
            return Err(Error::bad_input(format!("label {l} of row {i} is outside 0..{size} (per_class_beta)")));
        }
        self.beta.clear_gradient();
        let distances = self.distance.compute(batch.embeddings);
        let mined = batch.mined_triplets();
        let sums = self.sums(distances.values(), labels, mined.as_deref());
        stats.record("triplets", sums.triplets as f64);
        stats.record("active_pos_pairs", sums.active_pos as f64);
        stats.record("active_neg_pairs", sums.active_neg as f64);
        if sums.triplets == 0 {
            stats.record("no_triplets", 1.0);
            return Ok(0.0);
        }

        let divisor = (sums.active_pos + sums.active_neg) as f64;
        let inv = if divisor > 0.0 { 1.0 / divisor } else { 0.0 };
        let margin_loss = sums.total * inv;
        let mut d_beta: Vec<f64> = sums.beta_slopes.iter().map(|g| g * inv).collect();
        // PML's regulariser on a learnt β: ν·β for one β, already reduced; for per-class β the
        // per-triplet ν·β_{y_a}, divided by the same divisor (0, and no gradient, without one).
        let mut reg = 0.0;
        let mut beta_has_gradient = self.learn_beta && divisor > 0.0;
        if self.learn_beta && !self.per_class {
            reg = self.nu * f64::from(self.beta.value()[0]);
            d_beta[0] += self.nu;
            beta_has_gradient = true;
        } else if self.learn_beta && divisor > 0.0 {
            for ((g, &count), &b) in d_beta.iter_mut().zip(&sums.anchored).zip(self.beta.value()) {
                reg += self.nu * count * f64::from(b) * inv;
                *g += self.nu * count * inv;
            }
        }
        stats.record("margin_loss", margin_loss);
        stats.record("beta_reg_loss", reg);
        if beta_has_gradient {
            self.beta.set_gradient(d_beta.iter().map(|&g| g as f32).collect());
        }
        if divisor == 0.0 {
            stats.record("all_triplets_inactive", 1.0);
            return Ok(reg);
        }
        let n = batch.n();
        let dvalues = Matrix::from_vec(n, n, sums.slopes.iter().map(|&g| (g * inv) as f32).collect());
        grad.copy_from_slice(&distances.backward(batch.embeddings, dvalues.view()).data);
        Ok(margin_loss + reg)
    }

    fn step(&mut self, lr_scale: f64) -> Result<()> {
        self.beta.step(lr_scale);
        Ok(())
    }
}

dmlbench_sdk::export_plugins!(loss: Margin);
