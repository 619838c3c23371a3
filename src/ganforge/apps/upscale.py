"""Stable import path for :mod:`ganforge.tasks.superres.app` (the superres task's user-facing functions)."""

from ganforge.tasks.superres.app import *  # noqa: F403
from ganforge.tasks.superres.app import __all__  # noqa: F401
