"""Profiles: a data directory as of a date + a model bundle → every cardholder's features in compact arrays.

Two steps, so a profile snapshot can be stored once and served by any model (`nba.profiles._snapshots`):
`compute_profile_tables` runs the feature SQL (model-independent Arrow tables), and
`assemble_profiles` encodes them for one model (its encoders and spend estimator).
"""

from __future__ import annotations

import contextlib
import mmap
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any, Final, TypeVar, overload

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from nba._compiled import compiled
from nba.contract._mcc import MccMap
from nba.contract._tables import DataSource
from nba.errors import ModelError
from nba.features._dialect import Dialect, DuckDBSql, SqlEngine
from nba.features._matrix import HISTORY_COLUMNS, BenefitTable
from nba.features._sql import ExtraColumns, build_benefit_history, build_cardholder_features, snapshot_all_sql
from nba.model._bundle import ModelBundle
from nba.progress import NO_PROGRESS, ProgressHook
from nba.vocab import SPEND_CATEGORIES, UNHEARD_OUTCOMES

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# Per (cardholder, benefit): what the contact policy needs beside the model's history columns.
_CONTACT_SQL: Final = """
SELECT c.cardholder_id, c.benefit_id,
       CAST(min({age}) FILTER (WHERE c.outcome = 'declined') AS BIGINT) AS days_since_declined,
       count(*) FILTER (WHERE {age} <= 90) AS presented_90d
FROM conversations AS c
JOIN ({snapshots}) AS s ON s.cardholder_id = c.cardholder_id AND CAST(c.presented_at AS DATE) < s.as_of
WHERE c.outcome NOT IN ({unheard})
GROUP BY c.cardholder_id, c.benefit_id
ORDER BY c.cardholder_id, c.benefit_id
"""
CONTACT_COLUMNS: Final = ("cardholder_id", "benefit_id", "days_since_declined", "presented_90d")
# Feature rows are encoded and run through the spend estimator this many at a time, so the float64
# matrix (1.7 GB for a million cardholders) is never held whole.
ASSEMBLY_ROWS: Final = 16_384
# In a whole-number column of `HolderMatrix.counts`, the uint16 that stands for NaN.
COUNT_NAN: Final = 65535
# uint16 → the float it stands for (65535 → NaN): one `take` widens a row and puts NaN back.
_WIDEN: Final = np.arange(COUNT_NAN + 1, dtype=np.float64)
_WIDEN[COUNT_NAN] = np.nan
_WIDEN.flags.writeable = False
_WIDEN_32: Final = _WIDEN.astype(np.float32)
_WIDEN_32.flags.writeable = False


