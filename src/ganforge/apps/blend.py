"""Stable import path for :mod:`ganforge.tasks.inpaint.blend` (part of the inpaint task)."""

from ganforge.tasks.inpaint.blend import *  # noqa: F403
