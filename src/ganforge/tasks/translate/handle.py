"""The translate task: handle."""

from __future__ import annotations

from typing import List, Optional, Tuple, Union

import numpy as np
import torch

from ganforge import runs
from ganforge.errors import TranslateError
from ganforge.imaging import to_uint8
from ganforge.tasks.base import ExportNet, Handle
from ganforge.tasks.translate.config import DIRECTIONS
from ganforge.tasks.translate.networks import Translator, run_padded


class TranslatorHandle(Handle):
    """A trained translator: ``module`` (A -> B) and, for CycleGAN, ``module_b2a`` (B -> A), with what is
    needed to use them on uint8 images of any size."""

    task = "translate"

    def __init__(
        self, module: Translator, checkpoint: runs.Checkpoint, config, module_b2a: Optional[Translator] = None
    ):
        super().__init__(module, checkpoint, config)
        self.module_b2a = module_b2a.eval() if module_b2a is not None else None
        self.shape_b: Tuple[int, int, int] = tuple(int(s) for s in checkpoint.config["shape_b"])
        self.method = config.translate.method
        self.tile = int(config.translate.tile)  # the default tile side (translate.tile when it was trained)

    @property
    def directions(self) -> Tuple[str, ...]:
        """The directions this model was trained for: ``("a2b",)`` (pix2pix) or ``("a2b", "b2a")`` (CycleGAN)."""
        return DIRECTIONS if self.module_b2a is not None else ("a2b",)

    def network(self, direction: str = "a2b") -> Translator:
        """The generator of ``direction``, or a :class:`TranslateError` for one the model was not trained for."""
        if direction not in DIRECTIONS:
            raise TranslateError(f"direction {direction!r}: choose a2b or b2a")
        if direction not in self.directions:
            raise TranslateError(
                f"this model ({self.method}) was trained for a2b only, not {direction}: pix2pix learns "
                f"one direction; train translate.method=cyclegan for both, or a pix2pix run with the "
                f"domains swapped"
            )
        return self.module if direction == "a2b" else self.module_b2a

    def channels(self, direction: str = "a2b") -> Tuple[int, int]:
        """(input channels, output channels) of ``direction``."""
        ca, cb = self.img_shape[0], self.shape_b[0]
        return (ca, cb) if direction == "a2b" else (cb, ca)

    @torch.no_grad()
    def translate(
        self,
        images: Union[torch.Tensor, np.ndarray],
        direction: str = "a2b",
        tile: Optional[int] = None,
        overlap: Optional[int] = None,
        batch_size: int = 16,
    ) -> torch.Tensor:
        """uint8 ``[N, C_in, H, W]`` (any H, W) -> uint8 ``[N, C_out, H, W]``.

        Images are reflect-padded to the network's multiple; images with a side larger than ``tile`` (default:
        the model's ``translate.tile``, 512 unless set when training) are translated in overlapping ``tile`` x
        ``tile`` tiles blended with linear ramps over ``overlap`` pixels (default ``min(32, tile // 4)``); the
        networks' instance normalisation then sees each tile's statistics, as it saw each crop's in training."""
        net = self.network(direction)
        tile = self.tile if tile is None else tile
        overlap = min(32, tile // 4) if overlap is None else overlap
        images = torch.as_tensor(images)
        c_in, _ = self.channels(direction)
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise TranslateError(
                f"translate: expected uint8 images [N, {c_in}, H, W], got {images.dtype} {tuple(images.shape)}"
            )
        if images.shape[1] != c_in:
            raise TranslateError(
                f"wrong channel count: the model's {direction} direction takes {c_in}-channel "
                f"({'grayscale' if c_in == 1 else 'colour'}) images, got {images.shape[1]} channels"
            )
        if tile < 2 * net.multiple or overlap < 0 or overlap >= tile // 2:
            raise TranslateError(
                f"tile={tile}, overlap={overlap}: expected tile >= {2 * net.multiple} and 0 <= overlap < tile / 2"
            )
        out = []
        for i in range(0, images.shape[0], batch_size):
            x = images[i : i + batch_size].to(self.device).float().div(127.5).sub(1.0)  # [B, C_in, H, W]
            out.append(to_uint8(_tiled(net, x, tile - tile % net.multiple, overlap)).cpu())
        return torch.cat(out)

    def export_inputs(self, batch: int = 1) -> Tuple[torch.Tensor, ...]:
        c, h, w = self.img_shape
        return (torch.zeros(batch, c, h, w, device=self.device),)

    def output_shape(self, batch: int = 1) -> Tuple[int, ...]:
        return (batch, self.shape_b[0], *self.img_shape[1:])

    def export_networks(self) -> List[ExportNet]:
        """One network per direction (``a2b``, and ``b2a`` for CycleGAN), ``image -> translated``; dynamic
        batch, height and width (multiples of the network's :attr:`Translator.multiple`)."""
        _, h, w = self.img_shape
        out = []
        for d in self.directions:
            net = self.network(d)
            c_in, c_out = self.channels(d)
            x = torch.zeros(2, c_in, h, w, device=self.device)
            out.append(
                ExportNet(
                    d,
                    net,
                    (x,),
                    ("image",),
                    ("translated",),
                    spatial=("image",),
                    multiple=net.multiple,
                    values={
                        "image": f"float32 in [-1, 1], {c_in} channels",
                        "translated": f"float32 in [-1, 1], {c_out} channels",
                    },
                )
            )
        return out

    def __repr__(self) -> str:
        return (
            f"TranslatorHandle({self.method}, {'/'.join(self.directions)}, A {'x'.join(map(str, self.img_shape))}, "
            f"B {'x'.join(map(str, self.shape_b))}, step {self.step}, {self.checkpoint_path})"
        )


def _tiled(net: Translator, x: torch.Tensor, tile: int, overlap: int) -> torch.Tensor:
    """``net`` over ``x`` [B, C, H, W] in overlapping tiles (one pass when both sides fit in ``tile``)."""
    h, w = x.shape[2:]
    if h <= tile and w <= tile:
        return run_padded(net, x)

    def starts(n: int) -> List[int]:
        if n <= tile:
            return [0]
        s = list(range(0, n - tile, tile - overlap))
        return s + [n - tile]

    def ramp(n: int) -> torch.Tensor:
        t = torch.arange(n, dtype=torch.float32)
        return torch.minimum(t + 1, n - t).div(max(overlap, 1)).clamp(max=1.0)

    out = None
    weight = torch.zeros(1, 1, h, w, device=x.device)
    for y in starts(h):
        for x0 in starts(w):
            piece = x[..., y : y + tile, x0 : x0 + tile]
            ph, pw = piece.shape[2:]
            o = run_padded(net, piece)  # [B, C_out, ph, pw]
            wgt = (ramp(ph)[:, None] * ramp(pw)[None, :]).to(x.device)[None, None]
            if out is None:
                out = torch.zeros(x.shape[0], o.shape[1], h, w, device=x.device)
            out[..., y : y + ph, x0 : x0 + pw] += o * wgt
            weight[..., y : y + ph, x0 : x0 + pw] += wgt
    return out / weight
