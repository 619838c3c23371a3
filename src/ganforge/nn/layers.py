"""Small blocks shared by the model families.

- size planning: :func:`plan_stages` (H x W = b * 2^k) and :class:`ModelSizeError`
- normalisation: :func:`maybe_sn`, :func:`norm2d`, :func:`norm1d`, :class:`ConditionalBatchNorm`
  (de Vries et al. 2017; Miyato & Koyama 2018) and :class:`CondSequential` that feeds it labels
- discriminator heads: :class:`ProjectionHead` (Miyato & Koyama 2018), :class:`AuxClassifierHead`
  (Odena et al. 2017), :class:`MinibatchStd` (Karras et al. 2018)
- label checks shared by every G and D: :func:`check_labels`
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
import torch.nn as nn

MAX_BASE = 16  # largest side of the coarsest feature map
MIN_BASE = 3  # smallest side of the coarsest feature map
MIN_STAGES = 2  # fewest 2x resolution stages


from ganforge.errors import ModelBuildError  # noqa: E402  (re-exported)


class ModelSizeError(ModelBuildError):
    """The architecture cannot be built for the requested image size."""


# ------------------------------------------------------------------------------------------
# size planning


def plan_stages(h: int, w: int, family: str = "dcgan") -> Tuple[int, int, int]:
    """Return (k, base_h, base_w): the most 2x stages with an integer base of at least 3.

    Both sides must be ``b * 2^k`` with ``k >= 2`` and ``3 <= b <= 16``; otherwise
    :class:`ModelSizeError` names the nearest buildable sizes.
    """
    k = 0
    while h % 2 ** (k + 1) == 0 and w % 2 ** (k + 1) == 0 and min(h, w) // 2 ** (k + 1) >= MIN_BASE:
        k += 1
    bh, bw = h // 2**k, w // 2**k
    if k < MIN_STAGES or max(bh, bw) > MAX_BASE:
        raise ModelSizeError(
            f"{family} cannot be built for {h}x{w}: height and width must both be b * 2^k with k >= {MIN_STAGES} "
            f"and {MIN_BASE} <= b <= {MAX_BASE} (e.g. 28, 32, 48, 64, 96, 128, or 48x64); "
            f"set data.size to a nearby size such as {nearest_size(h)}x{nearest_size(w)}"
        )
    return k, bh, bw


def nearest_size(n: int) -> int:
    """The buildable side length (b * 2^k, k >= 2, 3 <= b <= 16) closest to ``n``."""
    best = 0
    for k in range(MIN_STAGES, 10):
        for b in range(MIN_BASE, MAX_BASE + 1):
            s = b * 2**k
            if best == 0 or abs(s - n) < abs(best - n):
                best = s
    return best


MAX_MULT = 8  # the widest level of a network has at most width * 8 channels (as in the DCGAN paper)


def level_widths(width: int, levels: int, max_mult: int = MAX_MULT) -> List[int]:
    """Channels per resolution level, coarsest first: width*2^(levels-1), ..., width, capped at width*max_mult."""
    return [width * min(2 ** (levels - 1 - i), max_mult) for i in range(levels)]


# ------------------------------------------------------------------------------------------
# normalisation


def maybe_sn(module: nn.Module, norm: str) -> nn.Module:
    """Wrap a conv/linear/embedding layer in spectral normalisation (Miyato et al. 2018) when ``norm == "spectral"``."""
    if norm == "spectral":
        return nn.utils.parametrizations.spectral_norm(module)
    return module


def norm2d(norm: str, channels: int) -> nn.Module:
    """BatchNorm for ``batch``; identity otherwise (spectral norm lives on the weights)."""
    return nn.BatchNorm2d(channels) if norm == "batch" else nn.Identity()


def norm1d(norm: str, features: int) -> nn.Module:
    return nn.BatchNorm1d(features) if norm == "batch" else nn.Identity()


class ConditionalBatchNorm(nn.Module):
    """Class-conditional BatchNorm (de Vries et al. 2017; used by Miyato & Koyama 2018).

    Normalises with a parameter-free BatchNorm, then applies a per-class gain and bias looked up
    from embeddings initialised to 1 and 0, so at initialisation it equals plain BatchNorm.
    ``dim=2`` for feature maps ``[N, C, H, W]``, ``dim=1`` for vectors ``[N, C]``.
    """

    def __init__(self, num_features: int, num_classes: int, dim: int = 2, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        if num_classes < 1:
            raise ModelBuildError(f"ConditionalBatchNorm needs num_classes >= 1, got {num_classes}")
        bn = nn.BatchNorm2d if dim == 2 else nn.BatchNorm1d
        self.num_features, self.num_classes, self.dim = num_features, num_classes, dim
        self.bn = bn(num_features, eps=eps, momentum=momentum, affine=False)
        self.gamma = nn.Embedding(num_classes, num_features)  # [K, C], init 1
        self.beta = nn.Embedding(num_classes, num_features)  # [K, C], init 0
        nn.init.ones_(self.gamma.weight)
        nn.init.zeros_(self.beta.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = self.bn(x)  # [N, C, ...] normalised
        shape = (x.shape[0], self.num_features) + (1,) * (x.dim() - 2)
        return self.gamma(y).view(shape) * out + self.beta(y).view(shape)  # [N, C, ...]


def cond_norm(norm: str, features: int, num_classes: int = 0, dim: int = 2) -> nn.Module:
    """Generator normalisation: conditional BatchNorm when ``num_classes > 0``, else :func:`norm2d`/:func:`norm1d`.

    ``num_classes > 0`` with ``norm != "batch"`` is refused: there is no BatchNorm to condition.
    """
    if num_classes > 0:
        if norm != "batch":
            raise ModelBuildError(
                f"model.g_cond=cbn conditions the generator's BatchNorm layers, but model.g_norm={norm} has none; "
                "use model.g_norm=batch or model.g_cond=embed"
            )
        return ConditionalBatchNorm(features, num_classes, dim=dim)
    return norm2d(norm, features) if dim == 2 else norm1d(norm, features)


def apply_norm(m: nn.Module, x: torch.Tensor, y: Optional[torch.Tensor]) -> torch.Tensor:
    """Call ``m(x, y)`` for a :class:`ConditionalBatchNorm`, ``m(x)`` for anything else."""
    return m(x, y) if isinstance(m, ConditionalBatchNorm) else m(x)


class CondSequential(nn.Sequential):
    """``nn.Sequential`` that hands the labels to its :class:`ConditionalBatchNorm` members.

    Parameter names are those of ``nn.Sequential`` (``0.weight``, ...), so unconditional
    checkpoints saved from a plain ``Sequential`` still load.
    """

    def forward(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:  # type: ignore[override]
        for m in self:
            x = apply_norm(m, x, y)
        return x


def sequential_blocks(
    seq: nn.Sequential, prefix: str, starts: tuple = (nn.Conv2d, nn.Conv3d, nn.Linear), drop_last: bool = False
) -> List[Tuple[str, List[str]]]:
    """A discriminator trunk ``seq`` cut into blocks for ``freeze_d``, image side first: a block begins at each
    layer of a type in ``starts`` and takes the norms and activations after it; ``drop_last`` leaves out the
    last layer (a logit layer inside the trunk). Returns (description, parameter names under ``prefix``)."""
    children = list(seq.named_children())
    if drop_last:
        children = children[:-1]
    blocks: List[Tuple[List[str], List[str]]] = []  # (module names, parameter names)
    for i, m in children:
        if isinstance(m, starts) or not blocks:
            blocks.append(([], []))
        blocks[-1][0].append(f"{prefix}.{i} {type(m).__name__}")
        blocks[-1][1].extend(f"{prefix}.{i}.{p}" for p, _ in m.named_parameters())
    return [(" + ".join(mods), params) for mods, params in blocks]


def init_dcgan_weights(module: nn.Module) -> None:
    """DCGAN initialisation (Radford et al. 2015): N(0, 0.02) weights, BN gamma N(1, 0.02).

    Embeddings (conditional-BN gains/biases, label embeddings, projection heads) keep the
    initialisation their own module gave them.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            w = m.parametrizations.weight.original if hasattr(m, "parametrizations") else m.weight
            nn.init.normal_(w, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)) and m.affine:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


