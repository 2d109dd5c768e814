"""Command line: one clear line and a non-zero exit on bad input, a readable summary on good input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import VALID_TABLES, write_tables
from training.cli import main


def test_validate_prints_a_summary_and_exits_0(valid_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(valid_dir)]) == 0
    out = capsys.readouterr().out
    assert f"{valid_dir}: valid" in out
    assert "transactions.csv" in out and "6 rows" in out
    assert "as-of                   2025-03-04" in out
    assert "cardholders             3" in out
    assert "spend mapped to other   5.5%" in out


def test_validate_lists_problems_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = VALID_TABLES["nps"].replace("K1,9,", "K1,11,")
    data_dir = write_tables(tmp_path / "data", dict(VALID_TABLES, nps=bad))
    assert main(["validate", str(data_dir)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == ["nps.csv, row 1, column score: '11': is outside 0–10", f"{data_dir}: 1 problem found"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["validate", "/nonexistent-dir"], "error: /nonexistent-dir: not a directory"),
        (["validate"], "error: Missing argument 'data_dir'."),
        (
            ["validate", ".", "--as-of", "2025-13-01"],
            "error: Invalid value: must be a date in YYYY-MM-DD form, got '2025-13-01'",
        ),
        (["validate", ".", "--max-problems", "0"], "error: Invalid value for '--max-problems'"),
        (["frobnicate"], "error: No such command 'frobnicate'."),
    ],
)
def test_bad_arguments_are_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(message), err


def test_console_script_has_help_for_every_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "training.cli", "--help"], capture_output=True, text=True, check=True
    )
    for command in ("validate", "generate"):
        assert command in result.stdout
    one = subprocess.run(
        [sys.executable, "-m", "training.cli", "validate", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--as-of" in one.stdout
