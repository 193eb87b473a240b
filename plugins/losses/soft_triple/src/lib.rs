//! SoftTriple loss (Qian, Shang, Sun, Hu, Li and Jin, "SoftTriple Loss: Deep Metric Learning
//! Without Triplet Sampling", ICCV 2019), with the definitions and defaults of
//! pytorch-metric-learning's `SoftTripleLoss`.
//!
//! The plugin owns K centres per class, a matrix `fc` of d×C·K (PML's name and layout:
//! embeddings times fc; column c·K + k is centre k of class c), over the run's `num_classes`
//! and `embedding_dim`. Each class is represented by a softmax-weighted mix of its centres'
//! similarities, and the loss is a scaled softmax cross-entropy over those class similarities
//! with a small margin on the own class:
//!
//! ```text
//! x_i   = z_i / max(‖z_i‖, ε)               w_j = fc[:, j] / max(‖fc[:, j]‖, ε)     ε = 1e-12
//! s_ij  = x_i · w_j                          j = c·K + k, K = centers_per_class = 10
//! p_ick = softmax_k(s_{i,cK+k} / γ)          γ = gamma = 0.1
//! S_ic  = Σ_k p_ick s_{i,cK+k}               the relaxed similarity of row i to class c
//! ℓ_ic  = λ (S_ic − δ·[c = y_i])             λ = la = 20, δ = margin = 0.01
//! L     = (1/n) Σ_i w_i (log Σ_c e^{ℓ_ic} − ℓ_{i,y_i})
//! ```
//!
//! w_i = 1 without a miner. Backwards, with ∂L/∂S_ic = λ w_i (softmax(ℓ_i)_c − [c = y_i]) / n,
//! each centre receives ∂L/∂s_{i,cK+k} = ∂L/∂S_ic · p_ick (1 + (s_{i,cK+k} − S_ic)/γ), and the
//! products and both normalisations carry that to Z and fc exactly. The normalisations and
//! softmaxes are f64; the three products (the n×C·K similarities, ∂L/∂x and ∂L/∂fc) run on
//! the f32 GEMM (`matmul_f64_in_f32`), twice as fast as f64's, whose digits serve similarities
//! fed to a softmax and gradients returned in f32 (within 1e-6 of PML's float64 values on its
//! fixtures). Every batch is a valid input (a batch of one class or one row has a well-defined
//! loss: the other classes' centres are its negatives), so there is no degenerate case.
//!
//! The similarity is the `distance`, cosine by default; PML requires a similarity (its
//! `is_inverted`), so `measure: dot` is accepted too (with `normalize_embeddings: false`, raw
//! inner products of embeddings and centres) and a distance measure is refused. Defaults,
//! all PML's: K = 10, λ = 20, γ = 0.1 (PML stores 1/γ), δ = 0.01, `CosineSimilarity()`.
//!
//! **Tuples.** As in PML, mined tuples do not choose pairs: they weight the rows,
//! w_i = c_i / max_k c_k, where c_i counts how often row i appears anywhere in the mined
//! a1, p, a2 and n lists (PML's `convert_to_weights`). A row in no tuple gets w_i = 0 (no
//! loss, no gradient) but still counts in the 1/n of the mean, as PML's `MeanReducer`
//! counts it; when every mined list is empty, w_i = 1. Statistic: `zero_weight_rows` when a
//! miner ran.
//!
//! **Centres and their optimiser.** fc starts as in PML, from
//! `torch.nn.init.kaiming_uniform_(a=√5)` on the d×C·K tensor: fan-in C·K, gain √(1/3), so
//! every entry is uniform on [−1/√(C·K), 1/√(C·K)]. The draw comes from the run's seed with
//! the SDK's ChaCha generator: the same distribution as PyTorch's, not the same numbers.
//! `forward_backward` keeps ∂L/∂fc and [`Loss::step`] applies it with SGD (`optimizer`,
//! PyTorch's `torch.optim.SGD`): the experiment's base learning rate times `lr_scale` unless
//! `optimizer.lr` is set, momentum 0 and weight decay 0 (omitted optimizer fields keep these
//! plain values). The authors train the centres 100 times faster than the network (their
//! `train.py`: Adam, 1e-4 for the model, 1e-2 for the centres): with a backbone at 1e-4,
//! write `optimizer: (lr: Some(0.01))`. State: `fc` (d×C·K) and `fc.momentum` (d×C·K).
//!
//! Differences from PML, and why:
//! - Mined triplets reach the loss as their pairs (a, p) and (a, n), so an anchor counts
//!   twice per triplet in c_i where PML, given the triplet tuple itself, counts it once: the
//!   SDK hands the loss one tuple form, and pairs keep a pair miner's tuples exactly as PML
//!   sees them. With mined pairs the weights are PML's.
//! - The paper's regulariser that merges redundant centres (τ times the summed distances
//!   between the unit centres of each class, τ = 0.2 in the paper) is not part of PML's loss: PML offers it only as a
//!   `weight_regularizer`, which defaults to none. This plugin computes that default and does
//!   not offer the option; neither does it offer `reducer`, `embedding_regularizer` or
//!   `weight_init_func` (their defaults, `MeanReducer`, none and `kaiming_uniform_`, are what
//!   it computes). `optimizer.weight_decay` gives an L2 penalty on fc.

