//! Pretrained ResNet weights from torchvision `.pth` state dicts and safetensors files.
//!
//! Both readers are burn's store (`burn::store`): `PytorchStore` reads PyTorch's zip and
//! legacy pickle formats without Python, `SafetensorsStore` memory-maps safetensors. The file's
//! tensors are renamed onto this crate's [`ResNet`] and applied with burn's PyTorch adapter
//! (which maps batch-norm `weight`/`bias` onto burn's `gamma`/`beta`); half-precision files are
//! widened to f32.
//!
//! **Names.** torchvision and timm name a plain ResNet the same way (`conv1`, `bn1`,
//! `layer{1..4}.{i}.conv{1..3}`/`bn{1..3}`, `downsample.0`/`downsample.1`, classifier `fc`).
//! The mapping:
//!
//! | in the file | here |
//! |---|---|
//! | `layerS.I.downsample.0.*` | `layerS.I.downsample.conv.*` |
//! | `layerS.I.downsample.1.*` | `layerS.I.downsample.bn.*` |
//! | leading `module.` (DataParallel), `model.`, `state_dict.` | stripped |
//! | `fc.*`, `head.*`, `classifier.*`, `last_linear.*` | ignored (classifier), listed |
//! | `*.num_batches_tracked` | ignored (BN step counter), listed |
//! | anything else | must match a parameter |
//!
//! **Checks.** Every backbone parameter must be in the file ([`ModelError::MissingKeys`],
//! named as in the file's convention, e.g. `layer1.0.bn1.weight`); every other key must be
//! ignorable ([`ModelError::UnexpectedKeys`], named as in the file: a ResNet-50 file given to a
//! ResNet-18 fails here); every tensor must have the right shape ([`ModelError::Tensors`],
//! naming each tensor). Errors are reported in that order of usefulness: unexpected keys,
//! missing keys, shapes.
//! Ignored keys come back in the [`LoadReport`] for the caller to print as
//! warnings. Variants with another stem (timm's `resnet50d`, with `conv1.0`…) are reported as
//! unexpected and missing keys rather than half-loaded.
//!
//! Index remapping is off: a file with a gap in its block indices is an error, not silently
//! shifted onto the wrong blocks.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use burn::store::{
    ApplyError, ApplyResult, ChainAdapter, FloatCastAdapter, ModuleSnapshot, ModuleStore, PyTorchToBurnAdapter,
    PytorchStore, SafetensorsStore,
};
use burn::tensor::DType;

use crate::error::ModelError;
use crate::resnet::ResNet;

/// Prefixes that wrap a state dict in common checkpoints, stripped (repeatedly) before mapping.
const WRAPPER_PREFIXES: [&str; 3] = ["module.", "model.", "state_dict."];
/// Top-level modules of classifiers, ignored.
const CLASSIFIER_MODULES: [&str; 4] = ["fc", "head", "classifier", "last_linear"];

/// What happened when pretrained weights were loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadReport {
    /// The file.
    pub path: PathBuf,
    /// Number of backbone tensors loaded.
    pub loaded: usize,
    /// Keys in the file that were deliberately not loaded, each with the reason.
    pub ignored: Vec<(String, &'static str)>,
}

impl fmt::Display for LoadReport {
    /// One line: what was loaded, then the ignored keys grouped by reason (long groups are
    /// counted, with the first key as an example).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: loaded {} tensors", self.path.display(), self.loaded)?;
        let mut by_reason: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (key, reason) in &self.ignored {
            by_reason.entry(reason).or_default().push(key);
        }
        for (reason, keys) in by_reason {
            if keys.len() <= 4 {
                write!(f, "; ignored ({reason}): {}", keys.join(", "))?;
            } else {
                write!(f, "; ignored ({reason}): {} keys like {}", keys.len(), keys[0])?;
            }
        }
        Ok(())
    }
}

/// The role of one key of a weights file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRole {
    /// Loads into the backbone parameter of this (burn module path) name.
    Parameter(String),
    /// Deliberately not loaded, for this reason.
    Ignored(&'static str),
}

