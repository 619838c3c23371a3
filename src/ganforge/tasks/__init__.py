"""Tasks: what ganforge trains and uses, one folder each, registered in :data:`TASKS`.

``gan`` (generate images), ``inpaint`` (complete missing regions), ``superres`` (upscale), ``translate``
(image-to-image), ``video`` (short clips) and ``watermark`` (invisible watermarks) each live in
``tasks/<name>/``, with the same file names in every task; its ``task.py`` registers its :class:`Task`.
Adding a task is a new folder (copy ``tasks/_template/``) plus its name in :data:`NAMES`. The tasks are
imported on the first look-up in :data:`TASKS`, so the CLI can list task verbs without importing torch.

This module also turns presets and overrides into a task's :class:`~ganforge.config.Config`
(:func:`resolve`, :func:`config_from_dict`), since which sections a config has depends on its task.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence

from ganforge.config import (
    TOP_LEVEL,
    Config,
    TrainConfig,
    apply_overrides,
    deepcopy,
    load_preset,
    merge,
    parse_override,
    section_keys,
)
from ganforge.errors import ConfigError
from ganforge.tasks.base import TASKS, Handle, Task, all_sections, get_task

# the built-in tasks, each a folder tasks/<name>/ whose task.py registers it: a new task adds its name here
NAMES = ("gan", "inpaint", "translate", "superres", "video", "watermark")

__all__ = ["NAMES", "TASKS", "Handle", "Task", "get_task", "resolve", "config_from_dict", "allowed_keys"]


def resolve(
    preset: Optional[str] = None, overrides: Sequence[str] = (), base: Optional[Mapping[str, Any]] = None
) -> Config:
    """Defaults <- ``base`` (a nested dict) <- ``preset`` <- ``overrides``, validated for the task they name.

    A budget in the overrides (``train.steps``, ``kimg``, ``epochs``, ``minutes``) replaces the
    budget of the preset and ``base`` instead of adding to it. When the overrides switch the task away from
    the preset's own (``ganforge train task=inpaint`` starts from the GAN ``default`` preset), the preset's
    sections that the new task does not use (``model``, ``loss``) are left out; otherwise every key must
    belong to the task.
    """
    d: Dict[str, Any] = deepcopy(dict(base)) if base else {}
    preset_d = load_preset(preset) if preset else {}
    d = merge(d, preset_d)
    budget = {f"train.{k}" for k in TrainConfig.BUDGET_KEYS}
    overridden = {parse_override(o)[0] for o in overrides}
    if overridden & budget and isinstance(d.get("train"), dict):  # a budget given here replaces the preset's
        for key in budget - overridden:
            d["train"].pop(key.split(".")[1], None)
    d = apply_overrides(d, overrides)
    task = get_task(str(d.get("task") or "gan"))
    for item in overrides:
        check_key(parse_override(item)[0], task)
    drop = set()
    if preset_d and str(preset_d.get("task") or "gan") != task.name:
        drop = set(preset_d) - set(base or {}) - {parse_override(o)[0].split(".")[0] for o in overrides}
    return task.config(d, drop=drop)


def config_from_dict(d: Mapping[str, Any], stored: bool = False) -> Config:
    """The config of a nested dict (``Config.to_dict()``, a YAML file). With ``stored=True`` (a run
    folder's own config) sections of other tasks, which runs of older versions carry, are left out."""
    if not isinstance(d, Mapping):
        raise ConfigError(f"config: expected a mapping of sections, got {type(d).__name__}")
    task = get_task(str(d.get("task") or "gan"))
    return task.config(d, drop=all_sections() if stored else ())


def check_key(key: str, task: Task) -> None:
    """A clear error unless ``key`` (``section.field``) is a key of ``task``'s config."""
    keys = allowed_keys(task.name)
    if key in keys:
        return
    head = key.split(".")[0]
    if head in task.sections and key.count(".") == 1:
        allowed = [k for k in keys if k.startswith(head + ".")]
        raise ConfigError(f"unknown config key {key!r}; allowed keys in {head!r}: {', '.join(allowed)}")
    if head not in task.sections and head in all_sections():
        raise ConfigError(
            f"config key {key!r}: section {head!r} does not apply to task {task.name!r}; "
            f"its sections: {', '.join(task.sections)}"
        )
    raise ConfigError(f"unknown config key {key!r}; allowed keys: {', '.join(keys)}")


def allowed_keys(task: str = "gan") -> list:
    """Every key of a task's config: ``name``, ``task`` and ``section.field``."""
    return list(TOP_LEVEL) + section_keys(get_task(task).sections)