use dmlbench_sdk::checks::{finite, positive};
use dmlbench_sdk::classifier::SgdConfig;
use dmlbench_sdk::distance::DistanceConfig;
use dmlbench_sdk::matrix::matmul_f64_in_f32;
use dmlbench_sdk::normalize::{l2_normalize_f64, l2_normalize_f64_backward};
use dmlbench_sdk::pairwise::Measure;
use dmlbench_sdk::rng::CallRng;
use dmlbench_sdk::trainable::Trainable;
use dmlbench_sdk::{Batch, Context, Error, Loss, Plugin, Result, Stats, TupleForm, TupleUse};
use serde::{Deserialize, Serialize};

/// Configuration (PML's defaults; the optimiser's are plain SGD).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// K ≥ 1: centres per class.
    pub centers_per_class: usize,
    /// λ > 0: the scale of the class similarities inside the softmax.
    pub la: f64,
    /// γ > 0: the temperature of the softmax over each class's centres (small: close to the
    /// nearest centre).
    pub gamma: f64,
    /// δ: taken from the own class's similarity.
    pub margin: f64,
    /// The similarity between embeddings and centres: `cosine` (default) or `dot`.
    pub distance: DistanceConfig,
    /// How fc is updated in `step`. Omitted fields take [`SgdConfig::plain`]'s values.
    #[serde(deserialize_with = "SgdConfig::deserialize_plain")]
    pub optimizer: SgdConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            centers_per_class: 10,
            la: 20.0,
            gamma: 0.1,
            margin: 0.01,
            distance: DistanceConfig::cosine(),
            optimizer: SgdConfig::plain(),
        }
    }
}

/// Names of the state tensors (PML's parameter name, and its momentum buffer).
pub const STATE_NAMES: [&str; 2] = ["fc", "fc.momentum"];

/// The SoftTriple loss and its centres.
pub struct SoftTriple {
    centers: usize,
    la: f64,
    gamma: f64,
    margin: f64,
    normalize: bool,
    classes: usize,
    dim: usize,
    /// fc, d×C·K, with its optimiser and the ∂L/∂fc of the last call waiting for `step`.
    fc: Trainable,
}

impl SoftTriple {
    /// fc, d×C·K row-major (PML's layout).
    pub fn fc(&self) -> &[f32] {
        self.fc.value()
    }

    /// fc's momentum buffer, d×C·K.
    pub fn momentum(&self) -> &[f32] {
        self.fc.momentum()
    }

    /// ∂L/∂fc (d×C·K) of the last `forward_backward`, until `step` applies it.
    pub fn fc_gradient(&self) -> Option<&[f32]> {
        self.fc.pending_gradient()
    }

    /// The learning rate `step(1.0)` uses.
    pub fn learning_rate(&self) -> f64 {
        self.fc.learning_rate()
    }

    /// Number of columns of fc, C·K.
    fn columns(&self) -> usize {
        self.classes * self.centers
    }
}

