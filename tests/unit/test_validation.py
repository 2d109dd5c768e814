"""Validation: every malformed file, column, value and reference gets a message naming file, row, column, value."""

from __future__ import annotations

import csv
import io
import re
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nba.contract import check_as_of
from nba.contract._tables import TABLES, open_data
from nba.contract._validation import validate_data
from nba.errors import DataError, ValidationError
from tests.conftest import VALID_TABLES, write_tables


def _set_cell(text: str, row: int, column: str, value: str) -> str:
    """The CSV text with data row `row` (1-based) of `column` replaced."""
    rows = list(csv.DictReader(io.StringIO(text)))
    rows[row - 1][column] = value
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _messages(data_dir: Path, **kwargs: object) -> list[str]:
    report = validate_data(data_dir, **kwargs)  # type: ignore[arg-type]
    return [str(p) for p in report.problems]


def test_valid_directory_has_a_summary(valid_dir: Path) -> None:
    report = validate_data(valid_dir)
    assert report.ok, report.problems
    summary = report.summary
    assert summary is not None
    assert summary.cardholders == 3
    assert summary.first_date == date(2025, 1, 3)
    assert summary.last_date == date(2025, 3, 1)
    # The latest date anywhere is the call on 2025-03-03, so the as-of is the day after.
    assert summary.as_of == date(2025, 3, 4)
    assert summary.net_spend_usd == pytest.approx(45.10 + 120 - 20 + 410.25 + 12.99 + 33)
    # MCC 9999 is not a spend category of ours: 33 of 601.34 dollars.
    assert summary.other_spend_share == pytest.approx(33 / 601.34)
    rows = {t.name: t.rows for t in summary.tables}
    assert rows == {
        "cardholders": 3,
        "transactions": 6,
        "benefit_usage": 2,
        "conversations": 3,
        "calls": 3,
        "nps": 2,
    }
    assert next(t for t in summary.tables if t.name == "cardholders").extra_columns == ("credit_limit_usd",)


BAD_CELLS = [
    ("transactions", 2, "mcc", "12000", r"transactions.csv, row 2, column mcc: '12000': is outside 0–9999"),
    ("transactions", 2, "mcc", "-1", r"row 2, column mcc: '-1': is outside 0–9999"),
    ("transactions", 2, "mcc", "54.11", r"row 2, column mcc: '54.11': is not a whole number"),
    ("transactions", 3, "amount", "12,50", r"row 3, column amount: '12,50': is not a finite number"),
    ("transactions", 3, "amount", "nan", r"row 3, column amount: 'nan': is not a finite number"),
    ("transactions", 3, "amount", "", r"row 3, column amount: is empty; a value is required"),
    (
        "transactions",
        1,
        "transaction_date",
        "2025-02-30",
        r"row 1, column transaction_date: '2025-02-30': is not a date",
    ),
    (
        "transactions",
        1,
        "transaction_date",
        "03/01/2025",
        r"row 1, column transaction_date: '03/01/2025': is not a date in YYYY-MM-DD",
    ),
    (
        "transactions",
        4,
        "cardholder_id",
        "C404",
        r"transactions.csv, row 4, column cardholder_id: 'C404': is not a cardholder in cardholders",
    ),
    (
        "cardholders",
        2,
        "product_id",
        "platinum",
        r"cardholders.csv, row 2, column product_id: 'platinum': is not a product in the catalog",
    ),
    (
        "cardholders",
        3,
        "cardholder_id",
        "C1",
        r"cardholders.csv, row 3, column cardholder_id: 'C1': duplicate cardholder_id: the same as row 1",
    ),
    ("cardholders", 1, "open_date", "", r"cardholders.csv, row 1, column open_date: is empty"),
    ("cardholders", 1, "birth_year", "1980.5", r"column birth_year: '1980.5': is not a whole number"),
    (
        "benefit_usage",
        1,
        "benefit_id",
        "teleport",
        r"benefit_usage.csv, row 1, column benefit_id: 'teleport': is not a benefit in the catalog",
    ),
    (
        "conversations",
        2,
        "outcome",
        "maybe",
        r"conversations.csv, row 2, column outcome: 'maybe': is not one of: accepted, declined, not_discussed, already_aware, unmarked",
    ),
    (
        "conversations",
        1,
        "presented_at",
        "yesterday",
        r"row 1, column presented_at: 'yesterday': is not an ISO 8601 timestamp",
    ),
    (
        "conversations",
        1,
        "call_reason",
        "weather",
        r"row 1, column call_reason: 'weather': is not one of: general",
    ),
    ("conversations", 1, "logging_prob", "0", r"row 1, column logging_prob: '0': is outside \(0, 1\]"),
    ("conversations", 1, "logging_prob", "1.5", r"row 1, column logging_prob: '1.5': is outside \(0, 1\]"),
    ("conversations", 1, "rank", "0", r"row 1, column rank: '0': is outside 1–100"),
    (
        "conversations",
        3,
        "call_id",
        "K9",
        r"conversations.csv, row 3, column call_id: 'K9': is not a call in calls",
    ),
    ("conversations", 2, "benefit_id", "grocery_4x", r"duplicate call_id and benefit_id: the same as row 1"),
    ("nps", 1, "score", "11", r"nps.csv, row 1, column score: '11': is outside 0–10"),
    ("nps", 2, "score", "7.5", r"nps.csv, row 2, column score: '7.5': is not a whole number"),
    (
        "nps",
        2,
        "call_id",
        "K77",
        r"nps.csv, row 2, column call_id: 'K77': is not a call in conversations or calls",
    ),
    (
        "calls",
        3,
        "started_at",
        "2025-13-01T00:00:00Z",
        r"calls.csv, row 3, column started_at: '2025-13-01T00:00:00Z'",
    ),
]


