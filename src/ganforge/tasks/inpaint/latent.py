"""Semantic inpainting by latent optimisation (Yeh et al. 2017, "Semantic image inpainting with deep
generative models") with any GAN run.

The generator is fixed; its latent space is searched for the ``z`` whose image agrees with the known
pixels ``y``: ``z* = argmin_z ||W * (G(z) - y)||_1 + lambda * g_loss(D(G(z)))``, W weighting known pixels
near the hole most (:func:`contextual_weights`), the prior keeping G(z) realistic for the run's
discriminator. :class:`LatentInpainter` optimises several restarts as one batch and keeps the best;
:func:`ganforge.tasks.inpaint.app.inpaint` uses it for GAN runs, at any image size.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from ganforge.errors import InpaintError
from ganforge.tasks.inpaint.options import DEFAULT_LR, DEFAULT_PRIOR, DEFAULT_RESTARTS, DEFAULT_STEPS, DEFAULT_WINDOW

__all__ = ["LatentInpainter", "LatentResult", "contextual_weights"]


def contextual_weights(hole: torch.Tensor, window: int = DEFAULT_WINDOW) -> torch.Tensor:
    """Yeh et al. 2017 eq. (2): W_i = (number of missing pixels in the window around i) / |window|
    for a known pixel i, and 0 for a missing one. hole: [N, 1, H, W] bool -> float [N, 1, H, W].

    Windows are cut at the image border (only pixels inside the image are counted).
    """
    if window < 1 or window % 2 == 0:
        raise InpaintError(f"window: expected an odd size >= 1, got {window}")
    m = hole.float()
    frac = F.avg_pool2d(m, window, stride=1, padding=window // 2, count_include_pad=False)  # [N, 1, H, W]
    return frac * (1.0 - m)


def _per_sample_g_loss(loss_name: str):
    """The run's generator loss applied to each logit on its own: logits [B] -> [B]."""
    from ganforge.losses import LOSSES

    g = LOSSES.get(loss_name).g
    return torch.func.vmap(lambda t: g(t.unsqueeze(0)))


@dataclass
class LatentResult:
    """What :meth:`LatentInpainter.optimise` found, per image."""

    fill: torch.Tensor  # [N, C, H, W] in [-1, 1]: G(z*) of the best restart
    z: torch.Tensor  # [N, z_dim]: the best latent
    labels: Optional[torch.Tensor]  # [N] class of the best restart (conditional runs), else None
    context_loss: torch.Tensor  # [N]: contextual loss of the best restart (after the last step)
    prior_loss: torch.Tensor  # [N]: prior loss of the best restart
    restart_losses: torch.Tensor  # [N, K * R]: final contextual loss of every restart (class-major)
    history: torch.Tensor  # [steps + 1, N]: lowest contextual loss over the restarts at each step
    seconds: float = 0.0


