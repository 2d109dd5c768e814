"""Buffer: decisions the store cannot take yet → local files (the buffer, the journal) as JSON lines,
and back (both versions of the line format)."""

from __future__ import annotations

import base64
import fcntl
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import orjson

from nba.errors import ConflictError, DataError
from nba.feedback._records import (
    CALL_FIELDS,
    SHOWN_COLUMNS,
    CallDecision,
    ShownSuggestion,
    check_decision,
    feature_bytes,
)
from nba.files import fsync_dir, replace_file

if TYPE_CHECKING:
    from nba.feedback._store import FeedbackStore

REPLAY_BATCH: Final = 500


class DecisionBuffer:
    """Decisions the store could not take yet, one JSON line each on local disk, until `replay`.

    Safe across threads and processes sharing the file (an exclusive lock file beside it). A line
    that cannot be read back, or a decision the store refuses as invalid, goes to `<path>.rejected`
    rather than blocking the rest: nothing is lost, nothing is replayed forever.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @property
    def rejected_path(self) -> Path:
        return self.path.with_name(self.path.name + ".rejected")

    @contextmanager
    def _locked(self, suffix: str = ".lock") -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.with_name(self.path.name + suffix).open("a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def append(self, decision: CallDecision) -> None:
        """Adds a decision as one JSON line, flushed and fsynced before returning.

        Checked by the store's rules first (DataError), so the buffer never holds what the store refuses.
        """
        self.append_many([decision])

    def append_many(self, decisions: Sequence[CallDecision]) -> None:
        """Adds decisions as JSON lines, in order, with one fsync (each checked as `append` does).

        Raises OSError when the disk refuses them (full, read-only): then none is counted as added.
        """
        for decision in decisions:
            check_decision(decision)
        self.append_lines(b"".join(decision_line(d) for d in decisions))

    def append_lines(self, lines: bytes) -> None:
        """Adds JSON lines as they are (a journal segment's), flushed and fsynced before returning."""
        if not lines:
            return
        with self._locked(), self.path.open("ab") as handle:
            size = handle.tell()
            try:
                handle.write(lines if lines.endswith(b"\n") else lines + b"\n")
                handle.flush()
                os.fsync(handle.fileno())
            except OSError:
                handle.truncate(size)  # nothing half added: the caller keeps them and tries again
                raise

    def pending(self) -> int:
        """How many decisions wait in the buffer."""
        with self._locked():
            return len(self._read_lines()[0])

    def _read_lines(self) -> tuple[list[str], int]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return [], 0
        # A line torn by a crash mid-write may end inside a character: it is set aside, not fatal.
        text_ = data.decode("utf-8", errors="replace")
        return [line for line in text_.splitlines() if line.strip()], len(data)

    def replay(self, store: FeedbackStore) -> int:
        """Logs every buffered decision into the store, then removes them from the buffer; returns how many.

        `log_decision` is idempotent, so a crash halfway only means some are logged twice to no effect.
        If the store is unavailable the file is left as it was and UnavailableError is raised.
        Decisions appended while the replay runs stay for the next one.
        """
        # One replay at a time (it alone shortens the file); appends only wait for the short swaps.
        with self._locked(".replay.lock"):
            return self._replay(store)

    def _replay(self, store: FeedbackStore) -> int:
        with self._locked():
            lines, size = self._read_lines()
        if not lines:
            return 0
        rejected: list[str] = []
        readable: list[tuple[str, CallDecision]] = []
        for line in lines:
            try:
                readable.append((line, decision_from_json(json.loads(line))))
            except (ValueError, KeyError, TypeError) as exc:
                rejected.append(json.dumps({"line": line, "error": f"unreadable: {exc}"}))
        logged = 0
        for start in range(0, len(readable), REPLAY_BATCH):
            batch = readable[start : start + REPLAY_BATCH]
            try:
                # One transaction per batch: a few thousand buffered decisions replay in seconds.
                store.log_decisions([decision for _, decision in batch])
                logged += len(batch)
                continue
            except (DataError, ConflictError):
                pass  # one at a time below, so the one at fault is set aside and the rest logged
            for line, decision in batch:
                try:
                    store.log_decision(decision)
                except (DataError, ConflictError) as exc:
                    rejected.append(json.dumps({"line": line, "error": str(exc)}))
                    continue
                logged += 1
        with self._locked():
            if rejected:
                with self.rejected_path.open("a", encoding="utf-8") as handle:
                    handle.write("".join(f"{item}\n" for item in rejected))
                    handle.flush()
                    os.fsync(handle.fileno())
            # Keep whatever was appended after the read; swap the file atomically.
            rest = self.path.read_bytes()[size:]
            if rest:
                replace_file(self.path, rest)
            else:
                self.path.unlink()
                fsync_dir(self.path.parent)
        return logged


def decision_line(decision: CallDecision) -> bytes:
    """A decision as one JSON line (`decision_to_json`), as the buffer and the journal hold it."""
    return orjson.dumps(decision_to_json(decision)) + b"\n"


class DecisionJournal:
    """Every decision answered, appended to a local file before the answer leaves: what a restart
    replays after the process died with decisions not yet in the store (`kill -9`, a crash).

    One `os.write` on an O_APPEND descriptor per decision, no fsync: the bytes are in the kernel's page
    cache when the call returns, so they survive the process (not a power cut: the last few seconds of
    decisions, until the kernel writes them back, may be lost then). Segments `<pid>-<n>.jsonl` in
    `folder`; the owner holds an exclusive `flock` on each open one, so a process starting later takes
    over (`adopt_orphans`) exactly the segments whose owner is gone. The owner rotates to a new segment
    (`rotate`) and removes a closed one once every decision in it is stored (`remove`).

    Not thread-safe by itself: the caller serialises `append` and `rotate` (DecisionLog holds its lock).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._fd = -1
        self._path: Path | None = None
        self._count = 0
        self._adopted: dict[Path, int] = {}  # segments taken over from a dead process: their locked fd
        self.bytes_written = 0

    def adopt_orphans(self) -> list[Path]:
        """The segments no living process holds (left by one that died), oldest first, now locked by
        this journal until `remove`d; call before `open`."""
        self.folder.mkdir(parents=True, exist_ok=True)
        orphans: list[tuple[float, Path]] = []
        for path in self.folder.glob("*.jsonl"):
            if path in self._adopted:
                continue
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)  # its owner is alive
                continue
            self._adopted[path] = fd
            orphans.append((os.fstat(fd).st_mtime, path))
        return [path for _, path in sorted(orphans)]

    def open(self) -> None:
        """Starts a new segment for `append` (raises OSError when the folder cannot take it)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._count += 1
        path = self.folder / f"{os.getpid()}-{self._count:06d}.jsonl"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._fd, self._path, self.bytes_written = fd, path, 0

    def append(self, line: bytes) -> None:
        """Appends one decision's line (`decision_line`); raises OSError (disk full, no segment)."""
        written = os.write(self._fd, line)
        if written != len(line):  # a short write: the disk is full; the torn line is skipped on replay
            raise OSError(f"journal {self._path}: wrote {written} of {len(line)} bytes")
        self.bytes_written += written

    def rotate(self) -> Path | None:
        """Closes the current segment (its path is returned, to `remove` once all of it is stored) and
        opens a new one. On OSError the current segment stays in use."""
        old_fd, old_path = self._fd, self._path
        self.open()
        if old_fd >= 0:
            os.close(old_fd)
        return old_path

    def remove(self, path: Path) -> None:
        """Deletes a closed (or adopted) segment whose decisions are all stored or in the buffer."""
        path.unlink(missing_ok=True)
        fd = self._adopted.pop(path, None)
        if fd is not None:
            os.close(fd)

    def close(self) -> Path | None:
        """Closes the current segment and returns its path (removed by the caller once stored)."""
        path = self._path
        if self._fd >= 0:
            os.close(self._fd)
        self._fd, self._path, self.bytes_written = -1, None, 0
        return path


def decision_to_json(decision: CallDecision) -> dict[str, Any]:
    """A decision as plain JSON values (served_at in ISO 8601, feature vectors as base64 float64 bytes).

    Version 2. Version 1 (before the feedback store kept the cardholder's features once per call) held
    each suggestion's whole vector as a list with NaN and ±inf as null; `decision_from_json` reads both.
    """
    call = {name: getattr(decision, name) for name in CALL_FIELDS}
    # `shared_reasons` only when there are some: a line without them is the line version 2 always wrote.
    shared = call.pop("shared_reasons")
    return {
        "v": 2,
        **call,
        **({"shared_reasons": list(shared)} if shared else {}),
        "served_at": decision.served_at.isoformat(),
        "holder_features": base64.b64encode(decision.holder_features).decode("ascii"),
        "suggestions": [
            {
                "suggestion_id": s.suggestion_id,
                **dict(zip(SHOWN_COLUMNS, s.plain(), strict=True)),
                "pair_features": base64.b64encode(s.pair_features).decode("ascii"),
            }
            for s in decision.suggestions
        ],
    }


def decision_from_json(body: Mapping[str, Any]) -> CallDecision:
    """The inverse of `decision_to_json`; raises KeyError, TypeError or ValueError on a malformed body."""
    version = body.get("v")
    if version not in (1, 2):
        raise ValueError(f"unknown buffer record version {version!r}")
    if version == 1:
        # A vector kept whole on its suggestion and none on the call is exact too: only more bytes.
        holder = b""
        pairs = [feature_bytes(_features_from_json(s["features"])) for s in body["suggestions"]]
    else:
        holder = base64.b64decode(body["holder_features"], validate=True)
        pairs = [base64.b64decode(s["pair_features"], validate=True) for s in body["suggestions"]]
    call = {name: body[name] for name in CALL_FIELDS if name != "shared_reasons"}
    call["served_at"] = datetime.fromisoformat(body["served_at"])
    # Lines written before calls had shared reasons have none.
    call["shared_reasons"] = tuple(body.get("shared_reasons") or ())
    return CallDecision(
        **call,
        suggestions=tuple(
            ShownSuggestion.from_plain(s["suggestion_id"], [s[name] for name in SHOWN_COLUMNS], pair)
            for s, pair in zip(body["suggestions"], pairs, strict=True)
        ),
        holder_features=holder,
    )


def _features_from_json(values: Sequence[float | None]) -> tuple[float, ...]:
    return tuple(math.nan if x is None else float(x) for x in values)
