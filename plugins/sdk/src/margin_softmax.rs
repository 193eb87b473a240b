//! The margin-softmax core of the `norm_softmax`, `cosface`, `arcface` and
//! `sub_center_arcface` plugins (NormSoftmax, CosFace, ArcFace, sub-centre ArcFace): a trainable class-weight matrix W, cosines between
//! L2-normalised embeddings and L2-normalised columns of W, a change φ of each embedding's
//! own-class cosine (the loss's margin), and the softmax cross-entropy of the scaled result,
//! with exact gradients for the embeddings and for W through both normalisations.
//!
//! W has pytorch-metric-learning's layout: d×(C·K), embeddings times W, column c·K + k the
//! k-th of the K sub-centres of class c (K = 1 but for sub-centre ArcFace). For a batch
//! z_1..z_n with labels y_i:
//!
//! ```text
//! x_i  = z_i / max(‖z_i‖, ε)                 ε = 1e-12, as torch's F.normalize
//! w_j  = W[:, j] / max(‖W[:, j]‖, ε)
//! s_ic = max_k x_i · w_{cK+k}                (K = 1: the cosine x_i · w_c)
//! ℓ_ic = scale · s_ic                        c ≠ y_i
//! ℓ_iy = scale · φ(s_iy)                     y = y_i; φ is the loss's margin
//! L    = (1/n) Σ_i [log Σ_c exp(ℓ_ic) − ℓ_iy]
//! ```
//!
//! and backwards, G being ∂L/∂(x_i · w_j):
//!
//! ```text
//! ∂L/∂ℓ_ic = (softmax(ℓ_i)_c − [c = y_i]) / n
//! ∂L/∂s_ic = scale · ∂L/∂ℓ_ic · (φ'(s_ic) if c = y_i, else 1)
//! G_ij     = ∂L/∂s_ic for the first sub-centre j = cK + k reaching the maximum, else 0
//! ∂L/∂x_i  = Σ_j G_ij w_j                    ∂L/∂w_j = Σ_i G_ij x_i
//! ∂L/∂z_i  = (g − x_i (x_i · g)) / ‖z_i‖     g = ∂L/∂x_i; g / ε when ‖z_i‖ ≤ ε
//! ```
//!
//! and the same for each column of W. A tie between sub-centres sends the whole gradient to
//! the first of them, as torch's `max(dim)` does.
//!
//! Precision: normalisations, the softmax and each embedding's own-class cosines s_iy (its K
//! sub-centre cosines) are f64; the three products (the n×C·K cosines, ∂L/∂x and ∂L/∂W) run
//! on the f32 GEMM (`sgemm`, twice as fast as `dgemm`), whose own-class entries are then
//! recomputed in f64 with n·K dot products. The own-class cosine is the one that needs the
//! digits: ArcFace's φ' grows like 1/sin θ near θ = 0 and π, where an f32 cosine would move it
//! far. Every other entry feeds a softmax and returns f32 gradients; scaled by s = 64, f32
//! cosines move the gradients by a few 1e-6 relative to PML's float64 (the parity tests allow
//! 1e-5).
//!
//! W starts as PML's does, every entry drawn from N(0, 1) (`torch.nn.init.normal_`), here
//! from the run's seed ([`CallRng`], purpose `"W.init"`) rather than from PyTorch's generator:
//! the same distribution, different numbers. `step` applies the gradient of the last
//! `forward_backward` once with plain SGD ([`SgdConfig`], PyTorch's semantics; nothing happens
//! without a new gradient). The state is `W` (d×C·K) and its momentum buffer `W.momentum`.

use std::f64::consts::PI;

use crate::classifier::SgdConfig;
use crate::error::{Error, Result};
use crate::matrix::{MatRef, matmul_f64_in_f32};
use crate::normalize::{l2_normalize_f64, l2_normalize_f64_backward};
use crate::plugin::{Context, Stats};
use crate::rng::CallRng;
use crate::trainable::Trainable;

/// Name of the weight tensor in the state (PML's attribute name).
pub const WEIGHT: &str = "W";

