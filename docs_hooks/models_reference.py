"""MkDocs hook: the built-in models' table and cards, generated at build time from the model cards.

On the page ``models.md`` the marker ``<!-- builtin-models -->`` is replaced by a table of every built-in
model (``ganforge models``) and then each model's card (the README.md that ships in its folder, heading levels
shifted down by one), so the page cannot drift from what ships.
"""

from __future__ import annotations

import re
from typing import List

MARKER = "<!-- builtin-models -->"
PAGE = "models.md"


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.src_uri != PAGE or MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, reference())


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def reference() -> str:
    from ganforge import models
    from ganforge.models.card import card_summary

    names = models.names()
    if not names:
        return "*No built-in models are installed.*\n"
    out: List[str] = ["| model | task | in -> out | size | training data | headline |", "|---|---|---|---|---|---|"]
    for name in names:
        r = card_summary(models.get(name))
        out.append(
            f"| [`{name}`](#{name}) | {r['task']} | {_cell(r['input'])} -> {_cell(r['output'])} | "
            f"{r['size_mb']:.2f} MB | {_cell(r['data'])} | {_cell(r['headline'])} |"
        )
    out.append("")
    for name in names:
        body = models.get(name).body
        body = re.sub(r"^(#+) ", lambda m: "#" + m.group(1) + " ", body, flags=re.M)  # one level down
        body = body.replace(f"## {name}\n", f"## {name} {{#{name}}}\n", 1)
        out += [body, ""]
    return "\n".join(out)