class LatentInpainter:
    """Completion by searching a GAN's latent space (Yeh et al. 2017).

    ``generator`` is a :class:`ganforge.api.GeneratorHandle`; ``discriminator`` the run's D (for
    the prior loss) or None to search with the contextual loss alone; ``loss_name`` the run's
    ``loss.name`` (its generator loss is the prior, weighted by lambda = 0.003 as in the paper). Restarts
    are optimised together (Adam) and the one with the lowest contextual loss is kept; a conditional run
    takes a class (``class_``), or every class gets its own restarts and the best over all of them wins.
    """

    kind = "latent"

    def __init__(self, generator, discriminator: Optional[nn.Module], loss_name: str = "non-saturating"):
        self.generator = generator
        self.discriminator = None if discriminator is None else discriminator.eval().requires_grad_(False)
        self.loss_name = loss_name
        self.img_shape: Tuple[int, int, int] = tuple(generator.img_shape)
        self.num_classes: int = int(generator.num_classes)
        self.config = generator.config
        self.checkpoint_path = generator.checkpoint_path
        self._prior = _per_sample_g_loss(loss_name)

    @classmethod
    def from_run(cls, run: Union[str, Path], checkpoint: str = "last", device: str = "cpu") -> "LatentInpainter":
        """The EMA generator and the discriminator of a GAN run's checkpoint."""
        from ganforge.api import load_generator

        return cls.from_generator(load_generator(run, checkpoint=checkpoint, device=device))

    @classmethod
    def from_generator(cls, handle) -> "LatentInpainter":
        """Wrap a loaded generator; its discriminator is read from the same checkpoint folder."""
        folder = Path(handle.checkpoint_path)
        d: Optional[nn.Module] = handle.discriminator()
        if d is None:
            warnings.warn(
                f"checkpoint '{folder}' has no discriminator: latent search without the prior loss", stacklevel=2
            )
        return cls(handle, d, handle.config.loss.name)

    @property
    def device(self) -> torch.device:
        return self.generator.device

    def _initial_latents(self, n: int, restarts: int, seed: int) -> torch.Tensor:
        """[n, restarts, z_dim]: restart r starts from a latent drawn from its own generator seeded by
        (``seed``, r), the same for every image, so an image's search does not depend on which other
        images share its batch, and the first R restarts are the same whatever the number of restarts.
        Drawn from the run's noise distribution (``model.z_dist``) by the generator handle."""
        zs = [self.generator.noise(1, seed * 1_000_003 + r) for r in range(restarts)]
        return torch.cat(zs).repeat(n, 1, 1)

    def optimise(
        self,
        images: torch.Tensor,
        holes: torch.Tensor,
        steps: int = DEFAULT_STEPS,
        restarts: int = DEFAULT_RESTARTS,
        seed: int = 0,
        class_: Union[int, str, None] = None,
        lr: float = DEFAULT_LR,
        prior_weight: float = DEFAULT_PRIOR,
        window: int = DEFAULT_WINDOW,
        progress: Optional[Callable[[int, int], None]] = None,
    ) -> LatentResult:
        """Find the latent of every image whose sample fits its known pixels.

        images: float [N, C, H, W] in [-1, 1] at the model's size; holes: [N, 1, H, W], True = missing.
        All N x K x R latents (K classes when conditional and ``class_`` is None, else 1) are
        optimised together as one batch; the networks are in eval mode, so each latent's path is
        independent of the others (Adam's update is per coordinate). ``progress(step, steps)`` is called
        after each step (the web app's progress bar).
        """
        c, h, w = self.img_shape
        if images.dim() != 4 or tuple(images.shape[1:]) != (c, h, w):
            raise InpaintError(f"images: expected [N, {c}, {h}, {w}] at the model's size, got {list(images.shape)}")
        if steps < 1 or restarts < 1:  # no step would return the random starting points
            raise InpaintError(f"steps and restarts must be at least 1 (got steps={steps}, restarts={restarts})")
        t0 = time.perf_counter()
        dev = self.device
        n = images.shape[0]
        classes = self._classes(class_)  # [K] or None
        k = 1 if classes is None else len(classes)
        b = n * k * restarts
        y = images.to(dev, torch.float32)
        hole = holes.to(dev).bool()
        wts = contextual_weights(hole, window)  # [N, 1, H, W]
        # latents laid out [N, K, R]: restarts of one image (and class) are contiguous
        z0 = self._initial_latents(n, k * restarts, seed).view(n, k, restarts, -1)
        z = z0.reshape(b, -1).to(dev).requires_grad_(True)
        labels = None if classes is None else classes.view(1, k, 1).expand(n, k, restarts).reshape(b).to(dev)
        target = y.repeat_interleave(k * restarts, 0)  # [B, C, H, W]
        weight = wts.repeat_interleave(k * restarts, 0)  # [B, 1, H, W]
        g = self.generator.module
        opt = torch.optim.Adam([z], lr=lr)
        history: List[torch.Tensor] = []

        def losses(zz: torch.Tensor, need_prior: bool) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            x = g(zz) if labels is None else g(zz, labels)  # [B, C, H, W]
            ctx = (weight * (x - target)).abs().flatten(1).sum(1)  # [B]
            if need_prior and self.discriminator is not None and prior_weight > 0:
                logits = self.discriminator(x) if labels is None else self.discriminator(x, labels)  # [B]
                prior = self._prior(logits.float())
            else:
                prior = torch.zeros_like(ctx)
            return x, ctx, prior

        was_training = g.training
        g.eval()
        g.requires_grad_(False)
        try:
            for _ in range(steps):
                _, ctx, prior = losses(z, True)
                history.append(ctx.detach().view(n, k * restarts).min(1).values.cpu())
                opt.zero_grad(set_to_none=True)
                (ctx + prior_weight * prior).sum().backward()
                opt.step()
                if progress is not None:
                    progress(len(history), steps)
            with torch.no_grad():
                x, ctx, prior = losses(z, True)
        finally:
            g.train(was_training)
        ctx_nr = ctx.view(n, k * restarts)
        history.append(ctx_nr.min(1).values.cpu())
        best = ctx_nr.argmin(1)  # [N]
        flat = torch.arange(n, device=best.device) * (k * restarts) + best
        return LatentResult(
            fill=x[flat].detach().float().cpu(),
            z=z.detach()[flat].cpu(),
            labels=None if labels is None else labels[flat].cpu(),
            context_loss=ctx[flat].cpu(),
            prior_loss=prior.view(-1)[flat].cpu(),
            restart_losses=ctx_nr.cpu(),
            history=torch.stack(history),
            seconds=time.perf_counter() - t0,
        )

    def _classes(self, class_: Union[int, str, None]) -> Optional[torch.Tensor]:
        if not self.num_classes:
            if class_ is not None:
                raise InpaintError(
                    f"class {class_!r}: this GAN run is unconditional; it takes no class (leave the class out)"
                )
            return None
        if class_ is None:
            return torch.arange(self.num_classes)
        try:
            return torch.tensor([self.generator.class_index(class_)])
        except ValueError as e:
            raise InpaintError(str(e)) from None

    def fill(self, images: torch.Tensor, holes: torch.Tensor, **options: Any) -> Tuple[torch.Tensor, Dict[str, Any]]:
        """uint8 [N, C, H, W] at the model's size, holes [N, 1, H, W] -> (fill float [N, C, H, W]
        in [0, 255], details). ``options`` go to :meth:`optimise`."""
        res = self.optimise(images.float() / 127.5 - 1.0, holes, **options)
        info: Dict[str, Any] = {
            "context_loss": res.context_loss.tolist(),
            "prior_loss": res.prior_loss.tolist(),
            "history": res.history,
            "seconds": res.seconds,
        }
        if res.labels is not None:
            info["class"] = [self.generator.class_names[int(v)] for v in res.labels]
        return (res.fill.clamp(-1, 1) + 1.0) * 127.5, info
