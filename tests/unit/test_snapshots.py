"""Snapshots: a stored profile snapshot loads into exactly the profiles computed from the data, and nothing
tampered with, incomplete or lacking a model's features loads at all."""

from __future__ import annotations

import os
import shutil
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError as PydanticValidationError

from nba.contract._mcc import load_mcc_map
from nba.contract._tables import open_data
from nba.errors import DataError, ModelError, NotFoundError
from nba.features._matrix import HISTORY_COLUMNS, BenefitTable
from nba.features._sql import ExtraColumns
from nba.profiles import _snapshots as snapshots
from nba.profiles._profiles import (
    ProfileTables,
    assemble_profiles_from_batches,
    build_profile_history,
    compute_profile_tables,
)
from nba.profiles._snapshots import (
    CONTACT_FILE,
    CURRENT_FILE,
    FEATURES_FILE,
    HISTORY_FILE,
    MANIFEST_FILE,
    LoadedSnapshot,
    SnapshotManifest,
    SnapshotParts,
    check_snapshot,
    estimates_file,
    list_snapshots,
    load_snapshot,
    profiles_from_snapshot,
    read_current_snapshot,
    resolve_snapshot,
    set_current_snapshot,
    snapshot_dir,
    write_snapshot,
    write_snapshot_parts,
)
from tests.conftest import SampleModel
from tests.deployment import assert_same_profiles
from tests.profile_sample import AS_OF, SAMPLE, T0, Sample, sample_of, write_sample_snapshot


@pytest.fixture(scope="module")
def sample(sample_model: SampleModel) -> Sample:
    return sample_of(sample_model.model_dir)


# --- the same profiles whichever way they are made --------------------------------------------------


def _reference_history(ids: tuple[str, ...], tables: ProfileTables, benefits: BenefitTable) -> dict[str, Any]:
    """The CSR history of Profiles the slow, obvious way: a loop over rows, a dict for contact."""
    row_of = {cardholder_id: i for i, cardholder_id in enumerate(ids)}
    contact = {(r["cardholder_id"], r["benefit_id"]): r for r in tables.contact.to_pylist()}
    entries = sorted(
        (row_of[r["cardholder_id"]], r["benefit_id"], r)
        for r in tables.history.to_pylist()
        if r["cardholder_id"] in row_of and r["benefit_id"] in benefits.ids
    )

    def number(value: Any) -> float:
        return np.nan if value is None else float(value)

    counts = np.bincount([row for row, _, _ in entries], minlength=len(ids))
    found = [contact.get((ids[row], benefit), {}) for row, benefit, _ in entries]
    return {
        "offsets": np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        "history_benefit": np.array([benefits.ids.index(b) for _, b, _ in entries], dtype=np.int16),
        "history_used": np.array([r["used"] for _, _, r in entries], dtype=bool),
        "history_values": np.array(
            [[number(r[c]) for c in HISTORY_COLUMNS] for _, _, r in entries], dtype=np.float32
        ).reshape(-1, len(HISTORY_COLUMNS)),
        "history_days_since_declined": np.array(
            [number(c.get("days_since_declined")) for c in found], dtype=np.float32
        ),
        "history_presented_90d": np.array([c.get("presented_90d") or 0 for c in found], dtype=np.float32),
    }


def test_build_profiles_equals_a_naive_reference(sample: Sample) -> None:
    profiles, bundle, features = sample.expected, sample.bundle, sample.tables.features
    assert tuple(profiles.ids) == tuple(features.column("cardholder_id").to_pylist())
    X = bundle.holder.encode(features)  # the whole table at once, not in batches
    assert np.array_equal(profiles.holder.to_float32(), X.astype(np.float32), equal_nan=True)
    rows = np.arange(len(profiles))
    assert np.array_equal(profiles.holder_rows(rows), X.astype(np.float32).astype(np.float64), equal_nan=True)
    assert len(profiles.holder.count_columns) > 0, "the sample has whole-number columns to hold in 2 bytes"
    estimates = bundle.estimator.predict(X, bundle.holder.feature_names).astype(np.float32)
    assert np.array_equal(profiles.est_spend, estimates)
    products = [sample.benefits.product_ids.index(p) for p in features.column("product_id").to_pylist()]
    assert profiles.product_index.tolist() == products
    reference = _reference_history(tuple(profiles.ids), sample.tables, sample.benefits)
    assert len(reference["history_used"]) > 100, "the sample has history to compare"
    for name, expected in reference.items():
        got = getattr(profiles, name)
        assert got.dtype == expected.dtype and got.shape == expected.shape, name
        assert np.array_equal(got, expected, equal_nan=got.dtype.kind == "f"), name