@dataclass(frozen=True, eq=False)
class SparseRows:
    """A float32 matrix that is mostly zeros, held row by row: row i's values other than +0.0 (NaN and -0.0
    are kept) are `values[offsets[i]:offsets[i + 1]]`, in the columns `columns[...]` (ascending).

    A cardholder's features are mostly zeros (no spend in most categories): at 1 M cardholders the dense
    float32 part of the holder matrix was 480 MB with 60% zeros, the largest part of a served snapshot.
    A column number takes 1 byte up to 256 columns (2 beyond), so a kept value costs 5 bytes against 4 for
    every value dense. `dense` gives back exactly the float32 values the dense matrix held.

    Example:
        >>> rows = SparseRows.from_dense(np.array([[0, 1.5, 0], [0, 0, 0]], dtype=np.float32))
        >>> rows.dense(0).tolist(), rows.offsets.tolist()
        ([[0.0, 1.5, 0.0]], [0, 1, 1])
    """

    values: npt.NDArray[np.float32]
    columns: npt.NDArray[np.unsignedinteger[Any]]
    offsets: IntArray
    n_columns: int

    def __post_init__(self) -> None:
        n_kept = len(self.values)
        if (
            len(self.columns) != n_kept
            or len(self.offsets) == 0
            or self.offsets[0] != 0
            or self.offsets[-1] != n_kept
            or self.columns.dtype != column_dtype(self.n_columns)
        ):
            raise ModelError(
                f"the sparse rows do not fit: {n_kept} values, {len(self.columns)} column numbers of "
                f"{self.columns.dtype} for {self.n_columns} columns, offsets ending at "
                f"{self.offsets[-1] if len(self.offsets) else 'nothing'}"
            )

    @classmethod
    def from_dense(cls, X: npt.NDArray[np.float32]) -> SparseRows:
        """The rows of `X` (rows × columns, float32), every value but +0.0 kept."""
        kept = (X != 0) | np.signbit(X)  # NaN != 0; -0.0 == 0 but keeps its sign bit
        rows, columns = np.nonzero(kept)  # row by row, columns ascending
        offsets = np.zeros(len(X) + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=len(X)), out=offsets[1:])
        return cls(
            values=np.ascontiguousarray(X[rows, columns], dtype=np.float32),
            columns=columns.astype(column_dtype(X.shape[1])),
            offsets=offsets,
            n_columns=int(X.shape[1]),
        )

    @classmethod
    def stack(cls, parts: Sequence[SparseRows]) -> SparseRows:
        """The parts' rows one after another (same number of columns)."""
        n_columns = parts[0].n_columns
        if any(part.n_columns != n_columns for part in parts):
            raise ModelError("the sparse row parts have different numbers of columns")
        starts = np.cumsum([0] + [len(part.values) for part in parts])
        offsets = np.concatenate(
            [[0]] + [part.offsets[1:] + start for part, start in zip(parts, starts, strict=False)]
        )
        return cls(
            values=np.concatenate([part.values for part in parts]).astype(np.float32, copy=False),
            columns=np.concatenate([part.columns for part in parts]).astype(
                column_dtype(n_columns), copy=False
            ),
            offsets=offsets.astype(np.int64, copy=False),
            n_columns=n_columns,
        )

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def nbytes(self) -> int:
        return self.values.nbytes + self.columns.nbytes + self.offsets.nbytes

    def with_arrays(self, copy: Callable[[np.ndarray[Any, Any]], np.ndarray[Any, Any]]) -> SparseRows:
        """The same rows with each array replaced by `copy(array)` (e.g. into memory of its own)."""
        return SparseRows(copy(self.values), copy(self.columns), copy(self.offsets), self.n_columns)

    def dense(self, rows: int | IntArray) -> npt.NDArray[np.float32]:
        """Rows `rows` (one row number, or an array of them) as the dense float32 rows (k × columns)."""
        if isinstance(rows, (int, np.integer)):
            out = np.zeros((1, self.n_columns), dtype=np.float32)
            start, end = self.offsets[rows], self.offsets[rows + 1]
            out[0, self.columns[start:end]] = self.values[start:end]
            return out
        picked = np.asarray(rows, dtype=np.int64)
        out = np.zeros((len(picked), self.n_columns), dtype=np.float32)
        _fill_dense(self.offsets, self.columns, self.values, picked, out)
        return out

    def column(self, j: int, step: int = 1) -> npt.NDArray[np.float32]:
        """Column `j` of every `step`-th row (float32, as `dense` would give it)."""
        if not 0 <= j < self.n_columns:
            raise IndexError(f"the sparse rows have no column {j} (they have {self.n_columns})")
        return _column(self.offsets, self.columns, self.values, j, step)

    def to_dense(self) -> npt.NDArray[np.float32]:
        """The whole matrix, dense."""
        return self.dense(np.arange(len(self), dtype=np.int64))


def column_dtype(n_columns: int) -> np.dtype[Any]:
    """The unsigned integer type that numbers `n_columns` columns (uint8 up to 256)."""
    return np.dtype(np.uint8 if n_columns <= 256 else np.uint16)


@compiled
def _fill_dense(
    offsets: IntArray,
    columns: npt.NDArray[Any],
    values: npt.NDArray[np.float32],
    rows: IntArray,
    out: npt.NDArray[np.float32],
) -> None:
    for i in range(len(rows)):
        r = rows[i]
        for p in range(offsets[r], offsets[r + 1]):
            out[i, columns[p]] = values[p]


