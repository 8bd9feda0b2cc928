"""The layout's rules, checked over the source's AST (imports inside functions count too):

- no module of ltx/, stages/ or cache/ is in an import cycle;
- imports point one way: ltx/ never imports stages/ or cache/, cache/ never imports ltx/ or stages/;
- model code reaches the CPU kernels only through ltx.ops: no module outside ltx/kernels/, ltx/ops.py
  and ltx/memory.py (which imports the kernels' constants) imports ltx.kernels.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ltx", "stages", "cache")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules `name` imports anywhere in its file (a `from pkg import sub` of a submodule
    counts as importing the submodule)."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for target in targets:
            # the deepest project module the name refers to (`ltx.ops.Linear` -> `ltx.ops`)
            parts = target.split(".")
            for i in range(len(parts), 0, -1):
                candidate = ".".join(parts[:i])
                if candidate in known:
                    if candidate != name:
                        found.add(candidate)
                    break
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_checker_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_checker_sees_imports_inside_functions(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from ltx.weights import loader\n    import ltx.ops\n")
    assert _imports("x", f, {"ltx", "ltx.weights", "ltx.weights.loader", "ltx.ops"}) == {
        "ltx.weights",
        "ltx.weights.loader",
        "ltx.ops",
    }


def test_no_import_cycles(graph):
    assert _cycles(graph) == []


def test_imports_point_one_way(graph):
    for name, deps in graph.items():
        top = name.split(".")[0]
        tops = {d.split(".")[0] for d in deps}
        if top == "ltx":
            assert not tops & {"stages", "cache"}, (name, sorted(deps))
        if top == "cache":
            assert not tops & {"ltx", "stages"}, (name, sorted(deps))


def test_only_ops_reaches_the_kernels(graph):
    allowed = {"ltx.ops", "ltx.memory"}
    for name, deps in graph.items():
        if name.startswith("ltx.kernels") or name in allowed:
            continue
        assert not [d for d in deps if d.startswith("ltx.kernels")], name