@pytest.mark.parametrize(
    "how",
    ["folder with estimates", "folder without estimates", "folder in small row groups", "loaded tables"],
)
def test_a_snapshot_loads_into_the_profiles_build_profiles_computes(
    sample: Sample, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    if how == "folder in small row groups":
        # Many row groups and batches that do not line up with them, as at a million cardholders.
        monkeypatch.setattr(snapshots, "ROW_GROUP_ROWS", 1000)
        monkeypatch.setattr(snapshots, "ASSEMBLY_ROWS", 700)
    folder = write_sample_snapshot(
        tmp_path, sample, estimates=sample.estimates if how != "folder without estimates" else None
    )
    if how == "folder in small row groups":
        assert pq.ParquetFile(folder / FEATURES_FILE).metadata.num_row_groups == 3
    snapshot: Path | LoadedSnapshot = load_snapshot(folder) if how == "loaded tables" else folder
    assert_same_profiles(profiles_from_snapshot(snapshot, sample.bundle, sample.benefits), sample.expected)


@pytest.mark.parametrize("rows_per_batch", [977, 2999])
def test_batches_of_any_size_give_the_same_profiles(sample: Sample, rows_per_batch: int) -> None:
    tables = sample.tables
    ids = tables.features.column("cardholder_id").combine_chunks()
    history = build_profile_history(ids, tables.history, tables.contact, sample.benefits)
    batches = tables.features.to_batches(rows_per_batch)
    profiles = assemble_profiles_from_batches(AS_OF, ids, batches, history, sample.bundle, sample.benefits)
    assert_same_profiles(profiles, sample.expected)


def test_batches_that_do_not_hold_the_cardholders_are_refused(sample: Sample) -> None:
    features = sample.tables.features
    ids = features.column("cardholder_id").combine_chunks()
    history = build_profile_history(ids, sample.tables.history, sample.tables.contact, sample.benefits)
    cases = [
        (ids, features.slice(0, 1500), "the feature rows hold 1,500 cardholders, not the 3,000 expected"),
        (
            ids,
            features.take(list(range(2999, -1, -1))),
            "the feature rows from row 0 are not the cardholders",
        ),
        (pa.concat_arrays([ids[:2], ids[:1]]), features.take([0, 1, 0]), "list a cardholder twice"),
    ]
    for given_ids, rows, message in cases:
        with pytest.raises(ModelError, match=message):
            assemble_profiles_from_batches(
                AS_OF, given_ids, rows.to_batches(1000), history, sample.bundle, sample.benefits
            )


def test_stored_estimates_spare_the_spend_estimator(
    sample: Sample, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = write_sample_snapshot(tmp_path, sample, estimates=sample.estimates)

    def refuse(*args: Any) -> None:
        raise AssertionError("the spend estimator ran although the snapshot holds its estimates")

    monkeypatch.setattr(sample.bundle.estimator, "predict", refuse)
    profiles = profiles_from_snapshot(folder, sample.bundle, sample.benefits)
    assert np.array_equal(profiles.est_spend, sample.expected.est_spend)


def test_manifest_records_the_tables(sample: Sample, tmp_path: Path) -> None:
    manifest = write_snapshot(tmp_path, sample.tables, AS_OF, now=T0, estimates=sample.estimates)
    assert manifest == check_snapshot(tmp_path / "2026-10-01")
    assert (manifest.as_of, manifest.created_at) == (AS_OF, T0)
    assert manifest.cardholders == sample.tables.features.num_rows == len(sample.expected)
    assert manifest.history_rows == sample.tables.history.num_rows
    assert manifest.contact_rows == sample.tables.contact.num_rows
    assert manifest.feature_names == sample.tables.features.column_names[2:]
    assert manifest.extra_columns == sample.bundle.extra and manifest.extra_columns.taken
    assert set(manifest.files) == {
        FEATURES_FILE,
        HISTORY_FILE,
        CONTACT_FILE,
        estimates_file(sample.bundle.version),
    }
    assert sorted(os.listdir(tmp_path)) == ["2026-10-01"], "no temporary folder is left behind"
    loaded = load_snapshot(tmp_path / "2026-10-01")
    assert loaded.tables.features.equals(sample.tables.features)
    assert loaded.tables.history.equals(sample.tables.history)
    assert loaded.tables.contact.equals(sample.tables.contact)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"created_at": "2026-10-01T09:00:00"}, "naive time"),
        ({"feature_names": ["spend_dining", "spend_dining"]}, "'spend_dining' is listed twice"),
        ({"feature_names": ["spend_dining", ""]}, "a feature name is empty"),
        ({"feature_names": ["cardholder_id"]}, "'cardholder_id' is a key column"),
        ({"feature_names": []}, "at least 1 item"),
    ],
)
def test_a_manifest_with_a_bad_time_or_feature_list_is_refused(
    sample: Sample, tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    manifest = write_snapshot(tmp_path, sample.tables, AS_OF, now=T0)
    with pytest.raises(PydanticValidationError, match=message):
        SnapshotManifest.model_validate({**manifest.model_dump(mode="json"), **change})


# --- nothing tampered with, incomplete or unfit loads -------------------------------------------------


@pytest.mark.parametrize("name", [FEATURES_FILE, HISTORY_FILE, CONTACT_FILE, "estimates"])
def test_a_changed_byte_is_refused_naming_the_file(sample: Sample, tmp_path: Path, name: str) -> None:
    folder = write_sample_snapshot(tmp_path, sample, estimates=sample.estimates)
    if name == "estimates":
        name = estimates_file(sample.bundle.version)
    path = folder / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    message = rf"2026-10-01: {name}: checksum mismatch .* changed after the snapshot was written"
    for load in (load_snapshot, lambda f: profiles_from_snapshot(f, sample.bundle, sample.benefits)):
        with pytest.raises(DataError, match=message):
            load(folder)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: (f / HISTORY_FILE).unlink(), r"history\.parquet: listed in the manifest but missing"),
        (lambda f: (f / "notes.txt").write_text("x"), r"notes\.txt: not listed in the manifest"),
        (lambda f: (f / MANIFEST_FILE).unlink(), r"manifest\.json is missing"),
        (lambda f: (f / MANIFEST_FILE).write_text("{"), r"manifest\.json: not valid JSON"),
        (
            lambda f: (f / MANIFEST_FILE).write_text(
                (f / MANIFEST_FILE).read_text().replace('"cardholders": 3000', '"cardholders": -1')
            ),
            r"manifest\.json: cardholders: Input should be greater than or equal to 0",
        ),
        (
            lambda f: (f / MANIFEST_FILE).write_text(
                (f / MANIFEST_FILE).read_text().replace('"format_version": 1', '"format_version": 2')
            ),
            r"format_version 2 was written by a newer nba",
        ),
    ],
)
def test_an_incomplete_or_edited_folder_is_refused(
    sample: Sample, tmp_path: Path, change: Any, message: str
) -> None:
    folder = write_sample_snapshot(tmp_path, sample)
    change(folder)
    with pytest.raises(DataError, match=message):
        load_snapshot(folder)