@pytest.mark.parametrize(
    ("table", "row", "column", "value", "message"), BAD_CELLS, ids=[m for *_, m in BAD_CELLS]
)
def test_bad_cell_is_named(
    tmp_path: Path, table: str, row: int, column: str, value: str, message: str
) -> None:
    tables = dict(VALID_TABLES)
    tables[table] = _set_cell(tables[table], row, column, value)
    messages = _messages(write_tables(tmp_path / "data", tables))
    assert any(re.search(message, m) for m in messages), messages


@pytest.mark.parametrize("outcome", ["unmarked", "not_discussed"])
def test_unmarked_and_not_discussed_are_both_outcomes_of_the_contract(tmp_path: Path, outcome: str) -> None:
    # Exports before `unmarked` existed wrote `not_discussed` for it: such files still validate as they did.
    tables = dict(VALID_TABLES, conversations=_set_cell(VALID_TABLES["conversations"], 1, "outcome", outcome))
    data_dir = write_tables(tmp_path / "data", tables)
    assert _messages(data_dir) == []
    with open_data(data_dir) as data:
        outcomes = [row[0] for row in data.con.sql("SELECT outcome FROM conversations").fetchall()]
    assert outcome in outcomes


def test_duplicate_usage_pair_is_named(tmp_path: Path) -> None:
    usage = "cardholder_id,benefit_id,first_used_date\nC1,dining_4x,2025-01-03\nC1,dining_4x,2025-02-03\n"
    messages = _messages(write_tables(tmp_path / "data", dict(VALID_TABLES, benefit_usage=usage)))
    assert messages == [
        "benefit_usage.csv, row 2, column cardholder_id, benefit_id: 'C1, dining_4x': "
        "duplicate cardholder_id and benefit_id: the same as row 1"
    ]


