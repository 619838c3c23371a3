"""The translate task: trainer."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from ganforge.data import ImageData
from ganforge.errors import ConfigError, ModelBuildError
from ganforge.imaging import completion_grid, to_uint8
from ganforge.losses import LOSSES
from ganforge.tasks.translate.config import DIRECTIONS
from ganforge.tasks.translate.data import (  # registers paired/unpaired
    PAIRED,
    UNPAIRED,
    TranslationData,
    derive_pairs,
    load_translation,
)
from ganforge.tasks.translate.losses import OVERSHOOT_WEIGHT, lowres_l1, overshoot, straight_through
from ganforge.tasks.translate.networks import PatchDiscriminator, Translator, build, run_padded
from ganforge.training.loop import TrainingLoop
from ganforge.training.monitor import Panel
from ganforge.training.parts import Batcher, decay_lr

GRID_MAX = 16  # images per direction in the sample grid (at most)


GRID_COLS = 8


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


def _rgb(x: torch.Tensor) -> torch.Tensor:
    return x if x.shape[1] == 3 else x.expand(-1, 3, -1, -1)


class TranslateTrainer(TrainingLoop):
    """Builds and trains pix2pix or CycleGAN from a ``task=translate`` config."""

    task = "translate"
    compiles = False

    progress = ("L1 {l1:.4f}", "cycle {cycle:.4f}", "D {loss_d:.3f} G adv {adv_g:.3f}")
    summary = ("validation L1 {val_l1:.4f}",)
    curves = (
        Panel(
            "reconstruction ([-1, 1] units)",
            (
                ("l1", "L1(G(a), b)"),
                ("cycle", "cycle L1 (both)"),
                ("identity", "identity L1 (both)"),
                ("lowres", "low-resolution L1 (both)"),
                ("val_l1", "validation L1", "k.--"),
            ),
            xlabel="kimg (thousands of A images shown)",
            log=True,
        ),
        Panel("PatchGAN", (("loss_d", "D loss"), ("adv_g", "G adversarial loss"))),
    )
    diverged_advice = "try lower learning rates (g_optim.lr, d_optim.lr) or a smaller translate.adv_weight"

    # ---- data ---------------------------------------------------------------------------------
    def load_data(self, data):
        """The two domains (``data`` may be :class:`TranslationData`, or an ``ImageData`` to derive pairs
        from); the shared loop batches domain A, this trainer domain B."""
        tr, d = self.cfg.translate, self.cfg.data
        if isinstance(data, TranslationData):
            pairs = data
        elif isinstance(data, ImageData):
            pairs = derive_pairs(data, tr.derive)
        else:
            pairs = load_translation(d, tr.derive)
        if tr.method == "pix2pix" and not pairs.paired:
            raise ConfigError(
                f"translate.method=pix2pix learns from pairs, but '{pairs.name}' is unpaired "
                "(data.dataset=unpaired); use translate.method=cyclegan, or paired data"
            )
        self.pairs = pairs
        if d.dataset in (PAIRED, UNPAIRED) and d.root:  # the run folder is named after the data's folder
            self.dataset_label = Path(d.root).name or d.dataset
        return pairs.domain_a()

    def _setup_b(self) -> None:
        """Domain B on the device, its batches and the crop size."""
        tr, t = self.cfg.translate, self.cfg.train
        nb = self.pairs.b.shape[0]
        if t.batch_size > nb:
            raise ConfigError(f"train.batch_size={t.batch_size} is larger than domain B ({nb} images)")
        self.images_b = self.pairs.b.to(self.device)
        self.paired_batches = tr.method == "pix2pix"  # CycleGAN draws B independently, even from paired data
        self.batcher_b = Batcher(nb, t.batch_size, self.stream_seed("batches_b"))
        self.aug_gen = self.rng("augment", save_as="aug_gen")  # crops, flips and cycle noise (on the CPU)
        h, w = self.img_shape[1:]
        cs = tr.crop_size
        if cs is not None and cs > min(h, w):
            raise ConfigError(
                f"translate.crop_size={cs} is larger than the images ({h}x{w}); use a smaller crop or "
                "a larger data.size"
            )
        self.train_size = (cs, cs) if cs else (h, w)

    # ---- networks -------------------------------------------------------------------------------
    def build(self) -> None:
        cfg = self.cfg
        tr, t = cfg.translate, cfg.train
        self._setup_b()
        ca, cb = self.img_shape[0], int(self.images_b.shape[1])
        self.ca, self.cb = ca, cb
        self.cycle = tr.method == "cyclegan"
        opts = dict(
            width=tr.width, blocks=tr.blocks, dropout=tr.dropout, input_skip=tr.input_skip, upsample=tr.upsample
        )
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
        self.pool_b = HistoryPool(tr.pool_size if self.cycle else 0, self.stream_seed("pool_b"))
        self.pool_a = HistoryPool(tr.pool_size if self.cycle else 0, self.stream_seed("pool_a"))
        # the fixed validation images of the sample grids (whole images, seeded choice)
        na, nb = self.images.shape[0], self.images_b.shape[0]
        k = min(t.sample_count, GRID_MAX, na, nb)
        k = k - k % min(GRID_COLS, k)
        ia = torch.randperm(na, generator=self.rng("samples"))[:k]
        ib = ia if self.pairs.paired else torch.randperm(nb, generator=self.rng("samples_b"))[:k]
        self.val_a = self.images[ia.to(self.device)].float().div(127.5).sub(1.0)  # [k, Ca, H, W]
        self.val_b = self.images_b[ib.to(self.device)].float().div(127.5).sub(1.0)  # [k, Cb, H, W]
        self.select_space = None
        if tr.select == "fid":
            self._setup_selection()
        self.run_suffix = f"{tr.method}-{tr.generator}"
        self.model_info = {
            "shape_b": [int(s) for s in self.images_b.shape[1:]],
            "directions": list(DIRECTIONS) if self.cycle else ["a2b"],
            "train_size": list(self.train_size),
        }
        n_g = sum(p.numel() for p in self.G.parameters())
        kind = "paired" if self.pairs.paired else "unpaired"
        self.description = (
            f"{tr.method} ({tr.generator} generator{'s' if self.cycle else ''}, {n_g / 1e6:.2f}M parameters each) on "
            f"{self.pairs.name}: {na} A images ({ca} ch) and {nb} B images ({cb} ch), {kind}, "
            f"{'x'.join(map(str, self.img_shape[1:]))} (crops {'x'.join(map(str, self.train_size))})"
        )

    def _setup_selection(self) -> None:
        """The feature space and the reference statistics of domain B for ``translate.select=fid``."""
        from ganforge.metrics.compute import fid_statistics
        from ganforge.metrics.features import get_feature_space

        tr = self.cfg.translate
        self.select_space = get_feature_space(tr.select_features, device=str(self.device))
        na, nb = self.images.shape[0], self.images_b.shape[0]
        self.select_a = torch.randperm(na, generator=self.rng("select_a"))[: tr.select_count]
        ib = torch.randperm(nb, generator=self.rng("select_b"))[: tr.select_count]
        self.select_ref = fid_statistics(self.select_space.extract(self.images_b[ib.to(self.device)].cpu())["features"])

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
            loss_g = (
                loss_g
                + tr.identity_weight * tr.cycle_weight * idt
                + OVERSHOOT_WEIGHT * (overshoot(raw_ib) + overshoot(raw_ia))
            )
            stats["identity"] = idt.item()
        if tr.lowres_weight > 0:
            low = lowres_l1(straight_through(raw_b), a, tr.lowres_factor, tr.lowres_pool) + lowres_l1(
                straight_through(raw_a), b, tr.lowres_factor, tr.lowres_pool
            )
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

    def _update_d_cycle(
        self, a: torch.Tensor, b: torch.Tensor, fake_b: torch.Tensor, fake_a: torch.Tensor
    ) -> torch.Tensor:
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

    def evaluate(self) -> None:
        """``translate.select=fid``: the selection FID every ``select_every`` steps; the lowest keeps ``best``."""
        tr = self.cfg.translate
        if tr.select == "fid" and self.step % tr.select_every == 0:
            value = self.selection_fid()
            self.metrics.append(
                {"step": self.step, "kimg": round(self.images_seen / 1000, 3), "select_fid": round(value, 4)}
            )
            self.tb.scalars({"val/select_fid": value}, self.step)
            best = self.keep_best("select_fid", value, label="selection FID")
            self.log(f"step {self.step}: selection FID {value:.2f}{' (best so far)' if best else ''}")

    def sample_grid(self) -> np.ndarray:
        grid, l1 = self.validate()
        if l1 is not None:
            self.metrics.append({"step": self.step, "kimg": round(self.images_seen / 1000, 3), "val_l1": round(l1, 5)})
            self.tb.scalars({"val/l1": l1}, self.step)
        return grid

    def extra_state(self) -> Dict[str, Any]:
        return {
            "batcher_b": self.batcher_b.state_dict(),
            "pool_a": self.pool_a.state_dict(),
            "pool_b": self.pool_b.state_dict(),
        }

    def load_extra_state(self, s: Dict[str, Any], full: bool) -> None:
        if full:
            self.batcher_b.load_state_dict(s["batcher_b"])
            self.pool_a.load_state_dict(s["pool_a"], self.device)
            self.pool_b.load_state_dict(s["pool_b"], self.device)
