"""Model cards and shareable model folders.

A model folder is a checkpoint folder (``config.json``, ``meta.json``, ``<network>.safetensors``) plus a
``README.md`` model card: YAML front matter (machine-readable: task, what goes in and out, data and licences,
the training command and commit, measured figures, limits, and each file's sha256) and a Markdown body
written from it. That is the layout model hubs use (a README.md card beside config.json and safetensors), so
a folder can be uploaded as it is and loaded back from any local copy. :mod:`ganforge.models.pack` writes
one from a run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

import yaml

from ganforge.errors import RunError

CARD_FILE = "README.md"
WEIGHTS_SUFFIX = ".safetensors"
COPIED = ("config.json", "meta.json")  # what a model folder holds besides its weights and card (no state.pt)


@dataclass
class Card:
    """A model card: ``meta`` is the front matter, ``body`` the Markdown after it."""

    folder: Path
    meta: Dict[str, Any] = field(default_factory=dict)
    body: str = ""

    @property
    def name(self) -> str:
        return str(self.meta.get("name") or self.folder.name)

    @property
    def size_bytes(self) -> int:
        """Bytes on disk of the folder's files."""
        return sum(p.stat().st_size for p in self.folder.iterdir() if p.is_file())

    def text(self) -> str:
        return (self.folder / CARD_FILE).read_text(encoding="utf-8")


def sha256_file(path: Union[str, Path]) -> str:
    """The SHA-256 of a file's bytes, as hex."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def split_front_matter(text: str, where: str = "model card") -> tuple:
    """(front matter dict, body) of a Markdown file that starts with ``---`` YAML ``---``; ({}, text) without."""
    if not text.startswith("---"):
        return {}, text
    end = text.find("\n---", 3)
    if end < 0:
        raise RunError(f"{where}: the YAML front matter that starts on line 1 has no closing '---' line")
    try:
        meta = yaml.safe_load(text[3:end]) or {}
    except yaml.YAMLError as e:
        raise RunError(f"{where}: its YAML front matter cannot be read ({str(e).splitlines()[0]})") from None
    if not isinstance(meta, dict):
        raise RunError(f"{where}: its front matter is not a mapping of fields")
    return meta, text[end + 4 :].lstrip("\n")


def read_card(folder: Union[str, Path]) -> Card:
    """The model card of ``folder`` (an empty card when it has none)."""
    folder = Path(folder)
    path = folder / CARD_FILE
    if not path.is_file():
        return Card(folder)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise RunError(f"cannot read the model card '{path}': {e}") from None
    meta, body = split_front_matter(text, f"model card '{path}'")
    return Card(folder, meta, body)


def verify(folder: Union[str, Path]) -> None:
    """Check every file the card of ``folder`` lists against its sha256 (and that it exists); a folder
    without a card, or a card without ``files``, is not checked. One-line :class:`RunError` on a mismatch."""
    card = read_card(folder)
    files = card.meta.get("files") or {}
    if not isinstance(files, dict):
        raise RunError(f"model card '{Path(folder) / CARD_FILE}': 'files' must map file names to their sha256")
    for name, info in files.items():
        expected = info.get("sha256") if isinstance(info, dict) else info
        path = Path(folder) / str(name)
        if not path.is_file():
            raise RunError(f"model '{card.name}' is missing {name} (its card lists it); reinstall or re-download it")
        got = sha256_file(path)
        if got != expected:
            raise RunError(
                f"model '{card.name}': {path} is damaged (sha256 {got[:12]}..., its card says "
                f"{str(expected)[:12]}...); reinstall ganforge or re-download the model"
            )


# ------------------------------------------------------------------------------------------
# writing a model folder


def _lines(items: Sequence[Any]) -> str:
    return "\n".join(f"- {x}" for x in items)


def render_body(meta: Dict[str, Any]) -> str:
    """The Markdown of a card, written from its front matter (what ``ganforge models NAME`` prints)."""
    name = meta.get("name", "model")
    out = [f"# {name}", "", str(meta.get("summary", "")).strip(), ""]
    rows = [
        ("task", meta.get("task")),
        ("input", meta.get("input")),
        ("output", meta.get("output")),
        ("licence of the weights", meta.get("license")),
    ]
    out += ["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows if v] + [""]
    if meta.get("usage"):
        out += ["## Use", "", "```bash", *[str(u) for u in meta["usage"]], "```", ""]
    data = meta.get("data") or []
    if data:
        out += ["## Training data", ""]
        out += [
            f"- {d.get('name')}: {d.get('license', 'licence not recorded')}"
            + (f" ({d['source']})" if d.get("source") else "")
            for d in data
        ]
        if meta.get("credit"):
            out += ["", str(meta["credit"]).strip()]
        out += [""]
    tr = meta.get("training") or {}
    if tr:
        out += ["## Training", ""]
        if tr.get("command"):
            out += [
                "```bash",
                *[str(c) for c in (tr["command"] if isinstance(tr["command"], list) else [tr["command"]])],
                "```",
                "",
            ]
        facts = [
            (k, tr.get(k)) for k in ("commit", "hardware", "steps", "wall_minutes", "cpu_minutes", "torch", "notes")
        ]
        out += [f"- {k}: {v}" for k, v in facts if v not in (None, "")] + [""]
    figs = meta.get("figures") or []
    if figs:
        out += ["## Measured", "", "| what | this model | baseline (same run) | reproduce |", "|---|---|---|---|"]
        out += [
            f"| {f.get('what')} | {f.get('value')} | {f.get('baseline', '')} | `{f.get('command', '')}` |" for f in figs
        ]
        out += [""]
    if meta.get("limits"):
        out += ["## Known limits", "", _lines(meta["limits"]), ""]
    files = meta.get("files") or {}
    if files:
        out += ["## Files", "", "| file | bytes | sha256 |", "|---|---|---|"]
        out += [f"| {k} | {v.get('bytes')} | `{v.get('sha256')}` |" for k, v in files.items()]
        out += ["", "The sha256 of each file is checked when the model is loaded."]
    return "\n".join(out).rstrip() + "\n"


def write_card(folder: Union[str, Path], meta: Dict[str, Any], body: Optional[str] = None) -> Path:
    """Write ``folder/README.md``: ``meta`` as YAML front matter and ``body`` (default: :func:`render_body`)."""
    path = Path(folder) / CARD_FILE
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=1000)
    path.write_text(f"---\n{front}---\n\n{body if body is not None else render_body(meta)}", encoding="utf-8")
    return path


def card_summary(card: Card) -> Dict[str, Any]:
    """One row of ``ganforge models``: name, task, in -> out, size, data (licences), headline figure."""
    m = card.meta
    data = m.get("data") or []
    figs = m.get("figures") or []
    head = figs[0] if figs else {}
    return {
        "name": card.name,
        "task": m.get("task", ""),
        "input": m.get("input", ""),
        "output": m.get("output", ""),
        "size_mb": round(card.size_bytes / 1e6, 2),
        "data": "; ".join(f"{d.get('name')} ({d.get('license', '?')})" for d in data),
        "headline": f"{head.get('what')}: {head.get('value')}"
        + (f" (baseline {head['baseline']})" if head.get("baseline") else "")
        if head
        else "",
    }


def to_json(card: Card) -> str:
    return json.dumps(card.meta, indent=2, default=str)


__all__ = [
    "CARD_FILE",
    "Card",
    "card_summary",
    "read_card",
    "render_body",
    "split_front_matter",
    "verify",
    "write_card",
]
