"""Profile cache: a snapshot's profiles for a model come back from the cache bit for bit, memory-mapped and
read-only; an entry is built once (also by two builders at once), keyed by snapshot, model and catalog,
refused when tampered with, and pruned when neither in service nor young."""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nba.errors import DataError
from nba.profiles import _cache as cache_module
from nba.profiles._cache import (
    CACHE_MANIFEST_FILE,
    PRUNE_GRACE_S,
    cached_entry_of,
    cached_profiles,
    catalog_digest,
    open_cache_entry,
    prune_profile_cache,
)
from nba.profiles._profiles import CardholderIds, Profiles
from nba.profiles._snapshots import check_snapshot, profiles_from_snapshot, write_snapshot
from tests.conftest import SampleModel
from tests.deployment import PROFILE_ARRAYS, assert_same_profiles
from tests.profile_sample import AS_OF, T0, Sample, sample_of, write_sample_snapshot


@pytest.fixture(scope="module")
def sample(sample_model: SampleModel) -> Sample:
    return sample_of(sample_model.model_dir)


@pytest.fixture
def snapshot(sample: Sample, tmp_path: Path) -> Path:
    """The sample's snapshot holding the model's spend estimates, as `nba profiles build` writes it: a build
    of a cache entry encodes the tables and reads the estimates (the estimator's own run, ~0.35 s of CPU a
    build, is `test_snapshots`' to test)."""
    return write_sample_snapshot(tmp_path / "profiles", sample, estimates=sample.estimates)


