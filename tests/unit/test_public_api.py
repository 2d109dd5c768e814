"""The public face of `nba`: everything in __all__ exists, and nba imports none of training/ or api/."""

from __future__ import annotations

import subprocess
import sys

import nba


def test_all_names_exist_and_are_sorted_within_groups() -> None:
    missing = [name for name in nba.__all__ if not hasattr(nba, name)]
    assert missing == []
    assert len(set(nba.__all__)) == len(nba.__all__)


def test_nba_does_not_import_training_or_api() -> None:
    code = "import sys, nba, nba.decision._engine, nba.profiles._profiles, nba.features._sql; print(sorted(m for m in sys.modules if m.split('.')[0] in ('training', 'api')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
