"""The layering of docs/design.md §2, read from the source: every import (module level or inside
a function) of every module of proto/, server/, client/ and models/, with ``raremem.*`` mapped
onto the folders. Cycles and imports across a forbidden boundary fail."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"proto": "raremem.proto", "server": "raremem.server", "client": "raremem.client",
            "models": "raremem.models"}
# layer -> the project layers it may import (docs/design.md §2)
ALLOWED = {"proto": {"proto"}, "server": {"server", "proto"}, "client": {"client", "proto"},
           "models": {"models", "client", "server", "proto"}}
NO_GRPC = ("raremem.server.store", "raremem.server.indexes")


def modules() -> dict[str, Path]:
    found = {}
    for folder, package in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            found[".".join((package, *parts))] = path
    return found


def imported(name: str, path: Path) -> set[str]:
    """Every module name an import statement in the file names (``from a import b`` names both
    ``a`` and ``a.b``: b may be a module)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
                package = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{package}.{base}" if base else package
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: {m for m in imported(name, path) if m in mods and m != name} for name, path in mods.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), iteratively."""
    index, low, on, stack, found, counter = {}, {}, set(), [], [], [0]
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                component = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    component.append(w)
                    if w == v:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def layer(name: str) -> str:
    return name.split(".")[1]


def test_no_import_cycle():
    assert cycles(graph()) == []


def test_layers_import_only_what_the_design_allows():
    wrong = sorted(f"{name} -> {m}" for name, out in graph().items() for m in out
                   if layer(m) not in ALLOWED[layer(name)])
    assert wrong == []


def test_store_and_indexes_know_no_grpc():
    mods = modules()
    for name in NO_GRPC:
        names = imported(name, mods[name])
        assert not {n for n in names if n.split(".")[0] == "grpc" or n.startswith("raremem.proto.memory_pb2")}, name


@pytest.mark.parametrize("source, expect", [
    ("from raremem.models.translation import knn\n", {"raremem.models.translation.knn"}),
    ("def f():\n    from raremem.client import MemoryClient\n", {"raremem.client"}),
    ("from . import data\n", {"raremem.models.omniglot.data"}),
])
def test_the_reader_sees_lazy_and_relative_imports(tmp_path, source, expect):
    path = tmp_path / "mod.py"
    path.write_text(source)
    assert expect <= imported("raremem.models.omniglot.mod", path)


def test_the_checks_catch_a_cycle_and_a_crossing():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    assert layer("raremem.server.store") == "server" and "models" not in ALLOWED["server"]
