//! The model section of an experiment file, and building a model from it.
//!
//! ```
//! use dmlbench_models::{Backbone, ModelConfig};
//!
//! let config: ModelConfig = ron::from_str(
//!     "(backbone: ResNet50, weights: Some(\"weights/resnet50.pth\"), frozen_bn: true,
//!       embedding_dim: Some(512), normalize: true, bn_head: false, dropout: 0.0)",
//! ).unwrap();
//! assert_eq!(config.backbone, Backbone::ResNet50);
//! ```
//!
//! Omitted fields take the [`Default`] values: the small CNN, random initialisation,
//! trainable batch norm, a 128-d L2-normalised embedding, no head batch norm, no dropout.

use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::ModelError;
use crate::head::HeadConfig;
use crate::model::{BackboneNet, EmbeddingModel};
use crate::resnet::{ResNetConfig, ResNetDepth};
use crate::small_cnn::{SMALL_CNN_CHANNELS, SmallCnnConfig};
use crate::weights::{LoadReport, load_resnet_weights};

/// Which backbone to build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Backbone {
    /// torchvision ResNet-18 (512-d features).
    ResNet18,
    /// torchvision ResNet-34 (512-d features).
    ResNet34,
    /// torchvision ResNet-50 (2048-d features).
    ResNet50,
    /// A ResNet of depth 18, 34 or 50 with another stem width than 64 (see
    /// [`crate::resnet`]); the published networks are the variants above.
    ResNet {
        /// 18, 34 or 50.
        depth: u32,
        /// Width of the stem and layer1.
        base_width: usize,
    },
    /// The small CNN for small synthetic images (see [`crate::small_cnn`]).
    SmallCnn {
        /// Output channels of each stage.
        #[serde(default = "default_small_cnn_channels")]
        channels: Vec<usize>,
    },
}

fn default_small_cnn_channels() -> Vec<usize> {
    SMALL_CNN_CHANNELS.to_vec()
}

impl Default for Backbone {
    fn default() -> Self {
        Self::SmallCnn { channels: default_small_cnn_channels() }
    }
}

/// The widest ResNet accepted: 16 times torchvision's, already far past what fits in memory,
/// and small enough that every channel count derived from it fits in a `usize`.
pub const MAX_BASE_WIDTH: usize = 1024;

impl Backbone {
    /// The ResNet this names, if it is one.
    pub fn resnet(&self, frozen_bn: bool) -> Result<Option<ResNetConfig>, ModelError> {
        let (depth, base_width) = match self {
            Self::ResNet18 => (ResNetDepth::R18, 64),
            Self::ResNet34 => (ResNetDepth::R34, 64),
            Self::ResNet50 => (ResNetDepth::R50, 64),
            Self::ResNet { depth, base_width } => {
                if *base_width == 0 || *base_width > MAX_BASE_WIDTH {
                    return Err(ModelError::Config {
                        field: "backbone.base_width",
                        message: format!(
                            "must be between 1 and {MAX_BASE_WIDTH} (torchvision's ResNets use 64), got {base_width}"
                        ),
                    });
                }
                (ResNetDepth::from_number(*depth)?, *base_width)
            }
            Self::SmallCnn { .. } => return Ok(None),
        };
        Ok(Some(ResNetConfig { depth, base_width, frozen_bn }))
    }
}

/// The model of an experiment: backbone, pretrained weights, and embedding head.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// The backbone architecture.
    pub backbone: Backbone,
    /// Pretrained backbone weights: a torchvision `.pth`/`.pt` state dict or a `.safetensors`
    /// file with torchvision or timm names. `None`: random initialisation.
    pub weights: Option<PathBuf>,
    /// Keep every backbone batch norm frozen (torchvision's `FrozenBatchNorm2d`); the paper's
    /// recipe for a pretrained ResNet. `false`: trainable batch norm.
    pub frozen_bn: bool,
    /// Linear projection of the pooled features to this size; `None` keeps the pooled features.
    pub embedding_dim: Option<usize>,
    /// L2-normalise embeddings.
    pub normalize: bool,
    /// Non-affine batch norm on the embedding.
    pub bn_head: bool,
    /// Dropout on the pooled features, in `[0, 1)`.
    pub dropout: f32,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            backbone: Backbone::default(),
            weights: None,
            frozen_bn: false,
            embedding_dim: Some(128),
            normalize: true,
            bn_head: false,
            dropout: 0.0,
        }
    }
}

impl ModelConfig {
    /// Checks every field, without touching files.
    pub fn validate(&self) -> Result<(), ModelError> {
        let backbone_out = self.backbone_out_channels()?;
        if self.weights.is_some() && self.backbone.resnet(self.frozen_bn)?.is_none() {
            return Err(ModelError::Config {
                field: "weights",
                message: "pretrained weights exist only for the ResNet backbones".into(),
            });
        }
        self.head_config(backbone_out).validate()
    }

