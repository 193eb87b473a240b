//! ResNet-18, -34 and -50 in torchvision's layout.
//!
//! The module tree mirrors torchvision's `ResNet` (v1.5: the stride of a bottleneck sits on its
//! 3×3 convolution) so that a torchvision or timm state dict maps onto it name for name:
//!
//! ```text
//! conv1 (7×7/2) bn1 relu maxpool (3×3/2)
//! layer1..layer4: [BasicBlock | Bottleneck] × depth-dependent counts
//!     BasicBlock:  conv1 (3×3, stride) bn1 relu conv2 (3×3) bn2 (+ downsample) relu
//!     Bottleneck:  conv1 (1×1) bn1 relu conv2 (3×3, stride) bn2 relu conv3 (1×1) bn3 (+ downsample) relu
//!     downsample:  conv (1×1, stride) bn      — torchvision's `downsample.0` / `downsample.1`
//! ```
//!
//! The classifier (`fc`) is dropped: the backbone returns the last feature map and the
//! embedding head pools it.
//!
//! **Widths.** `base_width` is the width of the stem and of `layer1` (64 in every published
//! ResNet); the stages have `base_width × {1, 2, 4, 8}` planes and bottlenecks expand by 4, so
//! ResNet-18/34 end with `8 × base_width` channels (512) and ResNet-50 with `32 × base_width`
//! (2048). A smaller `base_width` keeps every module name and only shrinks tensors, which is
//! what the regression fixtures use. The width is configured, not inferred from a weights file:
//! a file of another width fails with shape errors naming each tensor.
//!
//! **Initialisation** follows torchvision: convolutions Kaiming-normal with fan-out and the ReLU
//! gain (`std = sqrt(2 / fan_out)`), batch-norm weight 1 and bias 0, no bias on convolutions.

use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::prelude::*;

use crate::conv::{self, conv};
use crate::error::ModelError;
use crate::norm::Norm2d;

/// Which ResNet: the block type and the number of blocks per stage follow from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResNetDepth {
    /// BasicBlock × [2, 2, 2, 2].
    R18,
    /// BasicBlock × [3, 4, 6, 3].
    R34,
    /// Bottleneck × [3, 4, 6, 3].
    R50,
}

impl ResNetDepth {
    /// The depth from its number (18, 34 or 50).
    pub fn from_number(depth: u32) -> Result<Self, ModelError> {
        match depth {
            18 => Ok(Self::R18),
            34 => Ok(Self::R34),
            50 => Ok(Self::R50),
            other => Err(ModelError::Config {
                field: "backbone.depth",
                message: format!("ResNet depth {other} is not supported; use 18, 34 or 50"),
            }),
        }
    }

    /// Blocks in layer1..layer4.
    pub fn blocks(self) -> [usize; 4] {
        match self {
            Self::R18 => [2, 2, 2, 2],
            Self::R34 | Self::R50 => [3, 4, 6, 3],
        }
    }

    /// Whether the stages use bottleneck blocks (expansion 4).
    pub fn bottleneck(self) -> bool {
        matches!(self, Self::R50)
    }

    /// Output channels per block plane: 1 for BasicBlock, 4 for Bottleneck.
    pub fn expansion(self) -> usize {
        if self.bottleneck() { 4 } else { 1 }
    }
}

/// How to build a [`ResNet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResNetConfig {
    /// 18, 34 or 50.
    pub depth: ResNetDepth,
    /// Width of the stem and of layer1; 64 for the published networks.
    pub base_width: usize,
    /// Frozen (`true`) or trainable batch norm in every layer.
    pub frozen_bn: bool,
}

impl ResNetConfig {
    /// A published-width (64) network.
    pub fn new(depth: ResNetDepth, frozen_bn: bool) -> Self {
        Self { depth, base_width: 64, frozen_bn }
    }

    /// Channels of the feature map the backbone returns.
    pub fn out_channels(&self) -> usize {
        8 * self.base_width * self.depth.expansion()
    }

