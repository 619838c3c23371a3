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


class _GanforgeExtractor(FeatureExtractorBase):
    """What ganforge's feature extractors share in torch-fidelity's interface: a pooled feature layer
    (``FEATURE``, used for FID/KID/PR) and the logits (IS), and a frozen network in eval mode."""

    FEATURE = ""  # the name of the pooled feature layer (its width)
    COMPILES = False
    DUMMY_SHAPE = (1, 3, 1, 1)  # an input for torch-fidelity's compile check

    def _frozen(self, net, sha) -> None:
        self.net = net
        self.weights_sha256 = sha
        self.requires_grad_(False)
        self.eval()

    def _outputs(self, feats, logits):
        out = {self.FEATURE: feats, "logits": logits}
        return tuple(out[name].to(torch.float32) for name in self.features_list)

    @classmethod
    def get_provided_features_list(cls):
        return cls.FEATURE, "logits"

    @classmethod
    def get_default_feature_layer_for_metric(cls, metric):
        return {"isc": "logits", "fid": cls.FEATURE, "kid": cls.FEATURE, "prc": cls.FEATURE}[metric]

    @classmethod
    def can_be_compiled(cls):
        return cls.COMPILES

    @classmethod
    def get_dummy_input_for_compile(cls):
        return torch.zeros(*cls.DUMMY_SHAPE, dtype=torch.uint8)


class FeatureExtractorGanforgeMNIST(_GanforgeExtractor):
    """The shipped MNIST classifier. Input: uint8 [N, C, H, W], C in {1, 3, 4}, any size
    (luma + bilinear-antialias resize to 28x28, see :mod:`ganforge.metrics.mnist_classifier`)."""

    FEATURE, COMPILES, DUMMY_SHAPE = "128", True, (1, 1, 28, 28)

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        super().__init__(name, features_list)
        raw = Path(feature_extractor_weights_path).read_bytes() if feature_extractor_weights_path else None
        net, sha = load_classifier(raw)
        self._frozen(copy.deepcopy(net) if raw is None else net, sha)  # the cached one stays on the CPU

    def forward(self, x):
        return self._outputs(*self.net(to_classifier_input(x).to(next(self.net.parameters()).device)))


class FeatureExtractorGanforgeEffnet(_GanforgeExtractor):
    """EfficientNet-Lite0 (ImageNet weights from the ``effnet`` extra). Input: uint8 [N, C, H, W], C in {1, 3, 4},
    any size (grey -> RGB, bilinear resize to 224x224, see :mod:`ganforge.metrics.effnet`), run in chunks of
    ``CHUNK`` images so that a large batch does not need gigabytes of activations."""

    CHUNK = 32
    FEATURE, COMPILES, DUMMY_SHAPE = "1280", False, (1, 3, 224, 224)

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        from ganforge.metrics.effnet import load_effnet

        super().__init__(name, features_list)
        net, sha = load_effnet(feature_extractor_weights_path)
        self._frozen(copy.deepcopy(net), sha)  # the cached one stays on the CPU

    def forward(self, x):
        from ganforge.metrics.effnet import to_effnet_input

        device = next(self.net.parameters()).device
        feats, logits = [], []
        for chunk in x.split(self.CHUNK):
            f, lg = self.net(to_effnet_input(chunk.to(device)))
            feats.append(f)
            logits.append(lg)
        return self._outputs(torch.cat(feats), torch.cat(logits))


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
