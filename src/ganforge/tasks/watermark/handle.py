"""The watermark task: handle."""

from __future__ import annotations

from typing import List, Tuple

import torch
import torch.nn.functional as F

from ganforge import runs
from ganforge.tasks.base import ExportNet, Handle
from ganforge.tasks.watermark import attacks as A
from ganforge.tasks.watermark.networks import WatermarkModel, normalise, target_rms


class WatermarkHandle(Handle):
    """A trained watermark: ``module`` is a :class:`WatermarkModel` (encoder and decoder); ``bits`` the
    message length; ``res`` the internal resolution. Images are uint8 ``[N, C, H, W]`` (C = 1 or 3)."""

    task = "watermark"

    def __init__(self, module: WatermarkModel, checkpoint: runs.Checkpoint, config):
        super().__init__(module, checkpoint, config)
        self.bits: int = module.n_bits
        self.res: int = module.res
        self.psnr: float = module.psnr
        self.crop_margin: float = float(config.watermark.crop_margin)  # see apps.watermark.best_reading

    @staticmethod
    def _check(images) -> torch.Tensor:
        images = torch.as_tensor(images)
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ValueError(
                f"expected uint8 images [N, C, H, W] with C 1 or 3, got {images.dtype} {tuple(images.shape)}"
            )
        return images

    def _luma(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``[N, C, H, W]`` -> luma in [-1, 1] ``[N, 1, H', W']``: at full size, or, for images of 8 res
        and more, box-averaged by a whole factor down to 4-8 res, a band of rows at a time (no full-size float copy)."""
        h, w = images.shape[2:]
        k = min(h, w) // (4 * self.res)
        if k < 2:
            x = images.to(self.device).float().div(127.5).sub(1.0)
        else:
            band = k * 16
            x = (
                torch.cat(
                    [
                        F.avg_pool2d(images[:, :, i : i + band].to(self.device).float(), k, ceil_mode=True)
                        for i in range(0, h, band)
                    ],
                    2,
                )
                .div(127.5)
                .sub(1.0)
            )  # [N, C, ~H/k, ~W/k]
        return A.to_luma(x)

    def _luma_small(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``[N, C, H, W]`` -> luma at the internal resolution ``[N, 1, res, res]`` in [-1, 1]."""
        return A.resize_to(self._luma(images), (self.res, self.res))

    @torch.no_grad()
    def embed(self, images, bits, strength: float = 1.0) -> torch.Tensor:
        """uint8 ``[N, C, H, W]`` and bits ``[N, n_bits]`` (or ``[n_bits]`` for all) -> marked uint8 images.
        The residual, in grey levels and rounded, is added to every channel in 16-bit integers (the same
        result as adding in floats and rounding, with a fraction of the memory traffic for large images)."""
        images = self._check(images)
        h, w = images.shape[2:]
        b = torch.as_tensor(bits, dtype=torch.float32, device=self.device)
        b = b.expand(images.shape[0], -1) if b.dim() == 1 else b
        r = self.module(self._luma_small(images), b)  # [N, 1, res, res]
        r = normalise(A.resize_to(r, (h, w)), target_rms(self.psnr) * strength)  # [N, 1, H, W]
        levels = r.mul_(127.5).round_().to(torch.int16).cpu()
        return (images.to(torch.int16) + levels).clamp_(0, 255).to(torch.uint8)

    @torch.no_grad()
    def logits(self, images) -> torch.Tensor:
        """uint8 ``[N, C, H, W]`` -> bit logits ``[N, n_bits]`` (positive: 1)."""
        return self.module.decoder(self._luma_small(self._check(images))).float().cpu()

    @torch.no_grad()
    def logits_search(self, images, cuts=A.SEARCH_CUTS) -> torch.Tensor:
        """uint8 ``[N, C, H, W]`` -> bit logits ``[N, len(cuts), n_bits]``, one reading per hypothesis: the image
        as it is (cut 0), and the image as the centre of a larger one that lost ``cut`` of each side and was
        resized back (:func:`~ganforge.tasks.watermark.attacks.reframe`: shrunk to ``1 - cut`` of its size, the border
        filled with its edge pixels), so a centred crop that was resized back is read where the mark was put. The
        hypotheses are made on the image's own pixel grid (box-averaged for large images), where the crop was
        cut, and then resized to the internal resolution: sharper than reframing at the internal resolution."""
        y = self._luma(self._check(images))  # [N, 1, H', W']
        out = [self.module.decoder(A.resize_to(A.reframe(y, cut), (self.res, self.res))) for cut in cuts]
        return torch.stack(out, 1).float().cpu()  # [N, K, n_bits]

    def export_inputs(self, batch: int = 1) -> Tuple[torch.Tensor, ...]:
        return (
            torch.zeros(batch, 1, self.res, self.res, device=self.device),
            torch.zeros(batch, self.bits, device=self.device),
        )

    def export_networks(self) -> List[ExportNet]:
        """The encoder (with the decoder's reading of the host inside) and the decoder, at the internal
        resolution; ``info`` says what a deployer does around them (resizing, scaling, adding)."""
        y, bits = self.export_inputs(2)
        info = {
            "n_bits": self.bits,
            "res": self.res,
            "psnr": self.psnr,
            "target_rms": target_rms(self.psnr),
            "luma": (
                "BT.601 (0.299 R + 0.587 G + 0.114 B) of the image in [-1, 1], "
                "resized (bilinear, antialiased) to res x res"
            ),
            "embed": (
                "resize the residual (bilinear) to the image size, "
                "scale it to root mean square target_rms * strength, "
                "add it to every channel, clamp to [-1, 1]"
            ),
            "code": "ganforge.tasks.watermark.app.MessageCode (BCH from bchlib, XOR mask)",
        }
        return [
            ExportNet(
                "encoder",
                self.module,
                (y, bits),
                ("luma", "message"),
                ("residual",),
                values={
                    "luma": f"float32 [N, 1, {self.res}, {self.res}] in [-1, 1]",
                    "message": "float32 bits, 0 or 1",
                    "residual": "float32, unnormalised",
                },
                info=info,
            ),
            ExportNet(
                "decoder",
                self.module.decoder,
                (y,),
                ("luma",),
                ("logits",),
                output_shapes={"logits": ["batch", self.bits]},
                values={
                    "luma": f"float32 [N, 1, {self.res}, {self.res}] in [-1, 1]",
                    "logits": "float32 logits per bit, > 0 means 1",
                },
                info=info,
            ),
        ]

    def output_shape(self, batch: int = 1) -> Tuple[int, ...]:
        return (batch, 1, self.res, self.res)

    def __repr__(self) -> str:
        return (
            f"WatermarkHandle({self.bits} bits at {self.res}x{self.res}, {self.psnr:g} dB, "
            f"step {self.step}, {self.checkpoint_path})"
        )