    /// A randomly initialised network (torchvision's initialisation), on `device`.
    pub fn init(&self, device: &Device) -> ResNet {
        let w = self.base_width;
        let conv1 = conv(3, w, 7, 2, 3, device);
        let bn1 = Norm2d::new(w, self.frozen_bn, device);
        let maxpool = MaxPool2dConfig::new([3, 3])
            .with_strides([2, 2])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init();

        let mut in_channels = w;
        let mut stages = Vec::with_capacity(4);
        for (stage, &count) in self.depth.blocks().iter().enumerate() {
            let planes = w << stage;
            let stride = if stage == 0 { 1 } else { 2 };
            let mut blocks = Vec::with_capacity(count);
            for index in 0..count {
                let block_stride = if index == 0 { stride } else { 1 };
                let block = Block::new(self, in_channels, planes, block_stride, device);
                in_channels = planes * self.depth.expansion();
                blocks.push(block);
            }
            stages.push(blocks);
        }
        let [layer1, layer2, layer3, layer4]: [Vec<Block>; 4] = stages.try_into().expect("four stages");

        ResNet { conv1, bn1, maxpool, layer1, layer2, layer3, layer4, out_channels: in_channels }
    }
}

/// A ResNet backbone without its classifier. See the module docs for the layout.
#[derive(Module, Debug)]
pub struct ResNet {
    /// Stem convolution, 7×7 stride 2.
    pub conv1: Conv2d,
    /// Stem batch norm.
    pub bn1: Norm2d,
    /// 3×3 stride-2 max pool after the stem.
    pub maxpool: MaxPool2d,
    /// Stage 1 (stride 1).
    pub layer1: Vec<Block>,
    /// Stage 2 (stride 2).
    pub layer2: Vec<Block>,
    /// Stage 3 (stride 2).
    pub layer3: Vec<Block>,
    /// Stage 4 (stride 2).
    pub layer4: Vec<Block>,
    /// Channels of the returned feature map.
    pub out_channels: usize,
}

impl ResNet {
    /// Maps `[batch, 3, h, w]` images to the last feature map `[batch, out_channels, h/32, w/32]`
    /// (rounded up at each stride).
    pub fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        let x = conv::relu(self.bn1.forward(conv::forward(&self.conv1, input)));
        let mut x = self.maxpool.forward(x);
        for block in self.layer1.iter().chain(&self.layer2).chain(&self.layer3).chain(&self.layer4) {
            x = block.forward(x);
        }
        x
    }
}

/// One residual block; the variant follows from the depth.
// A bottleneck holds one more conv/norm pair than a basic block (handles, not weights).
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Block {
    /// Two 3×3 convolutions (ResNet-18/34).
    Basic(BasicBlock),
    /// 1×1, 3×3, 1×1 convolutions with expansion 4 (ResNet-50).
    Bottleneck(Bottleneck),
}

impl Block {
    fn new(config: &ResNetConfig, in_channels: usize, planes: usize, stride: usize, device: &Device) -> Self {
        let out_channels = planes * config.depth.expansion();
        // torchvision adds a projection whenever the shape of the identity changes.
        let downsample = (stride != 1 || in_channels != out_channels).then(|| Downsample {
            conv: conv(in_channels, out_channels, 1, stride, 0, device),
            bn: Norm2d::new(out_channels, config.frozen_bn, device),
        });
        let frozen = config.frozen_bn;
        if config.depth.bottleneck() {
            Self::Bottleneck(Bottleneck {
                conv1: conv(in_channels, planes, 1, 1, 0, device),
                bn1: Norm2d::new(planes, frozen, device),
                conv2: conv(planes, planes, 3, stride, 1, device),
                bn2: Norm2d::new(planes, frozen, device),
                conv3: conv(planes, out_channels, 1, 1, 0, device),
                bn3: Norm2d::new(out_channels, frozen, device),
                downsample,
            })
        } else {
            Self::Basic(BasicBlock {
                conv1: conv(in_channels, planes, 3, stride, 1, device),
                bn1: Norm2d::new(planes, frozen, device),
                conv2: conv(planes, planes, 3, 1, 1, device),
                bn2: Norm2d::new(planes, frozen, device),
                downsample,
            })
        }
    }

    /// Applies the block.
    pub fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        match self {
            Self::Basic(block) => block.forward(input),
            Self::Bottleneck(block) => block.forward(input),
        }
    }
}

/// The 1×1 projection of the identity path: torchvision's `downsample.0` (conv) and
/// `downsample.1` (bn). The weight loader maps those names onto `conv` and `bn`.
#[derive(Module, Debug)]
pub struct Downsample {
    /// 1×1 convolution with the block's stride.
    pub conv: Conv2d,
    /// Batch norm after it.
    pub bn: Norm2d,
}

