"""Feedback export: the feedback database → `calls`, `conversations` and `nps` in a data directory."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from nba.errors import DataError
from nba.feedback import ExportCounts, FeedbackStore, parse_store_url


@dataclass(frozen=True)
class ExportResult:
    """What `nba export-feedback` wrote and how long it took."""

    out: Path
    counts: ExportCounts
    seconds: float

    def __str__(self) -> str:
        names = ", ".join(path.name for path in self.counts.files)
        return f"{self.out}: {self.counts} ({names}) in {self.seconds:.1f} s"


def export_feedback(db_url: str, out: Path, fmt: Literal["csv", "parquet"] = "csv") -> ExportResult:
    """Exports the feedback store at `db_url` into the folder `out` in the data contract.

    Raises DataError for a malformed URL, a SQLite file that does not exist (exporting must not
    create an empty database by mistake) or a database never migrated; UnavailableError when the
    database cannot be reached.
    """
    started = time.perf_counter()
    url = parse_store_url(db_url)
    database = url.database or ""
    in_memory = database in ("", ":memory:")
    if url.get_backend_name() == "sqlite" and not in_memory and not Path(database).expanduser().is_file():
        raise DataError(f"{database}: no such feedback database file")
    store = FeedbackStore(db_url)
    try:
        counts = store.export(out, fmt)
    finally:
        store.dispose()
    return ExportResult(out, counts, time.perf_counter() - started)
