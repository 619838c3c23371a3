"""``ganforge`` command line: train | sample | interpolate | info | eval | inpaint | config | presets.

One module per verb, ``ganforge.cli.<verb>``, each with ``HELP`` (its line in ``ganforge --help``),
``DESCRIPTION`` (or None), ``ORDER`` (its place in the help), ``add_arguments(parser)`` and
``run(args) -> int``. Verbs are found by listing this package: a new verb is a new file here. A verb module parses
and checks its arguments, calls :mod:`ganforge.api` or :mod:`ganforge.apps`, and prints; it imports
them (and torch) inside ``run``. :func:`main` adds the options of the one verb asked for before
parsing, so help texts and argument errors come at once, without importing torch. Modules whose
name starts with ``_`` are not verbs: ``_common`` holds the options several verbs share
(``--device``, ``--threads``).

Contract relied on by scripts: ``ganforge train`` prints the run folder's path as the last line of
its standard output (everything else goes to standard error). A problem the user can fix
(:class:`~ganforge.errors.GanforgeError`) is one line ``error: ...`` on standard error with exit
status 2; Ctrl-C (and SIGTERM while training) exits with status 130. Under ``torchrun`` every process
runs the verb; errors from ranks other than 0 say which rank they come from (``error: [rank 1] ...``).
"""
from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from typing import Iterable, List, Optional

from ganforge.errors import GanforgeError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _find_verbs() -> tuple:
    """Every module of this package not starting with ``_``, in ``ORDER``."""
    names = [m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")]
    order = {n: getattr(importlib.import_module(f"ganforge.cli.{n}"), "ORDER", 100) for n in names}
    return tuple(sorted(names, key=lambda n: (order[n], n)))


VERBS = _find_verbs()

__all__ = ["EXIT_INTERRUPTED", "EXIT_USAGE", "VERBS", "build_parser", "main"]


def build_parser(verbs: Optional[Iterable[str]] = None) -> argparse.ArgumentParser:
    """The ``ganforge`` parser with every verb; ``verbs``: the verbs whose options are added
    (default: all of them; the others parse no options)."""
    wanted = set(VERBS if verbs is None else verbs)
    p = argparse.ArgumentParser(prog="ganforge", description="Train, watch, measure and use GANs on images.")
    p.add_argument("--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="command")
    for name in VERBS:
        verb = importlib.import_module(f"ganforge.cli.{name}")
        sp = sub.add_parser(name, help=verb.HELP, description=verb.DESCRIPTION)
        if name in wanted:
            verb.add_arguments(sp)
        sp.set_defaults(run=verb.run)
    return p


def _verb_in(argv: List[str]) -> Optional[str]:
    """The verb of a command line: its first word that is not an option (the top level has only flags)."""
    first = next((a for a in argv if not a.startswith("-")), None)
    return first if first in VERBS else None


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
    try:
        return args.run(args)
    except GanforgeError as e:
        print(f"error: {_rank_tag()}{e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
