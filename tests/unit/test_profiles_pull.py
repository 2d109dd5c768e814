"""`nba profiles pull`: a snapshot written elsewhere (by Spark, into a lake) → the serving host's profiles
folder, every file's SHA-256 checked on arrival, nothing left behind when it does not check out."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from nba.errors import DataError, NotFoundError
from nba.profiles import check_snapshot, pull_snapshot, read_current_snapshot
from tests.deployment import Deployment
from training.cli import main


def _lake_copy(deployment: Deployment, tmp_path: Path) -> Path:
    """The sample snapshot as a lake would hold it: a folder named by its date, somewhere else."""
    source = tmp_path / "lake" / "profiles" / deployment.as_of.isoformat()
    shutil.copytree(deployment.profiles_dir / deployment.as_of.isoformat(), source)
    return source


def test_a_pulled_snapshot_arrives_checked_and_can_be_promoted(
    sample_deployment: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _lake_copy(sample_deployment, tmp_path)
    profiles = tmp_path / "host" / "profiles"
    assert main(["profiles", "pull", str(source), "--dir", str(profiles), "--promote"]) == 0
    day = sample_deployment.as_of.isoformat()
    assert check_snapshot(profiles / day) == check_snapshot(source)
    assert read_current_snapshot(profiles) == day
    assert set(os.listdir(profiles)) == {day, "CURRENT"}  # no staging folder left
    out = capsys.readouterr().out
    assert f"as of {day}, 4 files checked" in out and f"promoted {day} (was none)" in out


def test_a_file_changed_on_the_way_is_refused_and_nothing_is_left(
    sample_deployment: Deployment, tmp_path: Path
) -> None:
    source = _lake_copy(sample_deployment, tmp_path)
    with (source / "history.parquet").open("r+b") as handle:
        handle.seek(100)
        byte = handle.read(1)
        handle.seek(100)
        handle.write(bytes([byte[0] ^ 0xFF]))
    profiles = tmp_path / "profiles"
    with pytest.raises(DataError, match=r"refused on arrival: history\.parquet: checksum mismatch"):
        pull_snapshot(source, profiles)
    assert os.listdir(profiles) == []  # no snapshot, no staging folder


def test_a_copy_missing_a_file_is_refused(sample_deployment: Deployment, tmp_path: Path) -> None:
    source = _lake_copy(sample_deployment, tmp_path)
    (source / "contact.parquet").unlink()
    with pytest.raises(DataError, match=r"contact\.parquet: listed in the manifest but missing"):
        pull_snapshot(source, tmp_path / "profiles")


@pytest.mark.parametrize(
    ("name", "error", "message"),
    [
        ("latest", DataError, r"latest: not a snapshot folder; snapshots are named by their as-of date"),
        ("2026-10-01-missing", NotFoundError, r"no such snapshot folder"),
    ],
)
def test_a_source_that_is_no_snapshot_folder_is_refused(
    tmp_path: Path, name: str, error: type[Exception], message: str
) -> None:
    if name == "latest":
        (tmp_path / name).mkdir()
    with pytest.raises(error, match=message):
        pull_snapshot(tmp_path / name, tmp_path / "profiles")


def test_a_snapshot_already_there_is_never_overwritten(sample_deployment: Deployment, tmp_path: Path) -> None:
    source = _lake_copy(sample_deployment, tmp_path)
    profiles = tmp_path / "profiles"
    pull_snapshot(source, profiles)
    with pytest.raises(DataError, match=r"already exists; a snapshot is never overwritten"):
        pull_snapshot(source, profiles)
