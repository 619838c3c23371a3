"""The code style and the docs site are checked with the tests: ruff (lint + format, settings in
pyproject.toml) and ``mkdocs build --strict`` (a broken link or a missing page fails)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECKED = ["src", "tests", "benchmarks", "scripts", "docs_hooks"]


def _tool(name):
    path = shutil.which(name, path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed (pip install -e '.[dev]')")
        pytest.skip(f"{name} is not installed")
    return path


def test_ruff_lint():
    proc = subprocess.run([_tool("ruff"), "check", *CHECKED], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_ruff_format():
    proc = subprocess.run([_tool("ruff"), "format", "--check", *CHECKED], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_docs_build_strict(tmp_path):
    proc = subprocess.run(
        [_tool("mkdocs"), "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
