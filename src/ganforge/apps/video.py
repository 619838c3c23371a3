"""Stable import path for :mod:`ganforge.tasks.video.app` (the video task's user-facing functions)."""

from ganforge.tasks.video.app import *  # noqa: F403
from ganforge.tasks.video.app import __all__  # noqa: F401
