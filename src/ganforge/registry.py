"""One small registry: name -> builder. Used for tasks, models, losses, datasets, metrics and web pages.

CLI choices and config validation read the keys, so a typo fails with the list of
allowed names instead of a KeyError deep in the code.
"""

from __future__ import annotations

import threading
from typing import Callable, Dict, Generic, Iterator, Optional, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, loader: Optional[Callable[[], None]] = None):
        self.kind = kind
        self._items: Dict[str, T] = {}
        self._loader = loader  # imports the modules that register the built-in entries, on first look-up
        self._loaded = loader is None
        self._loading = False  # the loader is running in the thread that holds the lock (look-ups inside it)
        self._lock = threading.RLock()  # other threads wait until loading has finished (the web app's workers)

    def _load(self) -> None:
        if self._loaded:
            return
        with self._lock:
            if self._loaded or self._loading:
                return
            self._loading = True
            try:
                self._loader()  # a failed import is raised again at the next look-up, not hidden
                self._loaded = True
            finally:
                self._loading = False

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@MODELS.register("dcgan")``."""
        if not name or name != name.strip() or " " in name:
            raise ValueError(f"{self.kind} name {name!r} must be a non-empty word without spaces")

        def deco(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        self._load()
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; choose one of: {', '.join(sorted(self._items))}") from None

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._load()
        return len(self._items)