/// Maps a torchvision/timm key onto this crate's ResNet parameter names.
pub fn classify_key(key: &str) -> KeyRole {
    let mut name = key;
    while let Some(rest) = WRAPPER_PREFIXES.iter().find_map(|p| name.strip_prefix(p)) {
        name = rest;
    }
    if name.ends_with("num_batches_tracked") {
        return KeyRole::Ignored("batch-norm step counter");
    }
    let top = name.split('.').next().unwrap_or(name);
    if CLASSIFIER_MODULES.contains(&top) {
        return KeyRole::Ignored("classifier");
    }
    KeyRole::Parameter(name.replace(".downsample.0.", ".downsample.conv.").replace(".downsample.1.", ".downsample.bn."))
}

/// The torchvision name of one of this crate's parameter paths (for messages): the inverse
/// of [`classify_key`] plus burn's `gamma`/`beta` → PyTorch's `weight`/`bias`.
pub fn torchvision_name(path: &str) -> String {
    let name = path.replace(".downsample.conv.", ".downsample.0.").replace(".downsample.bn.", ".downsample.1.");
    if let Some(stem) = name.strip_suffix(".gamma") {
        format!("{stem}.weight")
    } else if let Some(stem) = name.strip_suffix(".beta") {
        format!("{stem}.bias")
    } else {
        name
    }
}

/// The first kind of problem in `result`, as an error naming every tensor at fault: keys of
/// the file the model has no use for (named by `file_key`), then parameters the file lacks,
/// then tensors of the wrong shape or type.
pub(crate) fn check_applied(
    path: &Path,
    result: &ApplyResult,
    file_key: impl Fn(&str) -> String,
) -> Result<(), ModelError> {
    if !result.unused.is_empty() {
        return Err(ModelError::UnexpectedKeys {
            path: path.to_path_buf(),
            keys: result.unused.iter().map(|name| file_key(name)).collect(),
        });
    }
    if !result.missing.is_empty() {
        return Err(ModelError::MissingKeys {
            path: path.to_path_buf(),
            keys: result.missing.iter().map(|(name, _)| torchvision_name(name)).collect(),
        });
    }
    if !result.errors.is_empty() {
        return Err(ModelError::Tensors {
            path: path.to_path_buf(),
            errors: result.errors.iter().map(describe_apply_error).collect(),
        });
    }
    Ok(())
}

/// One tensor that could not be applied, named as in torchvision.
fn describe_apply_error(error: &ApplyError) -> String {
    match error {
        ApplyError::ShapeMismatch { path, expected, found } => format!(
            "`{}`: the model needs shape {:?}, the file has {:?}",
            torchvision_name(path),
            expected.as_slice(),
            found.as_slice()
        ),
        ApplyError::DTypeMismatch { path, expected, found } => {
            format!("`{}`: the model needs {expected:?}, the file has {found:?}", torchvision_name(path))
        }
        ApplyError::AdapterError { path, message } | ApplyError::LoadError { path, message } => {
            format!("`{}`: {message}", torchvision_name(path))
        }
    }
}

/// The weight file formats this loader reads, chosen by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Pytorch,
    Safetensors,
}

fn format_of(path: &Path) -> Result<Format, ModelError> {
    let extension = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("pth" | "pt" | "bin") => Ok(Format::Pytorch),
        Some("safetensors") => Ok(Format::Safetensors),
        _ => Err(ModelError::File {
            path: path.to_path_buf(),
            message: "unknown weights format: expected a .pth/.pt (PyTorch) or .safetensors file".into(),
        }),
    }
}

/// Reads every tensor of a weights file, by its name in the file.
fn read_tensors(path: &Path) -> Result<BTreeMap<String, burn::store::burn_pack::Tensor>, ModelError> {
    let file_error = |message: String| ModelError::File { path: path.to_path_buf(), message };
    if !path.is_file() {
        return Err(file_error("weights file not found".into()));
    }
    match format_of(path)? {
        Format::Pytorch => {
            let mut store = PytorchStore::from_file(path).map_indices_contiguous(false);
            store
                .get_all_tensors()
                .cloned()
                .map_err(|e| file_error(format!("cannot read as a PyTorch checkpoint: {e}")))
        }
        Format::Safetensors => {
            let mut store = SafetensorsStore::from_file(path).map_indices_contiguous(false);
            store.get_all_tensors().cloned().map_err(|e| file_error(format!("cannot read as safetensors: {e}")))
        }
    }
}

