//! Helpers shared by the integration tests: fixture files and comparisons.
#![allow(dead_code)] // each test binary uses a subset

use std::path::PathBuf;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use dmlbench_models::{Backbone, EmbeddingModel, ModelConfig};

/// `models/tests/fixtures/<name>`. The crate's directory is read at run time first (cargo sets
/// `CARGO_MANIFEST_DIR` for the tests it runs), so a test binary carried to another machine
/// finds the fixtures of that machine's checkout.
pub fn fixture(name: &str) -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("tests/fixtures")
        .join(name)
}

/// A little-endian f32 tensor from a safetensors file: (values, shape).
pub fn read_f32(path: &std::path::Path, name: &str) -> (Vec<f32>, Vec<usize>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let view = tensors.tensor(name).unwrap_or_else(|e| panic!("{}: {name}: {e}", path.display()));
    assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name} in {}", path.display());
    let values = view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    (values, view.shape().to_vec())
}

/// The input batch and PyTorch's pooled features stored in `<stem>_io.safetensors`.
pub struct Reference {
    pub input: Vec<f32>,
    pub input_shape: [usize; 4],
    pub features: Vec<f32>,
    pub feature_dim: usize,
}

pub fn reference(io_path: &std::path::Path) -> Reference {
    let (input, shape) = read_f32(io_path, "input");
    let (features, fshape) = read_f32(io_path, "features");
    Reference { input, input_shape: shape.try_into().expect("input is 4-d"), features, feature_dim: fshape[1] }
}

/// A model that returns the backbone's pooled features unchanged: torchvision's `avgpool`
/// output, flattened, before `fc`.
pub fn pooled_features_config(backbone: Backbone, weights: PathBuf, frozen_bn: bool) -> ModelConfig {
    ModelConfig {
        backbone,
        weights: Some(weights),
        frozen_bn,
        embedding_dim: None,
        normalize: false,
        bn_head: false,
        dropout: 0.0,
    }
}

/// (largest |ours - theirs| / largest |theirs|, largest elementwise |ours - theirs| / |theirs|
/// over entries with |theirs| ≥ 1% of the largest).
pub fn relative_errors(ours: &[f32], theirs: &[f32]) -> (f64, f64) {
    assert_eq!(ours.len(), theirs.len(), "lengths differ");
    let scale = theirs.iter().fold(0f64, |m, &t| m.max(f64::from(t).abs()));
    assert!(scale > 0.0, "reference is all zeros");
    let mut max_abs = 0f64;
    let mut max_rel = 0f64;
    for (&a, &b) in ours.iter().zip(theirs) {
        let (a, b) = (f64::from(a), f64::from(b));
        let diff = (a - b).abs();
        max_abs = max_abs.max(diff);
        if b.abs() >= 0.01 * scale {
            max_rel = max_rel.max(diff / b.abs());
        }
    }
    (max_abs / scale, max_rel)
}

/// Deterministic pseudo-random values in [-1, 1) (a fixed LCG: tests need no RNG crate).
pub fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Every float tensor of a module (parameters and batch-norm running statistics), flattened, in
/// visiting order, with its path.
pub fn snapshot(model: &impl Module) -> Vec<(String, Vec<f32>)> {
    use burn::store::ModuleSnapshot;
    model
        .collect(None, None, true)
        .into_iter()
        .map(|t| {
            let name = t.name.clone();
            let bytes = t.to_bytes().unwrap();
            let values = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            (name, values)
        })
        .collect()
}

/// A float parameter of a model.
pub struct ParamInfo {
    /// torchvision-style path, e.g. `backbone.layer1.0.conv1.weight`.
    pub path: String,
    pub id: ParamId,
    pub rank: usize,
    /// Number of entries.
    pub len: usize,
}

/// Every float parameter of `model`, in visiting order.
pub fn parameters(model: &EmbeddingModel) -> Vec<ParamInfo> {
    struct Visitor {
        path: Vec<String>,
        out: Vec<ParamInfo>,
    }
    impl ModuleVisitor for Visitor {
        fn enter_module(&mut self, name: &str, container: &str) {
            // Enum variant names are not part of torchvision-style paths.
            if !container.starts_with("Enum:") {
                self.path.push(name.to_string());
            }
        }
        fn exit_module(&mut self, _name: &str, container: &str) {
            if !container.starts_with("Enum:") {
                self.path.pop();
            }
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.out.push(ParamInfo {
                path: self.path.join("."),
                id: param.id,
                rank: D,
                len: param.lazy_shape().num_elements(),
            });
        }
    }
    let mut visitor = Visitor { path: Vec::new(), out: Vec::new() };
    model.visit(&mut visitor);
    visitor.out
}

/// The gradient of `param` in `grads`, widened to f64; `None` when it got none.
pub fn gradient(grads: &GradientsParams, param: &ParamInfo) -> Option<Vec<f64>> {
    let data = match param.rank {
        1 => grads.get::<1>(param.id).map(|g| g.into_data()),
        2 => grads.get::<2>(param.id).map(|g| g.into_data()),
        4 => grads.get::<4>(param.id).map(|g| g.into_data()),
        rank => panic!("{}: no model parameter has rank {rank}", param.path),
    };
    data.map(|d| d.convert::<f64>().try_to_vec::<f64>().unwrap())
}
