"""The layers of the code, kept: imports only point down the package order below, and no two modules import
each other, directly or around a circle, with imports inside functions counted like any other."""

import ast
from pathlib import Path

from backend.core.paths import REPO

# Lowest first: a package may import only itself and the packages before it. The studio sits on all of them,
# and backend.cli (the table of stages) on every stage.
ORDER = ["core", "web", "jobs", "models", "data", "dataset", "finetune", "inference", "evaluate", "demo", "cli"]


def module_files() -> dict[str, Path]:
    files = {}
    for path in sorted([*(REPO / "backend").rglob("*.py"), *(REPO / "studio").glob("*.py")]):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        files[".".join(parts)] = path
    return files


def imports(path: Path, modules: set[str]) -> set[str]:
    """The project modules a file imports anywhere in it (module level, functions, TYPE_CHECKING blocks);
    `from package import module` counts as importing that module."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: studio's `from .context import ...`
                package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    return {m for m in found if m in modules}


def graph() -> dict[str, set[str]]:
    files = module_files()
    return {name: imports(path, set(files)) - {name} for name, path in files.items()}


def layer(module: str) -> int:
    parts = module.split(".")
    if parts[0] == "studio":
        return len(ORDER)
    if len(parts) == 1:  # backend/__init__.py
        return 0
    return ORDER.index(parts[1])


def upward(edges: dict[str, set[str]]) -> list[str]:
    """Imports of a higher layer, and any import of the studio from the backend."""
    return sorted(
        f"{a} -> {b}"
        for a, targets in edges.items()
        for b in targets
        if layer(b) > layer(a) or (b.startswith("studio") and a.startswith("backend"))
    )


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every circle found by a depth-first walk; a package importing its own modules (`from backend.x import y`
    in backend.x.z) is not a circle through backend.x, whose __init__ holds only a docstring."""
    edges = {a: {b for b in targets if not (a + ".").startswith(b + ".")} for a, targets in edges.items()}
    state: dict[str, int] = {}
    found: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                found.append(path[path.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for start in sorted(edges):
        if start not in state:
            visit(start, [start])
    return found


def test_every_backend_package_has_a_place_in_the_order() -> None:
    packages = {m.split(".")[1] for m in module_files() if m.startswith("backend.")}
    assert packages <= set(ORDER), f"add {sorted(packages - set(ORDER))} to ORDER"


def test_imports_point_down() -> None:
    assert upward(graph()) == []


def test_no_module_cycles() -> None:
    assert cycles(graph()) == []


def test_the_checks_see_in_function_imports_upward_imports_and_cycles(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from backend.models import loading\n    import backend.jobs.folder\n")
    assert imports(probe, {"backend.models.loading", "backend.jobs.folder"}) == {
        "backend.models.loading",
        "backend.jobs.folder",
    }
    edges = {"backend.core.a": {"backend.finetune.b"}, "backend.finetune.b": {"studio.app"}, "studio.app": set()}
    assert upward(edges) == ["backend.core.a -> backend.finetune.b", "backend.finetune.b -> studio.app"]
    circle = {"backend.models.x": {"backend.models.y"}, "backend.models.y": {"backend.models.x"}}
    assert cycles(circle) == [["backend.models.x", "backend.models.y", "backend.models.x"]]