# ------------------------------------------------------------------------------------------
# labels


def check_labels(y: Optional[torch.Tensor], num_classes: int, n: int, who: str) -> None:
    """Raise a clear ``ValueError`` unless ``y`` fits a model with ``num_classes`` classes (0 = unconditional)."""
    if num_classes == 0:
        if y is not None:
            raise ValueError(
                f"{who} is unconditional (num_classes=0) but was given class labels; call it without y, "
                "or build a conditional model (model.conditional=true, model.num_classes=K)"
            )
        return
    if y is None:
        raise ValueError(
            f"{who} is class-conditional ({num_classes} classes) and needs labels: "
            f"pass y, a LongTensor [N] of class indices in [0, {num_classes})"
        )
    if not isinstance(y, torch.Tensor) or y.dtype.is_floating_point or y.dtype == torch.bool or y.dim() != 1:
        what = f"{y.dtype} tensor of shape {list(y.shape)}" if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"{who}: labels y must be an integer tensor [N] of class indices, got a {what}")
    if y.shape[0] != n:
        raise ValueError(f"{who}: got {y.shape[0]} labels for a batch of {n}")
    # the value check reads the labels, which tracing (torch.export, ONNX export, compile) cannot do
    if (
        y.device.type == "cpu"
        and n > 0
        and not torch.compiler.is_compiling()
        and (int(y.min()) < 0 or int(y.max()) >= num_classes)
    ):
        raise ValueError(
            f"{who}: labels must lie in [0, {num_classes}), got values in [{int(y.min())}, {int(y.max())}]"
        )