impl Downsample {
    fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        self.bn.forward(conv::forward(&self.conv, input))
    }
}

/// torchvision's `BasicBlock`.
#[derive(Module, Debug)]
pub struct BasicBlock {
    /// 3×3 convolution carrying the stride.
    pub conv1: Conv2d,
    /// Norm after conv1.
    pub bn1: Norm2d,
    /// 3×3 convolution.
    pub conv2: Conv2d,
    /// Norm after conv2.
    pub bn2: Norm2d,
    /// Identity projection, where the shape changes.
    pub downsample: Option<Downsample>,
}

impl BasicBlock {
    fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        let identity = match &self.downsample {
            Some(downsample) => downsample.forward(input.clone()),
            None => input.clone(),
        };
        let x = conv::relu(self.bn1.forward(conv::forward(&self.conv1, input)));
        let x = self.bn2.forward(conv::forward(&self.conv2, x));
        conv::relu(x + identity)
    }
}

/// torchvision's `Bottleneck` (ResNet v1.5).
#[derive(Module, Debug)]
pub struct Bottleneck {
    /// 1×1 reduction.
    pub conv1: Conv2d,
    /// Norm after conv1.
    pub bn1: Norm2d,
    /// 3×3 convolution carrying the stride.
    pub conv2: Conv2d,
    /// Norm after conv2.
    pub bn2: Norm2d,
    /// 1×1 expansion (×4).
    pub conv3: Conv2d,
    /// Norm after conv3.
    pub bn3: Norm2d,
    /// Identity projection, where the shape changes.
    pub downsample: Option<Downsample>,
}

impl Bottleneck {
    fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        let identity = match &self.downsample {
            Some(downsample) => downsample.forward(input.clone()),
            None => input.clone(),
        };
        let x = conv::relu(self.bn1.forward(conv::forward(&self.conv1, input)));
        let x = conv::relu(self.bn2.forward(conv::forward(&self.conv2, x)));
        let x = self.bn3.forward(conv::forward(&self.conv3, x));
        conv::relu(x + identity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn std_of(tensor: Tensor<4>) -> f64 {
        let values = tensor.into_data().convert::<f64>().try_to_vec::<f64>().unwrap();
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt()
    }

    /// torchvision's `kaiming_normal_(mode="fan_out", nonlinearity="relu")`:
    /// std = sqrt(2 / (out_channels · k²)).
    #[test]
    fn convolutions_use_torchvision_kaiming_initialisation() {
        let device = Device::flex();
        device.seed(11);
        let net = ResNetConfig::new(ResNetDepth::R18, true).init(&device);
        let Block::Basic(last) = &net.layer4[1] else { panic!("ResNet-18 has basic blocks") };
        for (name, weight, fan_out) in
            [("conv1", net.conv1.weight.val(), 64 * 7 * 7), ("layer4.1.conv2", last.conv2.weight.val(), 512 * 3 * 3)]
        {
            let expected = (2.0 / fan_out as f64).sqrt();
            let std = std_of(weight);
            assert!((std / expected - 1.0).abs() < 0.03, "{name}: std {std}, expected {expected}");
        }
        assert!(net.conv1.bias.is_none(), "torchvision's ResNet convolutions have no bias");
    }

    #[test]
    fn stage_shapes_follow_torchvision() {
        let device = Device::flex();
        let net = ResNetConfig::new(ResNetDepth::R50, true).init(&device);
        assert_eq!(net.out_channels, 2048);
        let Block::Bottleneck(first) = &net.layer2[0] else { panic!("ResNet-50 has bottlenecks") };
        // v1.5: the stride sits on the 3×3 convolution.
        assert_eq!(first.conv1.stride, [1, 1]);
        assert_eq!(first.conv2.stride, [2, 2]);
        assert_eq!(first.conv3.weight.dims(), [512, 128, 1, 1]);
        assert_eq!(first.downsample.as_ref().unwrap().conv.weight.dims(), [512, 256, 1, 1]);
        let counts: Vec<usize> =
            [&net.layer1, &net.layer2, &net.layer3, &net.layer4].iter().map(|stage| stage.len()).collect();
        assert_eq!(counts, [3, 4, 6, 3]);
        // Overall stride 32, as torchvision (224×224 → 7×7; here 96×96 → 3×3).
        let features = net.forward(Tensor::zeros([1, 3, 96, 96], &device));
        assert_eq!(features.dims(), [1, 2048, 3, 3]);
    }
}