def test_every_problem_is_counted_and_the_list_is_capped(tmp_path: Path) -> None:
    lines = ["cardholder_id,transaction_date,amount,mcc"] + [
        f"C1,2025-01-{d:02d},1.00,99999" for d in range(1, 29)
    ]
    tables = dict(VALID_TABLES, transactions="\n".join(lines) + "\n")
    report = validate_data(write_tables(tmp_path / "data", tables), max_problems=5)
    assert report.total == 28
    assert len(report.problems) == 5
    assert [p.row for p in report.problems] == [1, 2, 3, 4, 5]
    with pytest.raises(ValidationError, match=r"\(and 27 more problems\)"):
        report.raise_for_problems()


def test_missing_table_and_column(tmp_path: Path) -> None:
    tables = {k: v for k, v in VALID_TABLES.items() if k != "nps"}
    tables["transactions"] = "cardholder_id,transaction_date,amount\nC1,2025-01-03,4.0\n"
    messages = _messages(write_tables(tmp_path / "data", tables))
    assert "nps.csv: table is missing (expected NAME.csv or NAME.parquet)" in messages
    assert any(m.startswith("transactions.csv, column mcc: required column is missing") for m in messages)


def test_calls_table_is_optional(tmp_path: Path) -> None:
    tables = {k: v for k, v in VALID_TABLES.items() if k != "calls"}
    tables["nps"] = "call_id,score\nK1,9\n"
    assert validate_data(write_tables(tmp_path / "data", tables)).ok


def test_empty_tables_are_valid(tmp_path: Path) -> None:
    tables = dict(VALID_TABLES)
    for name in ("conversations", "nps", "calls", "benefit_usage"):
        tables[name] = tables[name].splitlines()[0] + "\n"
    report = validate_data(write_tables(tmp_path / "data", tables))
    assert report.ok, report.problems


def test_ragged_csv_line_is_named(tmp_path: Path) -> None:
    tables = dict(VALID_TABLES, transactions="cardholder_id,transaction_date,amount,mcc\nC1,2025-01-03,4.0\n")
    messages = _messages(write_tables(tmp_path / "data", tables))
    assert messages == ["transactions.csv: line 2: expected 4 columns, found 3"]


def test_a_malformed_line_is_one_problem_among_the_others_of_its_file(tmp_path: Path) -> None:
    lines = VALID_TABLES["transactions"].splitlines()
    lines[2] = "C1,2025-01-09,abc,5411"  # data row 2: an amount that is not a number
    lines[3] = "C1,2025-01-12"  # data row 3: two columns short
    lines[4] = "C2,2025-02-01,410.25,12000,x"  # data row 4: one column too many
    lines[5] = "C2,2025-02-02,12.99,12000"  # data row 5: MCC out of range
    data_dir = write_tables(tmp_path / "data", dict(VALID_TABLES, transactions="\n".join(lines) + "\n"))
    assert _messages(data_dir) == [
        "transactions.csv: line 4: expected 4 columns, found 2",
        "transactions.csv: line 5: expected 4 columns, found 5",
        "transactions.csv, row 2, column amount: 'abc': is not a finite number",
        "transactions.csv, row 5, column mcc: '12000': is outside 0–9999",
    ]


def test_unterminated_quote_is_named(tmp_path: Path) -> None:
    text = 'cardholder_id,transaction_date,amount,mcc\nC1,2025-01-03,4.0,5812\n"C1,2025-01-04,4.0,5812\n'
    messages = _messages(write_tables(tmp_path / "data", dict(VALID_TABLES, transactions=text)))
    assert messages == ["transactions.csv: line 3: Value with unterminated quote found."]


