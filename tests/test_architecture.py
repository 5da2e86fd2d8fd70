"""The documented one-way data flow, checked on the source: every import, lazy ones included.

``docs/ARCHITECTURE.md`` orders the packages; a module may import from its own package and from
packages before it, never from one after it. Imports inside ``if TYPE_CHECKING:`` never run and
are not counted. Inside a package the imports must not form a cycle (no lazy shims).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "unetkit"
ORDER = ["config", "nn", "losses", "metrics", "data", "runtime", "infer", "train", "plan",
         "evaluate", "report", "export", "demo", "cli", "__main__"]
MAX_LINES = 300


def layer(module: str) -> str:
    """``unetkit.infer.predictor`` -> ``infer``; ``unetkit`` itself -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def module_name(path: Path, root: Path) -> str:
    """``ROOT/infer/predictor.py`` -> ``unetkit.infer.predictor`` (packages without __init__)."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str, root: Path) -> bool:
    relative = Path(*name.split(".")[1:]) if "." in name else Path()
    return (root / relative).with_suffix(".py").is_file() or (root / relative).is_dir()


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(path: Path, root: Path) -> list[tuple[int, str]]:
    """``(line, module)`` for every unetkit import that can run, anywhere in the file."""
    tree = ast.parse(path.read_text())
    skipped = _type_checking_lines(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)) or node.lineno in skipped:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("unetkit")]
            continue
        assert node.level == 0, f"{path}:{node.lineno}: relative import"
        base = node.module or ""
        if base.startswith("unetkit"):
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.append((node.lineno, full if _is_module(full, root) else base))
    return found


def back_edges(root: Path = SRC) -> list[str]:
    """Every import that runs against ``ORDER``, as ``file:line imports module`` lines."""
    rank = {name: i for i, name in enumerate(ORDER)}
    problems = []
    for path in sorted(root.rglob("*.py")):
        here = layer(module_name(path, root))
        if here == "__init__":
            continue  # the package root re-exports and imports nothing heavy
        for line, target in imports_of(path, root):
            there = layer(target)
            if there in ("__init__", here):
                continue
            if there not in rank or here not in rank:
                problems.append(f"{path.relative_to(root)}:{line} imports {target} "
                                f"(package not in the documented order)")
            elif rank[there] > rank[here]:
                problems.append(f"{path.relative_to(root)}:{line} imports {target}: "
                                f"{there} comes after {here}")
    return problems


def package_cycles(root: Path = SRC) -> list[list[str]]:
    """Import cycles between the modules of one package (a package's ``__init__`` excluded)."""
    graph: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        if path.name == "__init__.py":
            continue
        name = module_name(path, root)
        graph[name] = {t for _, t in imports_of(path, root)
                       if layer(t) == layer(name) and t != name}
    cycles: list[list[str]] = []
    state: dict[str, str] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt in graph and nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return cycles


def test_every_package_is_in_the_documented_order() -> None:
    packages = {layer(module_name(p, SRC)) for p in SRC.rglob("*.py")} - {"__init__"}
    assert packages <= set(ORDER), packages - set(ORDER)
    documented = (SRC.parents[1] / "docs" / "ARCHITECTURE.md").read_text()
    line = next(ln for ln in documented.splitlines() if ln.startswith("Order:"))
    assert [w.strip("`,. ") for w in line.split()[1:]] == [p for p in ORDER if p != "__main__"]


def test_no_import_runs_against_the_flow() -> None:
    assert back_edges() == []


def test_no_import_cycle_inside_a_package() -> None:
    assert package_cycles() == []


def test_a_back_edge_is_caught(tmp_path: Path) -> None:
    """The check itself: a lazy import of a later package inside a function fails it."""
    fake = tmp_path / "unetkit"
    (fake / "data").mkdir(parents=True)
    (fake / "train").mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "data" / "__init__.py").write_text("")
    (fake / "train" / "__init__.py").write_text("")
    (fake / "train" / "loop.py").write_text("from unetkit.data import io\n")
    (fake / "data" / "io.py").write_text(
        "def load():\n    from unetkit.train.loop import fit  # lazy, still a back-edge\n")
    (fake / "data" / "doctor.py").write_text("from unetkit.data import dataset\n")
    (fake / "data" / "dataset.py").write_text("def check():\n    from unetkit.data import doctor\n")
    assert back_edges(fake) == ["data/io.py:2 imports unetkit.train.loop: train comes after data"]
    assert package_cycles(fake) == [["unetkit.data.dataset", "unetkit.data.doctor",
                                     "unetkit.data.dataset"]]


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_modules_stay_small(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= MAX_LINES
