//! The `training.device` setting (and `--device`): where a cell trains.

use dmlbench_models::{Backend, ModelError};

/// A device name that this build cannot train on.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// Not a device name at all.
    #[error("unknown device '{0}'; use cpu, cuda:N, tch or tch-cuda:N")]
    Unknown(String),
    /// `cuda:x`: the part after the colon is not a number.
    #[error("'{0}': the GPU index must be a number")]
    BadIndex(String),
    /// A device of a backend this build was compiled without. The backend's own error says
    /// how to rebuild; it is this error's source, not part of its message.
    #[error("device '{device}'")]
    NotCompiled {
        /// The device asked for.
        device: String,
        /// Which backend is missing and how to get it.
        #[source]
        missing: ModelError,
    },
}

/// Parses `cpu`, `cuda`, `cuda:N`, `tch`, `tch-cuda`, `tch-cuda:N` into a backend this build
/// includes.
pub fn parse_device(text: &str) -> Result<Backend, DeviceError> {
    let index = |s: &str| s.parse::<usize>().map_err(|_| DeviceError::BadIndex(text.to_string()));
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
                return Err(DeviceError::Unknown(text.to_string()));
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
        return Err(DeviceError::NotCompiled { device: text.to_string(), missing });
    }
    Ok(backend)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form_of_the_known_devices() {
        assert!(matches!(parse_device("cpu"), Ok(Backend::Flex)));
        for (text, backend) in [
            ("cuda", Backend::Cuda(0)),
            ("cuda:3", Backend::Cuda(3)),
            ("tch", Backend::LibTorch),
            ("tch-cuda", Backend::LibTorchCuda(0)),
            ("tch-cuda:1", Backend::LibTorchCuda(1)),
        ] {
            match parse_device(text) {
                Ok(parsed) => assert_eq!(parsed, backend, "{text}"),
                Err(DeviceError::NotCompiled { device, .. }) => assert_eq!(device, text),
                Err(other) => panic!("{text}: {other}"),
            }
        }
    }

    #[test]
    fn refuses_unknown_names_and_bad_indices() {
        assert!(matches!(parse_device("gpu"), Err(DeviceError::Unknown(d)) if d == "gpu"));
        assert!(matches!(parse_device("CPU"), Err(DeviceError::Unknown(d)) if d == "CPU"));
        assert!(matches!(parse_device("cuda:x"), Err(DeviceError::BadIndex(d)) if d == "cuda:x"));
        assert!(matches!(parse_device("tch-cuda:-1"), Err(DeviceError::BadIndex(d)) if d == "tch-cuda:-1"));
        assert!(parse_device("gpu").unwrap_err().to_string().contains("use cpu, cuda:N"));
    }

    #[test]
    fn a_missing_backend_says_how_to_rebuild_once() {
        if !Backend::compiled().contains(&"cuda") {
            let error = parse_device("cuda:1").unwrap_err();
            let text = dmlbench_host::errors::describe(&error);
            assert!(text.contains("--features cuda"), "{text}");
            assert_eq!(text.matches("--features cuda").count(), 1, "the cause is not repeated: {text}");
            assert!(!error.to_string().contains("--features"), "the source stays out of the message");
        }
        if !Backend::compiled().contains(&"tch") {
            let text = dmlbench_host::errors::describe(&parse_device("tch-cuda:0").unwrap_err());
            for needed in ["'tch-cuda:0'", "--features tch", "LIBTORCH_USE_PYTORCH", "Fast training with LibTorch"] {
                assert!(text.contains(needed), "{needed}: {text}");
            }
        }
    }
}
