"""The video task: trainer."""

from __future__ import annotations

import copy
from typing import Dict

import numpy as np
import torch

from ganforge.errors import ConfigError
from ganforge.imaging import to_uint8
from ganforge.losses import d_logistic, g_nonsaturating
from ganforge.tasks.video.data import ClipData, clip_grid_frames, clip_strip, gif_bytes, load_clips
from ganforge.tasks.video.networks import build_from_config, draw_codes
from ganforge.training.loop import TrainingLoop
from ganforge.training.monitor import ADVERSARIAL_CURVES


class VideoTrainer(TrainingLoop):
    """Trains the video generator against an image and a video discriminator on clips."""

    task = "video"
    compiles = False

    curves = ADVERSARIAL_CURVES
    diverged_advice = "try lower g_optim.lr / d_optim.lr"

    # ---- data: clips through the loop's machinery ---------------------------------------------
    def load_data(self, data):
        """The clips (``data`` may be :class:`ClipData`): the shared set-up keeps them on the device as
        ``self.images`` [N, T, C, H, W] and batches clip indices."""
        v = self.cfg.video
        if data is None:
            data = load_clips(self.cfg.data, v.frames, v.clips, v.digits, v.digit_size, v.data_seed)
        if not isinstance(data, ClipData):
            raise ConfigError(f"task=video trains on clips (ClipData [N, T, C, H, W]), got {type(data).__name__}")
        if data.frames != v.frames:
            raise ConfigError(f"video.frames={v.frames}, but the clips given have {data.frames} frames")
        self.clip_data = data
        return data

    def build(self) -> None:
        cfg = self.cfg
        t, v = cfg.train, cfg.video
        self.img_shape = self.clip_data.frame_shape  # (C, H, W) of one frame; self.images is [N, T, C, H, W]
        self.G, self.DI, self.DV = build_from_config(cfg, self.img_shape)
        for net in (self.G, self.DI, self.DV):
            net.to(self.device)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.nets.update(
            generator=self.G, generator_ema=self.G_ema, image_discriminator=self.DI, video_discriminator=self.DV
        )
        self.opt_g = self.optimizer(self.G, cfg.g_optim)
        self.opt_d = self.optimizer(list(self.DI.parameters()) + list(self.DV.parameters()), cfg.d_optim)
        self.optims.update(g=self.opt_g, d=self.opt_d)
        n = min(t.sample_count, 16)
        self.fixed = draw_codes(n, v.frames, v.content_dim, v.motion_dim, self.rng("samples"))
        self.run_suffix = f"video-{v.motion}"
        self.model_info = {"frames": v.frames}
        self.description = (
            f"video on {self.clip_data.name}: {len(self.clip_data)} clips of {v.frames} frames "
            f"{'x'.join(map(str, self.img_shape))}, motion {v.motion}"
        )

    # ---- one step ---------------------------------------------------------------------------
    def _real_clips(self) -> torch.Tensor:
        idx = self.batcher.next().to(self.device)
        return self.images[idx].float().div_(127.5).sub_(1.0)  # [B, T, C, H, W] in [-1, 1]

    def _pick(self, x: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
        """Frames ``which`` [B, k] of clips ``x`` [B, T, C, H, W] -> [B * k, C, H, W]."""
        b = torch.arange(x.shape[0], device=x.device)[:, None]
        return x[b, which].flatten(0, 1)

    def train_step(self) -> Dict[str, float]:
        v = self.cfg.video
        real = self._real_clips()
        b = real.shape[0]
        zc, eps = draw_codes(b, v.frames, v.content_dim, v.motion_dim, self.noise_gen, self.device)
        which_r = torch.randint(v.frames, (b, v.image_frames), generator=self.noise_gen, device=self.device)
        which_f = torch.randint(v.frames, (b, v.image_frames), generator=self.noise_gen, device=self.device)
        if v.snap:  # the image discriminator judges crisp whole-pixel frames, the video one the sub-pixel clips
            fake, fake_i = self.G.two_renders(zc, eps)  # [B, T, C, H, W] each
        else:
            fake = fake_i = self.G(zc, eps)  # [B, T, C, H, W]

        # discriminators: real clips and frames against the generator's
        self.DI.requires_grad_(True)
        self.DV.requires_grad_(True)
        self.opt_d.zero_grad(set_to_none=True)
        di_real, di_fake = self.DI(self._pick(real, which_r)), self.DI(self._pick(fake_i.detach(), which_f))
        dv_real, dv_fake = self.DV(real), self.DV(fake.detach())
        loss_di, loss_dv = d_logistic(di_real, di_fake), d_logistic(dv_real, dv_fake)
        (loss_di + loss_dv).backward()
        self.opt_d.step()

        # generator: fool both
        self.DI.requires_grad_(False)
        self.DV.requires_grad_(False)
        self.opt_g.zero_grad(set_to_none=True)
        g_i = g_nonsaturating(self.DI(self._pick(fake_i, which_f)))
        g_v = g_nonsaturating(self.DV(fake))
        (g_v + v.image_weight * g_i).backward()
        loss_di, loss_dv, g_i, g_v = loss_di.detach(), loss_dv.detach(), g_i.detach(), g_v.detach()
        self.opt_g.step()
        self.update_ema(self.G_ema, self.G)

        self.step += 1
        self.images_seen += b
        stats = {
            "loss_d": float(loss_di + loss_dv),
            "loss_g": float(g_v + g_i),
            "loss_d_image": float(loss_di),
            "loss_d_video": float(loss_dv),
            "loss_g_image": float(g_i),
            "loss_g_video": float(g_v),
            "d_real": float(torch.sigmoid(dv_real.detach()).mean()),
            "d_fake": float(torch.sigmoid(dv_fake.detach()).mean()),
        }
        return stats

    # ---- what a run shows -------------------------------------------------------------------
    @torch.no_grad()
    def sample_clips(self) -> torch.Tensor:
        """uint8 [n, T, C, H, W]: the fixed codes through the EMA generator."""
        zc, eps = self.fixed
        return to_uint8(self.G_ema(zc.to(self.device), eps.to(self.device))).cpu()

    def sample_grid(self) -> np.ndarray:
        """The PNG strip of the fixed clips; the same clips animated go to samples/step-N.gif, latest.gif
        and TensorBoard."""
        clips = self.sample_clips()
        self._write_gif(clips)
        return clip_strip(clips)

    def _write_gif(self, clips: torch.Tensor) -> None:
        """samples/step-N.gif and latest.gif (written atomically), and TensorBoard's animated image."""
        n = clips.shape[0]
        data = gif_bytes(clip_grid_frames(clips, nrow=int(np.ceil(np.sqrt(n)))))
        folder = self.run_dir / "samples"
        runs_write = folder / f".step-{self.step:08d}.gif.tmp"
        runs_write.write_bytes(data)
        runs_write.replace(folder / f"step-{self.step:08d}.gif")
        tmp = folder / ".latest.gif.tmp"
        tmp.write_bytes(data)
        tmp.replace(folder / "latest.gif")
        self._tb_video("samples_video", data, clip_grid_frames(clips[:, :1], nrow=int(np.ceil(np.sqrt(n))))[0].shape)

    def _tb_video(self, tag: str, gif: bytes, shape) -> None:
        """An animated GIF image summary (what ``add_video`` writes, without moviepy)."""
        writer = getattr(self.tb, "writer", None)
        if writer is None:
            return
        from tensorboard.compat.proto.summary_pb2 import Summary

        h, w, c = shape
        img = Summary.Image(height=h, width=w, colorspace=c, encoded_image_string=gif)
        writer._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=img)]), self.step)
