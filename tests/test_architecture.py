"""The shape of the code: layers imported only downward, no import cycles, small source files.

tasks (data, tokenizers, file utilities) <- models (spiking <- arch <- convert / train) <- harness
(evaluation, energy, reports, experiments) <- benchmarks <- harness.cli (the commands). Imports are read with ``ast``,
the ones inside functions included, so a hidden upward import fails too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tasks", "models", "harness", "benchmarks")
MAX_LINES = 500

# package prefix -> the prefixes it may import (itself always allowed)
ALLOWED = {
    "tasks": ("tasks",),
    "models.spiking": ("models.spiking", "tasks"),
    "models": ("models", "tasks"),
    "harness": ("harness", "models", "tasks"),
    "harness.cli": ("harness", "models", "tasks", "benchmarks"),  # `snnbench bench` runs the benchmarks
    "benchmarks": ("benchmarks", "harness", "models", "tasks"),
}


def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every source file of the project's packages."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imported(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules ``name`` imports (anywhere in the file), resolved to known module names."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    targets: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            candidates = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for candidate in candidates:
            while candidate and candidate not in known:
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != name:
                targets.add(candidate)
    return targets


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imported(name, path, known) for name, path in known.items()}


def layer(name: str) -> str:
    """The most specific key of ALLOWED that ``name`` belongs to."""
    return max((key for key in ALLOWED if name == key or name.startswith(key + ".")), key=len)


def test_every_import_goes_down_the_layers():
    wrong = []
    for name, targets in graph().items():
        allowed = ALLOWED[layer(name)]
        wrong += [f"{name} -> {t}" for t in sorted(targets) if not any(t == a or t.startswith(a + ".") for a in allowed)]
    assert not wrong, "upward imports: " + "; ".join(wrong)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_the_checks_catch_what_they_are_for():
    """The cycle finder and the layer rule fail on a planted cycle and a planted upward import."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert layer("models.spiking.neuron") == "models.spiking" and layer("models.convert") == "models"
    assert "harness" not in ALLOWED[layer("models.convert")]


@pytest.mark.parametrize("package", PACKAGES)
def test_no_source_file_over_500_lines(package):
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / package).rglob("*.py") if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"files over {MAX_LINES} lines: {long}"
