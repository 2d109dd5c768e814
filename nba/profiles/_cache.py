"""Profile cache: a snapshot + a model + a catalog → one model-encoded copy on disk that every worker maps.

`profiles_from_snapshot` encodes a snapshot for one model in the memory of the process that calls it
(~1 GB at a million cardholders): N workers on a machine would hold N copies. Here the encoded arrays
are written once, as `.npy` files in a cache folder outside the snapshot folders (those stay immutable
and hold exactly what their manifests list), and opened with `mmap_mode="r"`: every worker's arrays
are read-only views of the same files, so the machine's page cache holds one copy whatever the number
of workers. The cardholder id → row lookup is mapped too (the ids as sorted fixed-width bytes, searched
with `searchsorted`), not a per-process dict.

An entry is `<cache>/<as_of>_<model version>_<key[:16]>/`, `key` being the SHA-256 of the snapshot's
manifest, the model's manifest and the catalog's part the encoding reads (its benefit and product ids in
order): any change to one of them is another entry. It holds one file per array and `manifest.json`
(written last) recording each file's SHA-256, size and modification time. The whole folder is written
under a hidden name and renamed into place in one step; two processes building the same entry take
turns on a lock file, so the second maps what the first wrote.

Opening checks cheaply by default: the manifest must parse and name this key, every file must be a
plain file with its recorded size and modification time and nothing else may be in the folder, and each
array's dtype and shape must be the manifest's. The full SHA-256 of every file was taken when the entry
was built and is checked again with `full_check=True` (~0.5 s per GB; the cache is local state, written
by this code, and the snapshot it came from was fully checked when the entry was built).

Example:
    >>> profiles = cached_profiles(Path("profile-cache"), Path("profiles/2026-10-01"), bundle, benefits)
    >>> prune_profile_cache(Path("profile-cache"), keep={profiles_entry_name(...)})
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from nba.errors import DataError, ModelError
from nba.features._matrix import BenefitTable
from nba.files import (
    fsync_dir,
    move_into_place,
    one_line,
    open_new_file,
    sha256_of_file,
    staging_dir,
    temp_path,
    write_file,
)
from nba.model._bundle import ModelBundle
from nba.model._registry import dump_json_artifact, load_json_artifact
from nba.profiles._profiles import CardholderIds, HolderMatrix, Profiles, SparseRows
from nba.profiles._snapshots import check_snapshot, check_snapshot_fits, profiles_from_snapshot

# 2: the holder matrix's float part held as sparse rows (values, column index, offsets).
CACHE_FORMAT_VERSION: Final = 2
CACHE_MANIFEST_FILE: Final = "manifest.json"
# An entry or unfinished staging folder younger than this is never pruned: another worker may have
# just built it for a reload it has not swapped in yet.
PRUNE_GRACE_S: Final = 600.0
# The arrays of `Profiles`, each stored as `<name>.npy`; `ids_sorter` only when the ids are not sorted.
ARRAY_NAMES: Final = (
    "ids",
    "ids_sorter",
    "holder_counts",
    "holder_float_values",
    "holder_float_index",
    "holder_float_offsets",
    "holder_count_columns",
    "holder_float_columns",
    "est_spend",
    "product_index",
    "offsets",
    "history_benefit",
    "history_used",
    "history_values",
    "history_days_since_declined",
    "history_presented_90d",
)
_ENTRY_RE: Final = re.compile(r"\d{4}-\d{2}-\d{2}_[\w.-]+_[0-9a-f]{16}")
# One lock for the whole cache (builds are rare): never removed, so no process can hold a lock on a
# file that another has replaced.
_LOCK_FILE: Final = ".build-lock"
_STAGING_PREFIX: Final = "tmp-profiles"


class CachedArray(BaseModel):
    """One array file of an entry: what it must hold and what it was when written."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dtype: str
    shape: list[int]
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0)
    mtime_ns: int = Field(ge=0)


