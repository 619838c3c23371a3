"""Video GAN networks of the MoCoGAN family (Tulyakov et al. 2018): clips of T frames.

A clip is one **content code** ``z_c`` [N, content_dim], fixed for the clip, and T **motion codes** that a
GRU cell makes from T draws of noise ``eps`` [N, T, motion_dim]. :class:`VideoGenerator` turns them into
frames (``motion``: ``warp`` sprites shifted per frame, or MoCoGAN's ``free`` per-frame generator).
:class:`ImageDiscriminator` judges single frames [N, C, H, W] (appearance), :class:`VideoDiscriminator`
whole clips [N, T, C, H, W] with 3-D convolutions (motion, and whether the content stays the same).
"""

from __future__ import annotations

from typing import List, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ganforge.config import Config
from ganforge.errors import ConfigError
from ganforge.nn.layers import (
    ModelBuildError,
    ModelSizeError,
    init_dcgan_weights,
    nearest_size,
    plan_stages,
    sequential_blocks,
)

MOTIONS = ("warp", "free")


def _widths(width: int, k: int) -> List[int]:
    """Channels of the k+1 feature maps of a DCGAN stack, widest first: width * 2^k ... width (capped at 8x)."""
    return [width * min(2 ** (k - i), 8) for i in range(k + 1)]


class ImageGenerator(nn.Module):
    """DCGAN generator: a vector [N, in_dim] -> ``out_channels`` maps [N, out_channels, H, W] in [-1, 1]."""

    def __init__(self, in_dim: int, out_channels: int, size: Tuple[int, int], width: int = 32):
        super().__init__()
        k, bh, bw = plan_stages(size[0], size[1], "the video generator")
        ch = _widths(width, k)
        self.base = (ch[0], bh, bw)
        self.fc = nn.Sequential(
            nn.Linear(in_dim, ch[0] * bh * bw, bias=False), nn.BatchNorm1d(ch[0] * bh * bw), nn.ReLU(True)
        )
        ups: List[nn.Module] = []
        for i in range(k - 1):
            ups += [nn.ConvTranspose2d(ch[i], ch[i + 1], 4, 2, 1, bias=False), nn.BatchNorm2d(ch[i + 1]), nn.ReLU(True)]
        ups += [nn.ConvTranspose2d(ch[k - 1], out_channels, 4, 2, 1), nn.Tanh()]
        self.ups = nn.Sequential(*ups)
        init_dcgan_weights(self)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        h = self.fc(v).view(v.shape[0], *self.base)  # [N, 8w, bh, bw]
        return self.ups(h)  # [N, out_channels, H, W]


