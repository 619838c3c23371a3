"""Stable import path for :mod:`ganforge.tasks.gan.app` (the gan task's user-facing functions)."""
from ganforge.tasks.gan.app import *  # noqa: F401,F403
from ganforge.tasks.gan.app import __all__  # noqa: F401