def test_rows_on_or_after_an_explicit_as_of_are_counted_not_checked(tmp_path: Path) -> None:
    # A broken MCC on the last transaction (dated 2025-03-01) and on the first (2025-01-03).
    text = _set_cell(_set_cell(VALID_TABLES["transactions"], 6, "mcc", "12000"), 1, "mcc", "-1")
    data_dir = write_tables(tmp_path / "data", dict(VALID_TABLES, transactions=text))
    messages = _messages(data_dir, as_of=date(2025, 3, 1))
    assert messages == ["transactions.csv, row 1, column mcc: '-1': is outside 0–9999"]
    fixed = write_tables(
        tmp_path / "fixed", dict(VALID_TABLES, transactions=_set_cell(text, 1, "mcc", "5812"))
    )
    report = validate_data(fixed, as_of=date(2025, 3, 1))
    assert report.ok, report.problems
    assert report.summary is not None and report.summary.as_of == date(2025, 3, 1)
    # The transaction of 03-01, the conversation of 03-02, the calls of 03-02 and 03-03.
    assert report.summary.rows_after_as_of == (
        ("transactions.csv", 1),
        ("conversations.csv", 1),
        ("calls.csv", 2),
    )
    # Without an as-of every row is checked.
    assert _messages(fixed) == ["transactions.csv, row 6, column mcc: '12000': is outside 0–9999"]


@pytest.mark.parametrize(
    ("as_of", "message"),
    [
        (
            date(2025, 1, 3),
            "--as-of 2025-01-03 is not after the first date in {dir} (2025-01-03): no spend is dated before "
            "it; use a day from 2025-01-04 to 2025-03-04",
        ),
        (date(2020, 1, 1), "--as-of 2020-01-01 is not after the first date in {dir} (2025-01-03)"),
        (
            date(2025, 3, 5),
            "--as-of 2025-03-05 is after 2025-03-04, the day after the last date in {dir} (2025-03-03): the "
            "days between hold no data; use a day from 2025-01-04 to 2025-03-04",
        ),
    ],
)
def test_an_as_of_outside_the_data_is_one_error(valid_dir: Path, as_of: date, message: str) -> None:
    with pytest.raises(DataError, match="^" + re.escape(message.format(dir=valid_dir))):
        validate_data(valid_dir, as_of=as_of)


def test_an_as_of_from_the_day_after_the_first_spend_to_the_day_after_the_data_is_taken(
    valid_dir: Path,
) -> None:
    # The first and last days --as-of allows (next to the refused ones above): the day after the first
    # transaction, the day after the data.
    assert validate_data(valid_dir, as_of=date(2025, 1, 4)).ok
    assert validate_data(valid_dir, as_of=date(2025, 3, 4)).ok


def test_check_as_of_defaults_to_the_day_after_the_data() -> None:
    assert check_as_of(None, date(2025, 1, 3), date(2025, 3, 3), "d") == date(2025, 3, 4)
    with pytest.raises(DataError, match=r"^d: no dated rows at all"):
        check_as_of(date(2025, 3, 1), None, None, "d")


def test_both_csv_and_parquet_is_ambiguous(valid_dir: Path) -> None:
    pq.write_table(pa.table({"call_id": ["K1"], "score": [3]}), valid_dir / "nps.parquet")
    assert any("both nps.csv and nps.parquet exist; keep one" in m for m in _messages(valid_dir))


def _to_parquet(data_dir: Path) -> None:
    con = duckdb.connect()
    for name in TABLES:
        path = data_dir / f"{name}.csv"
        if path.exists():
            con.execute(
                f"COPY (SELECT * FROM read_csv('{path}', header = true)) TO '{data_dir / name}.parquet'"
            )
            path.unlink()
    con.close()


def test_parquet_with_native_types_validates_like_csv(valid_dir: Path) -> None:
    _to_parquet(valid_dir)
    report = validate_data(valid_dir)
    assert report.ok, report.problems
    assert report.summary is not None and report.summary.as_of == date(2025, 3, 4)


def test_parquet_wrong_type_is_named(valid_dir: Path) -> None:
    (valid_dir / "transactions.csv").unlink()
    pq.write_table(
        pa.table(
            {
                "cardholder_id": ["C1", "C2"],
                "transaction_date": pa.array([date(2025, 1, 3), date(2025, 1, 4)]),
                "amount": [1.0, 2.0],
                "mcc": pa.array([date(2025, 1, 3), date(2025, 1, 4)]),
            }
        ),
        valid_dir / "transactions.parquet",
    )
    assert "transactions.parquet, column mcc: has type DATE; the contract says a whole number" in _messages(
        valid_dir
    )