class CacheManifest(BaseModel):
    """What an entry's `manifest.json` records: its key and the parts of it, and every array file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format_version: Literal[2] = CACHE_FORMAT_VERSION
    key: str = Field(pattern=r"^[0-9a-f]{64}$")
    snapshot_sha256: str
    model_sha256: str
    catalog_sha256: str
    as_of: date
    model_version: str
    cardholders: int = Field(ge=0)
    created_at: datetime
    arrays: dict[str, CachedArray]


def _digest_of(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def catalog_digest(benefits: BenefitTable) -> str:
    """The SHA-256 of what encoding profiles reads from the catalog: its benefit and product ids, in order.

    A catalog edit that leaves them alone (wording, levers, earn rates) keeps the cached profiles.
    """
    return _digest_of({"benefits": list(benefits.ids), "products": list(benefits.product_ids)})


def cache_key(snapshot_sha256: str, bundle: ModelBundle, benefits: BenefitTable) -> tuple[str, str, str]:
    """(key, model digest, catalog digest) of the entry for a snapshot (its manifest's digest), model, catalog."""
    model_sha256 = _digest_of(bundle.manifest.model_dump(mode="json"))
    catalog_sha256 = catalog_digest(benefits)
    key = _digest_of(
        {
            "format": CACHE_FORMAT_VERSION,
            "snapshot": snapshot_sha256,
            "model": model_sha256,
            "catalog": catalog_sha256,
        }
    )
    return key, model_sha256, catalog_sha256


def entry_name(as_of: date, model_version: str, key: str) -> str:
    """The folder name of a cache entry: readable first (`2026-10-01_<version>_`), then 16 hex of its key."""
    return f"{as_of.isoformat()}_{model_version}_{key[:16]}"


def _arrays_of(profiles: Profiles) -> dict[str, np.ndarray[Any, Any]]:
    by_row, sorter = profiles.ids.arrays
    arrays: dict[str, np.ndarray[Any, Any]] = {
        "ids": by_row,
        "holder_counts": profiles.holder.counts,
        "holder_float_values": profiles.holder.floats.values,
        "holder_float_index": profiles.holder.floats.columns,
        "holder_float_offsets": profiles.holder.floats.offsets,
        "holder_count_columns": profiles.holder.count_columns,
        "holder_float_columns": profiles.holder.float_columns,
        "est_spend": profiles.est_spend,
        "product_index": profiles.product_index,
        "offsets": profiles.offsets,
        "history_benefit": profiles.history_benefit,
        "history_used": profiles.history_used,
        "history_values": profiles.history_values,
        "history_days_since_declined": profiles.history_days_since_declined,
        "history_presented_90d": profiles.history_presented_90d,
    }
    if sorter is not None:
        arrays["ids_sorter"] = sorter
    return arrays


def write_cache_entry(
    cache: Path, profiles: Profiles, key: str, snapshot_sha256: str, model_sha256: str, catalog_sha256: str
) -> Path:
    """Writes `profiles` as a new entry under `cache` atomically and returns its folder.

    Raises FileExistsError when the entry exists already (another process wrote it first).
    """
    target = cache / entry_name(profiles.as_of, profiles.model_version, key)
    with staging_dir(cache, _STAGING_PREFIX) as temp:
        recorded: dict[str, CachedArray] = {}
        for name, values in _arrays_of(profiles).items():
            path = temp / f"{name}.npy"
            with open_new_file(path) as stream:
                np.save(stream, np.ascontiguousarray(values), allow_pickle=False)
            stat = path.stat()
            recorded[name] = CachedArray(
                dtype=values.dtype.str,
                shape=list(values.shape),
                sha256=sha256_of_file(path),
                bytes=stat.st_size,
                mtime_ns=stat.st_mtime_ns,
            )
        manifest = CacheManifest(
            key=key,
            snapshot_sha256=snapshot_sha256,
            model_sha256=model_sha256,
            catalog_sha256=catalog_sha256,
            as_of=profiles.as_of,
            model_version=profiles.model_version,
            cardholders=len(profiles),
            created_at=datetime.now(UTC),
            arrays=recorded,
        )
        write_file(temp / CACHE_MANIFEST_FILE, dump_json_artifact(manifest.model_dump(mode="json")))
        move_into_place(temp, target)
    return target


def open_cache_entry(folder: Path, key: str | None = None, *, full_check: bool = False) -> Profiles:
    """The profiles of a cache entry, every array a read-only view of its memory-mapped file.

    Checks the manifest (and that it names `key`, when given), that the folder holds exactly its files,
    each of the recorded size and modification time (and SHA-256, with `full_check`), and each array's
    dtype and shape. Raises DataError naming the entry and the file for anything else.
    """
    manifest = _read_cache_manifest(folder)
    if key is not None and manifest.key != key:
        raise DataError(f"{folder}: {CACHE_MANIFEST_FILE}: is for another snapshot, model or catalog")
    expected = {f"{name}.npy" for name in manifest.arrays}
    extra = sorted(set(os.listdir(folder)) - expected - {CACHE_MANIFEST_FILE})
    if extra:
        raise DataError(f"{folder}: {extra[0]}: not listed in the manifest; the entry was changed")
    arrays: dict[str, npt.NDArray[Any]] = {}
    for name, recorded in manifest.arrays.items():
        path = folder / f"{name}.npy"
        if path.is_symlink() or not path.is_file():
            raise DataError(f"{folder}: {path.name}: missing or not a regular file")
        stat = path.stat()
        if stat.st_size != recorded.bytes or stat.st_mtime_ns != recorded.mtime_ns:
            raise DataError(f"{folder}: {path.name}: its size or time changed after the entry was written")
        if full_check and sha256_of_file(path) != recorded.sha256:
            raise DataError(
                f"{folder}: {path.name}: checksum mismatch; the file was changed after it was written"
            )
        try:
            # mmap_mode="r" for a non-empty file (a zero-length array cannot be mapped).
            mapped = np.load(path, mmap_mode="r" if recorded.bytes and all(recorded.shape) else None)
        except (OSError, ValueError) as exc:
            raise DataError(f"{folder}: {path.name}: cannot read it: {exc}") from None
        if mapped.dtype.str != recorded.dtype or list(mapped.shape) != recorded.shape:
            raise DataError(
                f"{folder}: {path.name}: holds {mapped.dtype.str} {list(mapped.shape)}, "
                f"the manifest says {recorded.dtype} {recorded.shape}"
            )
        # A plain ndarray view of the map: np.memmap's Python-level hooks would run on every slice.
        array = mapped.view(np.ndarray)
        array.flags.writeable = False
        arrays[name] = array
    missing = [name for name in ARRAY_NAMES if name not in arrays and name != "ids_sorter"]
    if missing:
        raise DataError(f"{folder}: {CACHE_MANIFEST_FILE}: lists no {missing[0]}.npy")
    try:
        return Profiles(
            as_of=manifest.as_of,
            model_version=manifest.model_version,
            ids=CardholderIds.from_arrays(arrays["ids"], arrays.get("ids_sorter")),
            holder=HolderMatrix(
                counts=arrays["holder_counts"],
                floats=SparseRows(
                    values=arrays["holder_float_values"],
                    columns=arrays["holder_float_index"],
                    offsets=arrays["holder_float_offsets"],
                    n_columns=len(arrays["holder_float_columns"]),
                ),
                count_columns=arrays["holder_count_columns"],
                float_columns=arrays["holder_float_columns"],
            ),
            est_spend=arrays["est_spend"],
            product_index=arrays["product_index"],
            offsets=arrays["offsets"],
            history_benefit=arrays["history_benefit"],
            history_used=arrays["history_used"],
            history_values=arrays["history_values"],
            history_days_since_declined=arrays["history_days_since_declined"],
            history_presented_90d=arrays["history_presented_90d"],
        )
    except ModelError as exc:
        raise DataError(f"{folder}: the arrays do not fit together: {exc}") from None


def _read_cache_manifest(folder: Path) -> CacheManifest:
    path = folder / CACHE_MANIFEST_FILE
    if not path.is_file():
        raise DataError(f"{folder}: {CACHE_MANIFEST_FILE} is missing; this is not a finished cache entry")
    try:
        raw = load_json_artifact(path.read_bytes(), source=f"{folder}: {CACHE_MANIFEST_FILE}")
        return CacheManifest.model_validate(raw)
    except ModelError as exc:
        raise DataError(str(exc)) from None
    except PydanticValidationError as exc:
        raise DataError(f"{folder}: {CACHE_MANIFEST_FILE}: {one_line(exc)}") from None


@contextmanager
def _build_lock(cache: Path) -> Iterator[None]:
    """Holds `<cache>/.build-lock` exclusively: one process builds an entry while the others wait."""
    cache.mkdir(parents=True, exist_ok=True)
    fd = os.open(cache / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the file releases the lock


def find_cached_profiles(
    cache: Path, snapshot: Path, bundle: ModelBundle, benefits: BenefitTable, *, full_check: bool = False
) -> Profiles | None:
    """The snapshot's profiles mapped from the cache when a sound entry is there, None when it is not.

    Checks the snapshot first, as `cached_profiles` does (and raises as it does for a refused snapshot or
    a model whose features it lacks); builds nothing.
    """
    manifest = check_snapshot(snapshot)
    check_snapshot_fits(manifest, bundle, snapshot)
    key, _, _ = cache_key(_digest_of(manifest.model_dump(mode="json")), bundle, benefits)
    folder = cache / entry_name(manifest.as_of, bundle.version, key)
    if not folder.is_dir():
        return None
    try:
        return open_cache_entry(folder, key, full_check=full_check)
    except DataError:
        return None


def cached_profiles(
    cache: Path, snapshot: Path, bundle: ModelBundle, benefits: BenefitTable, *, full_check: bool = False
) -> Profiles:
    """A snapshot's profiles for one model and catalog, mapped from the cache (built into it first if missing).

    The snapshot is checked as `check_snapshot` does every time (its files' checksums); an entry that
    exists but fails its own checks is rebuilt. The returned arrays are read-only memory maps.

    Raises what `profiles_from_snapshot` raises (the snapshot or model refused), and DataError when the
    cache folder cannot be written or an entry just written does not open.
    """
    manifest = check_snapshot(snapshot)
    check_snapshot_fits(manifest, bundle, snapshot)
    snapshot_sha256 = _digest_of(manifest.model_dump(mode="json"))
    key, model_sha256, catalog_sha256 = cache_key(snapshot_sha256, bundle, benefits)
    folder = cache / entry_name(manifest.as_of, bundle.version, key)
    if folder.is_dir():
        try:
            return open_cache_entry(folder, key, full_check=full_check)
        except DataError:
            pass  # rebuilt below, under the lock
    try:
        with _build_lock(cache):
            if folder.is_dir():
                try:
                    return open_cache_entry(folder, key, full_check=full_check)
                except DataError:
                    _remove(folder)  # a damaged entry: set aside and rebuilt
            profiles = profiles_from_snapshot(snapshot, bundle, benefits)
            written = write_cache_entry(cache, profiles, key, snapshot_sha256, model_sha256, catalog_sha256)
            del profiles  # the in-memory copy goes; the mapped one stays
            return open_cache_entry(written, key)
    except OSError as exc:
        raise DataError(f"{cache}: cannot write the profile cache: {exc.strerror or exc}") from None


def cached_entry_of(profiles: Profiles) -> Path | None:
    """The cache entry folder `profiles` are mapped from, None for profiles held in memory.

    Any of its arrays will do: an empty one (no whole-number columns, say) is read, not mapped.
    """
    for array in _arrays_of(profiles).values():
        base = array.base
        while base is not None and not isinstance(base, np.memmap):
            base = getattr(base, "base", None)
        filename = getattr(base, "filename", None)
        if filename:
            return Path(filename).parent
    return None


def _remove(folder: Path) -> None:
    """Takes a folder out of the cache in one step (renamed aside, then deleted): a process mapping its
    files keeps its pages (Linux frees them when the last map goes)."""
    aside = temp_path(folder.parent, "old")
    os.rename(folder, aside)
    fsync_dir(folder.parent)
    shutil.rmtree(aside, ignore_errors=True)


def prune_profile_cache(cache: Path, keep: Collection[str], *, now: float | None = None) -> list[str]:
    """Removes every entry of `cache` not named in `keep` and older than PRUNE_GRACE_S, and unfinished
    staging folders of that age; returns the names removed (sorted).

    Run after a swap, with `keep` the entries in service before and after it. A process still mapping
    a removed entry keeps serving from it (its files go when the last map goes).
    """
    if not cache.is_dir():
        return []
    now = time.time() if now is None else now
    removed: list[str] = []
    for name in sorted(os.listdir(cache)):
        path = cache / name
        if name in keep:
            continue
        try:
            age = now - path.stat().st_mtime
        except FileNotFoundError:
            continue
        if age < PRUNE_GRACE_S:
            continue
        is_entry = _ENTRY_RE.fullmatch(name) is not None and path.is_dir()
        is_leftover = name.startswith((f".{_STAGING_PREFIX}-", ".old-")) and path.is_dir()
        if is_entry or is_leftover:
            try:
                _remove(path)
            except FileNotFoundError:
                continue
            removed.append(name)
    return removed