/// Loads pretrained weights from `path` into `net` (see the module docs for names and checks).
/// On error `net` is dropped: a half-loaded network is never returned.
pub fn load_resnet_weights(mut net: ResNet, path: &Path) -> Result<(ResNet, LoadReport), ModelError> {
    let tensors = read_tensors(path)?;

    let mut ignored = Vec::new();
    // Our name → the file's name, to report unused tensors as the user knows them.
    let mut file_names = BTreeMap::new();
    let mut to_apply = Vec::with_capacity(tensors.len());
    for (key, mut tensor) in tensors {
        match classify_key(&key) {
            KeyRole::Ignored(reason) => ignored.push((key, reason)),
            KeyRole::Parameter(name) => {
                // e.g. both `conv1.weight` and `module.conv1.weight`: which one is meant?
                if let Some(first) = file_names.get(&name) {
                    return Err(ModelError::File {
                        path: path.to_path_buf(),
                        message: format!("keys `{first}` and `{key}` both name parameter `{name}`"),
                    });
                }
                tensor.name = name.clone();
                file_names.insert(name, key);
                to_apply.push(tensor);
            }
        }
    }

    // PyTorch names → burn names (batch norm), then any float width (f16, bf16 files) → the
    // float type of the device the network lives on, since burn keeps a loaded tensor's dtype.
    let float = DType::from(net.conv1.weight.lazy_device().settings().float_dtype);
    let adapter = ChainAdapter::new(PyTorchToBurnAdapter, FloatCastAdapter::to(float));
    // Enum variants (frozen/trainable norm, block type) are not part of torchvision's names.
    let result = net.apply(to_apply, None, Some(Box::new(adapter)), true);

    // Unexpected and missing keys say the most about what is wrong (another depth, another
    // stem); shape errors alone mean the same layout at another width.
    check_applied(path, &result, |name| file_names.get(name).cloned().unwrap_or_else(|| name.to_string()))?;
    let report = LoadReport { path: path.to_path_buf(), loaded: result.applied.len(), ignored };
    Ok((net, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torchvision_and_timm_keys_map_onto_our_names() {
        assert_eq!(
            classify_key("layer2.0.downsample.0.weight"),
            KeyRole::Parameter("layer2.0.downsample.conv.weight".into())
        );
        assert_eq!(
            classify_key("module.layer2.0.downsample.1.running_var"),
            KeyRole::Parameter("layer2.0.downsample.bn.running_var".into())
        );
        assert_eq!(classify_key("state_dict.model.conv1.weight"), KeyRole::Parameter("conv1.weight".into()));
        assert_eq!(classify_key("fc.weight"), KeyRole::Ignored("classifier"));
        assert_eq!(classify_key("head.fc.bias"), KeyRole::Ignored("classifier"));
        assert_eq!(classify_key("layer1.0.bn1.num_batches_tracked"), KeyRole::Ignored("batch-norm step counter"));
    }

    #[test]
    fn our_names_map_back_to_torchvision_names() {
        for key in
            ["layer3.0.downsample.0.weight", "layer3.0.downsample.1.bias", "layer1.1.conv2.weight", "bn1.running_mean"]
        {
            let KeyRole::Parameter(ours) = classify_key(key) else { panic!("{key} ignored") };
            // Burn's BatchNorm names its affine parameters gamma/beta.
            let burn_path = ours.replace(".bn.bias", ".bn.beta");
            assert_eq!(torchvision_name(&burn_path), key);
        }
    }

    #[test]
    fn unknown_extensions_are_rejected_with_the_file_name() {
        let error = format_of(Path::new("weights/resnet.onnx")).unwrap_err();
        assert!(error.to_string().contains("weights/resnet.onnx"), "{error}");
    }
}