@compiled
def _column(
    offsets: IntArray, columns: npt.NDArray[Any], values: npt.NDArray[np.float32], j: int, step: int
) -> npt.NDArray[np.float32]:
    n = len(offsets) - 1
    out = np.zeros((n + step - 1) // step, dtype=np.float32)
    for i in range(out.shape[0]):
        r = i * step
        for p in range(offsets[r], offsets[r + 1]):
            if columns[p] >= j:
                if columns[p] == j:
                    out[i] = values[p]
                break
    return out


@dataclass(frozen=True, eq=False)
class HolderMatrix:
    """The cardholder feature matrix (rows × columns): whole-number columns in 2 bytes, the rest sparse.

    A column whose non-NaN values are all whole numbers in [0, 65534] (transaction counts, days since,
    codes, ...) is held in `counts` as uint16 with `COUNT_NAN` for NaN; every other column in `floats`
    as float32 sparse rows (`SparseRows`: most are zeros). `count_columns` and `float_columns` are their positions in the full matrix (ascending).
    Which columns go where is decided from the data (`from_float32`), not from their names. `rows` gives
    exactly the values the float32 matrix held, widened to float64.
    """

    counts: npt.NDArray[np.uint16]
    floats: SparseRows
    count_columns: IntArray
    float_columns: IntArray

    def __post_init__(self) -> None:
        if (
            len(self.counts) != len(self.floats)
            or self.counts.shape[1:] != self.count_columns.shape
            or self.floats.n_columns != len(self.float_columns)
        ):
            raise ModelError(
                f"the holder matrix parts do not fit: counts {self.counts.shape} for "
                f"{len(self.count_columns)} columns, floats {len(self.floats)} × {self.floats.n_columns} for "
                f"{len(self.float_columns)}"
            )

    @classmethod
    def from_float32(cls, X: npt.NDArray[np.float32]) -> HolderMatrix:
        """`X` (rows × columns, float32) with every column that allows it held in 2 bytes."""
        whole = whole_number_columns(X)
        return cls(
            counts=_to_counts(X[:, whole]),
            floats=SparseRows.from_dense(X[:, ~whole]),
            count_columns=np.flatnonzero(whole).astype(np.int64),
            float_columns=np.flatnonzero(~whole).astype(np.int64),
        )

    @classmethod
    def stack(cls, parts: list[HolderMatrix]) -> HolderMatrix:
        """The parts' rows one after another (same number of columns), each column compact if it is in every part.

        Empties `parts` as it goes, so each part's memory is given back as soon as it is copied.
        """
        if not parts:
            raise ModelError("a holder matrix needs at least one part to stack")
        n_columns = parts[0].shape[1]
        if any(part.shape[1] != n_columns for part in parts):
            raise ModelError("the holder matrix parts have different numbers of columns")
        whole = np.ones(n_columns, dtype=bool)
        for part in parts:
            whole[part.float_columns] = False
        n = sum(len(part) for part in parts)
        counts = np.empty((n, int(whole.sum())), dtype=np.uint16)
        float_parts = []
        start = 0
        parts.reverse()
        while parts:
            part = parts.pop()
            block = part.to_float32()
            end = start + len(block)
            counts[start:end] = _to_counts(block[:, whole])
            float_parts.append(SparseRows.from_dense(block[:, ~whole]))
            start = end
        return cls(
            counts=counts,
            floats=SparseRows.stack(float_parts),
            count_columns=np.flatnonzero(whole).astype(np.int64),
            float_columns=np.flatnonzero(~whole).astype(np.int64),
        )

    def __len__(self) -> int:
        return len(self.counts)

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.counts), len(self.count_columns) + len(self.float_columns))

    @property
    def nbytes(self) -> int:
        arrays = (self.counts, self.count_columns, self.float_columns)
        return self.floats.nbytes + sum(a.nbytes for a in arrays)

    def rows(self, rows: int | IntArray) -> FloatArray:
        """Rows `rows` (one row number, or an array of them) as float64 (k × columns), NaN where it was.

        One compiled pass writes each row in the full matrix's column order (the float part scattered from
        its sparse rows, the counts widened): the request path reads one row per call.

        Example: `holder.rows(7)` is `X[7:8].astype(np.float64)` of the float32 matrix `X` it holds.
        """
        picked = np.array([rows], dtype=np.int64) if isinstance(rows, (int, np.integer)) else rows
        out = np.empty((len(picked), self.shape[1]), dtype=np.float64)
        floats = self.floats
        _holder_rows(
            np.asarray(picked, dtype=np.int64),
            floats.offsets,
            floats.columns,
            floats.values,
            self.float_columns,
            self.counts,
            self.count_columns,
            _WIDEN,
            out,
        )
        return out

    def column(self, j: int, step: int = 1) -> FloatArray:
        """Column `j` of every `step`-th row as float64, NaN where it was: `rows`' values for that column.

        Raises IndexError for a column the matrix does not have.
        """
        at = int(np.searchsorted(self.count_columns, j))
        if at < len(self.count_columns) and self.count_columns[at] == j:
            widened: FloatArray = _WIDEN.take(self.counts[::step, at])
            return widened
        at = int(np.searchsorted(self.float_columns, j))
        if at == len(self.float_columns) or self.float_columns[at] != j:
            raise IndexError(f"the holder matrix has no column {j} (it has {self.shape[1]})")
        return self.floats.column(at, step).astype(np.float64)

    def to_float32(self) -> npt.NDArray[np.float32]:
        """The whole matrix as float32 (rows × columns), as it was before it was made compact."""
        out = np.empty(self.shape, dtype=np.float32)
        out[:, self.float_columns] = self.floats.to_dense()
        out[:, self.count_columns] = _WIDEN_32.take(self.counts)
        return out