/// ArcFace's target logit before scaling, φ(s), and φ'(s), with PML's `ArcFaceLoss` rules
/// for a margin of `m` radians:
///
/// ```text
/// θ = acos(clamp(s, −1, 1))
/// φ = cos(θ + m)             if θ ≤ π − m
///     cos θ − m·sin m        otherwise (keeps φ decreasing in θ)
/// ```
///
/// φ' is what PML's autograd gives: sin(θ + m)/√(1 − s²) and 1 on the two branches, and 0
/// where the clamp is active (|s| > 1, a rounding excess). At |s| = 1 exactly autograd gives
/// NaN (acos's derivative is infinite there, and the branch torch.where leaves out multiplies
/// it by 0); this gives 0, the clamped value, so that the gradient stays finite.
pub fn arcface_target(m: f64, s: f64) -> (f64, f64) {
    let theta = s.clamp(-1.0, 1.0).acos();
    let inside = s.abs() < 1.0;
    if theta <= PI - m {
        let slope = if inside { (theta + m).sin() / (1.0 - s * s).sqrt() } else { 0.0 };
        ((theta + m).cos(), slope)
    } else {
        (theta.cos() - m * m.sin(), if inside { 1.0 } else { 0.0 })
    }
}

/// The class weights W with their optimiser, and the loss computed from them.
#[derive(Clone, Debug)]
pub struct MarginSoftmax {
    classes: usize,
    sub_centers: usize,
    dim: usize,
    /// W, d×C·K, with its optimiser and the ∂L/∂W of the last call waiting for `step`.
    weight: Trainable,
}

impl MarginSoftmax {
    /// W of `context.embedding_dim` × `context.num_classes`·`sub_centers`, drawn from N(0, 1)
    /// with the context's seed. Refuses a run without a class count or embedding size, and
    /// invalid optimiser settings (named `optimizer.*`). `sub_centers` must be checked (≥ 1)
    /// by the caller.
    pub fn new(context: &Context, sub_centers: usize, optimizer: SgdConfig) -> Result<Self> {
        let (classes, dim) = (context.num_classes, context.embedding_dim);
        if classes == 0 || dim == 0 {
            return Err(Error::bad_config(format!(
                "this loss learns a weight column per training class and needs num_classes and embedding_dim, the run gave {classes} and {dim}"
            )));
        }
        let size = classes.checked_mul(sub_centers).and_then(|c| c.checked_mul(dim)).ok_or_else(|| {
            Error::bad_config(format!("W would hold {dim}×{classes}×{sub_centers} values, more than memory can"))
        })?;
        optimizer.validate("")?;
        let mut rng = CallRng::new(context.seed, "W.init", 0);
        let weight = (0..size).map(|_| rng.normal() as f32).collect();
        let shape = vec![dim, classes * sub_centers];
        Ok(MarginSoftmax {
            classes,
            sub_centers,
            dim,
            weight: Trainable::new(WEIGHT, shape, weight, optimizer, context),
        })
    }

    /// Number of classes C.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Number of columns of W, C·K.
    pub fn columns(&self) -> usize {
        self.classes * self.sub_centers
    }

    /// W, d×C·K row-major (PML's layout).
    pub fn weight(&self) -> &[f32] {
        self.weight.value()
    }

    /// W's momentum buffer, d×C·K.
    pub fn momentum(&self) -> &[f32] {
        self.weight.momentum()
    }

    /// ∂L/∂W (d×C·K) of the last `forward_backward`, until `step` applies it.
    pub fn pending_gradient(&self) -> Option<&[f32]> {
        self.weight.pending_gradient()
    }

    /// The learning rate `step(1.0)` uses.
    pub fn learning_rate(&self) -> f64 {
        self.weight.learning_rate()
    }

