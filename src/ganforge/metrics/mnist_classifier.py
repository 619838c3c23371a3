"""The shipped MNIST digit classifier: ganforge's offline domain feature extractor.

A small CNN trained by ``scripts/train_mnist_classifier.py`` on the embedded MNIST (8,000 train / 2,000 held
out, seeded split); its weights ship as ``assets/mnist_classifier.safetensors`` and its training record
(held-out accuracy, split, seed, sha256) as ``assets/mnist_classifier.json``. Layers: ``"128"``
(penultimate, for FID / KID / precision-recall) and ``"logits"`` (for the "MNIST score" and the class
histogram). :func:`to_classifier_input` prepares real and generated images alike.
"""

from __future__ import annotations

import copy
import hashlib
import json
from importlib import resources
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

WEIGHTS_FILE = "mnist_classifier.safetensors"
META_FILE = "mnist_classifier.json"
INPUT_SIZE = 28
MEAN, STD = 0.1307, 0.3081
NUM_CLASSES = 10
FEATURE_DIM = 128
CLASS_NAMES = [str(i) for i in range(NUM_CLASSES)]
RESIZE_METHOD = "luma (BT.601) then bilinear+antialias to 28x28"


class MnistClassifier(nn.Module):
    """Small CNN for 28x28 grey digits. ``forward`` returns (features [N,128], logits [N,10])."""

    def __init__(self, width: int = 32, feature_dim: int = FEATURE_DIM, num_classes: int = NUM_CLASSES):
        super().__init__()
        w = width
        self.conv1 = nn.Conv2d(1, w, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.conv2 = nn.Conv2d(w, 2 * w, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(2 * w)
        self.conv3 = nn.Conv2d(2 * w, 4 * w, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(4 * w)
        self.fc1 = nn.Linear(4 * w * 3 * 3, feature_dim, bias=False)
        self.bn4 = nn.BatchNorm1d(feature_dim)
        self.drop = nn.Dropout(0.3)
        self.fc2 = nn.Linear(feature_dim, num_classes)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        # x: [N, 1, 28, 28], normalised float. ReLU after max-pool equals ReLU before it (both monotone).
        x = F.relu(F.max_pool2d(self.bn1(self.conv1(x)), 2))  # [N, w, 14, 14]
        x = F.relu(F.max_pool2d(self.bn2(self.conv2(x)), 2))  # [N, 2w, 7, 7]
        x = F.relu(F.max_pool2d(self.bn3(self.conv3(x)), 2))  # [N, 4w, 3, 3]
        feats = F.relu(self.bn4(self.fc1(x.flatten(1))))  # [N, 128]
        logits = self.fc2(self.drop(feats))  # [N, 10]
        return feats, logits

    def fused(self) -> "FusedMnistClassifier":
        """The same function for inference with every BatchNorm folded into the layer before it."""
        return FusedMnistClassifier(self)


def _fold(weight: torch.Tensor, bias: Optional[torch.Tensor], bn: nn.BatchNorm2d) -> Tuple[torch.Tensor, torch.Tensor]:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # [C]
    shape = (-1,) + (1,) * (weight.dim() - 1)
    b = bias if bias is not None else torch.zeros_like(bn.running_mean)
    return weight * scale.reshape(shape), (b - bn.running_mean) * scale + bn.bias


class FusedMnistClassifier(nn.Module):
    """Inference form of :class:`MnistClassifier` (BN folded, in-place ReLU): about 2x faster on CPU."""

    def __init__(self, m: MnistClassifier):
        super().__init__()
        m = m.eval()
        with torch.no_grad():
            for i, (conv, bn) in enumerate(((m.conv1, m.bn1), (m.conv2, m.bn2), (m.conv3, m.bn3)), start=1):
                c = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, padding=conv.padding, bias=True)
                c.weight.copy_(_fold(conv.weight, conv.bias, bn)[0])
                c.bias.copy_(_fold(conv.weight, conv.bias, bn)[1])
                setattr(self, f"conv{i}", c)
            self.fc1 = nn.Linear(m.fc1.in_features, m.fc1.out_features, bias=True)
            w, b = _fold(m.fc1.weight, m.fc1.bias, m.bn4)
            self.fc1.weight.copy_(w)
            self.fc1.bias.copy_(b)
            self.fc2 = copy.deepcopy(m.fc2)
        self.eval().requires_grad_(False)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(self.conv1(x), 2).relu_()  # [N, w, 14, 14]
        x = F.max_pool2d(self.conv2(x), 2).relu_()  # [N, 2w, 7, 7]
        x = F.max_pool2d(self.conv3(x), 2).relu_()  # [N, 4w, 3, 3]
        feats = self.fc1(x.flatten(1)).relu_()  # [N, 128]
        return feats, self.fc2(feats)  # [N, 128], [N, 10]


def to_classifier_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N, C, H, W] (C = 1, 3 or 4) -> normalised float [N, 1, 28, 28]: luma if C >= 3
    (Y = 0.299 R + 0.587 G + 0.114 B, as PIL's "L"; alpha dropped), bilinear antialiased resize to 28x28 if
    needed, [0, 1], then the MNIST mean/std (0.1307, 0.3081)."""
    if not torch.is_tensor(images) or images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"expected a uint8 tensor [N, C, H, W], got {_describe(images)}")
    c = images.shape[1]
    x = images.float()
    if c in (3, 4):
        x = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]  # [N, 1, H, W]
    elif c != 1:
        raise ValueError(f"expected 1, 3 or 4 channels, got {c}")
    if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False, antialias=True)
    x = x / 255.0
    return (x - MEAN) / STD  # [N, 1, 28, 28]


def _describe(x) -> str:
    if torch.is_tensor(x):
        return f"{x.dtype} tensor of shape {list(x.shape)}"
    return type(x).__name__


def weights_bytes() -> bytes:
    res = resources.files("ganforge") / "assets" / WEIGHTS_FILE
    if not res.is_file():
        raise FileNotFoundError(
            f"the packaged MNIST classifier weights are missing (ganforge/assets/{WEIGHTS_FILE}); "
            "reinstall ganforge or run scripts/train_mnist_classifier.py"
        )
    return res.read_bytes()


def metadata() -> Dict:
    """The training record shipped beside the weights (accuracy, split, seed, sha256, ...)."""
    res = resources.files("ganforge") / "assets" / META_FILE
    if not res.is_file():
        return {}
    return json.loads(res.read_text())


_CACHE: Dict[str, Tuple[nn.Module, str]] = {}


def load_classifier(weights: Optional[bytes] = None, fused: bool = True) -> Tuple[nn.Module, str]:
    """The shipped classifier for inference and the SHA-256 of its weights file.

    ``fused=True`` (what the metrics use) folds BatchNorm into the layers; ``False`` gives the
    trainable :class:`MnistClassifier` in eval mode. Loading goes through safetensors: no pickle, no
    code runs. The packaged, fused model is cached per process (it stays on the CPU; copy it to move it).
    """
    from safetensors.torch import load as st_load

    if weights is None and fused and "packaged" in _CACHE:
        return _CACHE["packaged"]
    raw = weights if weights is not None else weights_bytes()
    sha = hashlib.sha256(raw).hexdigest()
    state = st_load(raw)
    width = int(state["conv1.weight"].shape[0])
    feat = int(state["fc1.weight"].shape[0])
    ncls = int(state["fc2.weight"].shape[0])
    model = MnistClassifier(width=width, feature_dim=feat, num_classes=ncls)
    model.load_state_dict(state, strict=True)
    model.eval().requires_grad_(False)
    if not fused:
        return model, sha
    model = model.fused()
    if weights is None:
        _CACHE["packaged"] = (model, sha)
    return model, sha