@compiled
def _holder_rows(
    rows: IntArray,
    offsets: IntArray,
    columns: npt.NDArray[Any],
    values: npt.NDArray[np.float32],
    float_columns: IntArray,
    counts: npt.NDArray[np.uint16],
    count_columns: IntArray,
    widen: FloatArray,
    out: FloatArray,
) -> None:
    for i in range(len(rows)):
        r = rows[i]
        for k in range(len(float_columns)):
            out[i, float_columns[k]] = 0.0
        for p in range(offsets[r], offsets[r + 1]):
            out[i, float_columns[columns[p]]] = values[p]
        for k in range(len(count_columns)):
            out[i, count_columns[k]] = widen[counts[r, k]]


def whole_number_columns(X: npt.NDArray[np.float32]) -> npt.NDArray[np.bool_]:
    """Per column of `X`: whether every value is NaN or a whole number in [0, 65534] (not -0.0).

    Such a column is held in 2 bytes without changing any value (-0.0 would come back as 0.0).
    """
    with np.errstate(invalid="ignore"):
        fits = (X >= 0) & (X < COUNT_NAN) & (np.trunc(X) == X) & ~np.signbit(X)
    return (fits | np.isnan(X)).all(axis=0)  # type: ignore[no-any-return]


def _to_counts(X: npt.NDArray[np.float32]) -> npt.NDArray[np.uint16]:
    """Columns that `whole_number_columns` allows → uint16, NaN as COUNT_NAN."""
    return np.nan_to_num(X, nan=COUNT_NAN).astype(np.uint16)


class CardholderIds(Sequence[str]):
    """Cardholder ids in row order, held in numpy arrays instead of a Python str and dict entry each.

    `ids[i]` is row i's id (a slice gives a tuple); `ids.rows` maps an id back to its row (`.get`,
    `[]`, `in`), by binary search over the ids in sorted order. Ids are held as UTF-8 in fixed-width
    bytes, so an id may not end in a NUL character.

    Example:
        >>> ids = CardholderIds(["C2", "C1"])
        >>> ids[0], ids.rows["C1"], ids.rows.get("C9")
        ('C2', 1, None)
    """

    __slots__ = ("_by_row", "_sorter", "_width", "rows")

    def __init__(self, ids: pa.Array | Sequence[str]) -> None:
        values = ids.to_pylist() if isinstance(ids, pa.Array) else list(ids)
        if any(value is None for value in values):
            raise ModelError("a cardholder has no id; every profile row needs one")
        encoded = [value.encode("utf-8") for value in values]
        if any(value.endswith(b"\x00") for value in encoded):
            raise ModelError("a cardholder id ends in a NUL character; ids are held as fixed-width bytes")
        self._by_row: npt.NDArray[np.bytes_] = (
            np.array(encoded, dtype=np.bytes_) if encoded else np.empty(0, "S1")
        )
        self._by_row.flags.writeable = False
        self._width = self._by_row.dtype.itemsize
        in_order = bool((self._by_row[1:] > self._by_row[:-1]).all())
        # Feature rows usually come sorted by id: then no sorter is needed (and none is held).
        self._sorter: IntArray | None = None
        if not in_order:
            self._sorter = np.argsort(self._by_row, kind="stable").astype(np.intp)
            ordered = self._by_row[self._sorter]
            if (ordered[1:] == ordered[:-1]).any():
                raise ModelError(
                    "the feature rows list a cardholder twice; a profile holds one row per cardholder"
                )
            self._sorter.flags.writeable = False
        self.rows = CardholderRows(self)

    @classmethod
    def from_arrays(cls, by_row: npt.NDArray[np.bytes_], sorter: IntArray | None) -> CardholderIds:
        """The ids from the arrays `arrays` gave (read back from a file, perhaps memory-mapped), unchanged.

        The arrays are trusted to be what `arrays` returned (sorted when `sorter` is None, unique); only
        their kinds and lengths are checked. Raises ModelError when they do not fit.
        """
        if by_row.ndim != 1 or by_row.dtype.kind != "S":
            raise ModelError(
                f"cardholder ids must be one row of fixed-width bytes, got {by_row.dtype} {by_row.shape}"
            )
        if sorter is not None and (sorter.shape != by_row.shape or sorter.dtype != np.intp):
            raise ModelError(
                f"the ids' sorter is {sorter.dtype} {sorter.shape}, expected intp {by_row.shape}"
            )
        ids = cls.__new__(cls)
        ids._by_row = by_row
        ids._width = by_row.dtype.itemsize
        ids._sorter = sorter
        ids.rows = CardholderRows(ids)
        return ids

    @property
    def arrays(self) -> tuple[npt.NDArray[np.bytes_], IntArray | None]:
        """The ids in row order (fixed-width UTF-8 bytes) and the order that sorts them (None: sorted)."""
        return self._by_row, self._sorter

    def row_of(self, cardholder_id: object) -> int | None:
        """The row of `cardholder_id`, None when it is not one of the ids."""
        if not isinstance(cardholder_id, str):
            return None
        try:
            key = cardholder_id.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: no stored id has one
            return None
        if len(key) > self._width or key.endswith(b"\x00"):
            return None  # searchsorted would cut it (or its NULs) to the stored width
        by_row = self._by_row
        if self._sorter is None:
            row = int(by_row.searchsorted(key))
        else:
            at = int(by_row.searchsorted(key, sorter=self._sorter))
            row = int(self._sorter[at]) if at < len(self._sorter) else at
        return row if row < len(by_row) and by_row[row] == key else None

    @property
    def nbytes(self) -> int:
        return self._by_row.nbytes + (0 if self._sorter is None else self._sorter.nbytes)

    def __len__(self) -> int:
        return len(self._by_row)

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[str, ...]: ...
    def __getitem__(self, i: int | slice) -> str | tuple[str, ...]:
        if isinstance(i, slice):
            return tuple(value.decode("utf-8") for value in self._by_row[i].tolist())
        return str(self._by_row[i].decode("utf-8"))

    def __iter__(self) -> Iterator[str]:
        # A chunk at a time: iterating a million ids does not make a million objects at once.
        for start in range(0, len(self._by_row), ASSEMBLY_ROWS):
            yield from self[start : start + ASSEMBLY_ROWS]

    def __contains__(self, cardholder_id: object) -> bool:
        return self.row_of(cardholder_id) is not None

    def index(self, value: object, start: int = 0, stop: int | None = None) -> int:
        """The row of id `value` (as `tuple.index`), found by binary search; ValueError when not there."""
        row = self.row_of(value)
        if row is None or not start <= row < (len(self) if stop is None else stop):
            raise ValueError(f"{value!r} is not a cardholder id here")
        return row


