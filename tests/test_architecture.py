"""The package's structure: no import cycles, tasks chosen only through the registry."""
import ast
import re
from pathlib import Path

import ganforge

PKG = Path(ganforge.__file__).parent


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def import_graph():
    """{module: {ganforge modules it imports}}, counting imports anywhere in the file (inside functions
    too), and ``from a import b`` as an import of ``a.b`` when that is a module."""
    files = {module_name(p): p for p in PKG.rglob("*.py")}
    graph = {}
    for mod, path in files.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in files else node.module
                         for a in node.names]
            else:
                continue
            deps |= {n for n in names if n in files and n != mod}
        graph[mod] = deps
    return graph


def cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_among_the_package_modules():
    graph = import_graph()
    assert "ganforge.tasks.gan" in graph and graph["ganforge.api"]
    assert cycles(graph) == []


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_layers_point_one_way():
    """Lower layers never import higher ones: config/runs/models/data/losses know no task, training
    knows no task, tasks know no app, CLI or web app."""
    graph = import_graph()
    below = {
        "ganforge.config": ("ganforge.tasks", "ganforge.training", "ganforge.models", "ganforge.data", "ganforge.api"),
        "ganforge.runs": ("ganforge.tasks", "ganforge.training", "ganforge.api"),
        "ganforge.models": ("ganforge.tasks", "ganforge.training", "ganforge.api", "ganforge.config"),
        "ganforge.training": ("ganforge.tasks", "ganforge.api", "ganforge.apps", "ganforge.cli"),
        "ganforge.tasks": ("ganforge.api", "ganforge.apps", "ganforge.cli"),
        "ganforge.export": ("ganforge.cli", "ganforge.web"),  # export sits between apps and cli / web
        "ganforge.metrics.evaluation": ("ganforge.api", "ganforge.tasks"),
    }
    for low, forbidden in below.items():
        for mod, deps in graph.items():
            if mod == low or mod.startswith(low + "."):
                bad = [d for d in deps if d.startswith(forbidden)]
                assert not bad, f"{mod} imports {bad}"


def test_task_names_are_not_tested_outside_the_tasks():
    """Code outside tasks/ dispatches through the registry, never with ``if task == "..."``."""
    pattern = re.compile(r"""task\s*[!=]=\s*["']""")
    offenders = [str(p.relative_to(PKG)) for p in PKG.rglob("*.py")
                 if "tasks" not in p.relative_to(PKG).parts and pattern.search(p.read_text())]
    assert offenders == []
