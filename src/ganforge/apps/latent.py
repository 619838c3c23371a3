"""Stable import path for :mod:`ganforge.tasks.inpaint.latent` (part of the inpaint task)."""

from ganforge.tasks.inpaint.latent import *  # noqa: F403
