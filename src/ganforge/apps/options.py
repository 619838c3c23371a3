"""Stable import path for :mod:`ganforge.tasks.inpaint.options` (part of the inpaint task)."""

from ganforge.tasks.inpaint.options import *  # noqa: F403