class CardholderRows(Mapping[str, int]):
    """Cardholder id → row, a read-only view of `CardholderIds` (iterates over the ids in row order)."""

    __slots__ = ("_ids",)

    def __init__(self, ids: CardholderIds) -> None:
        self._ids = ids

    def __getitem__(self, cardholder_id: str) -> int:
        row = self._ids.row_of(cardholder_id)
        if row is None:
            raise KeyError(cardholder_id)
        return row

    def get(self, cardholder_id: str, default: int | None = None) -> int | None:  # type: ignore[override]
        row = self._ids.row_of(cardholder_id)
        return default if row is None else row

    def __contains__(self, cardholder_id: object) -> bool:
        return self._ids.row_of(cardholder_id) is not None

    def __len__(self) -> int:
        return len(self._ids)

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)


@dataclass(frozen=True, eq=False)
class Profiles:
    """Every cardholder's model-ready features as of one date, held in numpy arrays.

    `ids` are the cardholders in row order (`index` maps an id to its row). `holder` holds the model's
    cardholder columns (whole-number columns in 2 bytes, the others float32; read them with
    `holder_rows`, which widens them), `est_spend` the spend estimator's yearly spend per category, and
    the per-benefit history is a sparse CSR-like layout: the rows of cardholder i are
    `history_*[offsets[i]:offsets[i + 1]]`.
    """

    as_of: date
    model_version: str
    ids: CardholderIds
    holder: HolderMatrix
    est_spend: npt.NDArray[np.float32]
    product_index: npt.NDArray[np.int16]
    offsets: IntArray
    history_benefit: npt.NDArray[np.int16]
    history_used: npt.NDArray[np.bool_]
    history_values: npt.NDArray[np.float32]  # HISTORY_COLUMNS
    history_days_since_declined: npt.NDArray[np.float32]
    history_presented_90d: npt.NDArray[np.float32]

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def index(self) -> CardholderRows:
        """Cardholder id → row (`.get(id)` is None, `[id]` a KeyError, for an id not in the profiles)."""
        return self.ids.rows

    def holder_rows(self, rows: int | IntArray) -> FloatArray:
        """The model's cardholder columns of row `rows` (or an array of rows) as float64, k × columns."""
        return self.holder.rows(rows)

    @property
    def nbytes(self) -> int:
        """The bytes of every array held (the ids' included)."""
        arrays = (
            self.est_spend,
            self.product_index,
            self.offsets,
            self.history_benefit,
            self.history_used,
            self.history_values,
            self.history_days_since_declined,
            self.history_presented_90d,
        )
        return self.ids.nbytes + self.holder.nbytes + sum(a.nbytes for a in arrays)