class LabelEmbedding(nn.Module):
    """``g_cond="embed"``: a learnt label embedding joined to the noise, z' = [z, embed(y)] (Mirza & Osindero 2014)."""

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.embed = nn.Embedding(num_classes, dim)  # [K, dim], N(0, 1) like z

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.cat([z, self.embed(y)], dim=1)  # [N, z_dim + dim]


class LabelledGenerator(nn.Module):
    """What every generator family shares about class labels: ``g_cond="cbn"`` hands them to the
    conditional BatchNorm layers, ``g_cond="embed"`` joins a label embedding to z (:class:`LabelEmbedding`).

    A subclass calls :meth:`_setup_labels` in ``__init__`` (before building its layers) and
    :meth:`_latent` at the start of ``forward``; it sets ``who`` (for label errors).
    """

    who = "generator"

    def _setup_labels(self, z_dim: int, num_classes: int, cond: str) -> Tuple[int, int]:
        """Set ``num_classes``, ``cond`` and ``label_embed``; return (classes for conditional BatchNorm
        (0 = plain BatchNorm), the width of the latent the layers see)."""
        if num_classes > 0 and cond not in ("cbn", "embed"):
            raise ModelBuildError(f"model.g_cond: {cond!r} is not allowed; choose one of: cbn, embed")
        self.num_classes = num_classes
        self.cond = cond if num_classes > 0 else ""
        # g_cond=embed: z [N, z_dim] -> [N, 2 * z_dim] = [z, embed(y)]
        self.label_embed = LabelEmbedding(num_classes, z_dim) if self.cond == "embed" else None
        return (num_classes if self.cond == "cbn" else 0), (z_dim * 2 if self.cond == "embed" else z_dim)

    def _latent(self, z: torch.Tensor, y: Optional[torch.Tensor]) -> torch.Tensor:
        """Check the labels and return what the first layer sees: z [N, z_dim], or [z, embed(y)] [N, 2 * z_dim]."""
        check_labels(y, self.num_classes, z.shape[0], self.who)
        return self.label_embed(z, y) if self.label_embed is not None else z


# ------------------------------------------------------------------------------------------
# discriminator heads