    /// Size of the embeddings this model produces.
    pub fn embedding_size(&self) -> Result<usize, ModelError> {
        Ok(self.head_config(self.backbone_out_channels()?).out_dim())
    }

    fn backbone_out_channels(&self) -> Result<usize, ModelError> {
        match (&self.backbone, self.backbone.resnet(self.frozen_bn)?) {
            (_, Some(resnet)) => Ok(resnet.out_channels()),
            (Backbone::SmallCnn { channels }, None) => {
                let cnn = SmallCnnConfig { channels: channels.clone(), frozen_bn: self.frozen_bn };
                cnn.validate()?;
                Ok(cnn.out_channels())
            }
            (_, None) => unreachable!("every non-ResNet backbone is the small CNN"),
        }
    }

    fn head_config(&self, in_features: usize) -> HeadConfig {
        HeadConfig {
            in_features,
            embedding_dim: self.embedding_dim,
            bn: self.bn_head,
            normalize: self.normalize,
            dropout: self.dropout,
        }
    }

    /// Builds the model on `device`: random initialisation from `seed`, then the pretrained
    /// weights if configured. The report lists what the weights file held that was ignored
    /// (classifier, batch-norm counters); show it to the user.
    ///
    /// Parameters are always drawn on the host (burn's flex backend, whose random numbers do
    /// not depend on the machine) in module order, then moved to `device`: the same seed gives
    /// the same initial weights on every backend, so a run on LibTorch or a GPU starts where
    /// the same run on the CPU does.
    ///
    /// Use an autodiff device (`device.autodiff()`) to train, a plain one to evaluate.
    pub fn init(&self, device: &Device, seed: u64) -> Result<(EmbeddingModel, Option<LoadReport>), ModelError> {
        self.validate()?;
        let host = if device.is_autodiff() { Device::flex().autodiff() } else { Device::flex() };
        // The host's generator is process-wide: hold it from seeding to the last draw, so that
        // models built on several threads at once still get the weights of their own seed.
        static HOST_RNG: Mutex<()> = Mutex::new(());
        let rng = HOST_RNG.lock().unwrap_or_else(PoisonError::into_inner);
        host.seed(seed);
        let mut report = None;
        let backbone = match self.backbone.resnet(self.frozen_bn)? {
            Some(resnet) => BackboneNet::ResNet(resnet.init(&host)),
            None => {
                let Backbone::SmallCnn { channels } = &self.backbone else {
                    unreachable!("every non-ResNet backbone is the small CNN")
                };
                let cnn = SmallCnnConfig { channels: channels.clone(), frozen_bn: self.frozen_bn };
                BackboneNet::SmallCnn(cnn.init(&host)?)
            }
        };
        let head = self.head_config(backbone.out_channels()).init(&host)?;
        let mut model = EmbeddingModel { backbone, head };
        materialize(&model);
        drop(rng);
        if let Some(path) = &self.weights {
            let BackboneNet::ResNet(net) = model.backbone else {
                unreachable!("validate() allows weights only for ResNets")
            };
            let (loaded, load_report) = load_resnet_weights(net, path)?;
            model.backbone = BackboneNet::ResNet(loaded);
            report = Some(load_report);
        }
        if *device != host {
            model = model.fork(device);
        }
        Ok((model, report))
    }
}

