"""The ``video`` task: a video GAN of the MoCoGAN family (``ganforge train task=video``, ``ganforge train moving-mnist``).

Config section: ``video`` (:class:`VideoConfig`), plus the shared ones (``data``, ``train``, ``g_optim``
for the generator, ``d_optim`` for both discriminators).

Data are clips of ``video.frames`` frames (:mod:`ganforge.data.clips`): ``data.dataset=moving-mnist``
(the default; made on the fly from the embedded digits with ``video.digits``, ``video.digit_size``,
``video.clips``, ``video.data_seed``, on a ``data.size`` canvas, 64 by default) or ``data.dataset=clips``
(a folder ``data.root`` of GIF/MP4 files or folders of numbered frames). The clips are held in memory as
uint8 [N, T, C, H, W]; the shared loop's seeded ``batcher`` draws clip indices, so batching (and its
sharding in data-parallel training) is the loop's.

Networks (:mod:`ganforge.models.video`): a generator of a content code per clip and recurrent motion codes
(``video.motion``: ``warp`` sprites moved by the motion codes, or MoCoGAN's ``free`` frame generator), an
image discriminator that sees ``video.image_frames`` random frames of each clip and a 3-D convolutional
video discriminator that sees whole clips. Losses: the non-saturating logistic pair on both
discriminators; the generator's is ``video_loss + video.image_weight * image_loss``.

Run-folder extras: ``samples/latest.gif`` (and ``step-N.gif``) animates the sample clips beside the PNG
strip (a row per clip, frames left to right); TensorBoard gets the same animation as ``samples_video``
(an animated GIF image summary written with Pillow: ``SummaryWriter.add_video`` needs moviepy, which
ganforge does not depend on). Randomness (batches, codes, frame choices) comes from the loop's seeded
generators, so a resumed CPU run ends bit for bit where an uninterrupted one does. Networks in a
checkpoint: ``generator``, ``generator_ema``, ``image_discriminator``, ``video_discriminator``. Loading
a run gives a :class:`ClipHandle`.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np
import torch

from ganforge import runs
from ganforge.config import SHARED_SECTIONS, Config, Section, choice, nonneg, positive
from ganforge.data.clips import CLIP_DATASETS, DEFAULT_CLIPS, ClipData, clip_grid_frames, clip_strip, gif_bytes, load_clips
from ganforge.errors import ConfigError, ModelBuildError
from ganforge.imaging import to_uint8
from ganforge.losses import d_logistic, g_nonsaturating
from ganforge.models.video import MOTIONS, VideoGenerator, build_video
from ganforge.tasks.base import TASKS, Handle, Task
from ganforge.training.loop import TrainingLoop
from ganforge.training.monitor import plot_curves
from ganforge.training.parts import check_finite


@dataclass
class VideoConfig(Section):
    frames: int = 16  # T: frames per clip
    motion: str = "warp"  # warp: sprites of the content code moved by the motion codes | free: MoCoGAN's frame generator
    layers: int = 0  # warp: sprite layers, each moved on its own; 0 = video.digits for moving-mnist, else 1
    snap: bool = True  # warp: samples shift sprites by whole pixels (exact copies in every frame); in training the image D sees such frames, the video D sub-pixel ones
    centre: bool = False  # warp: centre each sprite (its centre of mass) before the shift, so the shift is its position
    sprite_size: int = 0  # warp: sprites drawn on this square canvas, pasted in the frame, shifts bounded to keep them whole inside; 0 = the frame
    content_dim: int = 32  # content code (one per clip)
    motion_dim: int = 8  # noise per frame fed to the motion GRU
    hidden_dim: int = 32  # motion codes (the GRU's state)
    g_width: int = 32  # generator base channels
    d_width: int = 32  # image discriminator base channels
    vd_width: int = 16  # video discriminator base channels (its 3-D convolutions cost most of a step)
    vd_pool: int = 2  # the video discriminator sees frames averaged over vd_pool x vd_pool pixels (1 = full size)
    image_frames: int = 2  # random frames per clip the image discriminator sees
    image_weight: float = 1.0  # weight of the image discriminator's loss in the generator's
    digits: int = 1  # moving-mnist: digits per clip
    digit_size: int = 0  # moving-mnist: digit side in pixels; 0 = 28 on a 64 canvas, half the canvas on smaller ones
    clips: int = DEFAULT_CLIPS  # moving-mnist: clips made (data.limit caps it too)
    data_seed: int = 0  # moving-mnist: the seed of the clips

    def check(self, key: str = "video") -> None:
        choice(f"{key}.motion", self.motion, list(MOTIONS))
        for k in ("frames", "content_dim", "motion_dim", "hidden_dim", "g_width", "d_width", "vd_width", "vd_pool", "image_frames", "digits", "clips"):
            positive(f"{key}.{k}", getattr(self, k))
        for k in ("layers", "image_weight", "digit_size", "data_seed", "sprite_size"):
            nonneg(f"{key}.{k}", getattr(self, k))
        if self.frames < 2:
            raise ConfigError(f"{key}.frames={self.frames}: a clip needs at least 2 frames")
        if self.sprite_size and self.motion != "warp":
            raise ConfigError(f"{key}.sprite_size={self.sprite_size}: sprites belong to motion=warp, not motion={self.motion}")
        if self.image_frames > self.frames:
            raise ConfigError(f"{key}.image_frames={self.image_frames}: at most {key}.frames={self.frames}")


def sprite_layers(cfg: Config) -> int:
    v = cfg.video
    return v.layers or (v.digits if cfg.data.dataset == "moving-mnist" else 1)


def build_from_config(cfg: Config, frame_shape: Tuple[int, int, int]):
    v = cfg.video
    try:
        return build_video(frame_shape, v.frames, v.content_dim, v.motion_dim, v.hidden_dim, v.g_width, v.d_width,
                           v.vd_width, v.motion, sprite_layers(cfg), v.vd_pool, v.snap, v.centre, v.sprite_size)
    except ModelBuildError as e:
        raise ConfigError(f"video: {e}") from None


def draw_codes(n: int, frames: int, content_dim: int, motion_dim: int, generator: torch.Generator, device=None):
    """(z_content [n, content_dim], eps [n, frames, motion_dim]): standard normal, drawn in that order."""
    zc = torch.randn(n, content_dim, generator=generator, device=device)
    eps = torch.randn(n, frames, motion_dim, generator=generator, device=device)
    return zc, eps


class VideoTrainer(TrainingLoop):
    """Trains the video generator against an image and a video discriminator on clips."""

    # ---- data: clips through the loop's machinery ---------------------------------------------
    def _setup(self, data) -> None:
        """Load the clips (``data`` may be :class:`ClipData`) and hand them to the shared set-up, which
        keeps them on the device as ``self.images`` [N, T, C, H, W] and batches clip indices."""
        v = self.cfg.video
        if data is None:
            data = load_clips(self.cfg.data, v.frames, v.clips, v.digits, v.digit_size, v.data_seed)
        if not isinstance(data, ClipData):
            raise ConfigError(f"task=video trains on clips (ClipData [N, T, C, H, W]), got {type(data).__name__}")
        if data.frames != v.frames:
            raise ConfigError(f"video.frames={v.frames}, but the clips given have {data.frames} frames")
        self.clip_data = data
        super()._setup(data)
        self.img_shape = data.frame_shape  # (C, H, W) of one frame; self.images is [N, T, C, H, W]

    def build(self) -> None:
        cfg = self.cfg
        if cfg.task != "video":
            raise ConfigError(f"task: VideoTrainer trains video GANs and needs task=video, got task={cfg.task}")
        t = cfg.train
        if t.compile:
            self.log("train.compile is not used by the video task: running eagerly")
        self.G, self.DI, self.DV = build_from_config(cfg, self.img_shape)
        for net in (self.G, self.DI, self.DV):
            net.to(self.device)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.nets.update(generator=self.G, generator_ema=self.G_ema, image_discriminator=self.DI,
                         video_discriminator=self.DV)
        self.opt_g = self.optimizer(self.G, cfg.g_optim)
        self.opt_d = self.optimizer(list(self.DI.parameters()) + list(self.DV.parameters()), cfg.d_optim)
        self.optims.update(g=self.opt_g, d=self.opt_d)
        n = min(t.sample_count, 16)
        self.fixed = draw_codes(n, cfg.video.frames, cfg.video.content_dim, cfg.video.motion_dim,
                                torch.Generator().manual_seed(t.seed + 3))
        self._clips: Optional[torch.Tensor] = None

    def _header(self) -> str:
        t, v = self.cfg.train, self.cfg.video
        return (f"training video on {self.clip_data.name}: {len(self.clip_data)} clips of {v.frames} frames "
                f"{'x'.join(map(str, self.img_shape))}, motion {v.motion}, batch {t.batch_size}, device {self.device}, "
                f"{torch.get_num_threads()} threads; run folder {self.run_dir}")

    def run_suffix(self) -> str:
        return f"video-{self.cfg.video.motion}"

    def model_config(self) -> Dict[str, Any]:
        d = super().model_config()
        d["frames"] = self.cfg.video.frames
        return d

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
        stats = {"loss_d": float(loss_di + loss_dv), "loss_g": float(g_v + g_i), "loss_d_image": float(loss_di),
                 "loss_d_video": float(loss_dv), "loss_g_image": float(g_i), "loss_g_video": float(g_v),
                 "d_real": float(torch.sigmoid(dv_real.detach()).mean()), "d_fake": float(torch.sigmoid(dv_fake.detach()).mean())}
        check_finite(stats, self.step, "try lower g_optim.lr / d_optim.lr")
        return stats

    # ---- what a run shows -------------------------------------------------------------------
    @torch.no_grad()
    def sample_clips(self) -> torch.Tensor:
        """uint8 [n, T, C, H, W]: the fixed codes through the EMA generator."""
        zc, eps = self.fixed
        return to_uint8(self.G_ema(zc.to(self.device), eps.to(self.device))).cpu()

    def sample_grid(self) -> np.ndarray:
        self._clips = self.sample_clips()
        return clip_strip(self._clips)

    def snapshot(self) -> None:
        """The PNG strip (shared loop), then the same clips animated: samples/step-N.gif, latest.gif, TensorBoard."""
        super().snapshot()
        clips = self._clips if self._clips is not None else self.sample_clips()
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

    def _plot(self) -> None:
        plot_curves(self.metrics.records, self.run_dir / "loss_curve.png")


# ------------------------------------------------------------------------------------------
# using a trained run


class ClipHandle(Handle):
    """A trained video generator: ``sample_uint8(n, seed)`` gives clips uint8 [n, T, C, H, W].

    ``module`` is the :class:`~ganforge.models.video.VideoGenerator`; it takes ``(z_content, eps)``
    and may roll out any number of frames (``frames=`` in the sampling calls; the trained length by default).
    ``ganforge sample`` writes its samples with :mod:`ganforge.apps.video` (``sample_app``)."""

    task = "video"
    sample_app = "ganforge.apps.video"

    def __init__(self, module: VideoGenerator, checkpoint: runs.Checkpoint, config: Config):
        super().__init__(module, checkpoint, config)
        self.frames = int(checkpoint.config.get("frames", config.video.frames))
        self.content_dim, self.motion_dim = config.video.content_dim, config.video.motion_dim
        self.num_classes = 0
        self.class_names: List[str] = []

    def noise(self, n: int, seed: int, frames: Optional[int] = None):
        """The codes ``sample(n, seed)`` uses: (z_content [n, content_dim], eps [n, T, motion_dim]), on CPU."""
        return draw_codes(n, frames or self.frames, self.content_dim, self.motion_dim, torch.Generator().manual_seed(int(seed)))

    @torch.no_grad()
    def generate(self, z_content: torch.Tensor, eps: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """Clips in [-1, 1], float [N, T, C, H, W], for content codes and motion noise."""
        out = [self.module(z_content[i : i + batch_size].to(self.device), eps[i : i + batch_size].to(self.device)).float().cpu()
               for i in range(0, z_content.shape[0], batch_size)]
        return torch.cat(out) if out else torch.empty(0, eps.shape[1], *self.img_shape)

    def sample(self, n: int, seed: int = 0, frames: Optional[int] = None, batch_size: int = 64) -> torch.Tensor:
        return self.generate(*self.noise(n, seed, frames), batch_size=batch_size)

    def sample_uint8(self, n: int, seed: int = 0, frames: Optional[int] = None, batch_size: int = 64) -> torch.Tensor:
        """uint8 [n, T, C, H, W]; the same ``seed`` gives the same clips."""
        return to_uint8(self.sample(n, seed, frames, batch_size))

    def export_inputs(self, batch: int = 1) -> Tuple[torch.Tensor, ...]:
        zc, eps = self.noise(batch, 0)
        return zc.to(self.device), eps.to(self.device)

    def output_shape(self, batch: int = 1) -> Tuple[int, ...]:
        return (batch, self.frames, *self.img_shape)

    def __repr__(self) -> str:
        return (f"ClipHandle({self.config.video.motion}, {self.frames} frames of {'x'.join(map(str, self.img_shape))}, "
                f"step {self.step}, {self.checkpoint_path})")


# ------------------------------------------------------------------------------------------
# the task


class VideoTask(Task):
    name = "video"
    summary = "generate short clips: a MoCoGAN-style video GAN (content code + recurrent motion)"
    sections = {**SHARED_SECTIONS, "video": VideoConfig}
    trainer = VideoTrainer
    tiny = ("data.size=16", "video.frames=4", "video.content_dim=4", "video.motion_dim=2", "video.hidden_dim=4",
            "video.g_width=4", "video.d_width=4", "video.vd_width=4", "video.vd_pool=1", "video.clips=64")

    def config(self, d: Mapping[str, Any], drop=()) -> Config:
        """As :meth:`Task.config`; the dataset defaults to ``moving-mnist`` (the embedded digits, moving),
        also when a preset of another task named the embedded MNIST."""
        d = dict(d)
        data = dict(d.get("data") or {})
        if data.get("dataset") in (None, "mnist-embedded"):
            data["dataset"] = "moving-mnist"
            d["data"] = data
        return super().config(d, drop)

    def validate(self, cfg: Config) -> None:
        super().validate(cfg)
        choice("data.dataset", cfg.data.dataset, list(CLIP_DATASETS))
        if cfg.data.hflip:
            raise ConfigError("data.hflip: the video task does not flip clips; set data.hflip=false")

    def load(self, checkpoint: runs.Checkpoint, ema: bool = True, device: Union[str, torch.device] = "cpu") -> ClipHandle:
        return self.load_generator(checkpoint, ClipHandle,
                                   lambda cfg, c: build_from_config(cfg, tuple(int(s) for s in c["img_shape"]))[0],
                                   "video generator", ema, device)


TASKS.register("video")(VideoTask())
