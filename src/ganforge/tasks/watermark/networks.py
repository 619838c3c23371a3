"""Networks of the ``watermark`` task: a message encoder, a message decoder and a discriminator
(the HiDDeN / RivaGAN family, at a fixed internal resolution as TrustMark does).

All three work on **luminance** at the internal resolution ``res`` (a multiple of 16, 32 by default),
in [-1, 1]. The encoder sees the host image (resized to ``res``) and the message and returns a
residual at ``res``; the caller resizes that residual to the full image, scales it to the wanted
strength and adds it to every colour channel (so chroma is untouched). The decoder reads an image
resized to ``res`` and returns one logit per bit. Resizing is the caller's (:mod:`ganforge.tasks.watermark`).
"""

from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ganforge.nn.layers import sequential_blocks
from ganforge.tasks.watermark import attacks as A


def _block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2, inplace=True))


class WatermarkEncoder(nn.Module):
    """(luma ``[N, 1, res, res]``, bits ``[N, n_bits]`` in {0, 1}, optionally the decoder's logits of the
    unmarked host ``[N, n_bits]``) -> residual ``[N, 1, res, res]``.

    Spread spectrum with learned, image-adaptive shaping: each bit owns a learned pattern
    (``patterns``, ``[n_bits, res, res]``); the message pattern ``m = sum_i (2 b_i - 1) P_i`` goes with
    the image through a small convolutional network (at 16 x 16) that returns a smooth gain and an additive
    correction, so the residual is ``m * exp(gain) + correction`` (at initialisation exactly ``m``).
    Bits enter linearly, which makes the code quick to learn; the network learns where the image
    hides the mark and how to pre-compensate the attacks. The residual is unnormalised: its strength is
    set by the caller (:func:`ganforge.tasks.watermark.networks.normalise`)."""

    def __init__(self, n_bits: int = 32, res: int = 32, width: int = 16):
        super().__init__()
        if res % 16:
            raise ValueError(f"res must be a multiple of 16, got {res}")
        self.n_bits, self.res, self.width = n_bits, res, width
        self.patterns = nn.Parameter(torch.randn(n_bits, res, res) / n_bits**0.5)  # [n_bits, res, res]
        self.informed = nn.Parameter(torch.tensor([1.0, 0.0, 0.0]))  # weights of sign, host logit, their product
        w = width
        self.net_res = min(16, res)  # the shaping network works at 16 x 16 (smooth gains are all it needs)
        self.net = nn.Sequential(
            _block(2, w),  # [N, w, 16, 16]
            _block(w, w),  # [N, w, 16, 16]
            _block(w, w),  # [N, w, 16, 16]
            nn.Conv2d(w, 2, 3, 1, 1),  # [N, 2, 16, 16]: log-gain, correction
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def coefficients(self, bits: torch.Tensor, host: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Each pattern's weight ``[N, n_bits]``: the sign of its bit, corrected for what the decoder
        already reads in the unmarked host (``host``: its logits ``[N, n_bits]``; improved spread
        spectrum, Malvar & Florencio 2003: a bit the host votes against gets more weight)."""
        s = bits.float() * 2 - 1  # [N, n_bits] in {-1, 1}
        if host is None:
            return s
        c = torch.tanh(host.float())
        return self.informed[0] * s + self.informed[1] * c + self.informed[2] * s * c  # [N, n_bits]

    def forward(self, y: torch.Tensor, bits: torch.Tensor, host: Optional[torch.Tensor] = None) -> torch.Tensor:
        m = torch.einsum("nb,bhw->nhw", self.coefficients(bits, host), self.patterns).unsqueeze(1)  # [N, 1, res, res]
        small = F.adaptive_avg_pool2d(torch.cat([y, m], 1), self.net_res)  # [N, 2, 16, 16]
        out = F.interpolate(
            self.net(small), size=(self.res, self.res), mode="bilinear", align_corners=False
        )  # [N, 2, res, res]
        return m * torch.exp(out[:, 0:1].clamp(-4, 4)) + out[:, 1:2]  # [N, 1, res, res]


class WatermarkDecoder(nn.Module):
    """luma ``[N, 1, res, res]`` -> bit logits ``[N, n_bits]`` (positive: bit 1).

    Strided convolutions down to 4 x 4, then a linear layer over the whole map (not a global
    pool: where a bit lives is part of the code)."""

    def __init__(self, n_bits: int = 32, res: int = 32, width: int = 16):
        super().__init__()
        if res % 16:
            raise ValueError(f"res must be a multiple of 16, got {res}")
        self.n_bits, self.res = n_bits, res
        w = width
        layers, c, side = [_block(1, w // 2, 2)], w // 2, res // 2  # [N, w/2, res/2, res/2]
        while side > 4:  # stride-2 blocks down to 4 x 4: [N, w, res/4, res/4], ..., [N, 2w, 4, 4]
            cout = w if side > 8 else 2 * w
            layers.append(_block(c, cout, 2))
            c, side = cout, side // 2
        self.net = nn.Sequential(*layers)
        self.head = nn.Linear(c * 16, n_bits)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.head(self.net(y).flatten(1))  # [N, n_bits]


class WatermarkDiscriminator(nn.Module):
    """luma ``[N, 1, res, res]`` -> one logit each ``[N]`` (marked vs clean), spectral norm, no BatchNorm."""

    def __init__(self, res: int = 32, width: int = 16):
        super().__init__()
        sn = nn.utils.parametrizations.spectral_norm
        w = width
        self.net = nn.Sequential(
            sn(nn.Conv2d(1, w, 3, 2, 1)),
            nn.LeakyReLU(0.2),  # [N, w, res/2, res/2]
            sn(nn.Conv2d(w, w, 3, 2, 1)),
            nn.LeakyReLU(0.2),  # [N, w, res/4, res/4]
            sn(nn.Conv2d(w, 2 * w, 3, 2, 1)),
            nn.LeakyReLU(0.2),  # [N, 2w, res/8, res/8]
            sn(nn.Conv2d(2 * w, 2 * w, 3, 2, 1)),
            nn.LeakyReLU(0.2),  # [N, 2w, res/16, res/16]
        )
        self.head = sn(nn.Linear(2 * w, 1))

    def freeze_blocks(self) -> List[Tuple[str, List[str]]]:
        """Blocks image side first (what ``--freeze-d K`` freezes): each conv with the norm and activation after it."""
        return sequential_blocks(self.net, "net")

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.head(self.net(y).mean((2, 3))).squeeze(1)  # [N]


def target_rms(psnr: float) -> float:
    """Root mean square of a residual in [-1, 1] units whose PSNR (over 8-bit levels) is ``psnr``."""
    return 2.0 * 10 ** (-psnr / 20)


def normalise(r: torch.Tensor, rms: float) -> torch.Tensor:
    """Scale each residual of ``r`` [N, 1, H, W] to root mean square ``rms``."""
    cur = r.pow(2).mean((1, 2, 3), keepdim=True).add(1e-12).sqrt()
    return r * (rms / cur)


def psnr_of(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR (dB) of two float batches in [-1, 1], over 8-bit levels."""
    mse = float(((a - b) * 127.5).pow(2).mean())
    return 10 * math.log10(255.0**2 / max(mse, 1e-10))


class WatermarkModel(nn.Module):
    """The encoder and decoder of a run, and what marking and reading an image of any size means.

    ``forward(y, bits)``: the residual at the internal resolution, luma ``[N, 1, res, res]`` -> ``[N, 1, res, res]``
    (unnormalised; :meth:`residual` resizes and scales it)."""

    def __init__(self, encoder: WatermarkEncoder, decoder: WatermarkDecoder, psnr: float):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        self.res, self.n_bits, self.psnr = encoder.res, encoder.n_bits, float(psnr)

    def forward(self, y: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
        return self.encoder(y, bits, self.decoder(y))  # the decoder's reading of the host informs the encoder

    def residual(self, x: torch.Tensor, bits: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
        """float images ``[N, C, H, W]`` in [-1, 1] -> the luma residual at full size ``[N, 1, H, W]``."""
        h, w = x.shape[2:]
        y = A.resize_to(A.to_luma(x), (self.res, self.res))  # [N, 1, res, res]
        r = self(y, bits)  # [N, 1, res, res]
        return normalise(A.resize_to(r, (h, w)), target_rms(self.psnr) * strength)  # [N, 1, H, W]

    def embed(self, x: torch.Tensor, bits: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
        """float images ``[N, C, H, W]`` -> marked float images (clamped to [-1, 1], not rounded)."""
        return (x + self.residual(x, bits, strength)).clamp(-1, 1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """float images ``[N, C, H, W]`` of any size -> bit logits ``[N, n_bits]``."""
        return self.decoder(A.resize_to(A.to_luma(x), (self.res, self.res)))
