"""training/'s modules import one another without cycles, counting every import: at the top, inside a
function (run later, still a cycle in the design) and under TYPE_CHECKING."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Final

import training

TRAINING: Final = Path(training.__file__).resolve().parent


def _imports_of(path: Path, modules: set[str]) -> set[str]:
    """The training modules that the file imports anywhere in its body."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in modules)
    return found


def _module_name(path: Path) -> str:
    """training/cli.py → training.cli; training/synth/__init__.py → training.synth."""
    parts = path.relative_to(TRAINING).with_suffix("").parts
    return ".".join(("training", *(parts[:-1] if parts[-1] == "__init__" else parts)))


def _import_graph() -> dict[str, set[str]]:
    paths = {_module_name(path): path for path in TRAINING.rglob("*.py") if path != TRAINING / "__init__.py"}
    return {name: _imports_of(path, set(paths)) - {name} for name, path in paths.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle found by a depth-first walk, each as the path that closes it (a → b → a)."""
    cycles: list[list[str]] = []
    done: set[str] = set()

    def walk(node: str, path: list[str]) -> None:
        for target in sorted(graph[node]):
            if target in path:
                cycles.append([*path[path.index(target) :], target])
            elif target not in done:
                walk(target, [*path, target])
        done.add(node)

    for start in sorted(graph):
        if start not in done:
            walk(start, [start])
    return cycles


def test_cycle_finder_finds_a_cycle_through_a_function_level_import() -> None:
    graph = {"training.a": {"training.b"}, "training.b": {"training.c"}, "training.c": {"training.a"}}
    assert _cycles(graph) == [["training.a", "training.b", "training.c", "training.a"]]
    assert _cycles({"training.a": {"training.b"}, "training.b": set()}) == []


def test_imports_inside_functions_and_type_checking_blocks_count(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from training.x import X\n"
        "def f():\n    import training.y\n    from training import z\n",
        encoding="utf-8",
    )
    wanted = {"training.x", "training.y", "training.z", "training.w"}
    assert _imports_of(module, wanted) == {"training.x", "training.y", "training.z"}


def test_training_modules_have_no_import_cycles() -> None:
    graph = _import_graph()
    assert "training.cli" in graph and "training.profiles_cli" in graph["training.cli"]
    assert "training.synth._simulation" in graph["training.synth._writing"]  # subpackages count too
    cycles = _cycles(graph)
    assert cycles == [], "import cycles in training/: " + "; ".join(" → ".join(cycle) for cycle in cycles)
