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
                names = [
                    f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in files else node.module for a in node.names
                ]
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


TASK_NAMES = ("gan", "inpaint", "superres", "translate", "video", "watermark")
# files every task folder has (app.py, cli.py, web.py, losses.py and data.py where the task has them)
TASK_FILES = ("__init__.py", "config.py", "networks.py", "trainer.py", "handle.py", "task.py")
# the modules of a task that sit above its model and may use the API (inpaint's latent search loads a GAN run)
USER_FACING = ("app", "cli", "web", "latent")


def _task_of(mod):
    parts = mod.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "tasks" and parts[2] not in ("base",) else None


def test_layers_point_one_way():
    """Lower layers never import higher ones: the shared core (config, runs, nn, data, losses, training,
    metrics, the task seam) knows no task; a task's model (config, networks, trainer, handle, ...) knows
    no API, app, CLI or web app; only a task's app.py/cli.py/web.py use those."""
    graph = import_graph()
    tasks = tuple(f"ganforge.tasks.{t}" for t in TASK_NAMES)
    above = ("ganforge.api", "ganforge.apps", "ganforge.cli", "ganforge.web")
    below = {
        "ganforge.config": tasks + ("ganforge.training", "ganforge.nn", "ganforge.data", "ganforge.api"),
        "ganforge.runs": tasks + ("ganforge.training", "ganforge.api"),
        "ganforge.nn": tasks + ("ganforge.training", "ganforge.api", "ganforge.config"),
        "ganforge.losses": tasks + above,
        "ganforge.data": tasks + above,
        "ganforge.training": tasks + above,
        "ganforge.metrics": tasks + ("ganforge.apps", "ganforge.cli", "ganforge.web"),
        "ganforge.metrics.evaluation": ("ganforge.api", "ganforge.tasks"),
        "ganforge.tasks.base": tasks + above,
        "ganforge.export": ("ganforge.cli", "ganforge.web"),  # export sits between apps and cli / web
    }
    for low, forbidden in below.items():
        for mod, deps in graph.items():
            if mod == low or mod.startswith(low + "."):
                bad = [d for d in deps if d.startswith(forbidden)]
                assert not bad, f"{mod} imports {bad}"
    assert not [d for d in graph["ganforge.tasks"] if d.startswith(tasks)], "ganforge.tasks imports a task"
    for mod, deps in graph.items():
        if _task_of(mod) and mod.split(".")[-1] not in USER_FACING:
            bad = [d for d in deps if d.startswith(above)]
            assert not bad, f"{mod} (a task's model) imports {bad}"


def test_tasks_never_import_each_other():
    graph = import_graph()
    offenders = [
        (mod, d)
        for mod, deps in graph.items()
        if _task_of(mod)
        for d in deps
        if _task_of(d) and _task_of(d) != _task_of(mod)
    ]
    assert offenders == []


def test_every_task_is_one_folder_with_the_same_file_names():
    """Each registered task lives in tasks/<name>/ with the standard files, and NAMES lists exactly them."""
    from ganforge.tasks import NAMES, TASKS

    assert sorted(NAMES) == sorted(TASK_NAMES) == TASKS.names()
    for name in NAMES:
        folder = PKG / "tasks" / name
        missing = [f for f in TASK_FILES if not (folder / f).is_file()]
        assert not missing, f"tasks/{name}/ lacks {missing}"
        assert type(TASKS.get(name)).__module__ == f"ganforge.tasks.{name}.task"


def test_task_names_are_not_tested_outside_the_tasks():
    """Code outside tasks/ dispatches through the registry, never with ``if task == "..."``."""
    pattern = re.compile(r"""task\s*[!=]=\s*["']""")
    offenders = [
        str(p.relative_to(PKG))
        for p in PKG.rglob("*.py")
        if "tasks" not in p.relative_to(PKG).parts and pattern.search(p.read_text())
    ]
    assert offenders == []


def _long_signatures(paths, limit=8):
    """``module:function n`` for every public function or method (of a public class) in ``paths`` taking
    more than ``limit`` parameters, not counting self/cls or ``**kwargs``."""
    out = []
    for path in paths:
        label = str(path.relative_to(PKG)) if PKG in path.parents else path.name

        def walk(node, prefix=""):
            for ch in ast.iter_child_nodes(node):
                if isinstance(ch, ast.ClassDef) and not ch.name.startswith("_"):
                    walk(ch, f"{prefix}{ch.name}.")
                elif isinstance(ch, (ast.FunctionDef, ast.AsyncFunctionDef)) and not ch.name.startswith("_"):
                    a = ch.args
                    names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs]
                    if prefix and names[:1] in (["self"], ["cls"]):
                        names = names[1:]
                    n = len(names) + (a.vararg is not None)
                    if n > limit:
                        out.append(f"{label}:{prefix}{ch.name} {n}")

        walk(ast.parse(path.read_text()))
    return out


def test_no_public_app_or_metrics_function_takes_more_than_8_parameters():
    """The user-facing functions take a few essential arguments and an options object (issue 28)."""
    paths = sorted((PKG / "tasks").glob("*/app.py")) + sorted((PKG / "metrics").rglob("*.py"))
    assert len(paths) > 10
    assert _long_signatures(paths) == []


def test_long_signature_finder_finds_one(tmp_path):
    p = tmp_path / "probe.py"
    p.write_text(
        "def f(a, b, c, d, e, f, g, h, i, **kw): pass\ndef g(a, b, c, d, e, f, g, h, **kw): pass\n"
        "def _h(a, b, c, d, e, f, g, h, i): pass\n"
        "class K:\n    def m(self, a, b, c, d, e, f, g, h, *i): pass\n"
        "    def n(self, a, *, b, c, d, e, f, g, h): pass\n"
    )
    assert _long_signatures([p]) == ["probe.py:f 9", "probe.py:K.m 9"]


def test_a_lazy_registry_is_complete_for_every_thread_that_looks_it_up():
    """Threads that look up a registry while its loader runs wait for it (the web app's workers did not)."""
    import threading
    import time

    from ganforge.registry import Registry

    reg: Registry = Registry("thing")

    def loader():
        reg.register("a")(1)
        time.sleep(0.2)  # another thread looks up now
        reg.register("b")(2)
        assert reg.names() == ["a", "b"]  # a look-up from inside the loader does not recurse or wait

    reg._loader, reg._loaded = loader, False
    seen = []
    threads = [threading.Thread(target=lambda: seen.append(reg.names())) for _ in range(4)]
    for t in threads:
        t.start()
        time.sleep(0.01)
    for t in threads:
        t.join()
    assert seen == [["a", "b"]] * 4
