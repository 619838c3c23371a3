"""Stable import path for :mod:`ganforge.tasks.watermark.app` (the watermark task's user-facing functions)."""

from ganforge.tasks.watermark.app import *  # noqa: F403
from ganforge.tasks.watermark.app import __all__  # noqa: F401
