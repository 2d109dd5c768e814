"""Snapshots: profile tables as of a date → checked folders `profiles/<as_of>/`, the one in service, and Profiles.

A snapshot folder holds what profiles are made of before a model encodes them — `features.parquet`
(one row per cardholder), `history.parquet` and `contact.parquet` (per cardholder and benefit) — and
`manifest.json`: the as-of date, row counts, the feature columns in order, the extra (CRM) columns,
and the SHA-256 of every file. Any model whose cardholder features are in it can serve it, so the
nightly spend refresh writes a new snapshot and a new model is a separate reload. A snapshot may also
keep the spend estimates of the model it was built with (`estimates-<version>.npy`, float32): that
model then loads it without running its spend estimator, which is most of the time it takes.

Folders are named by their as-of date and never change once written; `profiles/CURRENT` names the
one in service.

Example:
    >>> tables = compute_profile_tables(data, date(2026, 10, 1), mcc_map, bundle.extra)
    >>> write_snapshot(Path("profiles"), tables, date(2026, 10, 1))
    >>> set_current_snapshot(Path("profiles"), date(2026, 10, 1))
    >>> profiles = profiles_from_snapshot(resolve_snapshot(Path("profiles")), bundle, benefits)
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Final, Literal, NamedTuple

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError

from nba.errors import DataError, ModelError, NotFoundError
from nba.features._matrix import HISTORY_COLUMNS, BenefitTable
from nba.features._sql import KEY_COLUMNS, ExtraColumns
from nba.files import (
    FeatureNames,
    UtcTime,
    folder_problem,
    move_into_place,
    one_line,
    open_new_file,
    read_pointer,
    replace_file,
    sha256_of_file,
    staging_dir,
    write_file,
)
from nba.model._bundle import ModelBundle
from nba.model._registry import dump_json_artifact, is_version, load_json_artifact
from nba.profiles._profiles import (
    ASSEMBLY_ROWS,
    CONTACT_COLUMNS,
    Profiles,
    assemble_profiles,
    assemble_profiles_from_batches,
    build_profile_history,
)

# Re-exported: what a snapshot is made of and how it is computed (see nba.profiles._profiles).
from nba.profiles._profiles import ProfileTables as ProfileTables
from nba.profiles._profiles import compute_profile_tables as compute_profile_tables
from nba.vocab import SPEND_CATEGORIES

FORMAT_VERSION: Final = 1
FEATURES_FILE: Final = "features.parquet"
HISTORY_FILE: Final = "history.parquet"
CONTACT_FILE: Final = "contact.parquet"
TABLE_FILES: Final = (FEATURES_FILE, HISTORY_FILE, CONTACT_FILE)
MANIFEST_FILE: Final = "manifest.json"
CURRENT_FILE: Final = "CURRENT"
NAME_EXAMPLE: Final = "2026-10-01"
HISTORY_TABLE_COLUMNS: Final = ("cardholder_id", "benefit_id", "used", *HISTORY_COLUMNS)
# Row groups this size let a reader decode the features file a slice at a time.
ROW_GROUP_ROWS: Final = ASSEMBLY_ROWS

_NAME_RE: Final = re.compile(r"\d{4}-\d{2}-\d{2}")
_SHA256_RE: Final = re.compile(r"[0-9a-f]{64}")
_ESTIMATES_RE: Final = re.compile(r"estimates-(.+)\.npy")


def estimates_file(version: str) -> str:
    """The file holding a model version's spend estimates inside a snapshot."""
    return f"estimates-{version}.npy"


