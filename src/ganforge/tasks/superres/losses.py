"""The superres task: losses."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Dict, List

import torch
import torch.nn as nn
import torch.nn.functional as F

from ganforge.errors import ConfigError

VGG_LAYERS = 35  # torchvision vgg19().features[:35]: up to conv5_4, before its ReLU (ESRGAN)


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class MnistFeatures(nn.Module):
    """The shipped MNIST classifier's three convolutional stages (BatchNorm folded), frozen: [-1, 1] images
    (grey, or colour taken to luma) -> three feature maps. Fully convolutional: any size."""

    def __init__(self):
        super().__init__()
        from ganforge.metrics.mnist_classifier import MEAN, STD, load_classifier

        net, _ = load_classifier(fused=True)
        self.convs = nn.ModuleList(copy.deepcopy(c) for c in (net.conv1, net.conv2, net.conv3))
        self.mean, self.std = MEAN, STD
        self.eval().requires_grad_(False)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        if x.shape[1] >= 3:
            x = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]  # [N, 1, H, W]
        h = ((x + 1) / 2 - self.mean) / self.std
        feats = []
        for conv in self.convs:
            h = F.relu(conv(h))  # [N, w * 2^i, H / 2^i, W / 2^i] (before pooling)
            feats.append(h)
            h = F.max_pool2d(h, 2)
        return feats


def load_vgg_weights(path: str) -> Dict[str, torch.Tensor]:
    """The ``features.*`` tensors of a VGG19 weights file (never unpickles code), keyed ``N.weight``."""
    p = Path(path).expanduser()
    key = "superres.perceptual_weights"
    if not p.is_file():
        raise ConfigError(f"{key}: file '{p}' does not exist (expected torchvision's vgg19 weights)")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(p))
        else:
            state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # a file that is not weights, or a pickle that would run code
        raise ConfigError(
            f"{key}: cannot read '{p}' as weights ({type(e).__name__}: {str(e).splitlines()[0][:200]})"
        ) from None
    if not isinstance(state, dict):
        raise ConfigError(f"{key}: '{p}' holds a {type(state).__name__}, expected a state dict of tensors")
    out = {}
    for k, v in state.items():
        k2 = k[len("features.") :] if k.startswith("features.") else k
        head = k2.split(".")[0]
        if head.isdigit() and int(head) < VGG_LAYERS and torch.is_tensor(v):
            out[k2] = v
    return out


VGG19_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512)


def vgg19_features() -> nn.Sequential:
    """VGG19's convolutional trunk up to conv5_4 (before its ReLU), laid out as torchvision's
    ``vgg19().features[:35]`` so its state-dict keys (``0.weight`` ... ``34.bias``) match (built here so
    that training does not import torchvision)."""
    layers: List[nn.Module] = []
    cin = 3
    for v in VGG19_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, int(v), 3, padding=1), nn.ReLU(inplace=True)]
            cin = int(v)
    return nn.Sequential(*layers[:VGG_LAYERS])


class VGGFeatures(nn.Module):
    """VGG19 conv5_4 before its ReLU (ESRGAN's perceptual loss) with user-supplied weights."""

    def __init__(self, path: str):
        super().__init__()
        state = load_vgg_weights(path)
        with torch.device("meta"):  # no random initialisation: every tensor comes from the file
            self.features = vgg19_features()
        try:
            self.features.load_state_dict(state, strict=True, assign=True)
        except RuntimeError as e:
            lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
            first = lines[1] if len(lines) > 1 else lines[0]
            raise ConfigError(
                f"superres.perceptual_weights: '{path}' does not fit torchvision's vgg19: {first[:240]}"
            ) from None
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.eval().requires_grad_(False)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return [self.features(((x[:, :3] + 1) / 2 - self.mean) / self.std)]  # [N, 512, H/16, W/16]


def feature_distance(a: List[torch.Tensor], b: List[torch.Tensor]) -> torch.Tensor:
    """Mean over layers of the L1 distance between feature maps (``b`` is the target, not differentiated).

    With ``feature_net=d`` the real images' targets are the discriminator's features from its own update,
    so a step runs D three times over the batch rather than four."""
    return sum(F.l1_loss(x, y.detach()) for x, y in zip(a, b)) / len(a)