/// Draws every parameter now, in module order. burn initialises parameters lazily, on first
/// use, so without this the order of the random draws (and so the weights) would depend on
/// which code touches the model first.
fn materialize(model: &EmbeddingModel) {
    struct Touch;
    impl ModuleVisitor for Touch {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let _ = param.val();
        }
    }
    model.visit(&mut Touch);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resnet_width_outside_its_bounds_is_a_config_error() {
        for width in [0, MAX_BASE_WIDTH + 1, usize::MAX] {
            let backbone = Backbone::ResNet { depth: 50, base_width: width };
            let error = backbone.resnet(true).unwrap_err().to_string();
            assert!(error.contains("backbone.base_width") && error.contains(&width.to_string()), "{error}");
        }
        let widest = Backbone::ResNet { depth: 50, base_width: MAX_BASE_WIDTH };
        assert_eq!(widest.resnet(true).unwrap().unwrap().out_channels(), 8 * MAX_BASE_WIDTH * 4);
    }

    #[test]
    fn experiment_files_read_every_backbone() {
        for (text, backbone) in [
            ("(backbone: ResNet18)", Backbone::ResNet18),
            ("(backbone: ResNet34)", Backbone::ResNet34),
            ("(backbone: ResNet50)", Backbone::ResNet50),
            ("(backbone: ResNet(depth: 50, base_width: 16))", Backbone::ResNet { depth: 50, base_width: 16 }),
            ("(backbone: SmallCnn(channels: [8, 16]))", Backbone::SmallCnn { channels: vec![8, 16] }),
            ("(backbone: SmallCnn())", Backbone::default()),
        ] {
            let config: ModelConfig = ron::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(config.backbone, backbone, "{text}");
        }
    }

    #[test]
    fn omitted_fields_take_the_defaults_and_unknown_fields_are_rejected() {
        let config: ModelConfig = ron::from_str("(embedding_dim: None, frozen_bn: true)").unwrap();
        assert_eq!(config, ModelConfig { embedding_dim: None, frozen_bn: true, ..ModelConfig::default() });
        let error = ron::from_str::<ModelConfig>("(embeding_dim: Some(3))").unwrap_err();
        assert!(error.to_string().contains("embeding_dim"), "{error}");
        // Round trip, as the harness writes resolved configs into result records.
        let config = ModelConfig {
            backbone: Backbone::ResNet50,
            weights: Some("w/resnet50.pth".into()),
            bn_head: true,
            dropout: 0.1,
            ..ModelConfig::default()
        };
        let text = ron::to_string(&config).unwrap();
        assert_eq!(ron::from_str::<ModelConfig>(&text).unwrap(), config);
    }

    #[test]
    fn invalid_fields_are_named() {
        let cases = [
            (ModelConfig { dropout: 1.0, ..ModelConfig::default() }, "`dropout`"),
            (ModelConfig { embedding_dim: Some(0), ..ModelConfig::default() }, "`embedding_dim`"),
            (ModelConfig { weights: Some("x.pth".into()), ..ModelConfig::default() }, "`weights`"),
            (
                ModelConfig { backbone: Backbone::ResNet { depth: 101, base_width: 64 }, ..ModelConfig::default() },
                "`backbone.depth`",
            ),
            (
                ModelConfig { backbone: Backbone::SmallCnn { channels: vec![] }, ..ModelConfig::default() },
                "`backbone.channels`",
            ),
        ];
        for (config, field) in cases {
            let error = config.validate().unwrap_err().to_string();
            assert!(error.contains(field), "{field}: {error}");
        }
    }

    #[test]
    fn embedding_sizes_follow_the_backbone_and_projection() {
        let sizes = [
            (Backbone::ResNet18, None, 512),
            (Backbone::ResNet34, None, 512),
            (Backbone::ResNet50, None, 2048),
            (Backbone::ResNet { depth: 50, base_width: 4 }, None, 128),
            (Backbone::default(), None, 256),
            (Backbone::ResNet50, Some(64), 64),
        ];
        for (backbone, embedding_dim, size) in sizes {
            let config = ModelConfig { backbone: backbone.clone(), embedding_dim, ..ModelConfig::default() };
            assert_eq!(config.embedding_size().unwrap(), size, "{backbone:?}");
        }
    }

    /// Every parameter's values, in module order.
    fn weights(config: &ModelConfig, device: &Device, seed: u64) -> Vec<Vec<f32>> {
        struct Collect(Vec<Vec<f32>>);
        impl ModuleVisitor for Collect {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                self.0.push(param.val().into_data().try_to_vec::<f32>().unwrap());
            }
        }
        let (model, _) = config.init(device, seed).unwrap();
        let mut collect = Collect(Vec::new());
        model.visit(&mut collect);
        collect.0
    }

    /// The seed alone decides the initial weights: not whether the device has autodiff, not
    /// other models being built on other threads at the same time.
    #[test]
    fn the_seed_alone_decides_the_initial_weights() {
        let config = ModelConfig {
            backbone: Backbone::SmallCnn { channels: vec![4, 8] },
            embedding_dim: Some(3),
            ..ModelConfig::default()
        };
        let reference = weights(&config, &Device::flex(), 3);
        assert_eq!(weights(&config, &Device::flex().autodiff(), 3), reference);
        assert_ne!(weights(&config, &Device::flex(), 4), reference);
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let config = config.clone();
                std::thread::spawn(move || weights(&config, &Device::flex(), 3 + i % 2))
            })
            .collect();
        for (i, thread) in threads.into_iter().enumerate() {
            let got = thread.join().unwrap();
            assert_eq!(got == reference, i % 2 == 0, "thread {i}");
        }
    }

    /// The published architectures have torchvision's parameter counts (without `fc`), and the
    /// small CNN the few hundred thousand its docs promise.
    #[test]
    fn parameter_counts_match_torchvision() {
        let device = Device::flex();
        let count = |backbone: Backbone| {
            let config = ModelConfig { backbone, embedding_dim: None, ..ModelConfig::default() };
            let (model, _) = config.init(&device, 0).unwrap();
            model.num_params()
        };
        // torchvision: sum(p.numel() for p in resnetN().parameters()) - fc weights and bias,
        // plus 2 running statistics per BN channel (burn counts them as tensors too).
        let bn_channels = |n: usize| 2 * n;
        assert_eq!(count(Backbone::ResNet18), 11_689_512 - 513_000 + bn_channels(4_800));
        assert_eq!(count(Backbone::ResNet34), 21_797_672 - 513_000 + bn_channels(8_512));
        assert_eq!(count(Backbone::ResNet50), 25_557_032 - 2_049_000 + bn_channels(26_560));
        let small = count(Backbone::default());
        assert!((300_000..500_000).contains(&small), "{small}");
    }
}
