//! Our ResNets against PyTorch: torchvision state dicts (`.pth` and safetensors) load by name
//! and give torchvision's pooled features.
//!
//! The fixtures in `tests/fixtures/` were written by PyTorch 2.15 / torchvision 0.29 with
//! torchvision's own `BasicBlock`/`Bottleneck` and `ResNet._make_layer`, so every module name
//! is torchvision's; only the stem width is reduced (8 for ResNet-18, 4 for ResNet-50) to keep
//! the files small. The essential lines of the script:
//!
//! ```python
//! class NarrowResNet(nn.Module):          # torchvision's ResNet with stem width w, not 64
//!     def __init__(self, block, layers, w, num_classes=10):
//!         super().__init__()
//!         self.inplanes = w
//!         self.dilation, self.groups, self.base_width = 1, 1, 64
//!         self._norm_layer = nn.BatchNorm2d
//!         self.conv1 = nn.Conv2d(3, w, kernel_size=7, stride=2, padding=3, bias=False)
//!         self.bn1 = nn.BatchNorm2d(w)
//!         self.relu = nn.ReLU(inplace=True)
//!         self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
//!         self.layer1 = self._make_layer(block, w, layers[0])
//!         self.layer2 = self._make_layer(block, 2 * w, layers[1], stride=2)
//!         self.layer3 = self._make_layer(block, 4 * w, layers[2], stride=2)
//!         self.layer4 = self._make_layer(block, 8 * w, layers[3], stride=2)
//!         self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
//!         self.fc = nn.Linear(8 * w * block.expansion, num_classes)
//!     _make_layer = torchvision.models.resnet.ResNet._make_layer
//!     def features(self, x):               # avgpool output, before fc
//!         x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
//!         x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
//!         return torch.flatten(self.avgpool(x), 1)
//!
//! def make_nontrivial(model, size, seed):  # random BN affine + running stats, then eval
//!     g = torch.Generator().manual_seed(seed)
//!     for m in model.modules():
//!         if isinstance(m, nn.BatchNorm2d):
//!             with torch.no_grad():
//!                 m.weight.uniform_(0.5, 1.5, generator=g); m.bias.normal_(0.0, 0.1, generator=g)
//!     model.train()
//!     with torch.no_grad():
//!         for i in range(3):
//!             model(torch.randn(8, 3, size, size, generator=g) * (1.0 + 0.3 * i) + 0.2 * i)
//!     model.eval()
//!
//! torch.manual_seed(0); n18 = NarrowResNet(BasicBlock, [2, 2, 2, 2], 8); make_nontrivial(n18, 64, 3)
//! torch.manual_seed(0); n50 = NarrowResNet(Bottleneck, [3, 4, 6, 3], 4); make_nontrivial(n50, 64, 4)
//! # for each (name, model, seed) in ("resnet18_w8", n18, 30), ("resnet50_w4", n50, 40):
//! x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(seed + 1))
//! feats = model.features(x)
//! torch.save(model.state_dict(), f"{name}.pth")
//! save_file({k: v.contiguous() for k, v in model.state_dict().items()}, f"{name}.safetensors")
//! save_file({"input": x, "features": feats}, f"{name}_io.safetensors")
//! ```
//!
//! The same script, run on torchvision's full-width `resnet18(weights=None)` and
//! `resnet50(weights=None)` at 224×224, is checked by `full_size_torchvision_resnets` below
//! (ignored by default: the files are 150 MB).

mod common;

use std::path::Path;

use burn::prelude::*;
use common::{fixture, pooled_features_config, reference, relative_errors};
use dmlbench_models::{Backbone, ModelConfig, ModelError};

/// Features must agree with PyTorch's to this relative error (f32 arithmetic in a different
/// summation order; observed errors are around 1e-6).
const TOLERANCE: f64 = 1e-4;

fn r18_w8() -> Backbone {
    Backbone::ResNet { depth: 18, base_width: 8 }
}

fn r50_w4() -> Backbone {
    Backbone::ResNet { depth: 50, base_width: 4 }
}

fn check_against_pytorch(backbone: Backbone, stem: &str, extension: &str, frozen_bn: bool) {
    let weights = fixture(&format!("{stem}.{extension}"));
    let reference = reference(&fixture(&format!("{stem}_io.safetensors")));
    let config = pooled_features_config(backbone, weights, frozen_bn);
    let device = Device::flex();
    let (model, report) = config.init(&device, 0).unwrap();
    let report = report.expect("weights were configured");

    // torchvision's classifier and BN counters are in the file and reported, not loaded.
    let ignored: Vec<&str> = report.ignored.iter().map(|(k, _)| k.as_str()).collect();
    assert!(ignored.contains(&"fc.weight") && ignored.contains(&"fc.bias"), "{report}");
    assert!(ignored.contains(&"layer1.0.bn1.num_batches_tracked"), "{report}");
    assert!(ignored.iter().all(|k| k.starts_with("fc.") || k.ends_with("num_batches_tracked")));

    assert_eq!(model.embedding_size(), reference.feature_dim);
    let ours = model.embed_host(&device, &reference.input, reference.input_shape).unwrap();
    let (rel_to_max, rel_elementwise) = relative_errors(&ours, &reference.features);
    eprintln!(
        "{stem}.{extension} frozen_bn={frozen_bn}: max error {rel_to_max:.2e} of the largest \
         feature, {rel_elementwise:.2e} elementwise"
    );
    assert!(rel_to_max < TOLERANCE, "{stem}.{extension}: {rel_to_max:e}");
    assert!(rel_elementwise < TOLERANCE, "{stem}.{extension}: {rel_elementwise:e}");
}