impl Plugin for SoftTriple {
    type Config = Config;
    const ID: &'static str = "soft_triple";
    const NAME: &'static str = "SoftTriple loss";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const SUMMARY: &'static str = "softmax cross-entropy of λ(S_ic − δ[c = y_i]), S_ic a softmax(·/γ)-weighted similarity to K trainable centres per class (Qian et al. 2019; PML defaults)";
    const HAS_STATE: bool = true;

    fn new(config: Config, context: &Context) -> Result<Self> {
        if config.centers_per_class == 0 {
            return Err(Error::bad_config("centers_per_class must be at least 1, got 0"));
        }
        positive("la", config.la)?;
        positive("gamma", config.gamma)?;
        finite("margin", config.margin)?;
        if !config.distance.is_similarity() {
            return Err(Error::bad_config(format!(
                "distance must be a similarity (measure cosine or dot), as PML's SoftTripleLoss requires, got {:?}",
                config.distance.measure
            )));
        }
        config.optimizer.validate("")?;
        let (classes, dim) = (context.num_classes, context.embedding_dim);
        if classes == 0 || dim == 0 {
            return Err(Error::bad_config(format!(
                "SoftTriple keeps centres per training class and needs num_classes and embedding_dim, the run gave {classes} and {dim}"
            )));
        }
        let columns = classes.checked_mul(config.centers_per_class);
        let size = columns.and_then(|c| c.checked_mul(dim)).ok_or_else(|| {
            Error::bad_config(format!(
                "fc would hold {dim}×{classes}×{} values, more than memory can (centers_per_class)",
                config.centers_per_class
            ))
        })?;
        // kaiming_uniform_(a=√5) on a d×C·K tensor: fan-in C·K, gain √(2/(1 + a²)) = √(1/3),
        // bound gain·√(3/fan-in) = 1/√(C·K).
        let bound = 1.0 / ((classes * config.centers_per_class) as f64).sqrt();
        let mut rng = CallRng::new(context.seed, "fc.init", 0);
        let fc = (0..size).map(|_| ((2.0 * rng.uniform() - 1.0) * bound) as f32).collect();
        Ok(SoftTriple {
            centers: config.centers_per_class,
            la: config.la,
            gamma: config.gamma,
            margin: config.margin,
            normalize: config.distance.normalize_embeddings || config.distance.measure == Measure::Cosine,
            classes,
            dim,
            fc: Trainable::new(
                STATE_NAMES[0],
                vec![dim, classes * config.centers_per_class],
                fc,
                config.optimizer,
                context,
            ),
        })
    }

    fn save(&self) -> Result<Vec<u8>> {
        self.fc.save_state()
    }

    fn load(&mut self, bytes: &[u8]) -> Result<()> {
        self.fc.load_state(bytes)
    }
}

impl Loss for SoftTriple {
    const TUPLES: TupleUse = TupleUse::Optional(TupleForm::Pairs);
    const OWNS_PARAMETERS: bool = true;

