"""`tui/` has no import cycle, and no screen or widget reaches back into the app.

The graph is read from the source with `ast`, so it counts every import:
module level, inside functions (deferred) and under `TYPE_CHECKING` alike. A
cycle that only typing closes is still a cycle: the screens get what they need
from the app through the protocols of `tui.host`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import tui

ROOT = Path(tui.__file__).parent
# The only modules that may import the app: the app itself builds the screens.
APP = "tui.app"


def module_name(path: Path) -> str:
    """`tui/screens/library.py` -> `tui.screens.library`; a package is its `__init__`."""
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def imported(name: str, tree: ast.Module) -> set[str]:
    """The `tui` modules that module `name` imports, anywhere in its source."""
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against this module's package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets.add(base)
            # `from tui.screens import library` imports the module `tui.screens.library`.
            targets.update(f"{base}.{alias.name}" for alias in node.names)
    return {target for target in targets if target in MODULES and target != name}


GRAPH = {name: imported(name, ast.parse(path.read_text())) for name, path in MODULES.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as a path that ends where it starts, or None."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        for target in sorted(graph[node]):
            if (cycle := visit(target, [*path, node])) is not None:
                return cycle
        done.add(node)
        return None

    for start in sorted(graph):
        if (cycle := visit(start, [])) is not None:
            return cycle
    return None


@pytest.mark.parametrize(
    ("graph", "cycle"),
    [
        # a screen importing the app for typing, the app building the screen
        ({"app": {"screen"}, "screen": {"app"}}, ["app", "screen", "app"]),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
        ({"a": {"b", "c"}, "b": {"c"}, "c": set()}, None),  # a diamond is no cycle
    ],
)
def test_find_cycle(graph: dict[str, set[str]], cycle: list[str] | None) -> None:
    assert find_cycle(graph) == cycle


def test_the_graph_is_read() -> None:
    """The app builds the screens (deferred imports count), the screens use the host."""
    assert {"tui.screens.library", "tui.screens.workbench"} <= GRAPH[APP]
    assert "tui.host" in GRAPH["tui.screens.workbench"]  # a TYPE_CHECKING import


def test_tui_has_no_import_cycle() -> None:
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_only_the_app_imports_itself() -> None:
    """Screens and widgets know the app through `tui.host`, never by importing it."""
    assert [name for name, targets in GRAPH.items() if APP in targets] == []