#[test]
fn resnet18_from_pth_matches_torchvision() {
    check_against_pytorch(r18_w8(), "resnet18_w8", "pth", true);
}

#[test]
fn resnet18_from_safetensors_matches_torchvision() {
    check_against_pytorch(r18_w8(), "resnet18_w8", "safetensors", true);
}

#[test]
fn resnet50_from_pth_matches_torchvision() {
    check_against_pytorch(r50_w4(), "resnet50_w4", "pth", true);
}

#[test]
fn resnet50_from_safetensors_matches_torchvision() {
    check_against_pytorch(r50_w4(), "resnet50_w4", "safetensors", true);
}

/// Trainable BN in evaluation uses the loaded running statistics: the same features.
#[test]
fn trainable_bn_in_evaluation_matches_torchvision() {
    check_against_pytorch(r18_w8(), "resnet18_w8", "pth", false);
    check_against_pytorch(r50_w4(), "resnet50_w4", "safetensors", false);
}

/// Frozen BN behaves as eval-mode BN on the training (autodiff) device too: the forward pass
/// of a training step gives torchvision's eval features.
#[test]
fn frozen_bn_keeps_eval_statistics_while_training() {
    let reference = reference(&fixture("resnet18_w8_io.safetensors"));
    let config = pooled_features_config(r18_w8(), fixture("resnet18_w8.pth"), true);
    let device = Device::flex().autodiff();
    let (model, _) = config.init(&device, 0).unwrap();
    let pass = model.forward_host(&device, &reference.input, reference.input_shape).unwrap();
    let (rel_to_max, _) = relative_errors(pass.embeddings(), &reference.features);
    assert!(rel_to_max < TOLERANCE, "{rel_to_max:e}");
}

/// Trainable BN on the training device normalises with batch statistics: the features differ
/// from the eval-mode reference. (Guards against the frozen switch being ignored.)
#[test]
fn trainable_bn_uses_batch_statistics_while_training() {
    let reference = reference(&fixture("resnet18_w8_io.safetensors"));
    let config = pooled_features_config(r18_w8(), fixture("resnet18_w8.pth"), false);
    let device = Device::flex().autodiff();
    let (model, _) = config.init(&device, 0).unwrap();
    let pass = model.forward_host(&device, &reference.input, reference.input_shape).unwrap();
    let (rel_to_max, _) = relative_errors(pass.embeddings(), &reference.features);
    assert!(rel_to_max > 1e-2, "batch statistics should change the features: {rel_to_max:e}");
}

fn load_error(backbone: Backbone, weights: &Path) -> ModelError {
    let config = pooled_features_config(backbone, weights.to_path_buf(), true);
    match config.init(&Device::flex(), 0) {
        Ok(_) => panic!("{} should not load", weights.display()),
        Err(error) => error,
    }
}

#[test]
fn a_resnet50_file_is_rejected_by_a_resnet18_naming_the_keys() {
    let path = fixture("resnet50_w4.pth");
    let error = load_error(Backbone::ResNet { depth: 18, base_width: 4 }, &path);
    let message = error.to_string();
    eprintln!("{message}");
    assert!(message.contains("resnet50_w4.pth"), "{message}");
    // ResNet-50's third convolutions exist nowhere in a ResNet-18.
    match &error {
        ModelError::UnexpectedKeys { keys, .. } => {
            assert!(keys.contains(&"layer1.0.conv3.weight".to_string()), "{message}")
        }
        ModelError::Tensors { errors, .. } => {
            assert!(errors.iter().any(|e| e.contains("layer1.0.conv1.weight")), "{message}")
        }
        other => panic!("unexpected error kind: {other}"),
    }
}

#[test]
fn a_width_mismatch_names_the_tensors() {
    let error = load_error(Backbone::ResNet { depth: 18, base_width: 16 }, &fixture("resnet18_w8.pth"));
    let ModelError::Tensors { errors, .. } = &error else { panic!("{error}") };
    assert!(errors.iter().any(|e| e.contains("conv1.weight")), "{error}");
}

