"""MkDocs hook: the configuration reference, generated at build time.

On the page ``configuration.md`` the marker ``<!-- config-reference -->`` is replaced by one table per
config section: key, type, default and help text. The source is the one ``ganforge config`` prints
(``ganforge.cli.config.config_keys``: the sections' dataclass fields, their defaults and the ``# comment``
at the end of each field's line), so the page cannot drift from the code.

Sections that every task shares with the same dataclass (``data``, ``g_optim``, ``d_optim``, ``train``)
are listed once; then each task gets a section with its own.
"""

from __future__ import annotations

import dataclasses
import html
from typing import Any, Dict, List

MARKER = "<!-- config-reference -->"
PAGE = "configuration.md"


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.src_uri != PAGE or MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, reference())


def reference() -> str:
    from ganforge.tasks import TASKS, get_task

    tasks = [get_task(name) for name in TASKS.names()]
    keys = {task.name: _config_keys(task) for task in tasks}

    # a section is shared when every task has it, with the same dataclass
    shared: List[str] = []
    for section, cls in tasks[0].sections.items():
        if all(task.sections.get(section) is cls for task in tasks):
            shared.append(section)

    out: List[str] = []
    out.append("## Every task\n")
    out.append("Top-level keys and the sections every task has (`" + "`, `".join(shared) + "`).\n")
    first = keys[tasks[0].name]
    out.append(_table([k for k in first if k["section"] is None], top_level=True))
    for section in shared:
        out.append(f"### `{section}`\n")
        out.append(_table([k for k in first if k["section"] == section]))

    for task in tasks:
        own = [s for s in task.sections if s not in shared]
        out.append(f"## Task `{task.name}`\n")
        lines = []
        if task.summary:
            lines.append(f"{_escape(task.summary[0].upper() + task.summary[1:])}.")
        lines.append(f"Sections: `{'`, `'.join(task.sections)}`. List them with `ganforge config {task.name}`.")
        out.append(" ".join(lines) + "\n")
        for section in own:
            out.append(f"### `{section}`\n")
            out.append(_table([k for k in keys[task.name] if k["section"] == section]))
    return "\n".join(out)


def _config_keys(task) -> List[Dict[str, Any]]:
    """The keys as ``ganforge config`` lists them; a local copy of its logic if that moves."""
    try:
        from ganforge.cli.config import config_keys
    except ImportError:  # pragma: no cover - only while the CLI module is being moved
        return _fallback_keys(task)
    return config_keys(task)


def _fallback_keys(task) -> List[Dict[str, Any]]:
    from ganforge.config import TOP_LEVEL

    try:
        from ganforge.cli.config import field_comments
    except ImportError:
        field_comments = None  # type: ignore[assignment]
    top = {
        "name": {"key": "name", "section": None, "default": None, "type": "Optional[str]", "comment": ""},
        "task": {"key": "task", "section": None, "default": task.name, "type": "str", "comment": ""},
    }
    out = [top[k] for k in TOP_LEVEL if k in top]
    for section, cls in task.sections.items():
        comments = field_comments(cls) if field_comments else {}
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


def _table(keys: List[Dict[str, Any]], top_level: bool = False) -> str:
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for k in keys:
        default = "(the task)" if top_level and k["key"] == "task" else f"`{_default(k['default'])}`"
        rows.append(f"| `{k['key']}` | `{k['type']}` | {default} | {_escape(k['comment'])} |")
    return "\n".join(rows) + "\n"


def _default(value: Any) -> str:
    """A default as it is written in an override (YAML): null, true, 0.0002, [28, 28], ''."""
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    text = text.removesuffix("...").strip()
    return text.replace("|", "&#124;").replace("`", "'")


def _escape(text: str) -> str:
    """Plain text for a Markdown table cell: no HTML, emphasis, links or column breaks."""
    text = html.escape(str(text), quote=False)
    for ch, ent in (("|", "&#124;"), ("*", "&#42;"), ("_", "&#95;"), ("`", "&#96;"), ("[", "&#91;"), ("]", "&#93;")):
        text = text.replace(ch, ent)
    return text
