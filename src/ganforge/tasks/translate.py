"""The ``translate`` task: image-to-image translation, paired (pix2pix) or unpaired (CycleGAN).

``ganforge train task=translate`` (config section ``translate``, :class:`TranslateConfig`, plus the
shared ``data``, ``train``, ``g_optim`` for the generators and ``d_optim`` for the discriminators).
The data is two image domains A and B (:mod:`ganforge.data.pairs`): ``data.dataset=paired`` (A/ and B/
matched by file name, or side-by-side AB images), ``data.dataset=unpaired`` (A/ and B/, any counts), or
pairs derived from any single-domain dataset (``translate.derive``: edges -> image by default, so
``ganforge train task=translate`` runs on the embedded MNIST).

- **pix2pix** (Isola et al. 2017; ``translate.method=pix2pix``): a U-Net G: A -> B and a PatchGAN D
  that sees ``(a, b)`` or ``(a, G(a))``. D minimises the configured loss (``translate.loss``, one of the
  project's losses, :mod:`ganforge.losses`); G minimises ``adv_weight * loss_G + l1_weight * L1(G(a), b)``.
  Needs paired data.
- **CycleGAN** (Zhu et al. 2017; ``translate.method=cyclegan``): ResNet generators G: A -> B and
  F: B -> A, PatchGANs D_B and D_A. G and F minimise the adversarial losses of both directions plus
  ``cycle_weight * (L1(F(G(a)), a) + L1(G(F(b)), b))`` plus, when both sides have the same channels,
  the identity loss ``identity_weight * cycle_weight * (L1(G(b), b) + L1(F(a), a))``, plus (``lowres_weight``)
  ``lowres_weight * (L1(P(G(a)), P(a)) + L1(P(F(b)), P(b)))`` with P an average pooling over
  ``lowres_factor`` x ``lowres_factor`` cells (the coarse shape kept, the fine detail free; ``lowres_pool=max``:
  a max pooling, which keeps where the bright strokes are but not how thick they are); ``cycle_noise`` adds
  Gaussian noise to each translation on its way into the other generator (Chu et al. 2017). Each D is updated on
  real images against generated ones drawn from a history pool of the last ``pool_size`` (Shrivastava
  et al. 2017). Paired data is used unpaired (A and B batches drawn independently).

Both: ``translate.d_steps=k`` updates the discriminator(s) k times per generator update, the extra k - 1
on fresh batches translated by the current generators (CycleGAN: through the pools), as WGAN's critic
iterations; ``translate.upsample=resize`` builds the generators with nearest-neighbour upsampling + 3x3
convolutions instead of transposed convolutions (no checkerboard by construction; see
:mod:`ganforge.models.translate`).

Both: random square crops (``translate.crop_size``) and horizontal flips (``data.hflip``), identical
for the two images of a pair; losses on the generator's output clamped to [-1, 1] with a straight-through
gradient plus ``0.1 *`` the raw output's overshoot (see :mod:`ganforge.models.translate`); linear
learning-rate decay to 0 over ``lr_decay_steps`` steps from ``lr_decay_start`` (both optimisers, as in
CycleGAN); EMA copies of the generators (``train.ema_decay``) for samples and use. Model selection
(``translate.select=fid``): every ``select_every`` steps the EMA generator translates (up to ``select_count``)
training A images and their FID against training B images in a feature space (``select_features``: the
shipped MNIST classifier or Inception) is logged (``select_fid`` in metrics.jsonl); the lowest so far is
saved as checkpoint ``best`` (``ganforge.load(run, checkpoint="best")``). It uses no labels and no test
images, and guards against the late drift of GAN training. Every random choice
(batches, crops, flips, the pool, dropout) comes from seeded generators whose states are checkpointed,
so on CPU a resumed run ends bit for bit where an uninterrupted one does.

Networks in a checkpoint: ``generator`` (A -> B), ``discriminator`` (judges B), their EMA
``generator_ema``; CycleGAN adds ``generator_b2a``, ``generator_b2a_ema`` and ``discriminator_a``.
config.json records ``shape_b`` (C, H, W of domain B) and the directions trained. Loading a run gives a
:class:`TranslatorHandle`; :mod:`ganforge.apps.translate` uses it on image files.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import torch

from ganforge import runs
from ganforge.config import SHARED_SECTIONS, Section, choice, nonneg, positive
from ganforge.data import ImageData
from ganforge.data.pairs import PAIRED, UNPAIRED, TranslationData, derive_pairs, load_translation  # registers paired/unpaired
from ganforge.errors import ConfigError, ModelBuildError, RunError, TranslateError
from ganforge.imaging import completion_grid, to_uint8
from ganforge.losses import LOSSES
from ganforge.models.translate import GENERATORS, PatchDiscriminator, Translator, build, pad_to_multiple
from ganforge.tasks.base import TASKS, ExportNet, Handle, Task
from ganforge.training.loop import TrainingLoop
from ganforge.training.monitor import save_figure
from ganforge.training.parts import Batcher, check_finite, decay_lr

OVERSHOOT_WEIGHT = 0.1  # weight of the penalty on the raw output leaving [-1, 1]
GRID_MAX = 16  # images per direction in the sample grid (at most)
GRID_COLS = 8
METHODS = ("pix2pix", "cyclegan")
ADV_LOSSES = ("lsgan", "non-saturating", "hinge", "minimax")
DIRECTIONS = ("a2b", "b2a")


@dataclass
class TranslateConfig(Section):
    method: str = "pix2pix"  # pix2pix (paired: U-Net + conditional PatchGAN, L1) | cyclegan (unpaired: two generators, cycle loss)
    arch: str = "auto"  # generator: auto (unet for pix2pix, resnet for cyclegan) | unet | resnet
    width: int = 32  # generator base channels
    blocks: int = 6  # residual blocks of the resnet generator
    dropout: float = 0.5  # unet: dropout in the two deepest decoder levels while training (pix2pix's noise; 0 = off)
    input_skip: bool = False  # generators output input + network (learn the change; keeps absolute colours)
    d_width: int = 32  # PatchGAN base channels
    d_norm: str = "instance"  # PatchGAN normalisation: instance (pix2pix, CycleGAN) | spectral (SN-PatchGAN, steadier) | none
    d_steps: int = 1  # discriminator updates per generator update (the extra ones on fresh batches)
    upsample: str = "deconv"  # generators' 2x upsampling: deconv (transposed convolution) | resize (nearest + conv)
    crop_size: Optional[int] = None  # random square crops of this side while training (None: whole images)
    derive: str = "edges"  # pairs from a single-domain dataset: edges (edges -> image) | invert | grey (grey -> colour)
    loss: str = "lsgan"  # adversarial loss: lsgan | non-saturating | hinge | minimax (ganforge.losses)
    adv_weight: float = 1.0  # weight of the generators' adversarial loss
    l1_weight: float = 100.0  # pix2pix: weight of L1(G(a), b)
    cycle_weight: float = 10.0  # cyclegan: weight of each cycle-consistency L1
    identity_weight: float = 0.5  # cyclegan: identity L1 weight, relative to cycle_weight (0 = off; needs equal channels)
    pool_size: int = 50  # cyclegan: generated images kept in each history pool for D (0 = none)
    lowres_weight: float = 0.0  # cyclegan: weight of L1(pool(G(a)), pool(a)) + L1(pool(F(b)), pool(b)) (0 = off)
    lowres_factor: int = 4  # cyclegan: side of the average pooling of lowres_weight (keeps the coarse shape)
    cycle_noise: float = 0.0  # cyclegan: std of Gaussian noise added to each translation on its way into the other
    # generator (Chu et al. 2017: it stops G hiding the input in faint signals, so the cycle needs visible content; 0 = off)
    lowres_pool: str = "avg"  # cyclegan: lowres_weight's pooling: avg (the mean per cell: ties the amount of ink) |
    # max (the brightest pixel per cell: which cells hold a bright stroke, not how thick it is)
    lr_decay_start: int = 0  # step at which the linear learning-rate decay starts ...
    lr_decay_steps: int = 0  # ... reaching 0 this many steps later (0 = constant learning rates)
    tile: int = 512  # use: images with a side above this are translated in overlapping tiles of this side (the
    # default of the trained model; tiles near the training crop keep the instance-norm statistics of training)
    select: str = "none"  # none | fid: every select_every steps, the FID of G(A) against B; the lowest is checkpoint 'best'
    select_every: int = 100  # steps between two selection evaluations
    select_features: str = "mnist"  # feature space of the selection FID: mnist (the shipped classifier) | inception
    select_count: int = 1000  # at most this many training images of each domain (a seeded choice) for the selection FID

    def check(self, key: str = "translate") -> None:
        choice(f"{key}.method", self.method, list(METHODS))
        choice(f"{key}.arch", self.arch, ["auto", *GENERATORS.names()])
        choice(f"{key}.derive", self.derive, ["edges", "invert", "grey"])
        choice(f"{key}.loss", self.loss, list(ADV_LOSSES))
        choice(f"{key}.d_norm", self.d_norm, ["instance", "spectral", "none"])
        choice(f"{key}.upsample", self.upsample, ["deconv", "resize"])
        choice(f"{key}.lowres_pool", self.lowres_pool, ["avg", "max"])
        choice(f"{key}.select", self.select, ["none", "fid"])
        choice(f"{key}.select_features", self.select_features, ["mnist", "inception"])
        positive(f"{key}.select_every", self.select_every)
        positive(f"{key}.select_count", self.select_count)
        if self.select_count < 2:
            raise ConfigError(f"{key}.select_count: expected at least 2 images for an FID, got {self.select_count}")
        for k in ("width", "blocks", "d_width", "d_steps", "lowres_factor"):
            positive(f"{key}.{k}", getattr(self, k))
        positive(f"{key}.crop_size", self.crop_size, allow_none=True)
        if self.tile < 16:
            raise ConfigError(f"{key}.tile: expected at least 16 pixels, got {self.tile}")
        if self.crop_size is not None and self.crop_size < 8:
            raise ConfigError(f"{key}.crop_size: expected at least 8 pixels, got {self.crop_size}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"{key}.dropout: expected a probability in [0, 1), got {self.dropout}")
        for k in ("adv_weight", "l1_weight", "cycle_weight", "identity_weight", "pool_size", "lr_decay_start",
                  "lr_decay_steps", "lowres_weight", "cycle_noise"):
            nonneg(f"{key}.{k}", getattr(self, k))

    @property
    def generator(self) -> str:
        """The generator architecture ``arch`` resolves to."""
        if self.arch != "auto":
            return self.arch
        return "unet" if self.method == "pix2pix" else "resnet"


def straight_through(raw: torch.Tensor) -> torch.Tensor:
    """``raw`` clamped to [-1, 1] in the forward pass, the identity in the backward pass.

    Used for the L1 terms against a target (a pixel clamped on the wrong side still gets pulled back).
    The adversarial terms, and CycleGAN's translations on their way into the other generator, use the
    plain clamp instead: with the straight-through gradient there, D's gradient (first) and then the
    cycle loss's kept pushing already-clamped pixels further out; the raw outputs ran away (to -150 on
    the digits' black background) and CycleGAN on digits collapsed after 600-700 steps (cycle and identity
    L1 rising from 0.12 to 0.4-0.6), in four runs."""
    return raw + (raw.clamp(-1.0, 1.0) - raw).detach()


def lowres_l1(out: torch.Tensor, inp: torch.Tensor, factor: int, pool: str = "avg") -> torch.Tensor:
    """L1 between ``out`` and ``inp`` pooled over ``factor`` x ``factor`` cells (sides padded up to a
    multiple by replication, so no pixel is dropped), compared as channel means when the channel counts differ:
    a content term on the coarse shape only, leaving strokes, edges and texture to the adversarial loss.
    ``pool="avg"`` compares each cell's mean (on digits: the amount of ink, so the stroke thickness too),
    ``pool="max"`` each cell's brightest pixel (whether a bright stroke crosses the cell, however thin)."""
    if out.shape[1] != inp.shape[1]:
        out, inp = out.mean(1, keepdim=True), inp.mean(1, keepdim=True)
    h, w = out.shape[2:]
    pad = (0, -w % factor, 0, -h % factor)
    fn = {"avg": torch.nn.functional.avg_pool2d, "max": torch.nn.functional.max_pool2d}[pool]
    cells = lambda x: fn(torch.nn.functional.pad(x, pad, mode="replicate"), factor)  # noqa: E731
    return (cells(out) - cells(inp)).abs().mean()