    fn forward_backward(&mut self, batch: &Batch<'_>, grad: &mut [f32], stats: &mut Stats) -> Result<f64> {
        let (n, d, classes, k) = (batch.n(), batch.d(), self.classes, self.centers);
        let columns = self.columns();
        if d != self.dim {
            return Err(Error::bad_input(format!("SoftTriple expects embeddings of size {}, got {d}", self.dim)));
        }
        if let Some((i, &l)) = batch.labels.iter().enumerate().find(|&(_, &l)| l < 0 || l as u64 >= classes as u64) {
            return Err(Error::bad_input(format!("label {l} of row {i} is outside 0..{classes}")));
        }
        let weights = match batch.mined_pairs() {
            Some(pairs) => pairs.row_weights(n),
            None => vec![1.0; n],
        };
        if batch.tuples.is_some() {
            stats.record("zero_weight_rows", weights.iter().filter(|&&w| w == 0.0).count() as f64);
        }

        // Embeddings (n×d) and centres as rows (C·K×d), normalised when the similarity says so.
        let z: Vec<f64> = batch.embeddings.data.iter().map(|&v| f64::from(v)).collect();
        let mut centres = vec![0.0f64; columns * d];
        for (l, row) in self.fc.value().chunks_exact(columns).enumerate() {
            for (j, &v) in row.iter().enumerate() {
                centres[j * d + l] = f64::from(v);
            }
        }
        let x = Rows::new(z, d, self.normalize);
        let w = Rows::new(centres, d, self.normalize);
        let sims = matmul_f64_in_f32(n, d, columns, &x.unit, (d, 1), &w.unit, (1, d));

        // G = ∂L/∂s, written row by row.
        let inv_gamma = 1.0 / self.gamma;
        let mut g = vec![0.0f64; n * columns];
        let mut relaxed = vec![0.0f64; classes];
        let mut logits = vec![0.0f64; classes];
        let mut mix = vec![0.0f64; columns];
        let mut total = 0.0;
        for (i, &label) in batch.labels.iter().enumerate() {
            let y = label as usize;
            let s_row = &sims[i * columns..(i + 1) * columns];
            for c in 0..classes {
                let (s, p) = (&s_row[c * k..(c + 1) * k], &mut mix[c * k..(c + 1) * k]);
                let max = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let mut sum = 0.0;
                for (pk, &sk) in p.iter_mut().zip(s) {
                    *pk = ((sk - max) * inv_gamma).exp();
                    sum += *pk;
                }
                let mut mixed = 0.0;
                for (pk, &sk) in p.iter_mut().zip(s) {
                    *pk /= sum;
                    mixed += *pk * sk;
                }
                relaxed[c] = mixed;
                logits[c] = self.la * (mixed - if c == y { self.margin } else { 0.0 });
            }
            let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lse = max + logits.iter().map(|&l| (l - max).exp()).sum::<f64>().ln();
            total += weights[i] * (lse - logits[y]);
            if weights[i] == 0.0 {
                continue;
            }
            let g_row = &mut g[i * columns..(i + 1) * columns];
            for c in 0..classes {
                let target = if c == y { 1.0 } else { 0.0 };
                let d_relaxed = self.la * weights[i] * ((logits[c] - lse).exp() - target) / n as f64;
                for j in c * k..(c + 1) * k {
                    g_row[j] = d_relaxed * mix[j] * (1.0 + (s_row[j] - relaxed[c]) * inv_gamma);
                }
            }
        }

        let dx = matmul_f64_in_f32(n, columns, d, &g, (columns, 1), &w.unit, (d, 1));
        let dw = matmul_f64_in_f32(columns, n, d, &g, (1, columns), &x.unit, (d, 1));
        for (o, v) in grad.iter_mut().zip(x.backward(dx)) {
            *o = v as f32;
        }
        let dw = w.backward(dw);
        let mut pending = vec![0.0f32; d * columns];
        for (j, row) in dw.chunks_exact(d).enumerate() {
            for (l, &v) in row.iter().enumerate() {
                pending[l * columns + j] = v as f32;
            }
        }
        self.fc.set_gradient(pending);
        Ok(total / n as f64)
    }

    fn step(&mut self, lr_scale: f64) -> Result<()> {
        self.fc.step(lr_scale);
        Ok(())
    }
}

/// Rows of a matrix in f64, divided by max(‖row‖, ε) when asked, with what the backward pass
/// needs.
struct Rows {
    unit: Vec<f64>,
    /// The norm of each row, when normalised.
    norms: Option<Vec<f64>>,
    d: usize,
}

impl Rows {
    fn new(values: Vec<f64>, d: usize, normalize: bool) -> Self {
        if normalize {
            let (unit, norms) = l2_normalize_f64(&values, d);
            Rows { unit, norms: Some(norms), d }
        } else {
            Rows { unit: values, norms: None, d }
        }
    }

    /// ∂L/∂rows from ∂L/∂unit.
    fn backward(&self, grad: Vec<f64>) -> Vec<f64> {
        match &self.norms {
            Some(norms) => l2_normalize_f64_backward(&self.unit, norms, &grad, self.d),
            None => grad,
        }
    }
}

dmlbench_sdk::export_plugins!(loss: SoftTriple);
