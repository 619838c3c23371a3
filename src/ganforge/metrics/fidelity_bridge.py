"""ganforge's feature extractors as torch-fidelity ``FeatureExtractorBase`` classes.

After :func:`register_torch_fidelity` (idempotent; nothing is registered at import), torch-fidelity's own
API works in ganforge's feature spaces::

    register_torch_fidelity()
    torch_fidelity.calculate_metrics(input1=TensorImages(fake), input2=TensorImages(real), fid=True,
                                     feature_extractor="ganforge-mnist", cuda=False)

``ganforge-mnist`` is the shipped classifier (layers ``"128"`` and ``"logits"``); ``ganforge-effnet-lite0`` is
EfficientNet-Lite0 with the ImageNet weights of the ``effnet`` extra (layers ``"1280"`` and ``"logits"``);
``ganforge-inception-v3-compat`` is torch-fidelity's InceptionV3 with its weights loaded by
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch_fidelity
import torch_fidelity.feature_extractor_inceptionv3 as _tf_inception
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from ganforge.metrics.inception_weights import load_inception_state
from ganforge.metrics.mnist_classifier import load_classifier, to_classifier_input

MNIST_NAME = "ganforge-mnist"
EFFNET_NAME = "ganforge-effnet-lite0"


class TensorImages(torch.utils.data.Dataset):
    """uint8 images [N, C, H, W] as a torch-fidelity input (one uint8 [C, H, W] tensor per item; a
    ``TensorDataset`` yields tuples, which torch-fidelity refuses)."""

    def __init__(self, images: torch.Tensor):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


INCEPTION_NAME = "ganforge-inception-v3-compat"
RANDOM_INIT = object()  # sentinel: keep the random initialisation (throughput measurements only)


class FeatureExtractorGanforgeMNIST(FeatureExtractorBase):
    """The shipped MNIST classifier. Input: uint8 [N, C, H, W], C in {1, 3, 4}, any size
    (luma + bilinear-antialias resize to 28x28, see :mod:`ganforge.metrics.mnist_classifier`)."""

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        super().__init__(name, features_list)
        raw = Path(feature_extractor_weights_path).read_bytes() if feature_extractor_weights_path else None
        net, sha = load_classifier(raw)
        self.net = copy.deepcopy(net) if raw is None else net  # the cached one stays on the CPU
        self.weights_sha256 = sha
        self.requires_grad_(False)
        self.eval()

    def forward(self, x):
        feats, logits = self.net(to_classifier_input(x).to(next(self.net.parameters()).device))
        out = {"128": feats, "logits": logits}
        return tuple(out[name].to(torch.float32) for name in self.features_list)

    @staticmethod
    def get_provided_features_list():
        return "128", "logits"

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"isc": "logits", "fid": "128", "kid": "128", "prc": "128"}[metric]

    @staticmethod
    def can_be_compiled():
        return True

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 1, 28, 28, dtype=torch.uint8)


class FeatureExtractorGanforgeEffnet(FeatureExtractorBase):
    """EfficientNet-Lite0 (ImageNet weights from the ``effnet`` extra). Input: uint8 [N, C, H, W], C in {1, 3, 4},
    any size (grey -> RGB, bilinear resize to 224x224, see :mod:`ganforge.metrics.effnet`), run in chunks of
    ``CHUNK`` images so that a large batch does not need gigabytes of activations."""

    CHUNK = 32

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        from ganforge.metrics.effnet import load_effnet

        super().__init__(name, features_list)
        net, sha = load_effnet(feature_extractor_weights_path)
        self.net = copy.deepcopy(net)  # the cached one stays on the CPU
        self.weights_sha256 = sha
        self.requires_grad_(False)
        self.eval()

    def forward(self, x):
        from ganforge.metrics.effnet import to_effnet_input

        device = next(self.net.parameters()).device
        feats, logits = [], []
        for chunk in x.split(self.CHUNK):
            f, lg = self.net(to_effnet_input(chunk.to(device)))
            feats.append(f)
            logits.append(lg)
        out = {"1280": torch.cat(feats), "logits": torch.cat(logits)}
        return tuple(out[name].to(torch.float32) for name in self.features_list)

    @staticmethod
    def get_provided_features_list():
        return "1280", "logits"

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"isc": "logits", "fid": "1280", "kid": "1280", "prc": "1280"}[metric]

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 3, 224, 224, dtype=torch.uint8)


class GanforgeInceptionV3(FeatureExtractorInceptionV3):
    """torch-fidelity's InceptionV3 with a safe weight loader.

    ``ganforge_state_dict``: a state dict already loaded safely, or :data:`RANDOM_INIT`; when None,
    the weights are resolved like ``--inception-weights`` (path given as
    ``feature_extractor_weights_path``, env var, torch-fidelity's cache, download).
    """

    def __init__(self, name, features_list, feature_extractor_weights_path=None, ganforge_state_dict=None, **kwargs):
        if ganforge_state_dict is None:
            ganforge_state_dict, self_sha = load_inception_state(feature_extractor_weights_path)
        else:
            self_sha = None
        # The parent's __init__ builds the layers and fetches weights through the module-level name
        # load_state_dict_from_url; hand it the state dict loaded above instead, for this call only.
        original = _tf_inception.load_state_dict_from_url
        _tf_inception.load_state_dict_from_url = lambda *a, **k: ganforge_state_dict
        try:
            super().__init__(name, features_list, feature_extractor_weights_path=None, **kwargs)
        finally:
            _tf_inception.load_state_dict_from_url = original
        self.weights_sha256 = self_sha

    def load_state_dict(self, state_dict, strict=True, assign=False):
        if state_dict is RANDOM_INIT:
            return None
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


def register_torch_fidelity() -> None:
    """Register ganforge's extractors with torch-fidelity (safe to call many times)."""
    for name, cls in (
        (MNIST_NAME, FeatureExtractorGanforgeMNIST),
        (EFFNET_NAME, FeatureExtractorGanforgeEffnet),
        (INCEPTION_NAME, GanforgeInceptionV3),
    ):
        if FEATURE_EXTRACTORS_REGISTRY.get(name) is None:
            torch_fidelity.register_feature_extractor(name, cls)