def test_a_renamed_folder_is_refused(sample: Sample, tmp_path: Path) -> None:
    folder = write_sample_snapshot(tmp_path, sample)
    other = tmp_path / "2026-09-01"
    os.rename(folder, other)
    with pytest.raises(DataError, match=r"describes the snapshot as of 2026-10-01; the folder was renamed"):
        load_snapshot(other)
    with pytest.raises(NotFoundError, match="no such snapshot folder"):
        load_snapshot(folder)


@pytest.mark.parametrize("loaded", [False, True], ids=["folder", "loaded tables"])
def test_a_snapshot_without_the_models_extra_columns_is_refused_naming_them(
    sample: Sample, tmp_path: Path, loaded: bool
) -> None:
    with open_data(SAMPLE) as data:
        tables = compute_profile_tables(data, AS_OF, load_mcc_map(), ExtraColumns())
    write_snapshot(tmp_path, tables, AS_OF)
    folder = tmp_path / "2026-10-01"
    snapshot: Path | LoadedSnapshot = load_snapshot(folder) if loaded else folder
    message = (
        rf"lacks cardholder features model {sample.bundle.version} needs: credit_limit_usd, income_band; "
        "build a snapshot with this model"
    )
    with pytest.raises(ModelError, match=message) as caught:
        profiles_from_snapshot(snapshot, sample.bundle, sample.benefits)
    assert "\n" not in str(caught.value)


