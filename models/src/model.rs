//! The whole model: backbone + embedding head.
//!
//! Input: a batch of CHW `f32` images, `[batch, 3, h, w]`, already ImageNet-normalised
//! (`(x/255 - mean) / std` per channel). Output: `[batch, d]` embeddings.
//! [`crate::host`] adds the host-memory entry points the training loop uses.

use burn::module::Module;
use burn::prelude::*;

use crate::head::EmbeddingHead;
use crate::resnet::ResNet;
use crate::small_cnn::SmallCnn;

/// The feature extractor.
// Variants differ in size by a few hundred bytes of handles; a model is built once and moved
// once per step, so boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum BackboneNet {
    /// A torchvision-layout ResNet.
    ResNet(ResNet),
    /// The small CNN.
    SmallCnn(SmallCnn),
}

impl BackboneNet {
    /// Images `[batch, 3, h, w]` to a feature map `[batch, c, h', w']`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<4> {
        match self {
            Self::ResNet(net) => net.forward(images),
            Self::SmallCnn(net) => net.forward(images),
        }
    }

    /// Channels of the feature map.
    pub fn out_channels(&self) -> usize {
        match self {
            Self::ResNet(net) => net.out_channels,
            Self::SmallCnn(net) => net.out_channels,
        }
    }
}

/// Backbone + head. Build it with [`crate::ModelConfig::init`].
#[derive(Module, Debug)]
pub struct EmbeddingModel {
    /// The feature extractor.
    pub backbone: BackboneNet,
    /// Pooling, projection, normalisation.
    pub head: EmbeddingHead,
}

impl EmbeddingModel {
    /// Images `[batch, 3, h, w]` to embeddings `[batch, d]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        self.head.forward(self.backbone.forward(images))
    }

    /// Size of the embeddings.
    pub fn embedding_size(&self) -> usize {
        self.head.out_dim
    }
}
