"""Sample data: the committed world validates, stays small, and regenerates row for row from its seed."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from nba.contract._validation import validate_data
from training.synth import TABLE_NAMES, generate_world

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data_samples"


def _make_variable(name: str) -> int:
    match = re.search(rf"^{name} := (\d+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert match, f"Makefile defines {name}"
    return int(match.group(1))


def test_sample_validates_and_is_small() -> None:
    report = validate_data(SAMPLE)
    assert report.ok, report.problems[:5]
    assert report.summary is not None and report.summary.cardholders == _make_variable("SAMPLE_CARDHOLDERS")
    total = sum(p.stat().st_size for p in SAMPLE.rglob("*") if p.is_file())
    assert total < 5 * 1024 * 1024


@pytest.mark.slow  # regenerates the 3,000 sample cardholders
@pytest.mark.parametrize("table", TABLE_NAMES)
def test_regenerating_with_the_same_seed_gives_the_same_rows(
    table: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    out = tmp_path_factory.getbasetemp() / "sample_again"
    if not (out / "cardholders.parquet").exists():
        generate_world(
            _make_variable("SAMPLE_CARDHOLDERS"),
            _make_variable("SAMPLE_SEED"),
            out,
            fmt="parquet",
            oracle_path=tmp_path_factory.getbasetemp() / "sample_again.oracle.parquet",
        )
    committed = pd.read_parquet(SAMPLE / f"{table}.parquet")
    again = pd.read_parquet(out / f"{table}.parquet")
    pd.testing.assert_frame_equal(committed, again)
