"""Built-in trained models: checkpoint folders that ship inside the package, usable by name wherever a run is.

Each model is a folder here laid out as a model hub expects (``README.md`` model card with YAML front matter,
``config.json``, ``meta.json``, ``<network>.safetensors``); the card lists every weight file's sha256, which
:func:`verify` checks when the model is loaded. :func:`resolve` turns what a user typed (a built-in name, a
run folder, a checkpoint folder) into a folder. Imports no torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Union

from ganforge.errors import RunError
from ganforge.models.card import CARD_FILE, Card, read_card, verify

__all__ = ["BUILTIN_PREFIX", "CARD_FILE", "Card", "folder", "get", "is_name", "names", "read_card", "resolve", "verify"]

ROOT = Path(__file__).resolve().parent
BUILTIN_PREFIX = "builtin:"  # builtin:NAME always means the built-in model, even beside a folder of that name


def names() -> List[str]:
    """The built-in models' names, sorted (the folders here with a model card)."""
    return sorted(p.name for p in ROOT.iterdir() if (p / CARD_FILE).is_file() and (p / "config.json").is_file())


def is_name(model: object) -> bool:
    """Whether ``model`` names a built-in model (``NAME`` or ``builtin:NAME``)."""
    if not isinstance(model, str):
        return False
    name = model[len(BUILTIN_PREFIX) :] if model.startswith(BUILTIN_PREFIX) else model
    return bool(name) and "/" not in name and "\\" not in name and name in names()


def folder(name: str) -> Path:
    """The folder of the built-in model ``name`` (``builtin:`` prefix allowed), or a one-line error listing them."""
    bare = name[len(BUILTIN_PREFIX) :] if name.startswith(BUILTIN_PREFIX) else name
    if not is_name(bare):
        raise RunError(f"no built-in model named {bare!r}; built-in models: {', '.join(names())} ('ganforge models')")
    return ROOT / bare


def get(name: str) -> Card:
    """The model card of the built-in model ``name``."""
    return read_card(folder(name))


def resolve(model: Union[str, Path]) -> Path:
    """The folder ``model`` means: a built-in model's folder for its name (or ``builtin:NAME``), else the path.

    A bare name that is both a built-in model and an existing file or folder is an error that says how to
    write either (``./NAME`` for the folder, ``builtin:NAME`` for the built-in model): never a silent choice.
    """
    if isinstance(model, str) and model.startswith(BUILTIN_PREFIX):
        return folder(model)
    if isinstance(model, str) and is_name(model):
        if Path(model).exists():
            raise RunError(
                f"{model!r} is both a built-in model and a folder here: write ./{model} for the folder "
                f"or {BUILTIN_PREFIX}{model} for the built-in model"
            )
        return ROOT / model
    return Path(model).expanduser()