class SnapshotManifest(BaseModel):
    """What `manifest.json` records about one profile snapshot.

    `feature_names` are the feature columns of `features.parquet` in order (after `cardholder_id`
    and `as_of`); `estimates` maps a model version to the file of its spend estimates; `files` maps
    every other file of the folder to its SHA-256 (hex).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    format_version: Literal[1] = FORMAT_VERSION
    as_of: date
    created_at: UtcTime
    cardholders: int = Field(ge=0)
    history_rows: int = Field(ge=0)
    contact_rows: int = Field(ge=0)
    feature_names: FeatureNames
    extra_columns: ExtraColumns
    estimates: dict[str, str] = Field(default_factory=dict)
    files: dict[str, str]

    @field_validator("feature_names")
    @classmethod
    def _check_not_keys(cls, value: list[str]) -> list[str]:
        keys = [name for name in value if name in KEY_COLUMNS]
        if keys:
            raise ValueError(f"{keys[0]!r} is a key column, not a feature")
        return value

    @model_validator(mode="after")
    def _check_files(self) -> SnapshotManifest:
        for version, name in self.estimates.items():
            if not is_version(version) or name != estimates_file(version):
                raise ValueError(f"estimates: {version!r} → {name!r} is not a model version and its file")
        expected = {*TABLE_FILES, *self.estimates.values()}
        if set(self.files) != expected:
            raise ValueError(f"files must list exactly {sorted(expected)}, got {sorted(self.files)}")
        for name, digest in self.files.items():
            if not _SHA256_RE.fullmatch(digest):
                raise ValueError(f"files: {name!r}: {digest!r} is not a SHA-256 in lowercase hex")
        missing = [name for name in self.extra_columns.taken if name not in self.feature_names]
        if missing:
            raise ValueError(f"extra columns {missing} are not among the feature names")
        return self


class LoadedSnapshot(NamedTuple):
    """A checked snapshot read into memory: its manifest and its tables."""

    manifest: SnapshotManifest
    tables: ProfileTables


@dataclass(frozen=True)
class SnapshotInfo:
    """One row of `list_snapshots`: a snapshot's date, size, whether it is in service and checks out.

    A folder that fails its checks has `problem` set and nothing read from its manifest.
    """

    as_of: date
    created_at: datetime | None
    cardholders: int | None
    is_current: bool
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


# --- names ----------------------------------------------------------------------------------------


def parse_snapshot_name(name: str) -> date | None:
    """The as-of date a folder name stands for (`2026-10-01`), or None when it is not a snapshot name."""
    if not _NAME_RE.fullmatch(name):
        return None
    try:
        return date.fromisoformat(name)
    except ValueError:
        return None


def snapshot_dir(root: Path, as_of: date | str) -> Path:
    """The folder of the snapshot as of `as_of` under `root`.

    Raises NotFoundError for a name that is not a date (`../x`, `2026-13-01`), so no path leaves `root`.
    """
    if isinstance(as_of, str):
        day = parse_snapshot_name(as_of)
        if day is None:
            raise NotFoundError(
                f"{root}: no snapshot {as_of!r}; snapshots are named by their as-of date, like {NAME_EXAMPLE}"
            )
        as_of = day
    return root / as_of.isoformat()


# --- writing --------------------------------------------------------------------------------------


def new_snapshot_dir(root: Path, as_of: date) -> Path:
    """The folder a new snapshot as of `as_of` goes to; raises DataError when it exists already."""
    target = snapshot_dir(root, as_of)
    if target.exists():
        raise DataError(f"{target}: already exists; a snapshot is never overwritten (remove it first)")
    return target


@dataclass(frozen=True)
class SnapshotParts:
    """A snapshot's three tables as streams of Arrow tables (any sizes, in the table's order), for a
    snapshot too large to hold at once (Spark's: training/spark_snapshot.py). Each stream yields at least
    one table, empty when the table has no rows, so its schema is known."""

    features: Iterable[pa.Table]
    history: Iterable[pa.Table]
    contact: Iterable[pa.Table]
    extra: ExtraColumns

    @classmethod
    def of(cls, tables: ProfileTables) -> SnapshotParts:
        return cls([tables.features], [tables.history], [tables.contact], tables.extra)


# Called with each row group of the features (and its first row's number): each model version's
# `estimate_spend` of those rows.
EstimateRows = Callable[[pa.Table, int], Mapping[str, npt.NDArray[np.float32]]]


def _check_columns(file: str, table: pa.Table, columns: Sequence[str]) -> None:
    missing = [name for name in columns if name not in table.column_names]
    if missing:
        raise DataError(f"cannot write {file}: the table lacks columns {', '.join(missing)}")


def _check_as_of(group: pa.Table, as_of: date) -> None:
    stated = group.column("as_of")
    if group.num_rows and not pc.all(pc.equal(stated, pa.scalar(as_of, stated.type))).as_py():
        raise DataError(f"cannot write {FEATURES_FILE}: its rows are not all as of {as_of}")


def _row_groups(tables: Iterable[pa.Table], rows: int) -> Iterator[pa.Table]:
    """`tables` cut into tables of exactly `rows` rows (the last one shorter), as `pq.write_table` cuts
    one table into row groups; with no rows at all, the first (empty) table, which `pq.write_table` too
    writes as one empty row group."""
    buffered: list[pa.Table] = []
    count, emitted = 0, False
    first: pa.Table | None = None
    for table in tables:
        first = table if first is None else first
        if not table.num_rows:
            continue
        buffered.append(table)
        count += table.num_rows
        while count >= rows:
            whole = pa.concat_tables(buffered)
            yield whole.slice(0, rows).combine_chunks()
            emitted = True
            rest = whole.slice(rows)
            buffered, count = ([rest] if rest.num_rows else []), rest.num_rows
    if first is None:
        raise DataError("cannot write a snapshot table from no parts (not even an empty one)")
    if count:
        yield pa.concat_tables(buffered).combine_chunks()
    elif not emitted:
        yield first


def _write_parquet_parts(
    path: Path,
    tables: Iterable[pa.Table],
    columns: Sequence[str],
    on_group: Callable[[pa.Table, int], None] | None = None,
) -> tuple[int, pa.Schema]:
    """Writes `tables` as one Parquet file in row groups of ROW_GROUP_ROWS: byte for byte what
    `pq.write_table` writes for their concatenation, holding one row group at a time. `on_group(group,
    first_row)` sees each row group before it is written. Returns the rows written and the schema."""
    written = 0
    writer: pq.ParquetWriter | None = None
    with open_new_file(path) as stream:
        try:
            for group in _row_groups(tables, ROW_GROUP_ROWS):
                if writer is None:
                    _check_columns(path.name, group, columns)
                    writer = pq.ParquetWriter(stream, group.schema)
                if on_group is not None:
                    on_group(group, written)
                writer.write_table(group, row_group_size=ROW_GROUP_ROWS)
                written += group.num_rows
        finally:
            if writer is not None:
                writer.close()
    assert writer is not None  # _row_groups yields at least one table
    return written, writer.schema


def _write_npy_parts(path: Path, raw: Path, rows: int) -> None:
    """`raw` (float32 rows of len(SPEND_CATEGORIES), C order, no header) as the .npy file `np.save` writes
    for the whole array: its header, then the bytes."""
    header = {
        "descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
        "fortran_order": False,
        "shape": (rows, len(SPEND_CATEGORIES)),
    }
    with open_new_file(path) as stream, raw.open("rb") as source:
        np.lib.format.write_array_header_1_0(stream, header)
        shutil.copyfileobj(source, stream, 1 << 22)


def write_snapshot(
    root: Path,
    tables: ProfileTables,
    as_of: date,
    *,
    now: datetime | None = None,
    estimates: Mapping[str, npt.NDArray[np.float32]] | None = None,
) -> SnapshotManifest:
    """Writes a new snapshot folder `root/<as_of>/` atomically and returns its manifest.

    The files are written into a hidden temporary folder inside `root`, their SHA-256 go into
    `manifest.json` (written last), and the folder is renamed in one step, so a reader sees a whole
    snapshot or none. `estimates` maps model versions to their `estimate_spend` of these features.

    Raises DataError when a table lacks a column, the features are not as of `as_of`, the estimates do
    not fit, or the folder exists already (a snapshot is never overwritten).
    """
    # Whole tables: every column checked before anything is written, then the date.
    _check_columns(FEATURES_FILE, tables.features, KEY_COLUMNS)
    _check_columns(HISTORY_FILE, tables.history, HISTORY_TABLE_COLUMNS)
    _check_columns(CONTACT_FILE, tables.contact, CONTACT_COLUMNS)
    _check_as_of(tables.features, as_of)
    estimates = dict(estimates or {})
    shape = (tables.features.num_rows, len(SPEND_CATEGORIES))
    for version, values in estimates.items():
        if values.shape != shape or values.dtype != np.float32:
            raise DataError(
                f"`estimates`: {version}: expected float32 {shape}, got {values.dtype} {values.shape}"
            )

    def rows_of(group: pa.Table, first_row: int) -> dict[str, npt.NDArray[np.float32]]:
        return {
            version: values[first_row : first_row + group.num_rows] for version, values in estimates.items()
        }

    return write_snapshot_parts(
        root, SnapshotParts.of(tables), as_of, now=now, versions=sorted(estimates), estimate=rows_of
    )


def write_snapshot_parts(
    root: Path,
    parts: SnapshotParts,
    as_of: date,
    *,
    now: datetime | None = None,
    versions: Sequence[str] = (),
    estimate: EstimateRows | None = None,
) -> SnapshotManifest:
    """`write_snapshot` for tables given in parts: the same files, byte for byte, holding one row group
    (ROW_GROUP_ROWS rows) of a table at a time. `estimate(group, first_row)` gives each of `versions` its
    spend estimates of each row group of the features, written to its estimates file as they come.

    Raises DataError as `write_snapshot` does.
    """
    created_at = now or datetime.now(UTC)
    target = new_snapshot_dir(root, as_of)
    with staging_dir(root, "tmp-snapshot") as temp, staging_dir(root, "tmp-estimates") as raw_dir:
        stored = {version: estimates_file(version) for version in sorted(versions)}
        raw = {version: (raw_dir / name).open("xb") for version, name in stored.items()}
        width = len(SPEND_CATEGORIES)

        def on_features(group: pa.Table, first_row: int) -> None:
            _check_as_of(group, as_of)
            given = estimate(group, first_row) if estimate is not None else {}
            for version, stream in raw.items():
                values = given.get(version)
                if values is None or values.shape != (group.num_rows, width) or values.dtype != np.float32:
                    got = "none" if values is None else f"{values.dtype} {values.shape}"
                    raise DataError(
                        f"`estimates`: {version}: expected float32 {(group.num_rows, width)} for rows "
                        f"{first_row:,}+, got {got}"
                    )
                stream.write(np.ascontiguousarray(values).tobytes())

        try:
            cardholders, schema = _write_parquet_parts(
                temp / FEATURES_FILE, parts.features, KEY_COLUMNS, on_features
            )
        finally:
            for stream in raw.values():
                stream.close()
        history_rows, _ = _write_parquet_parts(temp / HISTORY_FILE, parts.history, HISTORY_TABLE_COLUMNS)
        contact_rows, _ = _write_parquet_parts(temp / CONTACT_FILE, parts.contact, CONTACT_COLUMNS)
        for name in stored.values():
            _write_npy_parts(temp / name, raw_dir / name, cardholders)
        try:
            manifest = SnapshotManifest(
                as_of=as_of,
                created_at=created_at,
                cardholders=cardholders,
                history_rows=history_rows,
                contact_rows=contact_rows,
                feature_names=[name for name in schema.names if name not in KEY_COLUMNS],
                extra_columns=parts.extra,
                estimates=stored,
                files={name: sha256_of_file(temp / name) for name in sorted(os.listdir(temp))},
            )
        except PydanticValidationError as exc:
            raise DataError(f"cannot write a snapshot manifest: {one_line(exc)}") from None
        write_file(temp / MANIFEST_FILE, dump_json_artifact(manifest.model_dump(mode="json")))
        try:
            move_into_place(temp, target)
        except FileExistsError:
            raise DataError(
                f"{target}: already exists; another snapshot was written at the same time"
            ) from None
        except OSError as exc:
            raise DataError(f"{target}: cannot move the new snapshot into place: {exc.strerror}") from None
    return manifest


# --- reading and checking -------------------------------------------------------------------------


def check_snapshot(folder: Path) -> SnapshotManifest:
    """Reads a snapshot's manifest and checks every file against it; returns it only if all is well.

    Checks: the folder is named by a date, `manifest.json` is valid and for that date, every listed
    file is there with its recorded SHA-256, and nothing else is in the folder. Raises NotFoundError
    when `folder` is not a folder and DataError naming the folder and the file for anything else.
    """
    if not folder.is_dir():
        raise NotFoundError(f"{folder}: no such snapshot folder")
    name_date = parse_snapshot_name(folder.name)
    if name_date is None:
        raise DataError(
            f"{folder}: not a snapshot folder; snapshots are named by their as-of date, like {NAME_EXAMPLE}"
        )
    path = folder / MANIFEST_FILE
    if not path.is_file():
        raise DataError(f"{folder}: {MANIFEST_FILE} is missing; this is not a finished snapshot")
    try:
        raw = load_json_artifact(path.read_bytes(), source=f"{folder}: {MANIFEST_FILE}")
    except ModelError as exc:
        raise DataError(str(exc)) from None
    found = raw.get("format_version") if isinstance(raw, dict) else None
    if isinstance(found, int) and not isinstance(found, bool) and found > FORMAT_VERSION:
        raise DataError(
            f"{folder}: {MANIFEST_FILE}: format_version {found} was written by a newer nba "
            f"(this one reads {FORMAT_VERSION}); upgrade nba to load this snapshot"
        )
    try:
        manifest = SnapshotManifest.model_validate(raw)
    except PydanticValidationError as exc:
        raise DataError(f"{folder}: {MANIFEST_FILE}: {one_line(exc)}") from None
    if manifest.as_of != name_date:
        raise DataError(
            f"{folder}: {MANIFEST_FILE}: describes the snapshot as of {manifest.as_of}; the folder was renamed or copied"
        )
    problem = folder_problem(folder, manifest.files, MANIFEST_FILE, since="the snapshot was written")
    if problem is not None:
        raise DataError(f"{folder}: {problem}")
    try:
        schema = pq.read_schema(folder / FEATURES_FILE)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"{folder}: {FEATURES_FILE}: cannot read it: {exc}") from None
    if schema.names != [*KEY_COLUMNS, *manifest.feature_names]:
        raise DataError(f"{folder}: {FEATURES_FILE}: its columns are not the manifest's feature names")
    return manifest


def load_snapshot(folder: Path) -> LoadedSnapshot:
    """Checks a snapshot folder (`check_snapshot`) and reads its tables into memory.

    Raises NotFoundError for a missing folder and DataError naming the file for a missing, changed or
    unreadable one (nothing is returned then). For serving, `profiles_from_snapshot(folder, ...)`
    reads the features a slice at a time instead of holding them whole.
    """
    manifest = check_snapshot(folder)
    tables = ProfileTables(
        features=_read_table(folder, FEATURES_FILE, manifest.cardholders),
        history=_read_table(folder, HISTORY_FILE, manifest.history_rows),
        contact=_read_table(folder, CONTACT_FILE, manifest.contact_rows),
        extra=manifest.extra_columns,
    )
    return LoadedSnapshot(manifest, tables)


def _read_table(folder: Path, name: str, rows: int, columns: list[str] | None = None) -> pa.Table:
    try:
        table = pq.read_table(folder / name, columns=columns)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"{folder}: {name}: cannot read it: {exc}") from None
    if table.num_rows != rows:
        raise DataError(f"{folder}: {name}: holds {table.num_rows:,} rows, the manifest says {rows:,}")
    return table


def check_snapshot_fits(
    manifest: SnapshotManifest, bundle: ModelBundle, source: object = "the snapshot"
) -> None:
    """Raises ModelError, in one line, unless the snapshot has every cardholder feature the model needs.

    That is `bundle.holder.feature_names` (its extra columns included), each extra column of the same
    kind (numeric or categorical) as the model takes it.
    """
    have = set(manifest.feature_names)
    missing = [name for name in bundle.holder.feature_names if name not in have]
    if missing:
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise ModelError(
            f"{source}: lacks cardholder features model {bundle.version} needs: {shown}; "
            "build a snapshot with this model (nba profiles build --model ...)"
        )
    for name, kind in bundle.extra.taken.items():
        stored = manifest.extra_columns.taken.get(name)
        if stored is not None and stored != kind:
            raise ModelError(
                f"{source}: extra column {name!r} is {stored} in the snapshot, but model {bundle.version} "
                f"takes it as {kind}; build a snapshot with this model"
            )


def profiles_from_snapshot(
    snapshot: Path | LoadedSnapshot, bundle: ModelBundle, benefits: BenefitTable
) -> Profiles:
    """A snapshot's profiles encoded for one model: the same arrays `build_profiles` computes.

    `snapshot` is a snapshot folder (checked first; its features are read a slice at a time, only the
    columns the model uses) or what `load_snapshot` returned. Raises ModelError, before anything is
    encoded, when the snapshot lacks a feature the model needs (naming them), and as
    `assemble_profiles` does; DataError and NotFoundError as `check_snapshot` does.
    """
    if isinstance(snapshot, LoadedSnapshot):
        manifest, tables = snapshot
        check_snapshot_fits(manifest, bundle)
        return assemble_profiles(
            manifest.as_of, tables.features, tables.history, tables.contact, bundle, benefits
        )
    folder = snapshot
    manifest = check_snapshot(folder)
    check_snapshot_fits(manifest, bundle, folder)
    est_spend = None
    stored = manifest.estimates.get(bundle.version)
    if stored is not None:
        try:
            est_spend = np.load(folder / stored, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"{folder}: {stored}: cannot read it: {exc}") from None
    ids = (
        _read_table(folder, FEATURES_FILE, manifest.cardholders, ["cardholder_id"]).column(0).combine_chunks()
    )
    # The history first, and its tables given back (Arrow's allocator keeps freed memory for reuse)
    # before the feature rows take their room: the peak is the larger of the two steps, not their sum.
    history = build_profile_history(
        ids,
        _read_table(folder, HISTORY_FILE, manifest.history_rows, list(HISTORY_TABLE_COLUMNS)),
        _read_table(folder, CONTACT_FILE, manifest.contact_rows, list(CONTACT_COLUMNS)),
        benefits,
    )
    pa.default_memory_pool().release_unused()
    columns = list(dict.fromkeys(("cardholder_id", "product_id", *bundle.holder.feature_names)))
    try:
        # Not pre-buffered: that would hold every requested column chunk of the file until the end.
        features = pq.ParquetFile(folder / FEATURES_FILE, pre_buffer=False)
        batches = features.iter_batches(batch_size=ASSEMBLY_ROWS, columns=columns)
        profiles = assemble_profiles_from_batches(
            manifest.as_of, ids, batches, history, bundle, benefits, est_spend=est_spend
        )
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"{folder}: {FEATURES_FILE}: cannot read it: {exc}") from None
    pa.default_memory_pool().release_unused()
    return profiles


# --- the snapshot in service ----------------------------------------------------------------------


def read_current_snapshot(root: Path) -> str | None:
    """The snapshot named by `root/CURRENT` (its as-of date, `2026-10-01`), or None when there is none.

    Raises DataError when CURRENT holds something other than a snapshot name.
    """
    path = root / CURRENT_FILE
    text = read_pointer(path)
    if text is None:
        return None
    if parse_snapshot_name(text) is None:
        shown = text if len(text) <= 60 else text[:57] + "..."
        raise DataError(f"{path}: {shown!r} is not a snapshot name; snapshots are named like {NAME_EXAMPLE}")
    return text


def pull_snapshot(source: Path, root: Path) -> SnapshotManifest:
    """Copies a snapshot folder written elsewhere (a lake copied down, a mounted share) into `root`,
    checking it on arrival; returns its manifest.

    `source` is the snapshot folder itself, named by its as-of date. Its regular files are copied into a
    hidden folder inside `root`, checked there as `check_snapshot` checks a folder (the manifest, every
    file's SHA-256, nothing missing or added), and only then renamed to `root/<as_of>/` in one step: a
    copy cut short or altered on the way leaves nothing behind. Raises NotFoundError when `source` is not
    a folder, and DataError naming the file when the copy does not check out, a file cannot be read, or
    `root/<as_of>/` exists already (a snapshot is never overwritten).
    """
    if not source.is_dir():
        raise NotFoundError(f"{source}: no such snapshot folder")
    day = parse_snapshot_name(source.name)
    if day is None:
        raise DataError(
            f"{source}: not a snapshot folder; snapshots are named by their as-of date, like {NAME_EXAMPLE}"
        )
    target = new_snapshot_dir(root, day)
    with staging_dir(root, "tmp-pull") as temp:
        arrived = temp / source.name
        arrived.mkdir()
        for entry in sorted(source.iterdir()):
            if entry.is_file() and not entry.is_symlink():
                try:
                    shutil.copyfile(entry, arrived / entry.name)
                except OSError as exc:
                    raise DataError(f"{entry}: cannot copy it: {exc.strerror or exc}") from None
        try:
            manifest = check_snapshot(arrived)
        except DataError as exc:
            raise DataError(
                f"{source}: refused on arrival: {str(exc).removeprefix(f'{arrived}: ')}"
            ) from None
        try:
            move_into_place(arrived, target)
        except FileExistsError:
            raise DataError(f"{target}: already exists; another copy arrived at the same time") from None
    return manifest


def resolve_snapshot(path: Path) -> Path:
    """A snapshot folder itself, or a profiles root whose CURRENT names the snapshot in service.

    Raises NotFoundError when `path` is neither, DataError when its CURRENT is malformed.
    """
    if (path / MANIFEST_FILE).exists():
        return path
    current = read_current_snapshot(path) if path.is_dir() else None
    if current is None:
        raise NotFoundError(
            f"{path}: neither a snapshot folder nor a profiles folder with a CURRENT snapshot"
        )
    return snapshot_dir(path, current)


def set_current_snapshot(root: Path, as_of: date | str) -> str | None:
    """Puts the snapshot as of `as_of` in service: checks its folder, then replaces CURRENT atomically.

    Returns the snapshot that was in service before (None if none). Raises NotFoundError for an unknown
    or malformed name and DataError for a snapshot that fails its checks; CURRENT is then unchanged.
    """
    folder = snapshot_dir(root, as_of)
    check_snapshot(folder)
    try:
        previous = read_current_snapshot(root)
    except DataError:
        previous = None  # a broken CURRENT is exactly what promoting a good snapshot repairs
    if previous != folder.name:
        replace_file(root / CURRENT_FILE, (folder.name + "\n").encode("utf-8"))
    return previous


def list_snapshots(root: Path) -> list[SnapshotInfo]:
    """Every snapshot under `root`, newest first, each checked; a failing one carries its problem.

    Entries whose names are not dates (such as unfinished `.tmp-…` folders) are skipped. Raises
    NotFoundError when `root` is not a folder.
    """
    if not root.is_dir():
        raise NotFoundError(f"{root}: no profiles folder")
    try:
        current = read_current_snapshot(root)
    except DataError:
        current = None
    infos: list[SnapshotInfo] = []
    for name in sorted(os.listdir(root), reverse=True):
        day = parse_snapshot_name(name)
        if day is None or not (root / name).is_dir():
            continue
        try:
            manifest = check_snapshot(root / name)
        except (DataError, NotFoundError) as exc:
            problem = str(exc).removeprefix(f"{root / name}: ")
            infos.append(SnapshotInfo(day, None, None, name == current, problem))
            continue
        infos.append(SnapshotInfo(day, manifest.created_at, manifest.cardholders, name == current))
    return infos