/// Rewrites the ResNet-18 safetensors fixture through `edit` into a temporary file.
fn edited_fixture(dir: &Path, edit: impl Fn(&str) -> Option<String>) -> std::path::PathBuf {
    let bytes = std::fs::read(fixture("resnet18_w8.safetensors")).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut kept = Vec::new();
    for (name, view) in tensors.tensors() {
        if let Some(new_name) = edit(&name) {
            kept.push((new_name, view));
        }
    }
    let path = dir.join("edited.safetensors");
    safetensors::serialize_to_file(kept, None, &path).unwrap();
    path
}

#[test]
fn a_missing_backbone_weight_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = edited_fixture(dir.path(), |name| {
        (name != "layer3.1.bn2.running_var" && name != "layer2.0.downsample.1.weight").then(|| name.to_string())
    });
    let error = load_error(r18_w8(), &path);
    eprintln!("{error}");
    let ModelError::MissingKeys { keys, .. } = &error else { panic!("{error}") };
    let mut keys = keys.clone();
    keys.sort();
    assert_eq!(keys, ["layer2.0.downsample.1.weight", "layer3.1.bn2.running_var"], "{error}");
}

#[test]
fn an_unknown_key_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = edited_fixture(dir.path(), |name| {
        Some(if name == "layer4.1.conv2.weight" { "layer4.1.conv9.weight".into() } else { name.into() })
    });
    let error = load_error(r18_w8(), &path);
    // The renamed tensor is both unexpected and, under its real name, missing; unexpected
    // keys are reported first because they say what the file holds.
    let ModelError::UnexpectedKeys { keys, .. } = &error else { panic!("{error}") };
    assert_eq!(keys, &["layer4.1.conv9.weight"], "{error}");
}

/// timm checkpoints and DataParallel state dicts: `module.` prefixes are stripped and a
/// `head.*` classifier is ignored; the features stay PyTorch's.
#[test]
fn wrapped_timm_style_names_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = edited_fixture(dir.path(), |name| {
        Some(match name.strip_prefix("fc.") {
            Some(rest) => format!("module.head.fc.{rest}"),
            None => format!("module.{name}"),
        })
    });
    let reference = reference(&fixture("resnet18_w8_io.safetensors"));
    let device = Device::flex();
    let (model, report) = pooled_features_config(r18_w8(), path, true).init(&device, 0).unwrap();
    let report = report.unwrap();
    assert!(report.ignored.iter().any(|(k, _)| k == "module.head.fc.weight"), "{report}");
    let ours = model.embed_host(&device, &reference.input, reference.input_shape).unwrap();
    let (rel_to_max, _) = relative_errors(&ours, &reference.features);
    assert!(rel_to_max < TOLERANCE, "{rel_to_max:e}");
}

#[test]
fn two_keys_for_one_parameter_are_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("resnet18_w8.safetensors")).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut all: Vec<_> = tensors.tensors();
    let duplicate = all.iter().find(|(name, _)| name == "bn1.bias").unwrap().1.clone();
    all.push(("module.bn1.bias".to_string(), duplicate));
    let path = dir.path().join("duplicate.safetensors");
    safetensors::serialize_to_file(all, None, &path).unwrap();
    let error = load_error(r18_w8(), &path).to_string();
    assert!(error.contains("`bn1.bias`") && error.contains("`module.bn1.bias`"), "{error}");
}

#[test]
fn a_missing_weights_file_is_named() {
    let error = load_error(r18_w8(), Path::new("/nonexistent/resnet18.pth"));
    assert!(error.to_string().contains("/nonexistent/resnet18.pth"), "{error}");
}

/// Full-width torchvision ResNet-18 and ResNet-50 at 224×224 (the one-off verification).
/// Run with the directory written by the reference script:
/// `DMLBENCH_TORCHVISION_REFERENCE=/path/to/ref cargo test -p dmlbench-models --test
/// torchvision_fixtures -- --ignored --nocapture`
#[test]
#[ignore = "needs the 150 MB full-size reference files; see the doc comment"]
fn full_size_torchvision_resnets() {
    let dir = std::env::var("DMLBENCH_TORCHVISION_REFERENCE")
        .expect("set DMLBENCH_TORCHVISION_REFERENCE to the reference directory");
    let dir = Path::new(&dir);
    let device = Device::flex();
    for (backbone, stem) in [(Backbone::ResNet18, "resnet18"), (Backbone::ResNet50, "resnet50")] {
        let reference = reference(&dir.join(format!("{stem}_io.safetensors")));
        for extension in ["pth", "safetensors"] {
            let weights = dir.join(format!("{stem}.{extension}"));
            let config: ModelConfig = pooled_features_config(backbone.clone(), weights, true);
            let (model, report) = config.init(&device, 0).unwrap();
            eprintln!("{}", report.unwrap());
            let ours = model.embed_host(&device, &reference.input, reference.input_shape).unwrap();
            let (rel_to_max, rel_elementwise) = relative_errors(&ours, &reference.features);
            eprintln!(
                "{stem}.{extension}: max error {rel_to_max:.2e} of the largest feature, \
                 {rel_elementwise:.2e} elementwise"
            );
            assert!(rel_to_max < TOLERANCE && rel_elementwise < TOLERANCE);
        }
    }
}
