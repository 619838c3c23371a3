"""Options objects of the user-facing functions: one dataclass per function family holds the settings
(with their defaults), so that signatures stay short. Each function takes ``options=`` and, for the
calls written before, the same settings as keywords (``**overrides``), applied on top."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional, Type, TypeVar

T = TypeVar("T")

__all__ = ["from_namespace", "with_overrides"]


def with_overrides(cls: Type[T], options: Optional[T], overrides: Mapping[str, Any], where: str) -> T:
    """``options`` (default: ``cls()``) with the keywords ``overrides`` replacing its fields.

    An unknown keyword is a one-line :class:`TypeError` naming it, ``where`` (the function) and the
    options ``cls`` has, as Python's own error for an unexpected keyword would be.
    """
    if options is None:
        options = cls()
    elif not isinstance(options, cls):
        raise TypeError(f"{where}(): options must be {cls.__name__}, got {type(options).__name__}")
    if not overrides:
        return options
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = [k for k in overrides if k not in names]
    if unknown:
        raise TypeError(
            f"{where}() got an unexpected keyword argument {unknown[0]!r}; {cls.__name__} options: {', '.join(names)}"
        )
    return dataclasses.replace(options, **overrides)  # type: ignore[type-var]


def from_namespace(cls: Type[T], ns: Any, rename: Optional[Mapping[str, str]] = None, **given: Any) -> T:
    """``cls`` built from parsed command-line options: each field from the attribute of ``ns`` of the same
    name (``rename``: field -> attribute, for an option spelt otherwise), then ``given`` on top; fields
    that ``ns`` lacks keep their defaults."""
    rename = dict(rename or {})
    values = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        attr = rename.get(f.name, f.name)
        if f.name not in given and hasattr(ns, attr):
            values[f.name] = getattr(ns, attr)
    return cls(**values, **given)