class ProjectionHead(nn.Module):
    """The label term of a projection discriminator (Miyato & Koyama 2018): ``sum(embed(y) * h, dim=1)``.

    D's logit is ``linear(h) + ProjectionHead(h, y)``, with ``h [N, F]`` D's last features.
    """

    def __init__(self, features: int, num_classes: int, norm: str = "none"):
        super().__init__()
        embed = nn.Embedding(num_classes, features)  # [K, F]
        nn.init.xavier_uniform_(embed.weight)
        self.embed = maybe_sn(embed, norm)

    def forward(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (self.embed(y) * h).sum(dim=1)  # [N]


class AuxClassifierHead(nn.Module):
    """Auxiliary classifier of AC-GAN (Odena et al. 2017): class logits ``[N, K]`` from D's last features."""

    def __init__(self, features: int, num_classes: int, norm: str = "none"):
        super().__init__()
        self.fc = maybe_sn(nn.Linear(features, num_classes), norm)  # [N, F] -> [N, K]

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.fc(h)  # class logits [N, K]


def label_head(features: int, num_classes: int, d_cond: str, norm: str) -> Optional[nn.Module]:
    """The label-aware part of a discriminator head: None (unconditional), projection or acgan."""
    if num_classes == 0:
        return None
    if d_cond == "projection":
        return ProjectionHead(features, num_classes, norm)
    if d_cond == "acgan":
        return AuxClassifierHead(features, num_classes, norm)
    raise ModelBuildError(f"model.d_cond: {d_cond!r} is not allowed; choose one of: projection, acgan")


class MinibatchStd(nn.Module):
    """Minibatch standard deviation (Karras et al. 2018, ProGAN): one extra feature holding the
    average over features of the per-feature std within a group of samples.

    Groups are contiguous runs of ``g`` samples, ``g`` the largest of ``min(group_size, N)``, ..., 1
    that divides N, so a batch made of [real; fake] halves whose size divides by ``g`` never mixes
    real and fake samples in a group. ``[N, C, H, W] -> [N, C + 1, H, W]``; ``[N, F] -> [N, F + 1]``.
    """

    def __init__(self, group_size: int = 4, eps: float = 1e-8):
        super().__init__()
        self.group_size, self.eps = group_size, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        g = max(1, min(self.group_size, n))
        while n % g:
            g -= 1
        v = x.float().reshape(n // g, g, -1)  # [N/g, g, C*H*W]
        std = (v.var(dim=1, unbiased=False) + self.eps).sqrt()  # [N/g, C*H*W]
        s = std.mean(dim=1).repeat_interleave(g).to(x.dtype)  # [N]
        feat = s.view(n, 1, *([1] * (x.dim() - 2))).expand(n, 1, *x.shape[2:])  # [N, 1, (H, W)]
        return torch.cat([x, feat], dim=1)  # [N, C + 1, (H, W)]


class LabelledDiscriminator(nn.Module):
    """The part every discriminator family shares: an unconditional logit from the features, plus
    the projection term (Miyato & Koyama 2018) or the AC-GAN class logits (Odena et al. 2017).

    A subclass provides ``_features(x) -> h [N, feat]`` and ``head`` (a Linear to one logit) and
    sets ``num_classes``, ``aux`` (AC-GAN), ``label_head`` and ``who`` (for label errors).
    """

    who = "discriminator"

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _logit(self, h: torch.Tensor) -> torch.Tensor:
        return self.head(h).squeeze(1)  # [N]

    def forward(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        if not self.aux:  # acgan D takes (and ignores) labels
            check_labels(y, self.num_classes, x.shape[0], self.who)
        h = self._features(x)  # [N, feat]
        out = self._logit(h)  # logits [N]
        if self.num_classes > 0 and not self.aux:
            out = out + self.label_head(h, y)  # + projection sum(embed(y) * h) [N]
        return out  # logits [N]

    def forward_aux(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """AC-GAN: (real/fake logits [N], class logits [N, K]) in one pass."""
        if not self.aux:
            raise ValueError("forward_aux needs an AC-GAN discriminator (model.conditional=true, model.d_cond=acgan)")
        h = self._features(x)  # [N, feat]
        return self._logit(h), self.label_head(h)  # [N], [N, K]
