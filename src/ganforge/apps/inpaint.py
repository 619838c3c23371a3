"""Stable import path for :mod:`ganforge.tasks.inpaint.app` (the inpaint task's user-facing functions)."""

from ganforge.tasks.inpaint.app import *  # noqa: F403
from ganforge.tasks.inpaint.app import __all__  # noqa: F401
