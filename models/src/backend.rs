//! Choosing the backend and device: the one place where it is decided.
//!
//! burn 0.22 puts the backend in the [`Device`], not in types, so the model and the training
//! loop are written once and a [`Backend`] value (from the experiment file or the command
//! line) picks where they run:
//!
//! | `Backend` | device | cargo feature |
//! |---|---|---|
//! | `Flex` (default) | burn's pure-Rust CPU backend, threads from rayon (`RAYON_NUM_THREADS`) | always built |
//! | `Cuda(index)` | burn's CUDA backend; kernels compile at run time | `cuda` |
//! | `LibTorch` / `LibTorchCuda(index)` | burn's LibTorch backend (`LIBTORCH_USE_PYTORCH=1` to build against an installed PyTorch) | `tch` |
//!
//! The GPU features are never built by default or by the tests: `cuda`'s build script downloads
//! LLVM, and `tch` needs LibTorch. Asking for a backend this build lacks is an error that names
//! the feature.
//!
//! ```
//! use dmlbench_models::Backend;
//!
//! let backend = Backend::default();
//! let train_device = backend.training_device().unwrap();
//! assert!(train_device.is_autodiff());
//! let eval_device = backend.device().unwrap();
//! assert!(!eval_device.is_autodiff());
//! ```

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::ModelError;

/// Where models run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Backend {
    /// burn's flex CPU backend.
    #[default]
    Flex,
    /// burn's CUDA backend on the GPU with this index (feature `cuda`).
    Cuda(usize),
    /// burn's LibTorch backend on the CPU (feature `tch`).
    LibTorch,
    /// burn's LibTorch backend on the CUDA GPU with this index (feature `tch`).
    LibTorchCuda(usize),
}

impl Backend {
    /// The backends this build includes.
    pub fn compiled() -> Vec<&'static str> {
        let mut names = vec!["flex"];
        if cfg!(feature = "cuda") {
            names.push("cuda");
        }
        if cfg!(feature = "tch") {
            names.push("tch");
        }
        names
    }

    /// A short name for reports: `flex`, `cuda:0`, `libtorch`, `libtorch-cuda:0`.
    pub fn label(&self) -> String {
        match self {
            Self::Flex => "flex".into(),
            Self::Cuda(index) => format!("cuda:{index}"),
            Self::LibTorch => "libtorch".into(),
            Self::LibTorchCuda(index) => format!("libtorch-cuda:{index}"),
        }
    }

    /// The CUDA device index, for the GPU backends.
    pub fn gpu_index(&self) -> Option<usize> {
        match *self {
            Self::Cuda(index) | Self::LibTorchCuda(index) => Some(index),
            Self::Flex | Self::LibTorch => None,
        }
    }

    /// The plain (inference) device.
    pub fn device(&self) -> Result<Device, ModelError> {
        match *self {
            Self::Flex => Ok(Device::flex()),
            Self::Cuda(index) => cuda_device(index),
            Self::LibTorch => libtorch_device(None),
            Self::LibTorchCuda(index) => libtorch_device(Some(index)),
        }
    }

    /// The device with autodiff, for training.
    pub fn training_device(&self) -> Result<Device, ModelError> {
        Ok(self.device()?.autodiff())
    }
}

#[cfg(feature = "cuda")]
fn cuda_device(index: usize) -> Result<Device, ModelError> {
    Ok(Device::cuda(index))
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(_index: usize) -> Result<Device, ModelError> {
    Err(ModelError::BackendUnavailable { backend: "cuda", feature: "cuda" })
}

#[cfg(feature = "tch")]
#[allow(deprecated)] // burn 0.22 marks LibTorch deprecated; it is our checkable GPU route.
fn libtorch_device(cuda_index: Option<usize>) -> Result<Device, ModelError> {
    match cuda_index {
        None => Ok(Device::libtorch()),
        Some(index) => {
            libtorch_cuda::check(index)?;
            Ok(Device::libtorch_cuda(index))
        }
    }
}

/// LibTorch's CUDA half, made present before a CUDA device is used.
///
/// LibTorch reports no CUDA device unless `libtorch_cuda.so` is loaded. Builds list it among the
/// binary's needed libraries, but a linker that drops libraries no code calls into directly
/// (`--as-needed`) leaves it out; loading it by name (through the binary's run path or
/// `LD_LIBRARY_PATH`) makes sure its registration code has run, and names the library when it
/// cannot be found.
#[cfg(feature = "tch")]
mod libtorch_cuda {
    use std::sync::OnceLock;

    use crate::error::ModelError;

    static LOADED: OnceLock<Result<(), String>> = OnceLock::new();

    pub fn check(index: usize) -> Result<(), ModelError> {
        let unavailable =
            |message: String| ModelError::DeviceUnavailable { device: format!("tch-cuda:{index}"), message };
        LOADED
            .get_or_init(|| {
                // SAFETY: loading LibTorch's own CUDA library only runs its static initialisers,
                // which register CUDA with the LibTorch already loaded; it is never unloaded.
                unsafe { libloading::Library::new("libtorch_cuda.so") }.map(std::mem::forget).map_err(|error| {
                    format!(
                        "cannot load libtorch_cuda.so ({error}); a CPU-only LibTorch cannot \
                             run on a GPU, and a CUDA one must be on LD_LIBRARY_PATH"
                    )
                })
            })
            .clone()
            .map_err(unavailable)?;
        if !tch::Cuda::is_available() {
            return Err(unavailable(
                "LibTorch sees no CUDA device (no NVIDIA driver, or CUDA_VISIBLE_DEVICES hides it)".into(),
            ));
        }
        let count = usize::try_from(tch::Cuda::device_count()).unwrap_or(0);
        if index >= count {
            return Err(unavailable(format!("LibTorch sees {count} CUDA device(s), numbered from 0")));
        }
        Ok(())
    }
}

#[cfg(not(feature = "tch"))]
fn libtorch_device(_cuda_index: Option<usize>) -> Result<Device, ModelError> {
    Err(ModelError::BackendUnavailable { backend: "tch", feature: "tch" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flex_is_the_default_and_always_available() {
        assert_eq!(Backend::default(), Backend::Flex);
        assert!(Backend::compiled().contains(&"flex"));
        assert!(Backend::Flex.training_device().unwrap().is_autodiff());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn a_backend_that_is_not_built_names_its_feature() {
        let error = Backend::Cuda(0).device().unwrap_err();
        assert!(error.to_string().contains("--features cuda"), "{error}");
    }

    #[cfg(not(feature = "tch"))]
    #[test]
    fn libtorch_without_its_feature_names_the_feature_variable_and_readme_section() {
        for backend in [Backend::LibTorch, Backend::LibTorchCuda(0)] {
            let error = backend.device().unwrap_err().to_string();
            for needed in ["--features tch", "LIBTORCH_USE_PYTORCH", "Fast training with LibTorch"] {
                assert!(error.contains(needed), "{needed}: {error}");
            }
        }
    }

    #[test]
    fn backends_read_from_ron() {
        let backend: Backend = ron::from_str("Cuda(1)").unwrap();
        assert_eq!(backend, Backend::Cuda(1));
        assert_eq!(backend.label(), "cuda:1");
    }
}
