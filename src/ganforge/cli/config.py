"""``ganforge config [TASK]``: every config key of a task (default ``gan``) with its default value and
the comment that documents it in the source of its section's dataclass; ``--json`` for machines.

The comments are read from the sections' source (``inspect`` + ``tokenize``): a field's documentation
is the ``# ...`` comment at the end of its line, so the list cannot drift from the code.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, Dict, List

ORDER = 65  # place in `ganforge --help`
HELP = "list the config keys of a task with their defaults and meaning"
DESCRIPTION = (
    "List every key that 'ganforge train' accepts (KEY=VALUE) for a task (default gan), "
    "with its default value (before a preset changes it) and what it does."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task", nargs="?", default="gan", help="the task whose keys to list (default gan)")
    parser.add_argument("--json", action="store_true", help="print a JSON list of {key, default, type, comment}")


def run(args: argparse.Namespace) -> int:
    from ganforge.tasks import get_task

    task = get_task(args.task)
    keys = config_keys(task)
    if args.json:
        print(json.dumps(keys, indent=2))
        return 0
    print(f"# task {task.name}: {task.summary}" if task.summary else f"# task {task.name}")
    print(
        "# defaults of the config's dataclasses; a preset changes some of them (ganforge train --dry-run "
        "shows a resolved config)"
    )
    kw = max(len(k["key"]) for k in keys)
    dw = max(len(_text(k["default"])) for k in keys)
    section = None
    for k in keys:
        if k["section"] != section:
            section = k["section"]
            print(f"\n[{section}]")
        print(f"{k['key']:<{kw}}  {_text(k['default']):<{dw}}  {k['comment']}".rstrip())
    return 0


def config_keys(task) -> List[Dict[str, Any]]:
    """``task``'s keys in config-file order, each ``{key, section, default, type, comment}``; ``section``
    is None for the two top-level keys."""
    import dataclasses

    from ganforge.config import TOP_LEVEL
    from ganforge.tasks import TASKS

    # the keys outside the sections have no dataclass field whose comment could document them
    top = {
        "name": {
            "key": "name",
            "section": None,
            "default": None,
            "type": "Optional[str]",
            "comment": "the run folder's name after its number (None: <dataset>-<what the task trains>)",
        },
        "task": {
            "key": "task",
            "section": None,
            "default": task.name,
            "type": "str",
            "comment": f"what to train: {' | '.join(TASKS.names())}",
        },
    }
    out: List[Dict[str, Any]] = [top[k] for k in TOP_LEVEL]
    for section, cls in task.sections.items():
        comments = field_comments(cls)
        for f in dataclasses.fields(cls):
            default = f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]
            out.append(
                {
                    "key": f"{section}.{f.name}",
                    "section": section,
                    "default": default,
                    "type": f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type)),
                    "comment": comments.get(f.name, ""),
                }
            )
    return out


def field_comments(cls: type) -> Dict[str, str]:
    """{field: its comment} for a dataclass and the dataclasses it derives from: the comments on the
    field's lines, joined (the formatter wraps a long field into several lines)."""
    import ast
    import dataclasses
    import inspect
    import io
    import textwrap
    import tokenize

    out: Dict[str, str] = {}
    for klass in reversed(cls.__mro__):  # a subclass's comment wins over its base's
        if not dataclasses.is_dataclass(klass):
            continue
        src = textwrap.dedent(inspect.getsource(klass))
        by_line = {
            t.start[0]: t.string.lstrip("#").strip()
            for t in tokenize.generate_tokens(io.StringIO(src).readline)
            if t.type == tokenize.COMMENT
        }
        body = ast.parse(src).body[0].body  # type: ignore[attr-defined]
        for node in body:
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                lines = [by_line[i] for i in range(node.lineno, node.end_lineno + 1) if i in by_line]
                if lines:
                    out[node.target.id] = " ".join(lines)
    return out


def _text(value: Any) -> str:
    """A default as it is written in an override (YAML): null, true, 0.0002, [28, 28], ''."""
    import yaml

    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("...").strip()
