"""``ganforge presets``: the shipped presets, one line each (name and first comment line)."""

from __future__ import annotations

import argparse

ORDER = 70  # place in `ganforge --help`
HELP = "list the shipped presets"
DESCRIPTION = None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``presets`` takes no options."""


def run(args: argparse.Namespace) -> int:
    from ganforge.config import load_preset, preset_names, preset_summary

    for name in preset_names():
        load_preset(name)  # a preset that does not parse is an error here, not at 'ganforge train'
        print(f"{name:16s} {preset_summary(name)}")
    return 0
