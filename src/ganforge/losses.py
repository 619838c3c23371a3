"""Adversarial losses as pure functions of discriminator logits, in d_/g_ pairs.

``real`` and ``fake`` are the raw logits D(x) and D(G(z)) (shape [N]); every function
returns a scalar to minimise. Written with ``softplus`` so they stay finite where
``log(sigmoid(.))`` would underflow: ``-log(sigmoid(t)) = softplus(-t)`` and
``-log(1 - sigmoid(t)) = softplus(t)``.

Penalties (gradient penalty, R1) and the weight clipping of the original WGAN are separate and
applied on their own schedule by the trainer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from ganforge.registry import Registry

Tensor = torch.Tensor


@dataclass(frozen=True)
class GANLoss:
    d: Callable[[Tensor, Tensor], Tensor]  # d(real_logits, fake_logits) -> scalar
    g: Callable[[Tensor], Tensor]  # g(fake_logits) -> scalar


LOSSES: Registry[GANLoss] = Registry("loss")


# --- classic minimax (Goodfellow et al. 2014) --------------------------------------------
def d_logistic(real: Tensor, fake: Tensor) -> Tensor:
    """-log D(x) - log(1 - D(G(z))): the discriminator side of both logistic losses."""
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def g_minimax(fake: Tensor) -> Tensor:
    """The original saturating generator loss, exactly log(1 - D(G(z))) (minimised)."""
    return -F.softplus(fake).mean()


def g_nonsaturating(fake: Tensor) -> Tensor:
    """-log D(G(z)): the 'non-saturating' heuristic from the same paper."""
    return F.softplus(-fake).mean()


# --- hinge (Lim & Ye 2017; Miyato et al. 2018) ------------------------------------------
def d_hinge(real: Tensor, fake: Tensor) -> Tensor:
    return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()


def g_hinge(fake: Tensor) -> Tensor:
    return -fake.mean()


# --- Wasserstein (Arjovsky et al. 2017; with gradient penalty, Gulrajani et al. 2017) -----
# ``wgan`` keeps the critic Lipschitz by clipping its weights (:func:`clip_weights`, applied by the
# trainer after every critic step), ``wgan-gp`` by the gradient penalty; the losses are the same.
def d_wasserstein(real: Tensor, fake: Tensor) -> Tensor:
    return fake.mean() - real.mean()


def g_wasserstein(fake: Tensor) -> Tensor:
    return -fake.mean()


# --- least squares (Mao et al. 2017, a=0, b=c=1) -------------------------------------------
def d_least_squares(real: Tensor, fake: Tensor) -> Tensor:
    return 0.5 * ((real - 1.0) ** 2).mean() + 0.5 * (fake**2).mean()


def g_least_squares(fake: Tensor) -> Tensor:
    return 0.5 * ((fake - 1.0) ** 2).mean()


LOSSES.register("minimax")(GANLoss(d_logistic, g_minimax))
LOSSES.register("non-saturating")(GANLoss(d_logistic, g_nonsaturating))
LOSSES.register("hinge")(GANLoss(d_hinge, g_hinge))
LOSSES.register("wgan")(GANLoss(d_wasserstein, g_wasserstein))
LOSSES.register("wgan-gp")(GANLoss(d_wasserstein, g_wasserstein))
LOSSES.register("lsgan")(GANLoss(d_least_squares, g_least_squares))


# --- penalties ---------------------------------------------------------------------------
def gradient_penalty(
    d: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor, generator: torch.Generator | None = None
) -> Tensor:
    """WGAN-GP: E[(||grad D(x_hat)||_2 - 1)^2] on random interpolates of real and fake."""
    alpha = torch.rand(
        real.shape[0], *([1] * (real.dim() - 1)), device=real.device, dtype=real.dtype, generator=generator
    )
    x_hat = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(d(x_hat).sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1.0) ** 2).mean()


@torch.no_grad()
def clip_weights(module: torch.nn.Module, clip: float) -> None:
    """Original WGAN (Arjovsky et al. 2017): clamp every parameter of the critic to [-clip, clip], in place."""
    for p in module.parameters():
        p.clamp_(-clip, clip)


def r1_penalty(real_logits: Tensor, real: Tensor) -> Tensor:
    """R1 (Mescheder et al. 2018): E[||grad_x D(x)||^2] on real data; ``real`` must require grad."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


def d_logistic_smoothed(real: Tensor, fake: Tensor, smoothing: float) -> Tensor:
    """One-sided label smoothing (Salimans et al. 2016): real targets are 1 - s, fake stay 0.

    Binary cross-entropy with target t on logit r is t * softplus(-r) + (1 - t) * softplus(r).
    """
    t = 1.0 - smoothing
    return (t * F.softplus(-real) + (1 - t) * F.softplus(real)).mean() + F.softplus(fake).mean()
