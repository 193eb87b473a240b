//! The error type of this crate.
//!
//! Every variant names what is at fault: the config field, the file, or the parameter keys, so
//! that a failed experiment cell says why without a debugger.

use std::path::PathBuf;

/// Everything that can go wrong while building, loading, running or saving a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A config field holds a value the model cannot be built with.
    #[error("invalid model config: `{field}`: {message}")]
    Config {
        /// The field at fault, as written in an experiment file (e.g. `embedding_dim`).
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },

    /// A weights or checkpoint file could not be read or has an unknown format.
    #[error("{}: {message}", path.display())]
    File {
        /// The file at fault.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },

    /// A pretrained weights file lacks parameters the backbone needs.
    #[error(
        "{}: missing {} backbone weight(s) (names as in the file's convention): {}",
        path.display(), keys.len(), keys.join(", ")
    )]
    MissingKeys {
        /// The weights file.
        path: PathBuf,
        /// The parameter names that were expected and not found.
        keys: Vec<String>,
    },

    /// A pretrained weights file holds parameters the backbone does not have and that are not
    /// known to be safe to ignore: most likely a different architecture or depth.
    #[error(
        "{}: {} unexpected key(s), the file does not match this backbone: {}",
        path.display(), keys.len(), keys.join(", ")
    )]
    UnexpectedKeys {
        /// The weights file.
        path: PathBuf,
        /// The keys in the file that match no parameter.
        keys: Vec<String>,
    },

    /// Some tensors in a weights file have the wrong shape or cannot be converted.
    #[error("{}: {} tensor(s) could not be loaded: {}", path.display(), errors.len(), errors.join("; "))]
    Tensors {
        /// The weights file.
        path: PathBuf,
        /// One message per tensor, each naming the tensor.
        errors: Vec<String>,
    },

    /// Host data passed to the model has the wrong length or shape.
    #[error("bad input to `{what}`: {message}")]
    Input {
        /// The function or argument at fault.
        what: &'static str,
        /// What is wrong.
        message: String,
    },

    /// A backend was requested that this build does not include.
    #[error("backend `{backend}` is not compiled in: rebuild with `--features {feature}`{}", build_hint(feature))]
    BackendUnavailable {
        /// The backend asked for.
        backend: &'static str,
        /// The cargo feature that provides it.
        feature: &'static str,
    },

    /// The backend is built in but the device cannot be used on this machine.
    #[error("device `{device}` is not usable: {message}")]
    DeviceUnavailable {
        /// The device asked for (`tch-cuda:0`).
        device: String,
        /// Why.
        message: String,
    },
}

/// What else a build with `feature` needs, for the message of
/// [`ModelError::BackendUnavailable`].
fn build_hint(feature: &str) -> &'static str {
    match feature {
        "tch" => {
            " against a PyTorch install (`scripts/libtorch.sh` creates one and prints the \
             variables to set, LIBTORCH_USE_PYTORCH among them; see the README section \
             \"Fast training with LibTorch\")"
        }
        "cuda" => " (see the README section \"GPU backends\")",
        _ => "",
    }
}