    /// The loss of one batch with logit scale `scale` and target change `target` (s ↦
    /// (φ(s), φ'(s))). Writes ∂L/∂Z into `grad`, keeps ∂L/∂W for [`MarginSoftmax::step`], and
    /// records `accuracy` (share of rows whose largest cosine is their class's) and
    /// `avg_angle` (mean angle to the own class in degrees, PML's statistic).
    pub fn forward_backward(
        &mut self,
        z: MatRef<'_>,
        labels: &[i64],
        scale: f64,
        target: impl Fn(f64) -> (f64, f64),
        grad: &mut [f32],
        stats: &mut Stats,
    ) -> Result<f64> {
        let (n, d, classes, k) = (z.rows, z.cols, self.classes, self.sub_centers);
        let columns = self.columns();
        if d != self.dim || labels.len() != n || grad.len() != n * d {
            return Err(Error::bad_input(format!(
                "expected embeddings of size {}, got {n}×{d} with {} labels and a gradient buffer of {}",
                self.dim,
                labels.len(),
                grad.len()
            )));
        }
        if let Some((i, &l)) = labels.iter().enumerate().find(|&(_, &l)| l < 0 || l as u64 >= classes as u64) {
            return Err(Error::bad_input(format!("label {l} of row {i} is outside 0..{classes}")));
        }
        if n == 0 {
            return Ok(0.0);
        }
        let z64: Vec<f64> = z.data.iter().map(|&v| f64::from(v)).collect();
        let (x, z_norms) = l2_normalize_f64(&z64, d);
        // The columns of W as rows (C·K × d), then normalised.
        let mut w_t = vec![0.0f64; columns * d];
        for (l, row) in self.weight.value().chunks_exact(columns).enumerate() {
            for (j, &v) in row.iter().enumerate() {
                w_t[j * d + l] = f64::from(v);
            }
        }
        let (w, w_norms) = l2_normalize_f64(&w_t, d);
        let mut cosines = matmul_f64_in_f32(n, d, columns, &x, (d, 1), &w, (1, d));
        for (i, &label) in labels.iter().enumerate() {
            let x_i = &x[i * d..(i + 1) * d];
            for j in label as usize * k..(label as usize + 1) * k {
                cosines[i * columns + j] = x_i.iter().zip(&w[j * d..(j + 1) * d]).map(|(a, b)| a * b).sum();
            }
        }

        let mut g = vec![0.0f64; n * columns];
        let (mut total, mut correct, mut angles) = (0.0, 0usize, 0.0);
        let mut logits = vec![0.0f64; classes];
        let mut chosen = vec![0usize; classes];
        for (i, &label) in labels.iter().enumerate() {
            let y = label as usize;
            let row = &cosines[i * columns..(i + 1) * columns];
            for c in 0..classes {
                // The first sub-centre reaching the maximum, as torch's max(dim).
                let best = (c * k + 1..(c + 1) * k).fold(c * k, |b, j| if row[j] > row[b] { j } else { b });
                chosen[c] = best;
                logits[c] = scale * row[best];
            }
            let predicted = (0..classes).fold(0, |b, c| if logits[c] > logits[b] { c } else { b });
            correct += usize::from(predicted == y);
            let s_y = row[chosen[y]];
            angles += s_y.clamp(-1.0, 1.0).acos();
            let (phi, slope) = target(s_y);
            logits[y] = scale * phi;
            let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lse = max + logits.iter().map(|&l| (l - max).exp()).sum::<f64>().ln();
            total += lse - logits[y];
            let g_row = &mut g[i * columns..(i + 1) * columns];
            for c in 0..classes {
                let dl = ((logits[c] - lse).exp() - if c == y { 1.0 } else { 0.0 }) / n as f64;
                g_row[chosen[c]] = scale * dl * if c == y { slope } else { 1.0 };
            }
        }
        stats.record("accuracy", correct as f64 / n as f64);
        stats.record("avg_angle", (angles / n as f64).to_degrees());

        let dx = matmul_f64_in_f32(n, columns, d, &g, (columns, 1), &w, (d, 1));
        let dw = matmul_f64_in_f32(columns, n, d, &g, (1, columns), &x, (d, 1));
        for (o, v) in grad.iter_mut().zip(l2_normalize_f64_backward(&x, &z_norms, &dx, d)) {
            *o = v as f32;
        }
        let dw = l2_normalize_f64_backward(&w, &w_norms, &dw, d);
        let mut pending = vec![0.0f32; d * columns];
        for (j, row) in dw.chunks_exact(d).enumerate() {
            for (l, &v) in row.iter().enumerate() {
                pending[l * columns + j] = v as f32;
            }
        }
        self.weight.set_gradient(pending);
        Ok(total / n as f64)
    }

    /// Applies the gradient of the last `forward_backward` with learning rate lr·`lr_scale`;
    /// without one (no call since the last step) W stays, as PyTorch skips a parameter whose
    /// gradient is unset.
    pub fn step(&mut self, lr_scale: f64) {
        self.weight.step(lr_scale);
    }

    /// The state: `W` and `W.momentum`, d×C·K each. A pending gradient is not saved.
    pub fn save(&self) -> Result<Vec<u8>> {
        self.weight.save_state()
    }

    /// Restores what [`MarginSoftmax::save`] wrote, checking names, shapes and finiteness.
    pub fn load(&mut self, bytes: &[u8]) -> Result<()> {
        self.weight.load_state(bytes)
    }
}
