"""PyTorch twins of dmlbench's models, for timing the same work in both frameworks.

Every module here mirrors a file of the `dmlbench-models` crate in architecture and in the
distributions of its initial weights (the random draws themselves differ: burn and PyTorch
have different generators):

- `SmallCnn` mirrors `models/src/small_cnn.rs`: stages of 3x3 convolution (padding 1, no
  bias; stride 2 in the first stage, 1 after), batch norm and ReLU, with a 2x2 stride-2 max
  pool between stages (not after the last). Default widths [32, 64, 128, 256]. Convolutions
  are Kaiming-normal with fan-out and the ReLU gain, std = sqrt(2 / fan_out), like the
  ResNets.
- `ResNetBackbone` mirrors `models/src/resnet.rs`: torchvision's ResNet-18/34/50 (v1.5
  bottlenecks, torchvision's initialisation) without `avgpool` and `fc`, returning the last
  feature map. Submodules keep torchvision's names, so a torchvision state dict loads as is.
- Batch norm mirrors `models/src/norm.rs` and `frozen_bn.rs`: frozen is torchvision's
  `FrozenBatchNorm2d` (statistics and affine parameters fixed, eps 1e-5); trainable is
  `nn.BatchNorm2d` (eps 1e-5, momentum 0.1), with weight 1 and bias 0 at the start.
- `EmbeddingHead` mirrors `models/src/head.rs`: global average pooling, optional dropout on
  the pooled features, optional linear projection (PyTorch's default `nn.Linear`
  initialisation, which is what the Rust head uses: uniform in +-1/sqrt(in_features) for
  weight and bias), optional non-affine `BatchNorm1d`, optional L2 normalisation
  (`F.normalize`, eps 1e-12).
- `build_model` mirrors `ModelConfig::init` in `models/src/config.rs`.
"""

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

SMALL_CNN_CHANNELS = (32, 64, 128, 256)

RESNETS = {
    "resnet18": (torchvision.models.resnet18, 512),
    "resnet34": (torchvision.models.resnet34, 512),
    "resnet50": (torchvision.models.resnet50, 2048),
}

BACKBONES = ("small_cnn",) + tuple(RESNETS)


def norm_layer(frozen_bn):
    """The 2-d batch norm the backbones use: frozen or trainable."""
    if frozen_bn:
        return FrozenBatchNorm2d
    return lambda channels: nn.BatchNorm2d(channels, eps=1e-5, momentum=0.1)


class SmallCnn(nn.Module):
    """The small CNN of the default experiment (models/src/small_cnn.rs)."""

    def __init__(self, channels=SMALL_CNN_CHANNELS, frozen_bn=False):
        super().__init__()
        channels = list(channels)
        if not channels or 0 in channels:
            raise ValueError(f"need at least one stage and no zero width, got {channels}")
        norm = norm_layer(frozen_bn)
        stages = []
        in_channels = 3
        for index, out_channels in enumerate(channels):
            stride = 2 if index == 0 else 1
            conv = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            stages.append(nn.Sequential(conv, norm(out_channels), nn.ReLU(inplace=True)))
            in_channels = out_channels
        self.stages = nn.ModuleList(stages)
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.out_channels = in_channels

    def forward(self, x):
        last = len(self.stages) - 1
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if index < last:
                x = self.pool(x)
        return x


class ResNetBackbone(nn.Module):
    """torchvision's ResNet without `avgpool` and `fc` (models/src/resnet.rs)."""

    def __init__(self, name, frozen_bn):
        super().__init__()
        builder, self.out_channels = RESNETS[name]
        # torchvision initialises convolutions Kaiming-normal (fan-out, ReLU) and
        # nn.BatchNorm2d to weight 1, bias 0; FrozenBatchNorm2d starts as the identity.
        net = builder(weights=None, norm_layer=FrozenBatchNorm2d if frozen_bn else None)
        self.conv1 = net.conv1
        self.bn1 = net.bn1
        self.relu = net.relu
        self.maxpool = net.maxpool
        self.layer1 = net.layer1
        self.layer2 = net.layer2
        self.layer3 = net.layer3
        self.layer4 = net.layer4

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def load_torchvision_weights(self, path):
        """Loads a torchvision state dict (`.pth`), ignoring `fc.*`; returns the ignored keys.

        Prefixes `module.`, `model.` and `state_dict.` are stripped, as dmlbench does.
        """
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        cleaned = {}
        for key, value in state.items():
            for prefix in ("module.", "model.", "state_dict."):
                if key.startswith(prefix):
                    key = key[len(prefix):]
            cleaned[key] = value
        ignored = sorted(k for k in cleaned if k.startswith("fc."))
        for key in ignored:
            del cleaned[key]
        # Trainable BN layers keep num_batches_tracked; FrozenBatchNorm2d drops it itself.
        self.load_state_dict(cleaned, strict=True)
        return ignored


class EmbeddingHead(nn.Module):
    """Pooling, dropout, projection, batch norm, L2 normalisation (models/src/head.rs)."""

    def __init__(self, in_features, embedding_dim=None, normalize=True, bn=False, dropout=0.0):
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if embedding_dim is not None and embedding_dim <= 0:
            raise ValueError("embedding_dim must be positive (or None to keep the pooled features)")
        self.out_dim = in_features if embedding_dim is None else embedding_dim
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None
        self.projection = nn.Linear(in_features, embedding_dim) if embedding_dim is not None else None
        self.bn = nn.BatchNorm1d(self.out_dim, eps=1e-5, momentum=0.1, affine=False) if bn else None
        self.normalize = normalize

    def forward(self, features):
        z = features.mean(dim=(2, 3))
        if self.dropout is not None:
            z = self.dropout(z)
        if self.projection is not None:
            z = self.projection(z)
        if self.bn is not None:
            z = self.bn(z)
        if self.normalize:
            z = F.normalize(z, p=2.0, dim=1, eps=1e-12)
        return z


class EmbeddingModel(nn.Module):
    """A backbone and its embedding head: images in, embeddings out."""

    def __init__(self, backbone, head):
        super().__init__()
        self.backbone = backbone
        self.head = head

    @property
    def embedding_size(self):
        return self.head.out_dim

    def forward(self, images):
        return self.head(self.backbone(images))


def build_model(backbone, frozen_bn, embedding_dim, normalize, bn_head=False, dropout=0.0, channels=None):
    """The model of an experiment's `model` section, randomly initialised.

    `backbone` is one of `BACKBONES`; `channels` applies to the small CNN only (its default
    widths when None). Seed torch (`torch.manual_seed`) before calling for repeatable weights.
    """
    if backbone == "small_cnn":
        net = SmallCnn(SMALL_CNN_CHANNELS if channels is None else channels, frozen_bn=frozen_bn)
    elif backbone in RESNETS:
        if channels is not None:
            raise ValueError("channels applies to the small CNN only")
        net = ResNetBackbone(backbone, frozen_bn=frozen_bn)
    else:
        raise ValueError(f"unknown backbone {backbone!r}; known: {', '.join(BACKBONES)}")
    head = EmbeddingHead(net.out_channels, embedding_dim, normalize=normalize, bn=bn_head, dropout=dropout)
    return EmbeddingModel(net, head)
