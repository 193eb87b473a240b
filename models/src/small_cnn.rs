//! A small CNN for small synthetic images: the default experiment's backbone.
//!
//! Stages of conv 3×3 → batch norm → ReLU. The first convolution has stride 2 and a 2×2 max
//! pool sits between stages (not after the last one), so a 64×64 input ends as a 4×4 map
//! (56×56 as 3×3). The default widths `[32, 64, 128, 256]` give about 390 thousand
//! parameters and about 15 million multiply-adds per 64×64 image, so a whole experiment trains
//! in minutes on two CPU cores. (Keeping the first stage at full resolution would cost four
//! times as much for the same parameters.)
//!
//! Initialisation is the same as the ResNet's (Kaiming normal, fan-out, ReLU gain; no conv
//! bias, since batch norm follows every convolution).

use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::prelude::*;

use crate::conv::{self, conv};
use crate::error::ModelError;
use crate::norm::Norm2d;

/// The default stage widths.
pub const SMALL_CNN_CHANNELS: [usize; 4] = [32, 64, 128, 256];

/// How to build a [`SmallCnn`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmallCnnConfig {
    /// Output channels of each stage; at least one, all non-zero.
    pub channels: Vec<usize>,
    /// Frozen or trainable batch norm. A frozen fresh layer is the identity, so a randomly
    /// initialised small CNN should train its batch norm.
    pub frozen_bn: bool,
}

impl Default for SmallCnnConfig {
    fn default() -> Self {
        Self { channels: SMALL_CNN_CHANNELS.to_vec(), frozen_bn: false }
    }
}

impl SmallCnnConfig {
    /// Checks the widths.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.channels.is_empty() || self.channels.contains(&0) {
            return Err(ModelError::Config {
                field: "backbone.channels",
                message: format!("need at least one stage and no zero width, got {:?}", self.channels),
            });
        }
        Ok(())
    }

    /// Channels of the feature map the backbone returns.
    pub fn out_channels(&self) -> usize {
        self.channels.last().copied().unwrap_or(0)
    }

    /// A randomly initialised network on `device`.
    pub fn init(&self, device: &Device) -> Result<SmallCnn, ModelError> {
        self.validate()?;
        let mut in_channels = 3;
        let stages = self
            .channels
            .iter()
            .enumerate()
            .map(|(index, &out)| {
                // The stride-2 stem quarters the cost of every later stage.
                let stride = if index == 0 { 2 } else { 1 };
                let stage = ConvStage {
                    conv: conv(in_channels, out, 3, stride, 1, device),
                    bn: Norm2d::new(out, self.frozen_bn, device),
                };
                in_channels = out;
                stage
            })
            .collect();
        let pool = MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).with_padding(PaddingConfig2d::Valid).init();
        Ok(SmallCnn { stages, pool, out_channels: in_channels })
    }
}

/// One conv → norm → ReLU stage.
#[derive(Module, Debug)]
pub struct ConvStage {
    /// 3×3 convolution, padding 1; stride 2 in the first stage, 1 after.
    pub conv: Conv2d,
    /// Norm after it.
    pub bn: Norm2d,
}

/// The small CNN. See the module docs.
#[derive(Module, Debug)]
pub struct SmallCnn {
    /// The stages, in order.
    pub stages: Vec<ConvStage>,
    /// 2×2 max pool applied between stages.
    pub pool: MaxPool2d,
    /// Channels of the returned feature map.
    pub out_channels: usize,
}

impl SmallCnn {
    /// Maps `[batch, 3, h, w]` images to `[batch, out_channels, ≈h / 2^s, ≈w / 2^s]` for `s`
    /// stages (each halving rounds down, the stem's rounds up).
    pub fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        let last = self.stages.len().saturating_sub(1);
        let mut x = input;
        for (index, stage) in self.stages.iter().enumerate() {
            x = conv::relu(stage.bn.forward(conv::forward(&stage.conv, x)));
            if index < last {
                x = self.pool.forward(x);
            }
        }
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_network_shapes_and_size() {
        let device = Device::flex();
        let net = SmallCnnConfig::default().init(&device).unwrap();
        assert_eq!(net.forward(Tensor::zeros([2, 3, 64, 64], &device)).dims(), [2, 256, 4, 4]);
        assert_eq!(net.forward(Tensor::zeros([1, 3, 56, 56], &device)).dims(), [1, 256, 3, 3]);
        // 3·32·9 + 32·64·9 + 64·128·9 + 128·256·9 conv weights, 4 tensors per BN channel.
        let convs = 9 * (3 * 32 + 32 * 64 + 64 * 128 + 128 * 256);
        assert_eq!(net.num_params(), convs + 4 * (32 + 64 + 128 + 256));
    }

    #[test]
    fn empty_or_zero_widths_are_rejected() {
        for channels in [vec![], vec![8, 0]] {
            let config = SmallCnnConfig { channels, frozen_bn: false };
            assert!(config.init(&Device::flex()).is_err());
        }
    }
}
