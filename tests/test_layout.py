"""The package's layout: no import cycles in benchmark/ (imports inside functions count), and a training
job leaves pandas and the analysis unimported (they are the report's, not a run's)."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

from helpers import ROOT, TINY, run

PKG = ROOT / "benchmark"


def modules() -> dict[str, Path]:
    """Every module of the package by its dotted name (a package by its own name)."""
    out = {}
    for p in PKG.rglob("*.py"):
        name = ".".join(p.relative_to(ROOT).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = p
    return out


def targets(node: ast.AST, package: str, mods: dict[str, Path]) -> list[str]:
    """The dotted names an import statement reaches, relative ones resolved against `package`."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        parts = package.split(".")[: len(package.split(".")) - node.level + 1]
        base = ".".join(parts + ([node.module] if node.module else []))
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]


def imports(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """The package's modules `name` imports anywhere in its file, with the packages whose `__init__` that runs
    (its own packages aside: they are already importing)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        for t in targets(node, package, mods):
            parts = t.split(".")
            for i in range(1, len(parts) + 1):
                m = ".".join(parts[:i])
                if m in mods and m != name and not name.startswith(m + "."):
                    out.add(m)
    return out


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per back edge a depth-first walk finds (none: the graph points one way)."""
    state: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(u: str) -> None:
        state[u] = 1
        stack.append(u)
        for v in sorted(edges[u]):
            if state.get(v) == 1:
                found.append(stack[stack.index(v) :] + [v])
            elif v not in state:
                visit(v)
        stack.pop()
        state[u] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)
    return found


def test_the_cycle_finder_sees_a_cycle_through_a_function_level_import(tmp_path):
    """The check can fail: two modules importing each other, one of them lazily and relatively."""
    (tmp_path / "benchmark" / "sub").mkdir(parents=True)
    (tmp_path / "benchmark" / "__init__.py").write_text("")
    (tmp_path / "benchmark" / "sub" / "__init__.py").write_text("")
    (tmp_path / "benchmark" / "sub" / "a.py").write_text("from benchmark.sub import b\n")
    (tmp_path / "benchmark" / "sub" / "b.py").write_text("def f():\n    from . import a\n")
    mods = {"benchmark": tmp_path / "benchmark/__init__.py", "benchmark.sub": tmp_path / "benchmark/sub/__init__.py"}
    mods |= {f"benchmark.sub.{m}": tmp_path / f"benchmark/sub/{m}.py" for m in "ab"}
    edges = {m: imports(m, p, mods) for m, p in mods.items()}
    assert edges["benchmark.sub.b"] == {"benchmark.sub.a"}
    assert cycles(edges) == [["benchmark.sub.a", "benchmark.sub.b", "benchmark.sub.a"]]


def test_the_package_has_no_import_cycle():
    mods = modules()
    edges = {m: imports(m, p, mods) for m, p in mods.items()}
    assert "benchmark.job.cohort_run" in edges["benchmark.run"]  # the walk sees the package's imports
    found = cycles(edges)
    assert not found, "import cycles (dependencies should point one way):\n" + "\n".join(" -> ".join(c) for c in found)


# Runs the entry point as `python -m benchmark.run` does, then lists what the process imported.
PROBE = """
import atexit, json, runpy, sys
atexit.register(lambda: print("MODULES " + json.dumps(sorted(sys.modules))))
sys.argv = ["benchmark.run", *sys.argv[1:]]
runpy.run_module("benchmark.run", run_name="__main__", alter_sys=True)
"""


def test_a_training_job_imports_neither_pandas_nor_the_analysis(tmp_path):
    """A cohort job of two members (stacked), end to end through the entry point, in a fresh process."""
    args = [*TINY, "cell=lstm", "reg=bn", f"results_dir={tmp_path}", f"hydra.run.dir={tmp_path / 'hydra'}"]
    p = run([sys.executable, "-c", PROBE, *args, "cohort.members=[{seed:0},{seed:1}]"], cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    records = [json.loads(f.read_text()) for f in tmp_path.glob("*/runs/*/metrics.json")]
    assert sorted(r["seed"] for r in records) == [0, 1] and {r["cohort_mode"] for r in records} == {"stacked"}
    (line,) = [ln for ln in p.stdout.splitlines() if ln.startswith("MODULES ")]
    loaded = json.loads(line.removeprefix("MODULES "))
    assert "benchmark.job.cohort_run" in loaded and "torch" in loaded  # the probe saw the job's imports
    unwanted = [m for m in loaded if m.split(".")[0] == "pandas" or m.startswith("benchmark.analysis")]
    assert not unwanted, f"a training job imported {unwanted[:10]}"


def test_no_function_is_longer_than_60_lines_outside_the_hand_written_kernels():
    """One sitting to read: every function of the package (its decorators and docstring included) is at most 60
    lines, but for the hand-written forward and backward kernels (benchmark/models/fused_*.py)."""
    long = []
    for name, path in modules().items():
        if path.name.startswith("fused_") and path.parent.name == "models":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                if node.end_lineno - first + 1 > 60:
                    long.append(f"{name}.{node.name} ({node.end_lineno - first + 1} lines)")
    assert not long, long