@dataclass(frozen=True, eq=False)
class ProfileTables:
    """What profiles are made of before a model encodes them: model-independent Arrow tables.

    `features`: `build_cardholder_features` rows (`cardholder_id`, `as_of`, then `feature_names(extra)`);
    `history`: `build_benefit_history`; `contact`: per (cardholder, benefit) what the contact policy
    needs (`CONTACT_COLUMNS`); `extra`: the extra (CRM) columns the features were computed with.
    """

    features: pa.Table
    history: pa.Table
    contact: pa.Table
    extra: ExtraColumns


def contact_history_sql(snapshots_sql: str, dialect: Dialect) -> str:
    """Per (cardholder, benefit) heard before the snapshot's date: days since the last decline, and
    presentations in the last 90 days (`CONTACT_COLUMNS`), in `dialect`."""
    age = dialect.days_between("s.as_of", "CAST(c.presented_at AS DATE)")
    unheard = ", ".join(f"'{outcome}'" for outcome in UNHEARD_OUTCOMES)
    return _CONTACT_SQL.format(age=age, snapshots=snapshots_sql, unheard=unheard)


def compute_profile_tables(
    data: DataSource | SqlEngine,
    as_of: date,
    mcc_map: MccMap,
    extra: ExtraColumns,
    progress: ProgressHook = NO_PROGRESS,
) -> ProfileTables:
    """Runs the feature SQL for every cardholder whose card was open before `as_of` (data strictly before it).

    `data` is a data directory opened in DuckDB or another `SqlEngine` over the same typed views (Spark:
    training/spark_data.py); both give the same tables. `extra` is the model's `ExtraColumns` (the CRM
    columns its features take); nothing else about a model is needed. `progress` watches each of the
    three statements (DuckDB's; another engine's are steps without a bar). Raises SchemaError when
    `cardholders` lacks one of the extra columns.
    """
    engine: SqlEngine = DuckDBSql(data.con) if isinstance(data, DataSource) else data

    def watch(description: str) -> contextlib.AbstractContextManager[None]:
        # Only DuckDB reports a statement's progress; another engine's statements are steps without a bar.
        if isinstance(data, DataSource):
            return progress.query(data.con, description)
        return contextlib.nullcontext()

    snapshots = snapshot_all_sql(as_of, engine.dialect)
    with watch("features SQL"):
        features = build_cardholder_features(engine, snapshots, mcc_map, extra)
    with watch("benefit history SQL"):
        history = build_benefit_history(engine, snapshots)
    with watch("contact history SQL"):
        contact = engine.arrow(contact_history_sql(snapshots, engine.dialect))
    return ProfileTables(features=features, history=history, contact=contact, extra=extra)


def build_profiles(
    data: DataSource, as_of: date, bundle: ModelBundle, mcc_map: MccMap, benefits: BenefitTable
) -> Profiles:
    """Computes every cardholder's profile as of `as_of` with the model's own feature code and encoders.

    Raises ModelError when a cardholder's product is not in the catalog the model serves.
    """
    tables = compute_profile_tables(data, as_of, mcc_map, bundle.extra)
    return assemble_profiles(as_of, tables.features, tables.history, tables.contact, bundle, benefits)


def assemble_profiles(
    as_of: date,
    table: pa.Table,
    history: pa.Table,
    contact: pa.Table,
    bundle: ModelBundle,
    benefits: BenefitTable,
) -> Profiles:
    """Profiles from the three tables `build_profiles` computes (feature rows, benefit history, contact).

    Raises ModelError when a cardholder's product is not in the catalog or a feature column is missing.
    """
    ids = table.column("cardholder_id").combine_chunks()
    return assemble_profiles_from_batches(
        as_of,
        ids,
        table.to_batches(ASSEMBLY_ROWS),
        build_profile_history(ids, history, contact, benefits),
        bundle,
        benefits,
    )


@dataclass(frozen=True, eq=False)
class ProfileHistory:
    """The per-benefit history part of `Profiles` (see there), for cardholders in a given order."""

    offsets: IntArray
    benefit: npt.NDArray[np.int16]
    used: npt.NDArray[np.bool_]
    values: npt.NDArray[np.float32]
    days_since_declined: npt.NDArray[np.float32]
    presented_90d: npt.NDArray[np.float32]


