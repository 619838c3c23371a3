"""Stable import path for :mod:`ganforge.tasks.translate.app` (the translate task's user-facing functions)."""

from ganforge.tasks.translate.app import *  # noqa: F403
from ganforge.tasks.translate.app import __all__  # noqa: F401
