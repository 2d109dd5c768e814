"""The public face of `nba` and the direction of imports between its rooms.

`nba/` is a set of rooms along the flow (contract → features → model → profiles → drift → decision →
feedback → insights) around a few shared modules (errors, vocab, files, progress, _compiled). A room may import the
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
ROOMS: Final = ("contract", "features", "model", "profiles", "drift", "decision", "feedback", "insights")
SHARED: Final = ("errors", "vocab", "files", "progress", "_compiled")
PUBLIC_MODULES: Final = ("nba", "nba.errors", "nba.vocab", "nba.files", "nba.progress")
FACES: Final = ("nba", *(f"nba.{room}" for room in ROOMS))


def _nba_imports(path: Path, package: str = "") -> Iterator[tuple[int, str, list[str]]]:
    """(line, module, names) of every import of an `nba` module in the file (`import x` gives no names).

    A relative import (`from ..decision import Engine`) is resolved against `package`, the dotted package
    the file is in, so it cannot slip past the rules below.
    """
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            if module.split(".")[0] == "nba":
                yield node.lineno, module, [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "nba":
                    yield node.lineno, alias.name, []


def _room_of(module: str) -> str:
    """The room of a dotted nba module name (`nba.decision._engine` → decision); shared modules are ''."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ROOMS else ""


def _module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package_of(path: Path, root: Path = ROOT) -> str:
    return ".".join(path.relative_to(root).parent.parts)


def _backward_imports(root: Path) -> list[str]:
    """Every import in `root`/nba/ that breaks the direction of the rooms: a shared module importing a room,
    a room importing a room after it, or any module but the package's face importing that face (which
    re-exports every room)."""
    wrong = []
    for path in sorted((root / "nba").rglob("*.py")):
        if "migrations" in path.parts:
            continue
        module = _module_name(path, root)
        if module == "nba":
            continue  # the package's face re-exports from every room
        room = _room_of(module)
        allowed = set(ROOMS[: ROOMS.index(room) + 1]) if room else set()
        for line, imported, _ in _nba_imports(path, _package_of(path, root)):
            target = _room_of(imported)
            if (target and target not in allowed) or imported == "nba":
                wrong.append(f"{path.relative_to(root)}:{line} ({room or 'shared'}) imports {imported}")
    return wrong


def test_rooms_import_only_the_shared_modules_and_the_rooms_before_them() -> None:
    assert _backward_imports(ROOT) == []


@pytest.mark.parametrize(
    ("module", "source", "found"),
    [
        (
            "features/_sql.py",
            "from nba.decision import Engine\n",
            "nba/features/_sql.py:1 (features) imports nba.decision",
        ),
        ("features/_sql.py", "import nba.feedback._store\n", "(features) imports nba.feedback._store"),
        (
            "features/_sql.py",
            "def f():\n    from ..model import x\n",
            "_sql.py:2 (features) imports nba.model",
        ),
        (
            "model/_trees.py",
            "from ..decision._engine import Engine\n",
            "(model) imports nba.decision._engine",
        ),
        ("vocab.py", "from nba.contract import TABLES\n", "nba/vocab.py:1 (shared) imports nba.contract"),
        ("drift/_psi.py", "from nba import Engine\n", "(drift) imports nba"),
        ("feedback/_store.py", "from nba.decision import Engine\nfrom . import _records\n", None),
    ],
)
def test_the_direction_rule_fails_on_a_backward_import(
    tmp_path: Path, module: str, source: str, found: str | None
) -> None:
    # The rule above must be able to fail: a tree of one module with the given source.
    path = tmp_path / "nba" / module
    path.parent.mkdir(parents=True)
    path.write_text(source, encoding="utf-8")
    wrong = _backward_imports(tmp_path)
    if found is None:
        assert wrong == []
    else:
        assert len(wrong) == 1 and found in wrong[0], wrong


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


def _private_uses(root: Path) -> list[str]:
    """Every import in `root`/api, training and bench of a private nba module, or of a name a face does
    not list in its `__all__`."""
    wrong = []
    for folder in ("api", "training", "bench"):
        for path in sorted((root / folder).rglob("*.py")):
            for line, imported, names in _nba_imports(path):
                where = f"{path.relative_to(root)}:{line}"
                if imported not in PUBLIC_MODULES and imported not in FACES:
                    wrong.append(f"{where} imports the private module {imported}")
                elif imported in FACES:
                    public = set(importlib.import_module(imported).__all__)
                    wrong += [
                        f"{where} imports {name} from {imported} (not in its __all__)"
                        for name in names
                        if name not in public
                    ]
    return wrong


def test_api_training_and_bench_use_only_the_public_faces() -> None:
    assert _private_uses(ROOT) == []


@pytest.mark.parametrize(
    ("source", "found"),
    [
        (
            "from nba.decision._engine import Engine\n",
            "api/x.py:1 imports the private module nba.decision._engine",
        ),
        ("import nba.model._trees\n", "imports the private module nba.model._trees"),
        ("from nba.decision import _engine\n", "imports _engine from nba.decision (not in its __all__)"),
        ("from nba import feature_values\n", "imports feature_values from nba (not in its __all__)"),
        ("from nba.decision import Engine\nfrom nba.errors import DataError\n", None),
    ],
)
def test_the_face_rule_fails_on_a_private_import(tmp_path: Path, source: str, found: str | None) -> None:
    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "x.py").write_text(source, encoding="utf-8")
    wrong = _private_uses(tmp_path)
    if found is None:
        assert wrong == []
    else:
        assert len(wrong) == 1 and found in wrong[0], wrong


def _nba_modules() -> list[str]:
    return sorted(
        _module_name(path) for path in (ROOT / "nba").rglob("*.py") if "migrations" not in path.parts
    )


def test_nba_does_not_import_training_or_api() -> None:
    # Every module of nba/, imported in a fresh interpreter, loads nothing from training/ or api/ ...
    modules = _nba_modules()
    assert len(modules) > 30 and "nba.feedback._store" in modules and "nba._compiled" in modules
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('training', 'api')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    # ... and names neither anywhere, not even in a function body that the import does not run.
    named = []
    for path in sorted((ROOT / "nba").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            modules_named = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and node.level == 0
                else []
            )
            named += [
                f"{path.relative_to(ROOT)}:{node.lineno} imports {name}"
                for name in modules_named
                if name.split(".")[0] in ("training", "api")
            ]
    assert named == []


def test_the_layout_page_names_every_module_of_nba() -> None:
    # docs/layout.md (the README's layout, in full) names each module in its room's row, as `name.py` or `name`.
    layout = (ROOT / "docs" / "layout.md").read_text(encoding="utf-8")
    modules = [
        p for p in (ROOT / "nba").rglob("*.py") if "migrations" not in p.parts and p.stem != "__init__"
    ]
    assert len(modules) > 30
    unnamed = [
        str(p.relative_to(ROOT))
        for p in sorted(modules)
        if f"`{p.name}`" not in layout and f"`{p.stem}`" not in layout and f"`{p.stem}," not in layout
    ]
    assert unnamed == []
