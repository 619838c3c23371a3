"""The ``ganforge`` command line: the core verbs (train, sample, info, eval, config, presets, export, serve)
and the tasks' verbs.

One module per verb, with ``HELP``, ``DESCRIPTION``, ``ORDER``, ``add_arguments(parser)`` and ``run(args) -> int``:
the modules of this package (those starting with ``_`` are helpers) and each task's ``tasks/<task>/cli.py``
(named by its ``VERB``). :func:`main` adds only the asked verb's options and imports torch inside ``run``,
so help and argument errors come at once. Contract for scripts: ``ganforge train`` prints the run folder
as the last line of standard output; a :class:`~ganforge.errors.GanforgeError` is one ``error: ...`` line on
standard error with exit status 2 (``[rank N]`` under torchrun); Ctrl-C or SIGTERM exits with status 130.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import importlib.util
import os
import pkgutil
import sys
import warnings
from typing import Any, Dict, Iterable, List, Optional

from ganforge.errors import GanforgeError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


@functools.lru_cache(maxsize=None)
def verb_modules() -> Dict[str, Any]:
    """{verb: its module}, in ``ORDER``: every module of this package not starting with ``_``, and the
    ``cli.py`` of every task that has one (``VERB`` names its verb). Imports no torch."""
    from ganforge.tasks import NAMES

    found = {m.name: f"ganforge.cli.{m.name}" for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")}
    for task in NAMES:
        if importlib.util.find_spec(f"ganforge.tasks.{task}.cli") is not None:
            mod = importlib.import_module(f"ganforge.tasks.{task}.cli")
            if mod.VERB in found:
                raise ValueError(f"task {task!r}: its verb {mod.VERB!r} is already a verb")
            found[mod.VERB] = mod.__name__
    mods = {name: importlib.import_module(path) for name, path in found.items()}
    return dict(sorted(mods.items(), key=lambda kv: (getattr(kv[1], "ORDER", 100), kv[0])))


def __getattr__(name: str) -> Any:
    if name == "VERBS":  # every verb, in help order
        return tuple(verb_modules())
    raise AttributeError(f"module 'ganforge.cli' has no attribute {name!r}")


__all__ = ["EXIT_INTERRUPTED", "EXIT_USAGE", "VERBS", "build_parser", "main", "verb_modules"]


def build_parser(verbs: Optional[Iterable[str]] = None) -> argparse.ArgumentParser:
    """The ``ganforge`` parser with every verb; ``verbs``: the verbs whose options are added
    (default: all of them; the others parse no options)."""
    modules = verb_modules()
    wanted = set(modules if verbs is None else verbs)
    p = argparse.ArgumentParser(prog="ganforge", description="Train, watch, measure and use GANs on images.")
    p.add_argument("--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="command")
    for name, verb in modules.items():
        sp = sub.add_parser(name, help=verb.HELP, description=verb.DESCRIPTION)
        if name in wanted:
            verb.add_arguments(sp)
        sp.set_defaults(run=verb.run)
    return p


def _verb_in(argv: List[str]) -> Optional[str]:
    """The verb of a command line: its first word that is not an option (the top level has only flags)."""
    first = next((a for a in argv if not a.startswith("-")), None)
    return first if first in verb_modules() else None


def _rank_tag() -> str:
    """``[rank N] `` for a process torchrun started with a rank other than 0 (read from the environment,
    so that no torch import is needed here), else nothing."""
    rank = os.environ.get("RANK", "0")
    return f"[rank {rank}] " if rank not in ("", "0") and os.environ.get("WORLD_SIZE", "1") != "1" else ""


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line ``ganforge ARGV`` (default: this process's arguments); returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    verb = _verb_in(argv)
    parser = build_parser([verb] if verb else [])
    args, extra = parser.parse_known_args(argv)
    if args.command == "train":  # overrides may come after options: --minutes 3 a.b=c
        args.items += [e for e in extra if not e.startswith("-")]
        extra = [e for e in extra if e.startswith("-")]
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.version:
        from ganforge import __version__

        print(__version__)
        return 0
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    shown = warnings.showwarning
    warnings.showwarning = functools.partial(_show_warning, shown)
    try:
        return args.run(args)
    except GanforgeError as e:
        print(f"error: {_rank_tag()}{e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        warnings.showwarning = shown


PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _show_warning(default, message, category, filename, lineno, file=None, line=None) -> None:
    """ganforge's own warnings (a damaged metrics line, ...) as one ``warning: ...`` line on standard
    error; the warnings of other packages as Python shows them."""
    if not os.path.abspath(filename).startswith(PACKAGE_DIR + os.sep):
        return default(message, category, filename, lineno, file, line)
    try:
        print(f"warning: {_rank_tag()}{message}", file=file or sys.stderr)
    except OSError:  # standard error closed: a warning is not worth a crash
        pass