def test_an_extra_column_of_another_kind_is_refused(sample: Sample, tmp_path: Path) -> None:
    assert sample.bundle.extra.taken["income_band"] == "categorical"
    numeric = ExtraColumns(taken={"credit_limit_usd": "numeric", "income_band": "numeric"})
    with open_data(SAMPLE) as data:
        tables = compute_profile_tables(data, AS_OF, load_mcc_map(), numeric)
    write_snapshot(tmp_path, tables, AS_OF)
    with pytest.raises(ModelError, match="extra column 'income_band' is numeric in the snapshot, but model"):
        profiles_from_snapshot(tmp_path / "2026-10-01", sample.bundle, sample.benefits)


def test_writing_refuses_an_existing_folder_other_dates_and_incomplete_tables(
    sample: Sample, tmp_path: Path
) -> None:
    write_sample_snapshot(tmp_path, sample)
    with pytest.raises(DataError, match="2026-10-01: already exists; a snapshot is never overwritten"):
        write_snapshot(tmp_path, sample.tables, AS_OF)
    with pytest.raises(DataError, match=r"features\.parquet: its rows are not all as of 2026-09-30"):
        write_snapshot(tmp_path, sample.tables, date(2026, 9, 30))
    no_contact = ProfileTables(
        sample.tables.features,
        sample.tables.history,
        sample.tables.contact.drop_columns(["presented_90d"]),
        sample.tables.extra,
    )
    with pytest.raises(DataError, match=r"contact\.parquet: the table lacks columns presented_90d"):
        write_snapshot(tmp_path, no_contact, date(2026, 9, 30))
    wrong = {sample.bundle.version: np.zeros((3, 16), dtype=np.float32)}
    with pytest.raises(DataError, match=r"`estimates`: .*: expected float32 \(3000, 16\)"):
        write_snapshot(tmp_path / "other", sample.tables, AS_OF, estimates=wrong)
    assert sorted(os.listdir(tmp_path)) == ["2026-10-01"], "nothing half-written is left behind"


def _cut(table: pa.Table, sizes: list[int]) -> list[pa.Table]:
    """`table` in consecutive slices of `sizes` rows (0: an empty slice), the rest as the last one."""
    parts, start = [], 0
    for size in sizes:
        parts.append(table.slice(start, size))
        start += size
    return [*parts, table.slice(start)]