def _counting_builds(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Records every call of profiles_from_snapshot the cache makes (each one is a build)."""
    builds: list[Path] = []

    def counted(folder: Path, *args: Any) -> Profiles:
        builds.append(folder)
        return profiles_from_snapshot(folder, *args)

    monkeypatch.setattr(cache_module, "profiles_from_snapshot", counted)
    return builds


def test_cached_profiles_equal_the_snapshots_and_are_mapped_read_only(
    sample: Sample, snapshot: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds = _counting_builds(monkeypatch)
    cache = tmp_path / "cache"
    first = cached_profiles(cache, snapshot, sample.bundle, sample.benefits)
    again = cached_profiles(cache, snapshot, sample.bundle, sample.benefits)
    assert builds == [snapshot]  # the second call mapped what the first wrote
    for got in (first, again):
        assert_same_profiles(got, sample.expected)  # ids, index, as-of, version, every array bit for bit
        for name in PROFILE_ARRAYS:
            array = got
            for part in name.split("."):
                array = getattr(array, part)
            assert not array.flags.writeable, name
        by_row, _ = got.ids.arrays
        assert not by_row.flags.writeable
    entry = cached_entry_of(first)
    assert entry is not None and entry.parent == cache and entry.name.startswith("2026-10-01_")
    assert cached_entry_of(sample.expected) is None  # built in memory
    # The arrays are the files' pages, not copies: the holder matrix's buffer is inside the mapping.
    assert isinstance(first.holder.floats.values.base, np.memmap)
    # The snapshot folder is left exactly as its manifest lists it.
    check_snapshot(snapshot)
    assert not any(name.startswith(".") for name in os.listdir(snapshot.parent))


def test_an_unsorted_id_order_is_kept_with_its_sorter(sample: Sample, tmp_path: Path) -> None:
    ids = CardholderIds(["C3", "C1", "C2"])
    by_row, sorter = ids.arrays
    assert sorter is not None
    back = CardholderIds.from_arrays(by_row, sorter)
    assert list(back) == ["C3", "C1", "C2"]
    assert [back.rows.get(c) for c in ("C1", "C2", "C3", "C4", "C")] == [1, 2, 0, None, None]
    shuffled = dataclasses.replace(sample.expected, ids=CardholderIds(list(sample.expected.ids)[::-1]))
    entry = cache_module.write_cache_entry(tmp_path, shuffled, "a" * 64, "s", "m", "c")
    opened = open_cache_entry(entry, "a" * 64)
    assert dict(opened.index) == dict(shuffled.index)


def test_another_model_catalog_or_snapshot_is_another_entry(
    sample: Sample, snapshot: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    first = cached_entry_of(cached_profiles(cache, snapshot, sample.bundle, sample.benefits))
    # Wording, earn rates and levers are not read by the encoding: the same entry.
    reworded = dataclasses.replace(sample.benefits, lever=sample.benefits.lever * 2)
    assert catalog_digest(reworded) == catalog_digest(sample.benefits)
    assert cached_entry_of(cached_profiles(cache, snapshot, sample.bundle, reworded)) == first
    # The benefits in another order are encoded differently: another entry.
    order = list(range(len(sample.benefits.ids)))[::-1]
    reordered = dataclasses.replace(sample.benefits, ids=tuple(sample.benefits.ids[i] for i in order))
    other_catalog = cached_entry_of(cached_profiles(cache, snapshot, sample.bundle, reordered))
    # Another snapshot with the same tables (another creation time): another entry.
    write_snapshot(
        tmp_path / "later", sample.tables, AS_OF, now=T0 + timedelta(hours=1), estimates=sample.estimates
    )
    later = tmp_path / "later" / AS_OF.isoformat()
    other_snapshot = cached_entry_of(cached_profiles(cache, later, sample.bundle, sample.benefits))
    assert len({first, other_catalog, other_snapshot}) == 3


def _one_file(entry: Path) -> Path:
    return entry / "holder_float_values.npy"


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda e: _one_file(e).write_bytes(_one_file(e).read_bytes() + b"x"), "size or time changed"),
        (lambda e: _one_file(e).unlink(), "missing or not a regular file"),
        (lambda e: (e / "extra.npy").write_bytes(b""), "extra.npy: not listed in the manifest"),
        (lambda e: (e / CACHE_MANIFEST_FILE).write_text("{"), "manifest.json"),
        (
            lambda e: (e / CACHE_MANIFEST_FILE).write_text(
                json.dumps({**json.loads((e / CACHE_MANIFEST_FILE).read_text()), "key": "b" * 64})
            ),
            "is for another snapshot, model or catalog",
        ),
    ],
)
def test_a_tampered_entry_is_refused_and_rebuilt(
    sample: Sample, snapshot: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tamper: Any, message: str
) -> None:
    cache = tmp_path / "cache"
    entry = cached_entry_of(cached_profiles(cache, snapshot, sample.bundle, sample.benefits))
    assert entry is not None
    key = json.loads((entry / CACHE_MANIFEST_FILE).read_text())["key"]
    tamper(entry)
    with pytest.raises(DataError, match=message) as raised:
        open_cache_entry(entry, key)
    assert str(entry) in str(raised.value)
    builds = _counting_builds(monkeypatch)
    rebuilt = cached_profiles(cache, snapshot, sample.bundle, sample.benefits)
    assert builds == [snapshot]
    assert_same_profiles(rebuilt, sample.expected)


def test_a_changed_byte_with_its_size_and_time_kept_is_caught_by_the_full_check(
    sample: Sample, snapshot: Path, tmp_path: Path
) -> None:
    entry = cached_entry_of(cached_profiles(tmp_path / "cache", snapshot, sample.bundle, sample.benefits))
    assert entry is not None
    path = _one_file(entry)
    stat = path.stat()
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    open_cache_entry(entry)  # the cheap check trusts size and time
    with pytest.raises(DataError, match=r"holder_float_values\.npy: checksum mismatch"):
        open_cache_entry(entry, full_check=True)


def test_two_builders_at_once_build_one_entry(
    sample: Sample, snapshot: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds = _counting_builds(monkeypatch)
    cache = tmp_path / "cache"
    results: list[Profiles] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(cached_profiles(cache, snapshot, sample.bundle, sample.benefits))
        )
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 2 and builds == [snapshot]
    assert cached_entry_of(results[0]) == cached_entry_of(results[1])
    assert sorted(name for name in os.listdir(cache) if not name.startswith(".")) == [
        cached_entry_of(results[0]).name
    ]  # type: ignore[union-attr]


def test_prune_removes_old_entries_but_not_kept_or_young_ones(
    sample: Sample, snapshot: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    served = cached_profiles(cache, snapshot, sample.bundle, sample.benefits)
    kept = cached_entry_of(served)
    assert kept is not None
    order = list(range(len(sample.benefits.ids)))[::-1]
    reordered = dataclasses.replace(sample.benefits, ids=tuple(sample.benefits.ids[i] for i in order))
    old = cached_entry_of(cached_profiles(cache, snapshot, sample.bundle, reordered))
    assert old is not None
    leftover = cache / ".tmp-profiles-0123456789abcdef"
    leftover.mkdir()
    unrelated = cache / "notes.txt"
    unrelated.write_text("kept")
    now = time.time()
    # Young entries stay whatever `keep` says.
    assert prune_profile_cache(cache, keep=set(), now=now) == []
    later = now + PRUNE_GRACE_S + 1
    assert prune_profile_cache(cache, keep={kept.name}, now=later) == sorted([old.name, leftover.name])
    assert sorted(os.listdir(cache)) == sorted([".build-lock", kept.name, "notes.txt"])
    # The entry in service may go too (another worker moved on): what maps it keeps reading it.
    rows = np.arange(len(served))
    before = served.holder_rows(rows)
    assert prune_profile_cache(cache, keep=set(), now=later) == [kept.name]
    np.testing.assert_array_equal(served.holder_rows(rows), before)
    assert prune_profile_cache(tmp_path / "nowhere", keep=set()) == []


def test_a_cache_folder_that_cannot_be_written_is_a_data_error(
    sample: Sample, snapshot: Path, tmp_path: Path
) -> None:
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder should be")
    with pytest.raises(DataError, match="cannot write the profile cache"):
        cached_profiles(blocker, snapshot, sample.bundle, sample.benefits)


def test_benefit_table_digest_names_what_encoding_reads(sample: Sample) -> None:
    assert catalog_digest(sample.benefits) == catalog_digest(
        dataclasses.replace(sample.benefits, point_value_usd=sample.benefits.point_value_usd * 3)
    )
    fewer = dataclasses.replace(sample.benefits, product_ids=sample.benefits.product_ids[:-1])
    assert catalog_digest(fewer) != catalog_digest(sample.benefits)
