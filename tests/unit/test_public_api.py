"""The public face of `nba` and the direction of imports between its rooms.

`nba/` is a set of rooms along the flow (contract → features → model → profiles → drift → decision →
feedback) around a few shared modules (errors, vocab, files, progress, _compiled). A room may import the
shared modules, its own modules and the rooms before it; nothing in `nba/` imports `api/` or `training/`.
Each room's modules are private (a leading underscore); what the rest of the project may use is the
room's `__all__`, and `api/`, `training/` and `bench/` import nothing else.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest

import nba

ROOT: Final = Path(nba.__file__).resolve().parents[1]
ROOMS: Final = ("contract", "features", "model", "profiles", "drift", "decision", "feedback")
SHARED: Final = ("errors", "vocab", "files", "progress", "_compiled")
PUBLIC_MODULES: Final = ("nba", "nba.errors", "nba.vocab", "nba.files", "nba.progress")
FACES: Final = ("nba", *(f"nba.{room}" for room in ROOMS))


def _nba_imports(path: Path) -> Iterator[tuple[int, str, list[str]]]:
    """(line, module, names) of every import of an `nba` module in the file (`import x` gives no names)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] == "nba":
                yield node.lineno, node.module, [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "nba":
                    yield node.lineno, alias.name, []


def _room_of(module: str) -> str:
    """The room of a dotted nba module name (`nba.decision._engine` → decision); shared modules are ''."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ROOMS else ""


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_rooms_import_only_the_shared_modules_and_the_rooms_before_them() -> None:
    wrong = []
    for path in sorted((ROOT / "nba").rglob("*.py")):
        if "migrations" in path.parts:
            continue
        module = _module_name(path)
        room = _room_of(module)
        allowed = set(ROOMS[: ROOMS.index(room) + 1]) if room else set()
        for line, imported, _ in _nba_imports(path):
            target = _room_of(imported)
            if module == "nba":
                continue  # the package's face re-exports from every room
            if target and target not in allowed:
                wrong.append(f"{path.relative_to(ROOT)}:{line} ({room or 'shared'}) imports {imported}")
    assert wrong == []


def test_the_checker_sees_a_backward_import(tmp_path: Path) -> None:
    # The rule above must be able to fail: a features module importing the decision room breaks it.
    bad = tmp_path / "bad.py"
    bad.write_text("from nba.decision import Engine\n", encoding="utf-8")
    (line, imported, names) = next(_nba_imports(bad))
    assert (line, imported, names) == (1, "nba.decision", ["Engine"])
    assert _room_of(imported) not in ROOMS[: ROOMS.index("features") + 1]


@pytest.mark.parametrize("face", FACES)
def test_all_is_exactly_what_the_face_binds(face: str) -> None:
    module = importlib.import_module(face)
    bound = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType) and name != "annotations"
    }
    assert sorted(module.__all__) == sorted(bound)
    assert len(set(module.__all__)) == len(module.__all__)


@pytest.mark.parametrize("face", FACES)
def test_all_is_sorted_constants_then_classes_then_functions(face: str) -> None:
    names = list(importlib.import_module(face).__all__)

    def group(name: str) -> int:
        return 0 if name.isupper() else 1 if name[0].isupper() else 2

    assert names == sorted(names, key=lambda name: (group(name), name))


def test_api_training_and_bench_use_only_the_public_faces() -> None:
    wrong = []
    for folder in ("api", "training", "bench"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for line, imported, names in _nba_imports(path):
                where = f"{path.relative_to(ROOT)}:{line}"
                if imported not in PUBLIC_MODULES and imported not in FACES:
                    wrong.append(f"{where} imports the private module {imported}")
                elif imported in FACES:
                    public = set(importlib.import_module(imported).__all__)
                    wrong += [
                        f"{where} imports {name} from {imported} (not in its __all__)"
                        for name in names
                        if name not in public
                    ]
    assert wrong == []


def test_nba_does_not_import_training_or_api() -> None:
    rooms = ", ".join(f"nba.{room}" for room in ROOMS)
    code = f"import sys, nba, {rooms}; print(sorted(m for m in sys.modules if m.split('.')[0] in ('training', 'api')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
