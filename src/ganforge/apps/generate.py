"""Stable import path for :mod:`ganforge.tasks.gan.app` (the gan task's user-facing functions)."""

from ganforge.tasks.gan.app import *  # noqa: F403
from ganforge.tasks.gan.app import __all__  # noqa: F401
