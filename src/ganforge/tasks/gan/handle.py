"""The gan task: handle."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple, Union

import torch
import torch.nn as nn

from ganforge import runs
from ganforge.config import Config
from ganforge.errors import LabelError, RunError
from ganforge.imaging import to_uint8
from ganforge.tasks.base import ExportNet, Handle
from ganforge.tasks.gan.networks import build_models, draw_z
from ganforge.training.streams import stream_seed

GOLDEN = (5**0.5 - 1) / 2  # the step of the stratified label draw (a low-discrepancy sequence)


class GeneratorHandle(Handle):
    """A trained generator with what is needed to use it: sizes, classes, noise, sampling."""

    sample_app = "ganforge.tasks.gan.app"  # the module that writes its samples for ``ganforge sample``

    task = "gan"

    def __init__(self, module: nn.Module, checkpoint: runs.Checkpoint, config: Config):
        super().__init__(module, checkpoint, config)
        self.z_dim = config.model.z_dim
        self.num_classes = config.model.num_classes if config.model.conditional else 0
        names = list(checkpoint.config.get("class_names", []))
        self.class_names = names if len(names) == self.num_classes else [str(i) for i in range(self.num_classes)]
        # a run trained on clusters (model.clusters): how many images each had, so samples draw them alike
        sizes = [float(s) for s in checkpoint.config.get("cluster_sizes") or []]
        ok = self.num_classes and len(sizes) == self.num_classes and sum(sizes) > 0
        self.class_weights: Optional[List[float]] = [s / sum(sizes) for s in sizes] if ok else None

    def class_index(self, c: Union[int, str]) -> int:
        """A class given by index or by name -> its index (clear error otherwise)."""
        if not self.num_classes:
            raise LabelError("this generator is unconditional: it takes no class")
        if isinstance(c, str) and c in self.class_names:
            return self.class_names.index(c)
        try:
            i = int(c)
        except (TypeError, ValueError):
            i = -1
        if not 0 <= i < self.num_classes:
            raise LabelError(
                f"class {c!r}: expected an index 0..{self.num_classes - 1} or one of the names: "
                f"{', '.join(self.class_names)}"
            )
        return i

    def labels_for(self, n: int, labels=None, seed: int = 0) -> Optional[torch.Tensor]:
        """Class labels [n]: None for unconditional models; an int/name for one class; a sequence
        or tensor of n labels; or (default) the classes in turn 0, 1, ..., K-1, 0, 1, ..., except for a run
        trained on clusters, which draws them in proportion to the clusters' sizes (:meth:`draw_labels`)."""
        if not self.num_classes:
            if labels is not None:
                raise LabelError("this generator is unconditional: it takes no class labels")
            return None
        if labels is None:
            return self.draw_labels(n, seed) if self.class_weights else torch.arange(n) % self.num_classes
        if isinstance(labels, (int, str)):
            return torch.full((n,), self.class_index(labels), dtype=torch.long)
        y = torch.as_tensor([self.class_index(int(v)) for v in labels], dtype=torch.long)
        if y.shape != (n,):
            raise LabelError(f"expected {n} labels, got {tuple(y.shape)}")
        return y

    def draw_labels(self, n: int, seed: int = 0) -> torch.Tensor:
        """``n`` clusters [n] drawn in proportion to ``class_weights`` (stratified: a random start from
        ``seed``, then golden-ratio steps through the cumulative shares, so any n draws each cluster about
        its share of n times, and one sample per seed draws it with its probability)."""
        w = torch.as_tensor(self.class_weights, dtype=torch.float64)
        start = torch.rand(
            1, generator=torch.Generator().manual_seed(stream_seed(int(seed), "labels")), dtype=torch.float64
        )
        u = (start + torch.arange(n, dtype=torch.float64) * GOLDEN) % 1.0  # [n] in [0, 1)
        edges = torch.cumsum(w / w.sum(), 0)[:-1]  # [K - 1]
        return torch.bucketize(u, edges, right=True).long()

    def noise(self, n: int, seed: int) -> torch.Tensor:
        """The latent vectors ``sample(n, seed)`` uses: [n, z_dim], on CPU."""
        return draw_z(n, self.z_dim, self.config.model.z_dist, torch.Generator().manual_seed(int(seed)))

    @torch.no_grad()
    def generate(self, z: torch.Tensor, labels=None, batch_size: int = 256) -> torch.Tensor:
        """Images in [-1, 1], float [N, C, H, W], for latent vectors ``z`` (and labels if conditional)."""
        y = self.labels_for(z.shape[0], labels)
        out = []
        for i in range(0, z.shape[0], batch_size):
            zc = z[i : i + batch_size].to(self.device)
            if y is None:
                out.append(self.module(zc).float().cpu())
            else:
                out.append(self.module(zc, y[i : i + batch_size].to(self.device)).float().cpu())
        return torch.cat(out) if out else torch.empty(0, *self.img_shape)

    def sample(self, n: int, seed: int = 0, batch_size: int = 256, labels=None) -> torch.Tensor:
        if labels is None and self.class_weights:  # clusters drawn with the seed
            labels = self.draw_labels(n, seed)
        return self.generate(self.noise(n, seed), labels, batch_size)

    def sample_uint8(self, n: int, seed: int = 0, batch_size: int = 256, labels=None) -> torch.Tensor:
        """uint8 [n, C, H, W]; the same ``seed`` (and labels) gives the same images."""
        return to_uint8(self.sample(n, seed, batch_size, labels))

    def discriminator(self) -> Optional[nn.Module]:
        """The run's discriminator from the same checkpoint (on the handle's device, eval mode), or None
        when the checkpoint has none (a bad file is a one-line :class:`RunError`)."""
        folder = Path(self.checkpoint_path)
        if not runs.weights_path(folder, "discriminator").is_file():
            return None
        _, d = build_models(self.config.model, self.img_shape)
        try:
            d.load_state_dict(runs.load_weights(folder, "discriminator"))
        except RuntimeError as e:
            raise RunError(f"discriminator weights in '{folder}' do not match its config.json: {e}") from None
        return d.to(self.device).eval()

    def export_inputs(self, batch: int = 1) -> Tuple[torch.Tensor, ...]:
        z = self.noise(batch, 0).to(self.device)
        return (z,) if not self.num_classes else (z, (torch.arange(batch) % self.num_classes).to(self.device))

    def export_networks(self) -> List[ExportNet]:
        """The generator, ``z`` (and ``label`` when conditional) -> ``image``; fixed image size, dynamic batch."""
        dist = "standard normal" if self.config.model.z_dist == "normal" else f"{self.config.model.z_dist} in [-1, 1]"
        values = {
            "z": f"float32 latent vectors [N, {self.z_dim}], {dist}",
            "image": "float32 in [-1, 1] (uint8 = round((x + 1) * 127.5))",
        }
        if self.num_classes:
            values["label"] = f"int64 class index in [0, {self.num_classes})"
        info = {
            "z_dim": self.z_dim,
            "z_dist": self.config.model.z_dist,
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
        }
        if self.class_weights:  # trained on clusters: draw labels with these probabilities
            info["class_weights"] = [round(w, 6) for w in self.class_weights]
        return [
            ExportNet(
                "generator",
                self.module,
                self.export_inputs(2),
                ("z", "label")[: 1 + bool(self.num_classes)],
                ("image",),
                values=values,
                info=info,
            )
        ]

    def __repr__(self) -> str:
        cond = f", {self.num_classes} classes" if self.num_classes else ""
        return (
            f"GeneratorHandle({self.config.model.arch}, {'x'.join(map(str, self.img_shape))}{cond}, "
            f"step {self.step}, {self.checkpoint_path})"
        )