def test_parquet_float_integers_accepted_when_whole(valid_dir: Path) -> None:
    (valid_dir / "transactions.csv").unlink()
    table = pa.table(
        {
            "cardholder_id": ["C1", "C2"],
            "transaction_date": pa.array([date(2025, 1, 3), date(2025, 1, 4)]),
            "amount": [1.0, 2.0],
            "mcc": [5812.0, 5411.5],
        }
    )
    pq.write_table(table, valid_dir / "transactions.parquet")
    assert _messages(valid_dir) == [
        "transactions.parquet, row 2, column mcc: '5411.5': is not a whole number"
    ]


def test_typed_views_parse_timestamps_to_utc(valid_dir: Path) -> None:
    with open_data(valid_dir) as data:
        rows = data.con.execute(
            "SELECT call_id, CAST(started_at AS VARCHAR) FROM calls ORDER BY call_id"
        ).fetchall()
        assert rows == [
            ("K1", "2025-01-20 10:14:00"),
            ("K2", "2025-03-02 08:59:00"),
            ("K3", "2025-03-03 12:00:00"),
        ]
        assert data.row_count("transactions") == 6
        assert data.latest_date() == date(2025, 3, 3)
        # Extra columns pass through for features to use.
        limits = data.con.execute(
            "SELECT credit_limit_usd FROM cardholders ORDER BY cardholder_id"
        ).fetchall()
        assert limits == [("5000",), ("12000",), (None,)]


def test_timestamp_offsets_are_converted_to_utc(tmp_path: Path) -> None:
    tables = dict(VALID_TABLES)
    tables["calls"] = _set_cell(tables["calls"], 1, "started_at", "2025-01-20T12:14:00+02:00")
    with open_data(write_tables(tmp_path / "data", tables)) as data:
        value = data.con.execute(
            "SELECT CAST(started_at AS VARCHAR) FROM calls WHERE call_id = 'K1'"
        ).fetchall()
    assert value == [("2025-01-20 10:14:00",)]


def test_open_data_refuses_missing_tables(tmp_path: Path) -> None:
    tables = {k: v for k, v in VALID_TABLES.items() if k != "cardholders"}
    with pytest.raises(ValidationError, match=r"cardholders\.csv: table is missing"):
        open_data(write_tables(tmp_path / "data", tables))


def test_catalog_problems_are_reported_with_data_problems(valid_dir: Path) -> None:
    (valid_dir / "catalog.yaml").write_text("point_value_usd: 0.01\nproducts: []\nbenefits: []\n")
    messages = _messages(valid_dir)
    assert any(m.startswith("catalog.yaml, field products") for m in messages), messages


def test_mcc_override_problems_are_reported(valid_dir: Path) -> None:
    (valid_dir / "mcc_map.csv").write_text("mcc_from,mcc_to,category\n5000,4000,dining\n")
    messages = _messages(valid_dir)
    assert any(m.startswith("mcc_map.csv, row 1") for m in messages), messages


def test_mcc_override_changes_the_other_share(valid_dir: Path) -> None:
    (valid_dir / "mcc_map.csv").write_text("mcc_from,mcc_to,category\n9999,9999,health\n")
    summary = validate_data(valid_dir).summary
    assert summary is not None and summary.other_spend_share == 0


def test_duckdb_runs_as_many_threads_as_the_process_may_use_cpus(
    valid_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def threads(data_dir: Path, requested: int | None = None) -> int:
        with open_data(data_dir, requested) as data:
            return int(data.con.execute("SELECT current_setting('threads')").fetchall()[0][0])

    # DuckDB's own default is the machine's cores, whatever the affinity mask (taskset, a container's
    # cpuset) allows: the extra threads would take turns on the same CPUs.
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0})
    assert threads(valid_dir) == 1
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2})
    assert threads(valid_dir) == 3
    assert threads(valid_dir, 2) == 2