def assemble_profiles_from_batches(
    as_of: date,
    ids: pa.Array,
    batches: Iterable[pa.RecordBatch],
    history: ProfileHistory,
    bundle: ModelBundle,
    benefits: BenefitTable,
    *,
    est_spend: npt.NDArray[np.float32] | None = None,
) -> Profiles:
    """`assemble_profiles` over feature rows that arrive in batches (read from a file as they are needed).

    `ids` are the cardholders in row order and `history` their `build_profile_history`; the batches
    hold the same cardholders in the same order, with `cardholder_id`, `product_id` and the model's
    cardholder features (other columns are ignored). Each batch is encoded on its own, so only the
    float32 result is ever held whole. `est_spend`, when given, is what `estimate_spend` returned for
    these rows and this model (stored with a snapshot), and the spend estimator is not run.

    Raises ModelError as `assemble_profiles` does, and when the batches do not hold `ids` or a
    cardholder comes twice.
    """
    expected = (len(ids), len(SPEND_CATEGORIES))
    if est_spend is not None and (est_spend.shape != expected or est_spend.dtype != np.float32):
        raise ModelError(
            f"the spend estimates are {est_spend.dtype} {est_spend.shape}, expected float32 {expected}"
        )
    cardholder_ids = CardholderIds(ids)  # raises ModelError for a cardholder listed twice
    encoded = _encode_rows(ids, batches, bundle, keep_features=True, estimate=est_spend is None)
    assert encoded.holder is not None
    if est_spend is None:
        assert encoded.est_spend is not None
        est_spend = encoded.est_spend
    product_index = _positions(encoded.products, benefits.product_ids)
    if (product_index < 0).any():
        unknown = encoded.products.filter(pa.array(product_index < 0)).to_pylist()
        raise ModelError(
            f"cardholders have products the catalog does not describe: {sorted(set(unknown))[:5]}"
        )
    return Profiles(
        as_of=as_of,
        model_version=bundle.version,
        ids=cardholder_ids,
        holder=encoded.holder,
        est_spend=est_spend,
        product_index=product_index.astype(np.int16),
        offsets=history.offsets,
        history_benefit=history.benefit,
        history_used=history.used,
        history_values=history.values,
        history_days_since_declined=history.days_since_declined,
        history_presented_90d=history.presented_90d,
    )


def estimate_spend(features: pa.Table, bundle: ModelBundle) -> npt.NDArray[np.float32]:
    """The model's spend estimate per category for every feature row, as `Profiles.est_spend` holds it.

    The slow part of assembling profiles (16 LightGBM regressions per cardholder), so a snapshot built
    for a model stores it. Raises ModelError when a feature the model needs is missing.
    """
    ids = features.column("cardholder_id").combine_chunks()
    encoded = _encode_rows(
        ids, features.to_batches(ASSEMBLY_ROWS), bundle, keep_features=False, estimate=True
    )
    assert encoded.est_spend is not None
    return encoded.est_spend


@dataclass(frozen=True)
class _EncodedRows:
    products: pa.ChunkedArray
    holder: HolderMatrix | None
    est_spend: npt.NDArray[np.float32] | None


def _encode_rows(
    ids: pa.Array,
    batches: Iterable[pa.RecordBatch],
    bundle: ModelBundle,
    *,
    keep_features: bool,
    estimate: bool,
) -> _EncodedRows:
    """Feature rows of `ids`, batch by batch → the model's columns (compact) and/or its spend estimates."""
    names = bundle.holder.feature_names
    n = len(ids)
    # Each batch made compact on its own, then stacked: the float32 matrix is never held whole.
    holder_parts: list[HolderMatrix] = []
    est_spend = np.empty((n, len(SPEND_CATEGORIES)), dtype=np.float32) if estimate else None
    product_chunks: list[pa.Array] = []
    start = 0
    for batch in batches:
        end = start + batch.num_rows
        if end > n or not batch.column("cardholder_id").equals(ids.slice(start, batch.num_rows)):
            raise ModelError(f"the feature rows from row {start:,} are not the cardholders expected there")
        product_chunks.append(batch.column("product_id"))
        # LightGBM's predict already uses every core; a batch at a time bounds the float64 copy.
        X = bundle.holder.encode(pa.Table.from_batches([batch]))
        if est_spend is not None:
            est_spend[start:end] = bundle.estimator.predict(X, names)
        if keep_features:
            part = HolderMatrix.from_float32(X.astype(np.float32))
            holder_parts.append(
                replace(part, counts=_own_mapping(part.counts), floats=part.floats.with_arrays(_own_mapping))
            )
        start = end
    if start != n:
        raise ModelError(f"the feature rows hold {start:,} cardholders, not the {n:,} expected")
    holder = None
    if keep_features:
        empty = HolderMatrix.from_float32(np.empty((0, len(names)), dtype=np.float32))
        holder = HolderMatrix.stack(holder_parts) if holder_parts else empty
    return _EncodedRows(pa.chunked_array(product_chunks, pa.string()), holder, est_spend)


