//! The `training.device` setting: where a cell trains.

use dmlbench_models::{Backend, ModelError};

/// Parses `cpu`, `cuda`, `cuda:N`, `tch`, `tch-cuda:N` into a backend this build includes.
pub fn parse_device(text: &str) -> Result<Backend, String> {
    let index = |s: &str| s.parse::<usize>().map_err(|_| format!("'{text}': the GPU index must be a number"));
    let backend = match text {
        "cpu" => Backend::Flex,
        "cuda" => Backend::Cuda(0),
        "tch" => Backend::LibTorch,
        "tch-cuda" => Backend::LibTorchCuda(0),
        _ => {
            if let Some(i) = text.strip_prefix("cuda:") {
                Backend::Cuda(index(i)?)
            } else if let Some(i) = text.strip_prefix("tch-cuda:") {
                Backend::LibTorchCuda(index(i)?)
            } else {
                return Err(format!("unknown device '{text}'; use cpu, cuda:N, tch or tch-cuda:N"));
            }
        }
    };
    let needed = match backend {
        Backend::Flex => "flex",
        Backend::Cuda(_) => "cuda",
        Backend::LibTorch | Backend::LibTorchCuda(_) => "tch",
    };
    if !Backend::compiled().contains(&needed) {
        let missing = ModelError::BackendUnavailable { backend: needed, feature: needed };
        return Err(format!("device '{text}': {missing}"));
    }
    Ok(backend)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_and_explains_missing_backends() {
        assert_eq!(parse_device("cpu"), Ok(Backend::Flex));
        assert!(parse_device("gpu").unwrap_err().contains("unknown device 'gpu'"));
        assert!(parse_device("cuda:x").unwrap_err().contains("must be a number"));
        if !Backend::compiled().contains(&"cuda") {
            assert!(parse_device("cuda:1").unwrap_err().contains("--features cuda"));
        }
        if !Backend::compiled().contains(&"tch") {
            let error = parse_device("tch-cuda:0").unwrap_err();
            for needed in ["'tch-cuda:0'", "--features tch", "LIBTORCH_USE_PYTORCH", "Fast training with LibTorch"] {
                assert!(error.contains(needed), "{needed}: {error}");
            }
        }
    }
}