class VideoGenerator(nn.Module):
    """Content code + recurrent motion codes -> clips [N, T, C, H, W] in [-1, 1].

    ``warp``: the content code alone draws ``layers`` sprites (a DCGAN generator, once per clip) and each
    motion code gives one shift per sprite; a frame is the shifted sprites combined by a per-pixel maximum
    (as Moving MNIST lays digits over each other), so what a clip shows cannot change between frames, only
    where. Training shifts by fractions of a pixel (smooth gradients); with ``snap`` sampling rounds them to
    whole pixels. ``sprite`` = S > 0 draws S x S sprites and bounds the shifts so a sprite stays whole
    inside the frame. ``free``: a DCGAN generator of ``[z_c, h_t]`` per frame (T passes per clip).

    ``forward(z_content [N, content_dim], eps [N, T, motion_dim])``; T is whatever ``eps`` holds, so a
    generator trained on 16 frames can also roll out longer clips.
    """

    def __init__(
        self,
        img_shape: Tuple[int, int, int],
        content_dim: int = 32,
        motion_dim: int = 8,
        hidden_dim: int = 32,
        width: int = 32,
        motion: str = "warp",
        layers: int = 1,
        snap: bool = False,
        centre: bool = False,
        sprite: int = 0,
    ):
        super().__init__()
        if motion not in MOTIONS:
            raise ModelBuildError(f"motion={motion!r}: expected one of {', '.join(MOTIONS)}")
        if layers < 1:
            raise ModelBuildError(f"layers={layers}: expected at least 1 sprite layer")
        c, h, w = img_shape
        if sprite < 0 or sprite > min(h, w):
            raise ModelBuildError(
                f"sprite={sprite}: expected 0 (the frame size) up to the frame's shorter side {min(h, w)}"
            )
        if sprite and sprite < min(h, w):
            try:
                plan_stages(sprite, sprite)
            except ModelSizeError:
                raise ModelBuildError(
                    f"sprite={sprite}: a sprite side must be b * 2^k with k >= 2 and 3 <= b <= 16, "
                    f"such as {nearest_size(sprite)}"
                ) from None
        self.img_shape, self.motion, self.layers, self.snap, self.centre = (c, h, w), motion, layers, snap, centre
        self.sprite = sprite
        self.content_dim, self.motion_dim, self.hidden_dim = content_dim, motion_dim, hidden_dim
        self.rnn = nn.GRUCell(motion_dim, hidden_dim)
        if motion == "warp":
            self.sprites = ImageGenerator(content_dim, c * layers, (sprite, sprite) if sprite else (h, w), width)
            self.shift = nn.Linear(hidden_dim, 2 * layers)  # (dx, dy) per layer, through tanh: in canvas half-widths
            nn.init.normal_(self.shift.weight, 0.0, 0.02)
            nn.init.zeros_(self.shift.bias)
        else:
            self.frames = ImageGenerator(content_dim + hidden_dim, c, (h, w), width)

    def motion_codes(self, eps: torch.Tensor) -> torch.Tensor:
        """eps [N, T, motion_dim] -> motion codes h [N, T, hidden_dim] (GRU from h_0 = 0)."""
        h = eps.new_zeros(eps.shape[0], self.hidden_dim)
        out = []
        for t in range(eps.shape[1]):
            h = self.rnn(eps[:, t], h)  # [N, hidden]
            out.append(h)
        return torch.stack(out, 1)  # [N, T, hidden]

    def forward(self, z_content: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Clips [N, T, C, H, W] in [-1, 1]; ``warp`` with ``snap`` shifts by whole pixels in eval mode."""
        return self._render(z_content, eps, (self.snap and not self.training,))[0]

    def two_renders(self, z_content: torch.Tensor, eps: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(sub-pixel clips, whole-pixel clips) of the same sprites and motion, each [N, T, C, H, W]: what
        training with ``snap`` uses (the video discriminator judges the first, whose shifts have smooth
        gradients; the image discriminator the second, the crisp frames sampling shows). ``free``: twice the same."""
        if self.motion == "free":
            x = self(z_content, eps)
            return x, x
        smooth, whole = self._render(z_content, eps, (False, True))
        return smooth, whole

    def _render(self, z_content: torch.Tensor, eps: torch.Tensor, whole: Tuple[bool, ...]) -> List[torch.Tensor]:
        """The clips of the codes, once per entry of ``whole`` (True: shifts rounded to whole pixels)."""
        n, t = eps.shape[:2]
        c, hh, ww = self.img_shape
        m = self.motion_codes(eps)  # [N, T, hidden]
        if self.motion == "free":
            v = torch.cat([z_content[:, None].expand(n, t, -1), m], 2).reshape(n * t, -1)  # [N*T, content+hidden]
            return [self.frames(v).view(n, t, c, hh, ww)] * len(whole)  # [N, T, C, H, W]
        k, s = self.layers, self.sprite
        sprites = self.sprites(z_content) + 1.0  # [N, K*C, S, S] (or [N, K*C, H, W]) in [0, 2] (0 = black)
        reach = d_reach = None
        if s:  # paste the S x S sprites in the middle of the frame; shifts at most `reach` pixels each way
            top, left = (hh - s) // 2, (ww - s) // 2
            sprites = F.pad(sprites, (left, ww - s - left, top, hh - s - top))  # [N, K*C, H, W]
            reach = sprites.new_tensor([(ww - s) // 2, (hh - s) // 2])  # whole pixels, (x, y)
            d_reach = reach / sprites.new_tensor([ww / 2, hh / 2])  # the same in half-canvas units
        sprites = (
            sprites.view(n, 1, k, c, hh, ww).expand(n, t, k, c, hh, ww).reshape(n * t * k, c, hh, ww)
        )  # [N*T*K, C, H, W]
        d = torch.tanh(self.shift(m)).view(n * t * k, 2)  # [N*T*K, (dx, dy)] in half-canvas units
        if d_reach is not None:
            d = d * d_reach  # |shift| < reach pixels: the sprite stays whole inside the frame (rounding too)
        if self.centre:  # move each sprite's centre of mass to the canvas centre first: the shift is its position
            mass = sprites.sum((1, 2, 3)).clamp_min(1e-6)  # [N*T*K]
            gy = (torch.arange(hh, device=d.device, dtype=d.dtype) + 0.5) / (hh / 2) - 1  # pixel centres in [-1, 1]
            gx = (torch.arange(ww, device=d.device, dtype=d.dtype) + 0.5) / (ww / 2) - 1
            cy = (sprites.sum((1, 3)) * gy).sum(1) / mass
            cx = (sprites.sum((1, 2)) * gx).sum(1) / mass
            d = d - torch.stack([cx, cy], 1)
        px = d.new_tensor([ww / 2, hh / 2])  # pixels per half-canvas unit, (x, y)
        out = []
        for rounded in whole:  # whole-pixel shifts give exact copies of the sprites (no gradient to the shifts)
            dd = torch.round(d * px) / px if rounded else d
            theta = torch.zeros(n * t * k, 2, 3, device=eps.device, dtype=d.dtype)
            theta[:, 0, 0] = 1.0
            theta[:, 1, 1] = 1.0
            theta[:, :, 2] = -dd  # output pixel p samples the sprite at p - d: the sprite moves by +d
            grid = F.affine_grid(theta, [n * t * k, c, hh, ww], align_corners=False)  # [N*T*K, H, W, 2]
            moved = F.grid_sample(sprites, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            out.append(moved.view(n, t, k, c, hh, ww).amax(2) - 1.0)  # [N, T, C, H, W] in [-1, 1]
        return out


class ImageDiscriminator(nn.Module):
    """DCGAN discriminator on single frames: [N, C, H, W] -> logits [N]."""

    def __init__(self, img_shape: Tuple[int, int, int], width: int = 32):
        super().__init__()
        c, h, w = img_shape
        k, bh, bw = plan_stages(h, w, "the image discriminator")
        ch = _widths(width, k)[::-1]  # narrowest first
        layers: List[nn.Module] = [nn.Conv2d(c, ch[0], 4, 2, 1), nn.LeakyReLU(0.2, True)]
        for i in range(k - 1):
            layers += [
                nn.Conv2d(ch[i], ch[i + 1], 4, 2, 1, bias=False),
                nn.BatchNorm2d(ch[i + 1]),
                nn.LeakyReLU(0.2, True),
            ]
        self.convs = nn.Sequential(*layers)
        self.head = nn.Linear(ch[k - 1] * bh * bw, 1)
        init_dcgan_weights(self)

    def freeze_blocks(self) -> List[Tuple[str, List[str]]]:
        """Blocks image side first (what ``--freeze-d K`` freezes): each conv with the norm and activation after it."""
        return sequential_blocks(self.convs, "convs")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.convs(x)  # [N, width * 2^(k-1), bh, bw]
        return self.head(h.flatten(1)).squeeze(1)  # [N]


class VideoDiscriminator(nn.Module):
    """3-D convolutional discriminator on clips: [N, T, C, H, W] -> logits [N].

    The frames are first averaged over ``pool`` x ``pool`` pixels (motion and whether the content stays
    the same show at a coarser scale; the image discriminator judges the detail), then each stage halves
    the height and width and, while T allows (T >= 4 before the stage), the time axis too; a final
    linear layer sees what is left of the whole clip."""

    def __init__(self, img_shape: Tuple[int, int, int], frames: int, width: int = 32, pool: int = 1):
        super().__init__()
        c, h, w = img_shape
        if pool < 1 or h % pool or w % pool:
            raise ModelBuildError(f"video discriminator pool={pool}: must divide the frame size {h}x{w}")
        self.pool = pool
        h, w = h // pool, w // pool
        k, bh, bw = plan_stages(h, w, "the video discriminator")
        ch = _widths(width, k)[::-1]
        layers: List[nn.Module] = []
        t, cin = frames, c
        for i in range(k):
            st = 2 if t >= 4 else 1
            layers.append(nn.Conv3d(cin, ch[i], (4 if st == 2 else 3, 4, 4), (st, 2, 2), (1, 1, 1), bias=i == 0))
            if i > 0:
                layers.append(nn.BatchNorm3d(ch[i]))
            layers.append(nn.LeakyReLU(0.2, True))
            t, cin = (t // 2 if st == 2 else t), ch[i]
        self.convs = nn.Sequential(*layers)
        self.frames = frames
        self.head = nn.Linear(cin * t * bh * bw, 1)
        for m in self.modules():
            if isinstance(m, (nn.Conv3d, nn.Linear)):
                nn.init.normal_(m.weight, 0.0, 0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def freeze_blocks(self) -> List[Tuple[str, List[str]]]:
        """Blocks image side first (what ``--freeze-d K`` freezes): each conv with the norm and activation after it."""
        return sequential_blocks(self.convs, "convs")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.frames:
            raise ValueError(f"VideoDiscriminator: expected clips of {self.frames} frames, got {x.shape[1]}")
        x = x.transpose(1, 2)  # [N, C, T, H, W]
        if self.pool > 1:
            x = F.avg_pool3d(x, (1, self.pool, self.pool))  # [N, C, T, H / pool, W / pool]
        h = self.convs(x)  # [N, width * 2^(k-1), T', bh, bw]
        return self.head(h.flatten(1)).squeeze(1)  # [N]


def sprite_layers(cfg: Config) -> int:
    v = cfg.video
    return v.layers or (v.digits if cfg.data.dataset == "moving-mnist" else 1)


def build_from_config(
    cfg: Config, frame_shape: Tuple[int, int, int]
) -> Tuple[VideoGenerator, ImageDiscriminator, VideoDiscriminator]:
    """The generator and both discriminators of ``cfg.video`` for clips of frames of ``frame_shape`` (C, H, W)."""
    v = cfg.video
    try:
        g = VideoGenerator(
            frame_shape,
            v.content_dim,
            v.motion_dim,
            v.hidden_dim,
            v.g_width,
            v.motion,
            sprite_layers(cfg),
            v.snap,
            v.centre,
            v.sprite_size,
        )
        return (
            g,
            ImageDiscriminator(frame_shape, v.d_width),
            VideoDiscriminator(frame_shape, v.frames, v.vd_width, v.vd_pool),
        )
    except ModelBuildError as e:
        raise ConfigError(f"video: {e}") from None


def draw_codes(n: int, frames: int, content_dim: int, motion_dim: int, generator: torch.Generator, device=None):
    """(z_content [n, content_dim], eps [n, frames, motion_dim]): standard normal, drawn in that order."""
    zc = torch.randn(n, content_dim, generator=generator, device=device)
    eps = torch.randn(n, frames, motion_dim, generator=generator, device=device)
    return zc, eps
