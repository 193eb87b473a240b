//! Simplified pairwise cross-entropy, SPCE (Boudiaf et al., "A unifying mutual information
//! view of metric learning: cross-entropy vs. pairwise losses", ECCV 2020, equation 15): the
//! pairwise loss that the paper shows cross-entropy to be an upper bound of.
//!
//! For a batch z_1..z_n with labels y_i:
//!
//! ```text
//! L = −(1/n²) Σ_i Σ_{j: y_j = y_i} z_iᵀ z_j  +  (1/n) Σ_i log Σ_k exp( (1/n) Σ_{j: y_j = k} z_iᵀ z_j )
//! ```
//!
//! The inner sums run over every j of the class, i itself included, as the formula reads; k
//! runs over the classes present in the batch. (A class absent from the batch has an empty
//! inner sum; counting it would add a constant exp(0) = 1 per absent class inside the
//! logarithm, which depends on the dataset's class count rather than on the batch.)
//!
//! Written with batch class "prototypes" c_k = (1/n) Σ_{j: y_j = k} z_j the loss is a
//! softmax cross-entropy whose logits are z_i · c_k:
//!
//! ```text
//! L = (1/n) Σ_i [ log Σ_k exp(z_i · c_k) − z_i · c_{y_i} ]
//! ```
//!
//! which is how it is computed: two n×K×d products instead of the n×n×d pairwise matrix, with
//! the exact gradient dL/dz_i = Σ_k G_ik c_k + (1/n) (Gᵀ Z)_{y_i}, G_ik = (softmax_ik − δ_{k y_i})/n.
//!
//! Defaults reproduce the equation exactly: raw embeddings, similarity scale 1. Options:
//! `normalize_embeddings` (the z are L2-normalised first) and `scale` s (every z_iᵀz_j is
//! multiplied by s, a temperature 1/s), for embeddings whose raw inner products are too
//! large or too small for the softmax. A batch with one class gives 0 and a zero gradient,
//! with `one_class`. No pytorch-metric-learning counterpart exists.

use dmlbench_sdk::checks::positive;
use dmlbench_sdk::matrix::{MatRef, Matrix, Op, matmul};
use dmlbench_sdk::normalize::{l2_normalize, l2_normalize_backward};
use dmlbench_sdk::softmax::log_sum_exp;
use dmlbench_sdk::{Batch, Context, Loss, Plugin, Result, Stats};
use serde::{Deserialize, Serialize};

/// Configuration. The defaults are the paper's equation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// L2-normalise the embeddings first.
    pub normalize_embeddings: bool,
    /// s > 0: multiplies every inner product.
    pub scale: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config { normalize_embeddings: false, scale: 1.0 }
    }
}

/// The SPCE loss.
pub struct Spce {
    config: Config,
}

impl Plugin for Spce {
    type Config = Config;
    const ID: &'static str = "spce";
    const NAME: &'static str = "Simplified pairwise cross-entropy";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const SUMMARY: &'static str =
        "−(1/n²)Σ_{y_j=y_i} z_iᵀz_j + (1/n)Σ_i log Σ_k exp((1/n)Σ_{y_j=k} z_iᵀz_j) (Boudiaf et al. 2020, eq. 15)";

    fn new(config: Config, _context: &Context) -> Result<Self> {
        positive("scale", config.scale)?;
        Ok(Spce { config })
    }
}

impl Loss for Spce {
    fn forward_backward(&mut self, batch: &Batch<'_>, grad: &mut [f32], stats: &mut Stats) -> Result<f64> {
        let (n, d) = (batch.n(), batch.d());
        // Classes present, and each row's class index among them.
        let mut present: Vec<i64> = batch.labels.to_vec();
        present.sort_unstable();
        present.dedup();
        let k_count = present.len();
        stats.record("classes_in_batch", k_count as f64);
        if k_count < 2 {
            stats.record("one_class", 1.0);
            return Ok(0.0);
        }
        let class_of: Vec<usize> =
            batch.labels.iter().map(|l| present.binary_search(l).expect("label is present")).collect();

        let normalized = self.config.normalize_embeddings.then(|| l2_normalize(batch.embeddings));
        let x: MatRef<'_> = normalized.as_ref().map_or(batch.embeddings, |nz| nz.unit.view());
        let inv_n = 1.0 / n as f64;
        let s = self.config.scale;

        // Prototypes c_k = (s/n) Σ_{j ∈ k} x_j, summed in f64.
        let mut sums = vec![0.0f64; k_count * d];
        for (j, &k) in class_of.iter().enumerate() {
            for (acc, &v) in sums[k * d..(k + 1) * d].iter_mut().zip(x.row(j)) {
                *acc += f64::from(v);
            }
        }
        let prototypes = Matrix::from_vec(k_count, d, sums.iter().map(|&v| (v * s * inv_n) as f32).collect());
        let mut logits = matmul(x, Op::N, prototypes.view(), Op::T); // n×K

        let mut total = 0.0;
        for i in 0..n {
            let row = logits.row_mut(i);
            let lse = log_sum_exp(row);
            total += lse - f64::from(row[class_of[i]]);
            for (k, v) in row.iter_mut().enumerate() {
                let delta = if k == class_of[i] { 1.0 } else { 0.0 };
                *v = (((f64::from(*v) - lse).exp() - delta) * inv_n) as f32;
            }
        }
        let g = logits; // G = dL/dlogits

        // dL/dx_i = G_i·C + (s/n)·(Gᵀ X)_{class of i}.
        let mut dx = matmul(g.view(), Op::N, prototypes.view(), Op::N);
        let h = matmul(g.view(), Op::T, x, Op::N); // K×d
        let back_scale = (s * inv_n) as f32;
        for (i, &k) in class_of.iter().enumerate() {
            for (o, &v) in dx.row_mut(i).iter_mut().zip(h.row(k)) {
                *o += back_scale * v;
            }
        }
        let dz = match &normalized {
            Some(nz) => l2_normalize_backward(nz, dx.view()),
            None => dx,
        };
        grad.copy_from_slice(&dz.data);
        Ok(total * inv_n)
    }
}

dmlbench_sdk::export_plugins!(loss: Spce);
