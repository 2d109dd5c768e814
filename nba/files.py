"""Files: bytes → folders and files on disk that a reader sees whole or not at all, with their SHA-256.

The model registry (`models/<version>/`, `models/CURRENT`) and the profile snapshots
(`profiles/<as_of>/`, `profiles/CURRENT`) share these: a folder is written under a hidden temporary
name and renamed into place in one step; a pointer file such as CURRENT is replaced in one step;
every write is fsynced so a crash leaves the old state or the new one.

Example:
    >>> with staging_dir(root, "tmp-snapshot") as temp:
    ...     write_file(temp / "a.json", b"{}")
    ...     move_into_place(temp, root / "2026-10-01")
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, BinaryIO, Final

from pydantic import AfterValidator, Field
from pydantic import ValidationError as PydanticValidationError

CHUNK_BYTES: Final = 1 << 20
SHOWN_DIGEST_LENGTH: Final = 12


def _in_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("must carry a time zone (UTC), got a naive time")
    return value.astimezone(UTC)


def _distinct_names(value: list[str]) -> list[str]:
    seen: set[str] = set()
    for name in value:
        if not name:
            raise ValueError("a feature name is empty")
        if name in seen:
            raise ValueError(f"feature {name!r} is listed twice")
        seen.add(name)
    return value


# A manifest's creation time: time-zone aware, kept in UTC (a naive time is refused, not guessed).
UtcTime = Annotated[datetime, AfterValidator(_in_utc)]
# A manifest's feature columns in order: at least one, none empty, none twice.
FeatureNames = Annotated[list[str], Field(min_length=1), AfterValidator(_distinct_names)]


def sha256_of_file(path: Path) -> str:
    """The SHA-256 of a file's bytes in lowercase hex, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def fsync_dir(path: Path) -> None:
    """Makes the entries of a folder (a rename, a new file) durable."""
    # Directories cannot be opened this way on Windows.
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_path(folder: Path, prefix: str) -> Path:
    """A fresh hidden name inside `folder` (nothing is created)."""
    # Not tempfile.mkstemp/mkdtemp: they create private (0600/0700) entries, and the service
    # reading the folder may run as another user. A leading dot keeps it out of listings.
    return folder / f".{prefix}-{secrets.token_hex(8)}"


@contextmanager
def open_new_file(path: Path) -> Iterator[BinaryIO]:
    """Creates `path` (it must not exist), yields it for writing, and fsyncs it when the block ends."""
    with path.open("xb") as stream:
        yield stream
        stream.flush()
        os.fsync(stream.fileno())


def write_file(path: Path, data: bytes) -> None:
    """Writes a new file (it must not exist) and fsyncs it."""
    with open_new_file(path) as stream:
        stream.write(data)


def replace_file(path: Path, data: bytes) -> None:
    """Replaces `path` in one step: readers see the old content or the new one, never half a file."""
    temp = temp_path(path.parent, path.name)
    try:
        write_file(temp, data)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def read_pointer(path: Path) -> str | None:
    """The stripped text of a pointer file such as CURRENT, or None when there is none.

    Bytes that are not UTF-8 read as U+FFFD, so the caller's check of the name refuses them.
    """
    try:
        return path.read_bytes().decode("utf-8", errors="replace").strip()
    except FileNotFoundError:
        return None


@contextmanager
def staging_dir(root: Path, prefix: str) -> Iterator[Path]:
    """A new hidden folder inside `root` (created with its parents), removed when the block ends
    unless `move_into_place` moved it."""
    root.mkdir(parents=True, exist_ok=True)
    temp = temp_path(root, prefix)
    temp.mkdir()
    try:
        yield temp
    finally:
        if temp.exists():
            shutil.rmtree(temp, ignore_errors=True)


def move_into_place(temp_dir: Path, target: Path) -> None:
    """Renames a finished folder to `target` in one step, durably.

    Raises FileExistsError when `target` exists and OSError when the rename fails.
    """
    fsync_dir(temp_dir)
    if target.exists():
        raise FileExistsError(target)
    os.rename(temp_dir, target)
    fsync_dir(target.parent)


def folder_problem(folder: Path, files: Mapping[str, str], manifest: str, *, since: str) -> str | None:
    """Why `folder` does not hold exactly `manifest` and `files` (name → SHA-256), or None when it does.

    Every listed file must be a regular file (not a link) with its recorded SHA-256, and nothing else
    may be in the folder. The problem names the file first (`model.txt: checksum mismatch ...`);
    `since` ends the sentences (`training`: "the file was changed after training").
    """
    for name, expected in sorted(files.items()):
        path = folder / name
        if not path.exists() and not path.is_symlink():
            return f"{name}: listed in the manifest but missing; the folder is incomplete"
        if path.is_symlink() or not path.is_file():
            return f"{name}: not a regular file; the folder holds plain files only"
        got = sha256_of_file(path)
        if got != expected:
            return (
                f"{name}: checksum mismatch (expected {expected[:SHOWN_DIGEST_LENGTH]}…, "
                f"got {got[:SHOWN_DIGEST_LENGTH]}…); the file was changed after {since}"
            )
    for entry in sorted(os.listdir(folder)):
        if entry != manifest and entry not in files:
            return f"{entry}: not listed in the manifest; something was added to the folder after {since}"
    return None


def one_line(exc: PydanticValidationError) -> str:
    """A pydantic validation error as one line: where, what, and how many more."""
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {message}{more}" if where else f"{message}{more}"