_Array = TypeVar("_Array", bound=np.ndarray[Any, Any])


def _own_mapping(values: _Array) -> _Array:
    """A copy of `values` in its own anonymous memory map, given back to the system as soon as it is freed.

    The parts `HolderMatrix.stack` copies from are freed while the whole matrix fills; blocks this size
    from malloc would stay with the process (its mmap threshold grows past them), adding ~0.5 GB at
    900,000 cardholders to the peak of loading.
    """
    if values.nbytes == 0:
        return values
    copy = np.frombuffer(mmap.mmap(-1, values.nbytes), dtype=values.dtype).reshape(values.shape)
    copy[...] = values
    return copy  # type: ignore[return-value]


def _positions(values: pa.ChunkedArray | pa.Array, levels: pa.Array | Sequence[str]) -> IntArray:
    """Each value's position in `levels` (no duplicates), -1 when it is not there or missing."""
    value_set = levels if isinstance(levels, pa.Array) else pa.array(list(levels), pa.string())
    found = pc.fill_null(pc.index_in(values, value_set=value_set), -1)
    return np.asarray(found.to_numpy(zero_copy_only=False), dtype=np.int64)


def _match(keys: IntArray, lookup: IntArray) -> IntArray:
    """For each key, the position of the same key in `lookup` (unique keys), -1 when it is not there."""
    by_key = np.argsort(lookup, kind="stable")
    sorted_lookup = lookup[by_key]
    at = np.searchsorted(sorted_lookup, keys)
    found = at < len(sorted_lookup)
    found[found] = sorted_lookup[at[found]] == keys[found]
    out = np.full(len(keys), -1, dtype=np.int64)
    out[found] = by_key[at[found]]
    return out


def _floats(column: pa.ChunkedArray, take: IntArray) -> npt.NDArray[np.float32]:
    """Rows `take` of a column as float32 (through float64, as pandas did), NULL and take -1 as NaN."""
    values = np.asarray(column.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
    out = np.full(len(take), np.nan, dtype=np.float64)
    present = take >= 0
    out[present] = values[take[present]]
    return out.astype(np.float32)


def build_profile_history(
    ids: pa.Array, history: pa.Table, contact: pa.Table, benefits: BenefitTable
) -> ProfileHistory:
    """The CSR-like per-benefit history of `Profiles` for cardholders `ids` (in that order).

    Rows are grouped by cardholder row, then ordered by benefit id; rows of cardholders not in `ids`
    or of benefits not in the catalog are left out. The contact columns come from `contact`'s row for
    the same (cardholder, benefit): NaN days and 0 presentations without one.
    """
    n_benefits = len(benefits.ids)
    rows = _positions(history.column("cardholder_id"), ids)
    benefit = _positions(history.column("benefit_id"), benefits.ids)
    # Within a cardholder, rows go in the order of the benefit ids as strings, not in catalog order.
    rank = np.empty(n_benefits, dtype=np.int64)
    rank[sorted(range(n_benefits), key=benefits.ids.__getitem__)] = np.arange(n_benefits)
    kept = np.flatnonzero((rows >= 0) & (benefit >= 0))
    sort_key = rows[kept] * n_benefits + rank[benefit[kept]]
    # The SQL returns history in this order already; sort only when it does not.
    order = kept if (sort_key[1:] > sort_key[:-1]).all() else kept[np.argsort(sort_key, kind="stable")]
    del sort_key
    key = rows[order] * n_benefits + benefit[order]

    contact_rows = _positions(contact.column("cardholder_id"), ids)
    contact_benefit = _positions(contact.column("benefit_id"), benefits.ids)
    contact_key = np.where(
        (contact_rows >= 0) & (contact_benefit >= 0), contact_rows * n_benefits + contact_benefit, -1
    )
    source = _match(key, contact_key)
    values = np.empty((len(order), len(HISTORY_COLUMNS)), dtype=np.float32)
    for j, name in enumerate(HISTORY_COLUMNS):
        values[:, j] = _floats(history.column(name), order)
    used = np.asarray(history.column("used").to_numpy(zero_copy_only=False), dtype=bool)
    return ProfileHistory(
        offsets=np.searchsorted(rows[order], np.arange(len(ids) + 1)).astype(np.int64),
        benefit=benefit[order].astype(np.int16),
        used=used[order],
        values=values,
        days_since_declined=_floats(contact.column("days_since_declined"), source),
        presented_90d=np.nan_to_num(_floats(contact.column("presented_90d"), source), nan=0.0),
    )
