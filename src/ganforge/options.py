"""Options objects of the user-facing functions: one dataclass per function family holds the settings
(with their defaults), so that signatures stay short. Each function takes ``options=`` and, for the
calls written before, the same settings as keywords (``**overrides``), applied on top."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional, Type, TypeVar

T = TypeVar("T")

__all__ = ["with_overrides"]


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
