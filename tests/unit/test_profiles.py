"""Profiles' compact layout: whole-number columns in 2 bytes and ids in arrays give back exactly what
the float32 matrix and the tuple + dict gave."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from nba.errors import ModelError
from nba.profiles._profiles import COUNT_NAN, CardholderIds, HolderMatrix, SparseRows, whole_number_columns

NAN = np.nan


def _column(values: list[float]) -> np.ndarray:
    return np.array(values, dtype=np.float32)[:, None]


def _reference_rows(X: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """What the engine read before the compact layout: float32 rows widened one by one."""
    return np.array([[float(X[r, j]) for j in range(X.shape[1])] for r in rows], dtype=np.float64)


def _mixed_matrix(n: int, seed: int) -> np.ndarray:
    """Columns of every kind: counts, days since, codes, spend, shares, some with NaN, one all NaN."""
    rng = np.random.default_rng(seed)
    X = np.column_stack(
        [
            rng.integers(0, 400, n),  # transactions
            rng.integers(0, 65535, n),  # up to 65534: still 2 bytes
            rng.lognormal(5.0, 2.0, n),  # spend
            rng.random(n),  # share
            rng.integers(0, 7, n),  # a categorical code
            np.full(n, NAN),  # never recorded
            rng.integers(-3, 3, n),  # negative: stays float32
        ]
    ).astype(np.float32)
    X[rng.random(X.shape) < 0.3] = NAN
    return X


def test_whole_numbers_and_nan_round_trip_exactly() -> None:
    X = _column([0, 1, 2, NAN, 365, 65534, NAN, 7])
    holder = HolderMatrix.from_float32(X)
    assert holder.count_columns.tolist() == [0] and holder.float_columns.tolist() == []
    assert holder.counts.dtype == np.uint16
    assert holder.counts[:, 0].tolist() == [0, 1, 2, COUNT_NAN, 365, 65534, COUNT_NAN, 7]
    assert np.array_equal(holder.to_float32(), X, equal_nan=True)
    got = holder.rows(np.arange(len(X)))
    assert got.dtype == np.float64
    assert np.array_equal(got, X.astype(np.float64), equal_nan=True)


@pytest.mark.parametrize(
    ("values", "why"),
    [
        ([1, 2, 65535], "65535 stands for NaN"),
        ([1, 2, 70000], "above 65534"),
        ([1, -1, 2], "negative"),
        ([1, 2.5, 3], "a fraction"),
        ([1, 65534.5, 3], "a fraction near the top"),
        ([1, -0.0, 3], "-0.0 would come back as 0.0"),
        ([1, np.inf, 3], "infinite"),
        ([NAN, 0.25, NAN], "a fraction among NaN"),
    ],
)
def test_a_column_that_does_not_fit_in_2_bytes_stays_float32(values: list[float], why: str) -> None:
    X = np.hstack([_column(values), _column([3, NAN, 4])])
    holder = HolderMatrix.from_float32(X)
    assert holder.float_columns.tolist() == [0], why
    assert holder.count_columns.tolist() == [1]
    assert holder.floats.values.dtype == np.float32
    assert np.array_equal(holder.to_float32(), X, equal_nan=True)
    assert np.array_equal(np.signbit(holder.rows(np.arange(3))), np.signbit(X.astype(np.float64)))


def test_whole_number_columns_decides_per_column_from_the_data() -> None:
    X = np.array([[0, 0.5, NAN, 65534, 65535], [3, 1, NAN, NAN, 0]], dtype=np.float32)
    assert whole_number_columns(X).tolist() == [True, False, True, True, False]


def test_rows_give_the_matrix_the_float32_layout_gave() -> None:
    X = _mixed_matrix(500, seed=3)
    holder = HolderMatrix.from_float32(X)
    assert holder.count_columns.tolist() == [0, 1, 4, 5]
    assert holder.shape == X.shape and len(holder) == len(X)
    rows = np.random.default_rng(4).integers(0, len(X), 60)
    assert np.array_equal(holder.rows(rows), _reference_rows(X, rows), equal_nan=True)
    for row in (0, 17, len(X) - 1):
        assert np.array_equal(holder.rows(row), _reference_rows(X, np.array([row])), equal_nan=True)
        assert np.array_equal(holder.rows(np.int64(row)), holder.rows(row), equal_nan=True)
    assert holder.rows(np.zeros(0, dtype=np.int64)).shape == (0, X.shape[1])


def test_parts_stack_into_the_matrix_made_whole() -> None:
    X = _mixed_matrix(300, seed=5)
    X[250, 0] = 0.5  # whole in the first parts, not in the last: the column must end up float32
    parts = [HolderMatrix.from_float32(X[start : start + 100]) for start in range(0, 300, 100)]
    assert 0 in parts[0].count_columns and 0 in parts[2].float_columns
    stacked = HolderMatrix.stack(parts)
    assert parts == []  # given back as they were copied
    whole = HolderMatrix.from_float32(X)
    for name in (
        "count_columns",
        "float_columns",
        "counts",
        "floats.values",
        "floats.columns",
        "floats.offsets",
    ):
        a, b = stacked, whole
        for part in name.split("."):
            a, b = getattr(a, part), getattr(b, part)
        assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), name
    assert 0 in stacked.float_columns
    assert np.array_equal(stacked.to_float32(), X, equal_nan=True)


def test_nbytes_counts_the_compact_arrays() -> None:
    X = _mixed_matrix(1000, seed=6)
    holder = HolderMatrix.from_float32(X)
    kept = int(((X[:, holder.float_columns] != 0) | np.signbit(X[:, holder.float_columns])).sum())
    # Each kept float: its 4 bytes and a 1-byte column number; each row: an 8-byte offset.
    assert holder.counts.nbytes == 1000 * 4 * 2 and holder.floats.nbytes == kept * 5 + 1001 * 8
    assert holder.counts.nbytes + holder.floats.nbytes < holder.nbytes


def test_sparse_rows_keep_every_value_but_positive_zero_and_give_back_the_dense_rows() -> None:
    rng = np.random.default_rng(8)
    X = rng.normal(size=(500, 300)).astype(np.float32)  # 300 columns: the column numbers need 2 bytes
    X[rng.random(X.shape) < 0.7] = 0.0
    X[3, 5], X[4, 6], X[7, :] = np.nan, -0.0, 0.0  # NaN and -0.0 are kept; an all-zero row has no values
    rows = SparseRows.from_dense(X)
    assert rows.columns.dtype == np.uint16 and len(rows.values) == int(((X != 0) | np.signbit(X)).sum())
    assert rows.offsets[8] == rows.offsets[7]
    assert rows.nbytes < X.nbytes / 2  # 30% kept, 6 bytes each, against 4 bytes for every value
    dense = rows.to_dense()
    assert np.array_equal(dense, X, equal_nan=True) and np.array_equal(np.signbit(dense), np.signbit(X))
    picked = np.array([7, 3, 3, 499, 0])
    assert np.array_equal(rows.dense(picked), X[picked], equal_nan=True)
    assert np.array_equal(rows.dense(4), X[4:5]) and np.signbit(rows.dense(4)[0, 6])
    for j in (0, 5, 6, 299):
        assert np.array_equal(rows.column(j, step=3), X[::3, j], equal_nan=True)
    halves = SparseRows.stack([SparseRows.from_dense(X[:200]), SparseRows.from_dense(X[200:])])
    assert all(
        np.array_equal(getattr(halves, a), getattr(rows, a), equal_nan=True)
        for a in ("values", "columns", "offsets")
    )
    with pytest.raises(IndexError, match="no column 300"):
        rows.column(300)


# --- ids -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["sorted", "shuffled"])
def test_every_id_finds_its_row_and_unknown_ids_find_none(order: str) -> None:
    names = [f"C{i:07d}" for i in range(2000)] + ["", "Zé", "C1"]
    if order == "shuffled":
        names = [names[i] for i in np.random.default_rng(7).permutation(len(names))]
    else:
        names.sort()
    ids = CardholderIds(pa.array(names, pa.string()))
    expected = {name: row for row, name in enumerate(names)}
    assert len(ids) == len(ids.rows) == len(names)
    assert list(ids) == names and list(ids.rows) == names
    assert [ids[i] for i in range(len(names))] == names
    assert ids[-1] == names[-1] and ids[3:9] == tuple(names[3:9])
    assert dict(ids.rows) == expected
    for name, row in expected.items():
        assert ids.rows.get(name) == row and ids.rows[name] == row and name in ids.rows and name in ids
        assert ids.index(name) == row
    unknown = ["C9999999", "C0000000x", "C000000", "C0000001\x00", "B", "zzz", "C1 ", "\ud800", "Z"]
    for name in unknown:
        assert ids.rows.get(name) is None and name not in ids.rows and name not in ids, repr(name)
        assert ids.rows.get(name, -1) == -1
        with pytest.raises(KeyError):
            ids.rows[name]
        with pytest.raises(ValueError, match="is not a cardholder id"):
            ids.index(name)
    assert ids.rows.get(5) is None  # type: ignore[arg-type]
    with pytest.raises(IndexError):
        ids[len(names)]


def test_ids_hold_no_python_object_per_id_and_count_their_bytes() -> None:
    ids = CardholderIds([f"C{i:07d}" for i in range(1000)])
    assert ids.nbytes == 1000 * 8  # fixed-width bytes only: already sorted, so no sorter
    shuffled = CardholderIds([f"C{i:07d}" for i in range(1000)][::-1])
    assert shuffled.nbytes == 1000 * 8 + 1000 * np.dtype(np.intp).itemsize


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["C1", "C2", "C1"], "list a cardholder twice"),
        (["C1", "C1"], "list a cardholder twice"),
        (["C1", None], "has no id"),
        (["C1", "C2\x00"], "ends in a NUL character"),
    ],
)
def test_ids_that_cannot_be_held_are_refused(names: list[str | None], message: str) -> None:
    with pytest.raises(ModelError, match=message):
        CardholderIds(pa.array(names, pa.string()))


def test_no_ids() -> None:
    ids = CardholderIds([])
    assert len(ids) == 0 and list(ids) == [] and ids.rows.get("C1") is None and "" not in ids