def test_a_snapshot_written_in_parts_has_the_bytes_of_the_whole_tables(
    sample: Sample, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Spark's path (`write_snapshot_parts`, one row group held at a time) writes what `pq.write_table` and
    `np.save` write for the whole tables: parts of any sizes, cut anywhere, empty ones among them."""
    monkeypatch.setattr(snapshots, "ROW_GROUP_ROWS", 700)  # five row groups of the 3,000 cardholders
    tables, version = sample.tables, sample.bundle.version
    estimates = sample.estimates[version]
    seen: list[tuple[int, int]] = []

    def estimate(group: pa.Table, first_row: int) -> dict[str, np.ndarray]:
        seen.append((first_row, group.num_rows))
        return {version: estimates[first_row : first_row + group.num_rows]}

    parts = SnapshotParts(
        _cut(tables.features, [1, 999, 0, 1500]),
        _cut(tables.history, [0, 333, 2]),
        [tables.contact.slice(0, 0), *_cut(tables.contact, [5])],
        tables.extra,
    )
    manifest = write_snapshot_parts(
        tmp_path / "parts", parts, AS_OF, now=T0, versions=[version], estimate=estimate
    )
    assert seen == [(0, 700), (700, 700), (1400, 700), (2100, 700), (2800, 200)]
    reference = tmp_path / "reference"
    reference.mkdir()
    for name, table in zip(
        (FEATURES_FILE, HISTORY_FILE, CONTACT_FILE),
        (tables.features, tables.history, tables.contact),
        strict=True,
    ):
        pq.write_table(table, reference / name, row_group_size=700)
    np.save(reference / estimates_file(version), estimates, allow_pickle=False)
    written = tmp_path / "parts" / AS_OF.isoformat()
    for name in (FEATURES_FILE, HISTORY_FILE, CONTACT_FILE, estimates_file(version)):
        assert (written / name).read_bytes() == (reference / name).read_bytes(), name
    assert pq.ParquetFile(written / FEATURES_FILE).metadata.num_row_groups == 5
    assert (
        manifest.cardholders == tables.features.num_rows and manifest.history_rows == tables.history.num_rows
    )
    # A table with no rows at all: the one empty row group pq.write_table writes too.
    empty = tables.contact.slice(0, 0)
    snapshots._write_parquet_parts(tmp_path / "empty.parquet", [empty, empty], ["cardholder_id"])
    pq.write_table(empty, tmp_path / "empty-reference.parquet", row_group_size=700)
    assert (tmp_path / "empty.parquet").read_bytes() == (tmp_path / "empty-reference.parquet").read_bytes()


# --- the snapshot in service ------------------------------------------------------------------------------


def test_current_list_and_promote(sample: Sample, tmp_path: Path) -> None:
    root = tmp_path / "profiles"
    assert read_current_snapshot(root) is None
    with pytest.raises(NotFoundError, match="neither a snapshot folder nor a profiles folder"):
        resolve_snapshot(root)
    older = write_sample_snapshot(root, sample, date(2026, 9, 1))
    newer = write_sample_snapshot(root, sample)
    assert set_current_snapshot(root, "2026-09-01") is None
    assert read_current_snapshot(root) == "2026-09-01"
    assert (root / CURRENT_FILE).read_text() == "2026-09-01\n"
    assert resolve_snapshot(root) == older
    assert resolve_snapshot(newer) == newer
    assert set_current_snapshot(root, AS_OF) == "2026-09-01"
    assert set_current_snapshot(root, AS_OF) == "2026-10-01", "promoting it again changes nothing"
    infos = list_snapshots(root)
    assert [(i.as_of, i.is_current, i.ok, i.cardholders) for i in infos] == [
        (AS_OF, True, True, 3000),
        (date(2026, 9, 1), False, True, 3000),
    ]
    assert infos[0].created_at == T0

    (older / CONTACT_FILE).write_bytes(b"not parquet")
    infos = list_snapshots(root)
    assert infos[1].problem is not None and infos[1].problem.startswith("contact.parquet: checksum mismatch")
    with pytest.raises(DataError, match=r"2026-09-01: contact\.parquet: checksum mismatch"):
        set_current_snapshot(root, "2026-09-01")
    assert read_current_snapshot(root) == "2026-10-01", "a failed promotion leaves CURRENT alone"

    (root / CURRENT_FILE).write_text("../../etc\n")
    with pytest.raises(DataError, match=r"CURRENT: '\.\./\.\./etc' is not a snapshot name"):
        read_current_snapshot(root)
    assert list_snapshots(root)[0].is_current is False
    assert set_current_snapshot(root, AS_OF) is None, "promoting a good snapshot repairs a broken CURRENT"
    assert read_current_snapshot(root) == "2026-10-01"
    (root / ".tmp-snapshot-0123").mkdir()
    assert len(list_snapshots(root)) == 2, "unfinished folders are not snapshots"
    with pytest.raises(NotFoundError, match="no profiles folder"):
        list_snapshots(tmp_path / "nowhere")


@pytest.mark.parametrize(
    "name", ["../2026-10-01", "2026-13-01", "2026-1-01", "latest", "2026-10-01/..", "", "/etc", "2026-10-01 "]
)
def test_names_that_are_not_dates_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(NotFoundError, match=r"no snapshot .*; snapshots are named by their as-of date, like"):
        snapshot_dir(tmp_path, name)
    with pytest.raises(NotFoundError, match="snapshots are named by their as-of date"):
        set_current_snapshot(tmp_path, name)
    assert not (tmp_path / CURRENT_FILE).exists()


def test_a_folder_not_named_by_a_date_is_not_a_snapshot(sample: Sample, tmp_path: Path) -> None:
    folder = write_sample_snapshot(tmp_path, sample)
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    with pytest.raises(
        DataError, match="copy: not a snapshot folder; snapshots are named by their as-of date"
    ):
        load_snapshot(copy)
