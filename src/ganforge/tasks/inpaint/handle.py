"""The inpaint task: handle."""

from __future__ import annotations

from typing import List, Tuple, Union

import numpy as np
import torch

from ganforge.imaging import to_uint8
from ganforge.tasks.base import ExportNet, Handle
from ganforge.tasks.inpaint.networks import InpaintSizeError


class InpainterHandle(Handle):
    """A trained completion network with what is needed to use it on uint8 images."""

    task = "inpaint"

    @property
    def multiple(self) -> int:
        """Height and width must be multiples of this (``2 ** levels``)."""
        return 2**self.module.levels

    @torch.no_grad()
    def complete(
        self, image: Union[torch.Tensor, np.ndarray], mask: Union[torch.Tensor, np.ndarray], batch_size: int = 256
    ) -> torch.Tensor:
        """Fill the holes: ``image`` uint8 ``[N, C, H, W]``, ``mask`` ``[N, 1, H, W]`` (or ``[1, 1, H, W]`` for all
        images; bool or float, > 0.5 = missing) -> uint8 ``[N, C, H, W]`` with the known pixels unchanged."""
        image = torch.as_tensor(image)
        mask = torch.as_tensor(mask)
        c = self.img_shape[0]
        if image.dtype != torch.uint8 or image.dim() != 4 or image.shape[1] != c:
            raise ValueError(f"complete: expected uint8 images [N, {c}, H, W], got {image.dtype} {tuple(image.shape)}")
        n, _, h, w = image.shape
        if mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[2:] != image.shape[2:] or mask.shape[0] not in (1, n):
            raise ValueError(
                f"complete: expected a mask [N, 1, H, W] or [1, 1, H, W] for images {tuple(image.shape)}, "
                f"got {tuple(mask.shape)}"
            )
        k = self.multiple
        if h % k or w % k:
            raise InpaintSizeError(
                f"complete: this network needs height and width that are multiples of {k}; got {h}x{w}"
            )
        hole = (mask.float() > 0.5).expand(n, 1, h, w)  # [N, 1, H, W] bool
        out = torch.empty_like(image)
        for i in range(0, n, batch_size):
            img = image[i : i + batch_size]
            hb = hole[i : i + batch_size]
            x = img.to(self.device).float().div(127.5).sub(1.0)  # [B, C, H, W] in [-1, 1]
            m = hb.to(self.device).float()
            pred = to_uint8(self.module(x * (1 - m), m)).cpu()  # [B, C, H, W] uint8
            out[i : i + batch_size] = torch.where(hb, pred, img)  # known pixels copied, bit for bit
        return out

    def export_inputs(self, batch: int = 1) -> Tuple[torch.Tensor, ...]:
        c, h, w = self.img_shape
        mask = torch.zeros(batch, 1, h, w, device=self.device)
        mask[..., h // 4 : h // 2, w // 4 : w // 2] = 1.0
        return (torch.zeros(batch, c, h, w, device=self.device), mask)

    def export_networks(self) -> List[ExportNet]:
        """The completion network, ``(image * (1 - mask), mask) -> image``; dynamic batch, height and width
        (multiples of :attr:`multiple`)."""
        values = {
            "masked_image": "float32 in [-1, 1], the image with its holes set to 0 (image * (1 - mask))",
            "mask": "float32, 1 = missing, 0 = known",
            "completed": "float32 in [-1, 1]; keep the known pixels of the input and take the holes from here",
        }
        return [
            ExportNet(
                "inpainter",
                self.module,
                self.export_inputs(2),
                ("masked_image", "mask"),
                ("completed",),
                spatial=("masked_image", "mask"),
                multiple=self.multiple,
                values=values,
            )
        ]

    def __repr__(self) -> str:
        return (
            f"InpainterHandle({self.config.inpaint.arch}, {'x'.join(map(str, self.img_shape))}, step {self.step}, "
            f"{self.checkpoint_path})"
        )
