"""Export: the feedback tables → `calls`, `conversations` and `nps` in the data contract, for training."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import (
    Row,
    Select,
    func,
    literal,
    select,
)

from nba.feedback._schema import calls_table, conversations_join, nps_table, outcomes_table, suggestions_table
from nba.vocab import UNMARKED

EXPORT_BATCH_ROWS: Final = 10_000


@dataclass(frozen=True)
class ExportCounts:
    """What `FeedbackStore.export` wrote: rows per table and the files."""

    calls: int
    conversations: int
    nps: int
    files: tuple[Path, ...]

    def __str__(self) -> str:
        return f"{self.calls:,} calls, {self.conversations:,} conversations, {self.nps:,} NPS answers"


EXPORT_COLUMNS: Final[dict[str, dict[str, pa.DataType]]] = {
    "calls": {
        "call_id": pa.string(),
        "cardholder_id": pa.string(),
        "started_at": pa.timestamp("us"),
        "call_reason": pa.string(),
        "agent_id": pa.string(),
    },
    "conversations": {
        "call_id": pa.string(),
        "cardholder_id": pa.string(),
        "benefit_id": pa.string(),
        "presented_at": pa.timestamp("us"),
        "outcome": pa.string(),
        "agent_id": pa.string(),
        "rank": pa.int64(),
        "call_reason": pa.string(),
        "logging_prob": pa.float64(),
        # An extra column (the contract allows them): what the model predicted, for `nba drift` to set
        # beside the adoption observed once the 30 days have passed.
        "p_adopt": pa.float64(),
    },
    "nps": {"call_id": pa.string(), "score": pa.int64(), "responded_at": pa.timestamp("us")},
}


def export_queries() -> dict[str, Select[Any]]:
    c, s, o, n = calls_table.c, suggestions_table.c, outcomes_table.c, nps_table.c
    return {
        "calls": select(
            c.call_id, c.cardholder_id, c.served_at.label("started_at"), c.call_reason, c.agent_id
        ).order_by(c.served_at, c.call_id),
        "conversations": select(
            c.call_id,
            c.cardholder_id,
            s.benefit_id,
            c.served_at.label("presented_at"),
            func.coalesce(o.outcome, literal(UNMARKED)).label("outcome"),
            # The agent who recorded the outcome, else the one the call was served to.
            func.coalesce(o.agent_id, c.agent_id).label("agent_id"),
            s.rank,
            c.call_reason,
            s.logging_prob,
            s.p_adopt,
        )
        .select_from(conversations_join())
        .order_by(c.served_at, c.call_id, s.rank),
        "nps": select(n.call_id, n.score, n.recorded_at.label("responded_at")).order_by(
            n.recorded_at, n.call_id
        ),
    }


def _naive_utc(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None)


def write_table(
    path: Path, name: str, batches: Iterator[Sequence[Row[Any]]], fmt: Literal["csv", "parquet"]
) -> int:
    columns = EXPORT_COLUMNS[name]
    timestamps = [i for i, t in enumerate(columns.values()) if pa.types.is_timestamp(t)]
    partial = path.with_name(path.name + ".partial")
    rows_written = 0
    try:
        if fmt == "csv":
            with partial.open("w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle, lineterminator="\n")
                writer.writerow(columns)
                for batch in batches:
                    for row in batch:
                        values: list[Any] = list(row)
                        for i in timestamps:
                            if values[i] is not None:
                                # 2026-08-15 10:30:00 (microseconds only when there are some)
                                values[i] = _naive_utc(values[i]).isoformat(sep=" ")
                        writer.writerow(values)
                    rows_written += len(batch)
                handle.flush()
                os.fsync(handle.fileno())
        else:
            schema = pa.schema(list(columns.items()))
            with pq.ParquetWriter(partial, schema) as parquet:
                for batch in batches:
                    data: dict[str, list[Any]] = {key: [] for key in columns}
                    for row in batch:
                        for key, value in zip(columns, row, strict=True):
                            data[key].append(_naive_utc(value) if isinstance(value, datetime) else value)
                    parquet.write_table(pa.table(data, schema=schema))
                    rows_written += len(batch)
                if rows_written == 0:
                    parquet.write_table(schema.empty_table())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return rows_written
