//! Backbones and embedding heads for dmlbench, on burn 0.22.
//!
//! A deep-metric-learning model is a backbone (a torchvision-layout ResNet-18/34/50, possibly
//! pretrained, or a small CNN for synthetic images) followed by an embedding head (global
//! average pooling, optional projection, batch norm, L2 normalisation). This crate builds it
//! from the `model` section of an experiment file ([`ModelConfig`]), loads pretrained weights
//! from torchvision `.pth` or safetensors files ([`weights`]), runs it on host images and
//! backpropagates a host gradient from a loss plugin ([`host`]), and saves checkpoints
//! ([`checkpoint`]). Where it runs is chosen once, by a [`Backend`] value.
//!
//! Design choices:
//! - Module and parameter names follow torchvision so that published weights load by name and
//!   checkpoints are readable from PyTorch; the one structural rename is `downsample.0/1` →
//!   `downsample.conv/bn` (Rust fields cannot be numbers).
//! - Frozen batch norm is its own layer ([`FrozenBatchNorm2d`]) whose constants are detached
//!   in `forward`, so "frozen" cannot be undone by a later `unfreeze` or optimiser setting.
//! - The training loop never sees burn types beyond the device, the model and the optimiser:
//!   images and embeddings cross as `&[f32]`, the way loss plugins see them.
//!
//! ```
//! use burn::optim::SgdConfig;
//! use dmlbench_models::{Backend, ModelConfig};
//!
//! let device = Backend::Flex.training_device().unwrap();
//! let (mut model, _report) = ModelConfig::default().init(&device, 7).unwrap();
//! let mut optimizer = SgdConfig::new().init();
//!
//! let images = vec![0.0f32; 4 * 3 * 16 * 16];
//! let pass = model.forward_host(&device, &images, [4, 3, 16, 16]).unwrap();
//! let grad = vec![0.01f32; pass.embeddings().len()]; // from a loss plugin
//! let grads = pass.backward(&grad, &model).unwrap();
//! model = optimizer.step(1e-3, model, grads);
//! # let _ = model;
//! ```

pub mod backend;
pub mod checkpoint;
pub mod config;
pub mod conv;
pub mod error;
pub mod frozen_bn;
pub mod head;
pub mod host;
#[cfg(feature = "tch")]
mod libtorch_ops;
pub mod model;
pub mod norm;
pub mod resnet;
pub mod small_cnn;
pub mod weights;

pub use backend::Backend;
pub use checkpoint::{load_checkpoint, save_checkpoint};
pub use config::{Backbone, ModelConfig};
pub use error::ModelError;
pub use frozen_bn::FrozenBatchNorm2d;
pub use head::{EmbeddingHead, HeadConfig, NonAffineBatchNorm1d};
pub use host::ForwardPass;
pub use model::{BackboneNet, EmbeddingModel};
pub use norm::Norm2d;
pub use resnet::{ResNet, ResNetConfig, ResNetDepth};
pub use small_cnn::{SmallCnn, SmallCnnConfig};
pub use weights::{LoadReport, load_resnet_weights};

/// burn, as this crate uses it: the training loop needs its `Device`, optimisers and
/// `Module` trait from the same version.
pub use burn;