def overshoot(raw: torch.Tensor) -> torch.Tensor:
    """Mean amount by which the unbounded output leaves [-1, 1]."""
    return (raw.abs() - 1.0).relu().mean()


class HistoryPool:
    """The image pool of Shrivastava et al. 2017 / CycleGAN: once full, each generated image is swapped with
    a stored one (returned instead) with probability 1/2. Seeded; its images and generator are checkpointed."""

    def __init__(self, size: int, seed: int):
        self.size = size
        self.gen = torch.Generator().manual_seed(seed)
        self.images: List[torch.Tensor] = []

    def query(self, x: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return x
        out = []
        for img in x.detach():
            if len(self.images) < self.size:
                self.images.append(img.clone())
                out.append(img)
                continue
            swap = float(torch.rand((), generator=self.gen)) < 0.5
            if swap:
                j = int(torch.randint(len(self.images), (), generator=self.gen))
                out.append(self.images[j])
                self.images[j] = img.clone()
            else:
                out.append(img)
        return torch.stack(out)

    def state_dict(self) -> Dict[str, Any]:
        stacked = torch.stack(self.images).cpu() if self.images else torch.zeros(0)
        return {"gen": self.gen.get_state(), "images": stacked}

    def load_state_dict(self, s: Dict[str, Any], device: torch.device) -> None:
        self.gen.set_state(s["gen"])
        self.images = [t.to(device) for t in s["images"]] if s["images"].numel() else []


@torch.no_grad()
def run_padded(net: Translator, x: torch.Tensor) -> torch.Tensor:
    """``net(x)`` for any size: reflect-padded to the network's multiple, the output cropped back."""
    h, w = x.shape[2:]
    return net(pad_to_multiple(x, net.multiple))[..., :h, :w]


def _rgb(x: torch.Tensor) -> torch.Tensor:
    return x if x.shape[1] == 3 else x.expand(-1, 3, -1, -1)


class TranslateTrainer(TrainingLoop):
    """Builds and trains pix2pix or CycleGAN from a ``task=translate`` config."""

    # ---- data ---------------------------------------------------------------------------------
    def _setup(self, data) -> None:
        """The two domains (``data`` may be :class:`TranslationData`, or an ``ImageData`` to derive pairs
        from); the shared loop batches domain A, this trainer domain B."""
        tr = self.cfg.translate
        if isinstance(data, TranslationData):
            pairs = data
        elif isinstance(data, ImageData):
            pairs = derive_pairs(data, tr.derive)
        else:
            pairs = load_translation(self.cfg.data, tr.derive)
        if tr.method == "pix2pix" and not pairs.paired:
            raise ConfigError(f"translate.method=pix2pix learns from pairs, but '{pairs.name}' is unpaired "
                              "(data.dataset=unpaired); use translate.method=cyclegan, or paired data")
        self.pairs = pairs
        super()._setup(pairs.domain_a())
        t = self.cfg.train
        nb = pairs.b.shape[0]
        if t.batch_size > nb:
            raise ConfigError(f"train.batch_size={t.batch_size} is larger than domain B ({nb} images)")
        self.images_b = pairs.b.to(self.device)
        self.paired_batches = tr.method == "pix2pix"  # CycleGAN draws B independently, even from paired data
        self.batcher_b = Batcher(nb, t.batch_size, t.seed + 11)
        self.aug_gen = torch.Generator().manual_seed(t.seed + 12)  # crops and flips (on the CPU)
        h, w = self.img_shape[1:]
        cs = tr.crop_size
        if cs is not None and cs > min(h, w):
            raise ConfigError(f"translate.crop_size={cs} is larger than the images ({h}x{w}); use a smaller crop or "
                              "a larger data.size")
        self.train_size = (cs, cs) if cs else (h, w)

    # ---- networks -------------------------------------------------------------------------------
    def build(self) -> None:
        cfg = self.cfg
        if cfg.task != "translate":
            raise ConfigError(f"task: TranslateTrainer needs task=translate, got task={cfg.task}")
        tr, t = cfg.translate, cfg.train
        if t.compile:
            self.log("train.compile is not used by the translation task: running eagerly")
        ca, cb = self.img_shape[0], int(self.images_b.shape[1])
        self.ca, self.cb = ca, cb
        self.cycle = tr.method == "cyclegan"
        opts = dict(width=tr.width, blocks=tr.blocks, dropout=tr.dropout, input_skip=tr.input_skip, upsample=tr.upsample)
        try:
            self.G = build(tr.generator, ca, cb, self.train_size, **opts)
            self.F = build(tr.generator, cb, ca, self.train_size, **opts) if self.cycle else None
        except ModelBuildError as e:
            raise ConfigError(f"translate.arch={tr.generator}: {e}") from None
        self.D = PatchDiscriminator(cb if self.cycle else ca + cb, self.train_size, tr.d_width, tr.d_norm)  # judges B
        self.D_A = PatchDiscriminator(ca, self.train_size, tr.d_width, tr.d_norm) if self.cycle else None
        nets = {"generator": self.G, "discriminator": self.D}
        if self.cycle:
            nets.update(generator_b2a=self.F, discriminator_a=self.D_A)
        for net in nets.values():
            net.to(self.device)
        self.nets.update(nets)
        self.G_ema = self.F_ema = None
        if t.ema_decay > 0:
            self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
            self.nets["generator_ema"] = self.G_ema
            if self.cycle:
                self.F_ema = copy.deepcopy(self.F).eval().requires_grad_(False)
                self.nets["generator_b2a_ema"] = self.F_ema
        g_params = list(self.G.parameters()) + (list(self.F.parameters()) if self.cycle else [])
        d_params = list(self.D.parameters()) + (list(self.D_A.parameters()) if self.cycle else [])
        self.opt_g = self.optimizer(list(g_params), cfg.g_optim)
        self.opt_d = self.optimizer(list(d_params), cfg.d_optim)
        self.optims.update(g=self.opt_g, d=self.opt_d)
        self.base_lr = {"g": cfg.g_optim.lr, "d": cfg.d_optim.lr}
        self.loss = LOSSES.get(tr.loss)
        self.identity = self.cycle and tr.identity_weight > 0 and ca == cb
        if self.cycle and tr.identity_weight > 0 and ca != cb:
            self.log(f"identity loss off: domain A has {ca} channel(s) and domain B {cb}")
        self.pool_b = HistoryPool(tr.pool_size if self.cycle else 0, t.seed + 13)
        self.pool_a = HistoryPool(tr.pool_size if self.cycle else 0, t.seed + 14)
        # the fixed validation images of the sample grids (whole images, seeded choice)
        na, nb = self.images.shape[0], self.images_b.shape[0]
        k = min(t.sample_count, GRID_MAX, na, nb)
        k = k - k % min(GRID_COLS, k)
        ia = torch.randperm(na, generator=torch.Generator().manual_seed(t.seed + 3))[:k]
        ib = ia if self.pairs.paired else torch.randperm(nb, generator=torch.Generator().manual_seed(t.seed + 4))[:k]
        self.val_a = self.images[ia.to(self.device)].float().div(127.5).sub(1.0)  # [k, Ca, H, W]
        self.val_b = self.images_b[ib.to(self.device)].float().div(127.5).sub(1.0)  # [k, Cb, H, W]
        self.best_fid = float("inf")
        self.select_space = None
        if tr.select == "fid":
            self._setup_selection()

    def _setup_selection(self) -> None:
        """The feature space and the reference statistics of domain B for ``translate.select=fid``."""
        from ganforge.metrics.compute import fid_statistics
        from ganforge.metrics.features import get_feature_space

        tr, t = self.cfg.translate, self.cfg.train
        self.select_space = get_feature_space(tr.select_features, device=str(self.device))
        na, nb = self.images.shape[0], self.images_b.shape[0]
        self.select_a = torch.randperm(na, generator=torch.Generator().manual_seed(t.seed + 15))[: tr.select_count]
        ib = torch.randperm(nb, generator=torch.Generator().manual_seed(t.seed + 16))[: tr.select_count]
        self.select_ref = fid_statistics(self.select_space.extract(self.images_b[ib.to(self.device)].cpu())["features"])

    def run_suffix(self) -> str:
        return f"{self.cfg.translate.method}-{self.cfg.translate.generator}"

    def run_name(self) -> str:
        """``<data>-<method>-<arch>``; for paired/unpaired folders ``<data>`` is the folder's name."""
        d = self.cfg.data
        if self.cfg.name or d.dataset not in (PAIRED, UNPAIRED) or not d.root:
            return super().run_name()
        return f"{Path(d.root).name or d.dataset}-{self.run_suffix()}"

    def model_config(self) -> Dict[str, Any]:
        mc = super().model_config()
        mc["shape_b"] = [int(s) for s in self.images_b.shape[1:]]
        mc["directions"] = list(DIRECTIONS) if self.cycle else ["a2b"]
        mc["train_size"] = list(self.train_size)
        return mc

    # ---- one step -------------------------------------------------------------------------------
    def _crop_flip(self, a: torch.Tensor, b: torch.Tensor, same: bool) -> Tuple[torch.Tensor, torch.Tensor]:
        """Random crops of ``translate.crop_size`` and flips (``data.hflip``); the same for a[i] and b[i] when
        ``same`` (a pair)."""
        cs, flip = self.cfg.translate.crop_size, self.cfg.data.hflip
        if not cs and not flip:
            return a, b
        n, (h, w) = a.shape[0], a.shape[2:]

        def draws():
            ys = torch.randint(0, h - cs + 1, (n,), generator=self.aug_gen) if cs else None
            xs = torch.randint(0, w - cs + 1, (n,), generator=self.aug_gen) if cs else None
            fl = torch.rand(n, generator=self.aug_gen) < 0.5 if flip else None
            return ys, xs, fl

        def apply(x, ys, xs, fl):
            if cs:
                x = torch.stack([x[i, :, int(ys[i]) : int(ys[i]) + cs, int(xs[i]) : int(xs[i]) + cs] for i in range(n)])
            if flip:
                x = torch.where(fl.to(x.device)[:, None, None, None], x.flip(3), x)
            return x

        da = draws()
        db = da if same else draws()
        return apply(a, *da), apply(b, *db)

    def batch(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """(a [B, Ca, h, w], b [B, Cb, h, w]) in [-1, 1]: a pair batch for pix2pix, independent ones for CycleGAN."""
        ia = self.batcher.next().to(self.device)
        ib = ia if self.paired_batches else self.batcher_b.next().to(self.device)
        a = self.images[ia].float().div_(127.5).sub_(1.0)
        b = self.images_b[ib].float().div_(127.5).sub_(1.0)
        return self._crop_flip(a, b, same=self.paired_batches)

    def train_step(self) -> Dict[str, float]:
        tr = self.cfg.translate
        decay_lr(self.optims, self.base_lr, self.step, tr.lr_decay_start, tr.lr_decay_steps)
        a, b = self.batch()
        stats = self._step_cycle(a, b) if self.cycle else self._step_pix2pix(a, b)
        self.step += 1
        if self.G_ema is not None:
            self.update_ema(self.G_ema, self.G)
            if self.F_ema is not None:
                self.update_ema(self.F_ema, self.F)
        self.images_seen += a.shape[0]
        return stats

    def _step_pix2pix(self, a: torch.Tensor, b: torch.Tensor) -> Dict[str, float]:
        tr = self.cfg.translate
        with self.autocast():
            raw = self.G.raw(a).float()  # [B, Cb, h, w]
        fake = straight_through(raw)
        loss_d = self._update_d_pix2pix(a, b, fake.detach())
        self.D.requires_grad_(False)
        with self.autocast():  # D sees the hard-clamped output: its gradient cannot push pixels beyond [-1, 1]
            adv = self.loss.g(self.D(torch.cat([a, raw.clamp(-1.0, 1.0)], 1)).float())
        l1 = (fake - b).abs().mean()
        loss_g = tr.adv_weight * adv + tr.l1_weight * l1 + OVERSHOOT_WEIGHT * overshoot(raw)
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        self.D.requires_grad_(True)
        for _ in range(tr.d_steps - 1):  # extra D updates, each on a fresh pair batch
            a2, b2 = self.batch()
            with torch.no_grad(), self.autocast():
                fake2 = self.G.raw(a2).float().clamp(-1.0, 1.0)
            loss_d = self._update_d_pix2pix(a2, b2, fake2)
        return {"loss_d": loss_d.item(), "adv_g": adv.item(), "l1": l1.item(), "loss_g": loss_g.item()}

    def _update_d_pix2pix(self, a: torch.Tensor, b: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """One update of the conditional D on ``(a, b)`` against ``(a, fake)`` (``fake`` detached, in [-1, 1])."""
        with self.autocast():
            r = self.D(torch.cat([a, b], 1)).float()  # [B, 1, h', w'] logits
            f = self.D(torch.cat([a, fake], 1)).float()
        loss_d = self.loss.d(r, f)
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()
        return loss_d

    def _step_cycle(self, a: torch.Tensor, b: torch.Tensor) -> Dict[str, float]:
        tr = self.cfg.translate
        with self.autocast():
            raw_b = self.G.raw(a).float()  # [B, Cb, h, w]  G(a)
            raw_a = self.F.raw(b).float()  # [B, Ca, h, w]  F(b)
        # the translations go on to the other generator plainly clamped (as tanh saturates): with the
        # straight-through gradient the cycle loss kept pushing already-clamped pixels further out
        fake_b, fake_a = raw_b.clamp(-1.0, 1.0), raw_a.clamp(-1.0, 1.0)
        into_f, into_g = fake_b, fake_a
        if tr.cycle_noise > 0:  # noise from the checkpointed augmentation stream: resume stays exact
            into_f = fake_b + tr.cycle_noise * torch.randn(fake_b.shape, generator=self.aug_gen).to(fake_b.device)
            into_g = fake_a + tr.cycle_noise * torch.randn(fake_a.shape, generator=self.aug_gen).to(fake_a.device)
        with self.autocast():
            raw_ra = self.F.raw(into_f).float()  # F(G(a))
            raw_rb = self.G.raw(into_g).float()  # G(F(b))
        rec_a, rec_b = straight_through(raw_ra), straight_through(raw_rb)
        self.D.requires_grad_(False)
        self.D_A.requires_grad_(False)
        with self.autocast():  # D sees the hard-clamped outputs (see straight_through)
            adv_b = self.loss.g(self.D(raw_b.clamp(-1.0, 1.0)).float())
            adv_a = self.loss.g(self.D_A(raw_a.clamp(-1.0, 1.0)).float())
        cyc = (rec_a - a).abs().mean() + (rec_b - b).abs().mean()
        over = overshoot(raw_b) + overshoot(raw_a) + overshoot(raw_ra) + overshoot(raw_rb)
        loss_g = tr.adv_weight * (adv_a + adv_b) + tr.cycle_weight * cyc + OVERSHOOT_WEIGHT * over
        stats: Dict[str, float] = {}
        if self.identity:
            with self.autocast():
                raw_ib = self.G.raw(b).float()
                raw_ia = self.F.raw(a).float()
            idt = (straight_through(raw_ib) - b).abs().mean() + (straight_through(raw_ia) - a).abs().mean()
            loss_g = loss_g + tr.identity_weight * tr.cycle_weight * idt + OVERSHOOT_WEIGHT * (
                overshoot(raw_ib) + overshoot(raw_ia))
            stats["identity"] = idt.item()
        if tr.lowres_weight > 0:
            low = (lowres_l1(straight_through(raw_b), a, tr.lowres_factor, tr.lowres_pool)
                   + lowres_l1(straight_through(raw_a), b, tr.lowres_factor, tr.lowres_pool))
            loss_g = loss_g + tr.lowres_weight * low
            stats["lowres"] = low.item()
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        self.D.requires_grad_(True)
        self.D_A.requires_grad_(True)
        loss_d = self._update_d_cycle(a, b, fake_b, fake_a)
        for _ in range(tr.d_steps - 1):  # extra D updates, each on fresh batches of both domains
            a2, b2 = self.batch()
            with torch.no_grad(), self.autocast():
                fb2, fa2 = self.G.raw(a2).float().clamp(-1.0, 1.0), self.F.raw(b2).float().clamp(-1.0, 1.0)
            loss_d = self._update_d_cycle(a2, b2, fb2, fa2)
        stats.update(loss_d=loss_d.item(), adv_g=(adv_a + adv_b).item(), cycle=cyc.item(), loss_g=loss_g.item())
        return stats

    def _update_d_cycle(self, a: torch.Tensor, b: torch.Tensor, fake_b: torch.Tensor, fake_a: torch.Tensor) -> torch.Tensor:
        """One update of D_B and D_A: real images against generated ones passed through the history pools."""
        pb, pa = self.pool_b.query(fake_b), self.pool_a.query(fake_a)
        with self.autocast():
            loss_db = self.loss.d(self.D(b).float(), self.D(pb).float())
            loss_da = self.loss.d(self.D_A(a).float(), self.D_A(pa).float())
        loss_d = loss_db + loss_da
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()
        return loss_d

    # ---- outputs ----------------------------------------------------------------------------------
    def _eval_net(self, which: str) -> Translator:
        if which == "a2b":
            return self.G_ema if self.G_ema is not None else self.G
        return self.F_ema if self.F_ema is not None else self.F

    @torch.no_grad()
    def validate(self) -> Tuple[np.ndarray, Optional[float]]:
        """The sample grid (input | output | target or reconstruction rows, each direction trained) and the
        validation L1 of a2b against the targets (paired data only, [-1, 1] units)."""
        nets = [self._eval_net("a2b")] + ([self._eval_net("b2a")] if self.cycle else [])
        states = [n.training for n in nets]
        for n in nets:
            n.eval()
        fb = run_padded(nets[0], self.val_a)
        l1 = (fb - self.val_b).abs().mean().item() if self.pairs.paired else None
        u8 = lambda x: _rgb(to_uint8(x).cpu())  # noqa: E731
        third_b = self.val_b if self.pairs.paired else run_padded(nets[1], fb)
        grids = [completion_grid(u8(self.val_a), u8(fb), u8(third_b), ncol=GRID_COLS)]
        if self.cycle:
            fa = run_padded(nets[1], self.val_b)
            third_a = self.val_a if self.pairs.paired else run_padded(nets[0], fa)
            grids.append(completion_grid(u8(self.val_b), u8(fa), u8(third_a), ncol=GRID_COLS))
        for n, s in zip(nets, states):
            n.train(s)
        gap = np.full((6, grids[0].shape[1], 3), 255, dtype=np.uint8)
        return np.concatenate([g if i == 0 else np.concatenate([gap, g]) for i, g in enumerate(grids)]), l1

    @torch.no_grad()
    def selection_fid(self) -> float:
        """FID (``translate.select_features`` space) of the a2b translations of the selection A images against
        the selection B images: unsupervised (no labels, no test images)."""
        from ganforge.metrics.compute import fid_from_statistics, fid_statistics

        net = self._eval_net("a2b")
        state = net.training
        net.eval()
        out = []
        for idx in self.select_a.split(256):
            x = self.images[idx.to(self.device)].float().div(127.5).sub(1.0)  # [n, Ca, H, W]
            out.append(to_uint8(run_padded(net, x)).cpu())  # [n, Cb, H, W] uint8
        net.train(state)
        feats = self.select_space.extract(torch.cat(out))["features"]
        return fid_from_statistics(fid_statistics(feats), self.select_ref)

    def _periodic(self) -> None:
        tr = self.cfg.translate
        if tr.select == "fid" and self.step % tr.select_every == 0:
            value = self.selection_fid()
            best = value < self.best_fid
            self.metrics.append({"step": self.step, "kimg": round(self.images_seen / 1000, 3),
                                 "select_fid": round(value, 4)})
            self.tb.scalars({"val/select_fid": value}, self.step)
            self.log(f"step {self.step}: selection FID {value:.2f}{' (best so far)' if best else ''}")
            if best:
                self.best_fid = value
                self.save("best")
        super()._periodic()

    def sample_grid(self) -> np.ndarray:
        grid, l1 = self.validate()
        if l1 is not None:
            self.metrics.append({"step": self.step, "kimg": round(self.images_seen / 1000, 3), "val_l1": round(l1, 5)})
            self.tb.scalars({"val/l1": l1}, self.step)
        return grid

    def _extra_state(self) -> Dict[str, Any]:
        return {"batcher_b": self.batcher_b.state_dict(), "aug_gen": self.aug_gen.get_state(),
                "pool_a": self.pool_a.state_dict(), "pool_b": self.pool_b.state_dict(), "best_fid": self.best_fid}

    def _restore_extra(self, s: Dict[str, Any], full: bool) -> None:
        if full:
            self.batcher_b.load_state_dict(s["batcher_b"])
            self.aug_gen.set_state(s["aug_gen"])
            self.pool_a.load_state_dict(s["pool_a"], self.device)
            self.pool_b.load_state_dict(s["pool_b"], self.device)
            self.best_fid = float(s.get("best_fid", float("inf")))

    # ---- hooks of the shared loop ------------------------------------------------------------------
    def _header(self) -> str:
        tr, t = self.cfg.translate, self.cfg.train
        n_g = sum(p.numel() for p in self.G.parameters())
        kind = "paired" if self.pairs.paired else "unpaired"
        sizes = "x".join(map(str, self.train_size))
        return (f"training {tr.method} ({tr.generator} generator{'s' if self.cycle else ''}, {n_g / 1e6:.2f}M parameters "
                f"each) on {self.pairs.name}: {self.images.shape[0]} A images ({self.ca} ch) and "
                f"{self.images_b.shape[0]} B images ({self.cb} ch), {kind}, {'x'.join(map(str, self.img_shape[1:]))}"
                f" (crops {sizes}), batch {t.batch_size}, device {self.device}, {torch.get_num_threads()} threads; "
                f"run folder {self.run_dir}")

    def _check_step(self, stats: Dict[str, float]) -> None:
        check_finite(stats, self.step, "try lower learning rates (g_optim.lr, d_optim.lr) or a smaller translate.adv_weight")

    def _plot(self) -> None:
        plot_translate_curves(self.metrics.records, self.run_dir / "loss_curve.png")

    def _postfix(self, rec: Dict[str, Any]) -> str:
        main = f"L1 {rec['l1']:.4f}" if "l1" in rec else f"cycle {rec.get('cycle', 0):.4f}"
        return f"{main} D {rec['loss_d']:.3f} G adv {rec['adv_g']:.3f} {rec['img_per_s']:.0f} img/s"

    def _done_extra(self) -> str:
        last = next((r["val_l1"] for r in reversed(self.metrics.records) if "val_l1" in r), None)
        out = f"validation L1 {last:.4f}; " if last is not None else ""
        if self.best_fid < float("inf"):
            out += f"best selection FID {self.best_fid:.2f} (checkpoint 'best'); "
        return out


def plot_translate_curves(records: List[Dict[str, Any]], path: Path) -> None:
    """Reconstruction (L1 / cycle, validation L1) and adversarial losses against kimg, as PNG."""
    rows = [r for r in records if "loss_d" in r]
    vals = [r for r in records if "val_l1" in r]
    if not rows and not vals:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    x = [r["kimg"] for r in rows]
    for key, label in (("l1", "L1(G(a), b)"), ("cycle", "cycle L1 (both)"), ("identity", "identity L1 (both)"),
                       ("lowres", "low-resolution L1 (both)")):
        if rows and key in rows[-1]:
            axes[0].plot(x, [r.get(key, np.nan) for r in rows], label=label)
    if vals:
        axes[0].plot([r["kimg"] for r in vals], [r["val_l1"] for r in vals], "k.--", label="validation L1")
    axes[0].set_xlabel("kimg (thousands of A images shown)")
    axes[0].set_title("reconstruction ([-1, 1] units)")
    axes[0].set_yscale("log")
    axes[0].legend()
    if rows:
        axes[1].plot(x, [r["loss_d"] for r in rows], label="D loss")
        axes[1].plot(x, [r["adv_g"] for r in rows], label="G adversarial loss")
        axes[1].legend()
    axes[1].set_xlabel("kimg")
    axes[1].set_title("PatchGAN")
    save_figure(fig, path)


# ------------------------------------------------------------------------------------------
# using a trained translator


class TranslatorHandle(Handle):
    """A trained translator: ``module`` (A -> B) and, for CycleGAN, ``module_b2a`` (B -> A), with what is
    needed to use them on uint8 images of any size."""

    task = "translate"

    def __init__(self, module: Translator, checkpoint: runs.Checkpoint, config, module_b2a: Optional[Translator] = None):
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
            raise TranslateError(f"this model ({self.method}) was trained for a2b only, not {direction}: pix2pix learns "
                                 f"one direction; train translate.method=cyclegan for both, or a pix2pix run with the "
                                 f"domains swapped")
        return self.module if direction == "a2b" else self.module_b2a

    def channels(self, direction: str = "a2b") -> Tuple[int, int]:
        """(input channels, output channels) of ``direction``."""
        ca, cb = self.img_shape[0], self.shape_b[0]
        return (ca, cb) if direction == "a2b" else (cb, ca)

    @torch.no_grad()
    def translate(self, images: Union[torch.Tensor, np.ndarray], direction: str = "a2b", tile: Optional[int] = None,
                  overlap: Optional[int] = None, batch_size: int = 16) -> torch.Tensor:
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
            raise TranslateError(f"translate: expected uint8 images [N, {c_in}, H, W], got {images.dtype} "
                                 f"{tuple(images.shape)}")
        if images.shape[1] != c_in:
            raise TranslateError(f"wrong channel count: the model's {direction} direction takes {c_in}-channel "
                                 f"({'grayscale' if c_in == 1 else 'colour'}) images, got {images.shape[1]} channels")
        if tile < 2 * net.multiple or overlap < 0 or overlap >= tile // 2:
            raise TranslateError(f"tile={tile}, overlap={overlap}: expected tile >= {2 * net.multiple} and "
                                 "0 <= overlap < tile / 2")
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
            out.append(ExportNet(d, net, (x,), ("image",), ("translated",), spatial=("image",), multiple=net.multiple,
                                 values={"image": f"float32 in [-1, 1], {c_in} channels",
                                         "translated": f"float32 in [-1, 1], {c_out} channels"}))
        return out

    def __repr__(self) -> str:
        return (f"TranslatorHandle({self.method}, {'/'.join(self.directions)}, A {'x'.join(map(str, self.img_shape))}, "
                f"B {'x'.join(map(str, self.shape_b))}, step {self.step}, {self.checkpoint_path})")


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


class TranslateTask(Task):
    name = "translate"
    summary = "image-to-image translation: pix2pix (paired) or CycleGAN (unpaired)"
    sections = {**SHARED_SECTIONS, "translate": TranslateConfig}
    trainer = TranslateTrainer
    tiny = ("translate.width=4", "translate.d_width=4", "translate.blocks=1")

    def validate(self, cfg) -> None:
        super().validate(cfg)
        if cfg.data.dataset in (PAIRED, UNPAIRED) and not cfg.data.root:
            raise ConfigError(f"data.root: data.dataset={cfg.data.dataset} needs data.root=PATH (a folder with A/ and "
                              "B/ subfolders" + (", or side-by-side AB images)" if cfg.data.dataset == PAIRED else ")"))
        if cfg.translate.method == "pix2pix" and cfg.data.dataset == UNPAIRED:
            raise ConfigError("translate.method=pix2pix learns from pairs but data.dataset=unpaired has none; use "
                              "translate.method=cyclegan or data.dataset=paired")

    def load(self, checkpoint: runs.Checkpoint, ema: bool = True, device="cpu") -> TranslatorHandle:
        cfg = self.stored_config(checkpoint)
        tr = cfg.translate
        try:
            ca = int(checkpoint.config["img_shape"][0])
            cb = int(checkpoint.config["shape_b"][0])
            size = tuple(int(s) for s in checkpoint.config["train_size"])
            opts = dict(width=tr.width, blocks=tr.blocks, input_skip=tr.input_skip, upsample=tr.upsample)
            g = build(tr.generator, ca, cb, size, **opts)
            f = build(tr.generator, cb, ca, size, **opts) if "b2a" in checkpoint.config["directions"] else None
        except (KeyError, TypeError, ValueError, ModelBuildError) as e:
            raise RunError(f"checkpoint '{checkpoint.folder}': cannot rebuild the translation networks: {e}") from None
        use_ema = ema and checkpoint.has("generator_ema")
        self.load_state(g, checkpoint, "generator_ema" if use_ema else "generator")
        if f is not None:
            self.load_state(f, checkpoint, "generator_b2a_ema" if use_ema else "generator_b2a")
        handle = TranslatorHandle(g.to(device), checkpoint, cfg, f.to(device) if f is not None else None)
        handle.ema = use_ema
        return handle


TASKS.register("translate")(TranslateTask())


def load_translator(run_dir: Union[str, Path], checkpoint: str = "last", device: Union[str, torch.device] = "cpu",
                    ema: bool = True) -> TranslatorHandle:
    """The translator of a ``task=translate`` run (``checkpoint``: ``last``, a step, or a checkpoint folder);
    a :class:`~ganforge.errors.RunError` for a run of another task."""
    ck = runs.open_checkpoint(run_dir, checkpoint)
    if ck.task != "translate":
        raise RunError(f"run '{ck.run_dir or ck.folder}' trained task {ck.task!r}, not an image translator; train one "
                       "with 'ganforge train task=translate'")
    return TASKS.get("translate").load(ck, ema=ema, device=device)


__all__ = ["TranslateConfig", "TranslateError", "TranslateTrainer", "TranslatorHandle", "load_translator", "HistoryPool"]
