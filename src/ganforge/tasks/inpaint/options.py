"""The choices and defaults of image completion, and :class:`InpaintOptions`, in a module that imports
no torch, so that the command line offers them (``ganforge inpaint --help``) cheaply. The modules that
use them import them from here: :mod:`ganforge.tasks.inpaint.app` (methods, options),
:mod:`ganforge.tasks.inpaint.blend` (blends) and :mod:`ganforge.tasks.inpaint.latent` (the latent search)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

METHODS = ("auto", "latent", "network")  # how a model completes: auto = what the run was trained for
BLENDS = ("poisson", "feather", "none")  # how a fill meets the known pixels

# latent optimisation (Yeh et al. 2017)
DEFAULT_STEPS = 500
DEFAULT_RESTARTS = 8
DEFAULT_LR = 0.05
DEFAULT_PRIOR = 0.003  # lambda of Yeh et al. 2017
DEFAULT_WINDOW = 7  # neighbourhood of the contextual weights (Yeh et al. 2017 use 7)

# folder mode: images completed together (one latent search or network pass per batch); 8 images x 8
# restarts = 64 latents per step ran fastest on a CPU (larger batches spill its caches): raise it on a GPU
DEFAULT_BATCH = 8


@dataclass
class InpaintOptions:
    """How :func:`~ganforge.tasks.inpaint.app.inpaint` and its folder form complete: the method, the
    latent search's settings, the blend, and where the model runs. Checked when used."""

    method: str = "auto"  # auto | latent | network
    steps: int = DEFAULT_STEPS  # latent: Adam steps
    restarts: int = DEFAULT_RESTARTS  # latent: starting points optimised together, the best kept
    seed: int = 0  # latent: seed of the starting points
    class_: Union[int, str, None] = None  # latent, conditional runs: the class (None: every class is tried)
    blend: str = "poisson"  # poisson | feather | none
    lr: float = DEFAULT_LR  # latent: Adam's learning rate
    prior_weight: float = DEFAULT_PRIOR  # latent: lambda of the discriminator's prior loss
    window: int = DEFAULT_WINDOW  # latent: neighbourhood of the contextual weights
    batch_size: int = DEFAULT_BATCH  # folder mode: images completed together
    checkpoint: str = "last"  # last | best | a step | a checkpoint folder
    device: str = "cpu"
    skip_bad: bool = False  # folder mode: leave out unusable images (listed in .skipped) instead of stopping
