"""`nba validate --engine spark`: the same problems as local validation, counted per kind, with examples."""

from __future__ import annotations

import re
import shutil
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from nba.contract import validate_data
from nba.errors import ValidationError
from tests.conftest import VALID_TABLES, write_tables
from tests.spark import SPARK_TEST
from training.cli import main
from training.spark_validate import (
    MALFORMED_MESSAGE,
    Example,
    ProblemKind,
    SparkValidation,
    validate_on_spark,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

pytestmark = SPARK_TEST

SAMPLE = Path(__file__).resolve().parents[2] / "data_samples"


def _set(table: pa.Table, column: str, rows: list[int], value: object) -> pa.Table:
    values = table.column(column).to_pylist()
    for row in rows:
        values[row] = value
    return table.set_column(
        table.schema.get_field_index(column), column, pa.array(values, table.schema.field(column).type)
    )


@pytest.fixture(scope="module")
def broken_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample data with problems of each kind; nps as CSV (its examples carry the record)."""
    data = tmp_path_factory.mktemp("broken")
    shutil.copytree(SAMPLE, data, dirs_exist_ok=True)
    transactions = pq.read_table(data / "transactions.parquet")
    pq.write_table(_set(transactions, "mcc", [4, 5, 6], 12000), data / "transactions.parquet")
    cardholders = pq.read_table(data / "cardholders.parquet")
    pq.write_table(pa.concat_tables([cardholders, cardholders.slice(0, 1)]), data / "cardholders.parquet")
    conversations = pq.read_table(data / "conversations.parquet")
    pq.write_table(_set(conversations, "outcome", [3, 9], "maybe"), data / "conversations.parquet")
    usage = pq.read_table(data / "benefit_usage.parquet")
    pq.write_table(_set(usage, "benefit_id", [2], "no_such_benefit"), data / "benefit_usage.parquet")
    nps = pq.read_table(data / "nps.parquet")
    scores = pc.cast(nps.column("score"), pa.string()).to_pylist()
    scores[1], scores[2], scores[3] = "abc", "11", None
    text = pa.table({"call_id": nps.column("call_id"), "score": pa.array(scores, pa.string())})
    (data / "nps.parquet").unlink()
    pacsv.write_csv(text, data / "nps.csv")
    return data


def _local_kinds(data: Path) -> Counter[tuple[str, str | None, str]]:
    report = validate_data(data, max_problems=100_000)
    assert report.total == len(report.problems)
    return Counter(
        (p.file, p.column, re.sub(r": the same as row \d+$", "", p.message)) for p in report.problems
    )


def test_both_engines_report_the_same_problem_kinds_and_counts(spark: SparkSession, broken_dir: Path) -> None:
    result = validate_on_spark(spark, broken_dir)
    got = {(k.file, k.column, k.message): k.count for k in result.kinds}
    assert got == dict(_local_kinds(broken_dir))
    assert got[("transactions.parquet", "mcc", "is outside 0–9999")] == 3
    kinds = {(k.file, k.column, k.message): k for k in result.kinds}
    mcc = kinds[("transactions.parquet", "mcc", "is outside 0–9999")]
    assert [(e.row, e.value) for e in mcc.examples] == [(5, "12000"), (6, "12000"), (7, "12000")]
    score = kinds[("nps.csv", "score", "is not a whole number")]
    assert (
        score.examples[0].row is None
        and score.examples[0].record == f"{score.examples[0].record.split(',')[0]},abc"
    )
    duplicate = kinds[("cardholders.parquet", "cardholder_id", "duplicate cardholder_id")]
    assert duplicate.count == 1 and duplicate.examples[0].row == 1


# Text that must parse as the contract's types: dates, timestamps, numbers, blanks (CSV, every type's rules).
_BAD_CSV = {
    **VALID_TABLES,
    "cardholders": VALID_TABLES["cardholders"] + "C4,gold,2024-02-30,19x0,west,mass,1\nC5, ,2024/01/01,,,,\n",
    "transactions": VALID_TABLES["transactions"]
    + "C1,2025-01-04,abc,5812\nC2,2025-01-05,1e999,58.5\nC9,,12,1\n",
    "conversations": VALID_TABLES["conversations"]
    + "K2,C3,grocery_3x,2025-03-02 25:00:00,accepted,0,bored,0\n",
    "nps": VALID_TABLES["nps"] + "K1,9,2025-01-21T08:00:00Z\nK4,,yesterday\n",
}


def test_text_parsing_finds_the_same_problems_as_local_validation(
    spark: SparkSession, tmp_path: Path
) -> None:
    data = write_tables(tmp_path / "data", _BAD_CSV)
    result = validate_on_spark(spark, data)
    got = {(k.file, k.column, k.message): k.count for k in result.kinds}
    assert got == dict(_local_kinds(data)) and len(got) >= 12
    record = next(k for k in result.kinds if k.column == "amount").examples[0].record
    assert record == "C1,2025-01-04,abc,5812"


def test_the_command_prints_each_kind_with_its_count(
    spark: SparkSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_tables(tmp_path / "data", _BAD_CSV)
    assert main(["validate", str(data), "--engine", "spark", "--spark-master", "local[2]"]) == 1
    err = capsys.readouterr().err
    assert (
        "transactions.csv, column amount: is not a finite number: 2 rows, e.g. record 'C1,2025-01-04,abc,5812'"
        in err
    )
    assert err.strip().splitlines()[-1] == f"{data}: 18 problems found"
    assert main(["validate", str(write_tables(tmp_path / "valid", VALID_TABLES)), "--engine", "spark"]) == 0
    assert "cardholders.csv" in capsys.readouterr().out


def test_an_as_of_with_no_data_before_it_is_the_same_error_on_both_engines(
    spark: SparkSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = str(write_tables(tmp_path / "valid", VALID_TABLES))
    errors = []
    for engine in ("duckdb", "spark"):
        assert main(["validate", data, "--as-of", "2024-01-01", "--engine", engine]) == 1
        errors.append(capsys.readouterr().err.strip())
    assert errors[0] == errors[1] and "is not after the first date" in errors[0]


def test_max_problems_lists_as_many_problems_as_locally_with_the_same_last_line(
    spark: SparkSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = str(write_tables(tmp_path / "data", _BAD_CSV))
    last_lines = []
    for engine in ("duckdb", "spark"):
        assert main(["validate", data, "--max-problems", "4", "--engine", engine]) == 1
        lines = capsys.readouterr().err.strip().splitlines()
        last_lines.append(lines[-1])
        if engine == "spark":
            # Each line a kind with its examples: four examples in all, every problem still counted.
            shown = sum(line.count("; ") + 1 if ", e.g. " in line else 1 for line in lines[:-1])
            assert shown == 4
    assert last_lines[0] == last_lines[1] == f"{data}: 18 problems found (the first 4 are listed)"


def test_a_malformed_csv_line_is_a_problem_naming_the_file_and_record(
    spark: SparkSession, tmp_path: Path
) -> None:
    # Spark's PERMISSIVE mode would read "C2,2025-02-03,9.5" with an empty mcc and drop a fifth field;
    # both are reported with the line as read, and left out of the other checks (as DuckDB sets them aside).
    tables = {
        **VALID_TABLES,
        "transactions": VALID_TABLES["transactions"]
        + "C2,2025-02-03,9.5\nC1,2025-01-04,abc,5812\nC9,2025-01-05,1.00,5812,extra\n",
    }
    data = write_tables(tmp_path / "data", tables)
    result = validate_on_spark(spark, data)
    kinds = {(k.file, k.column, k.message): k for k in result.kinds}
    malformed = kinds[("transactions.csv", None, MALFORMED_MESSAGE)]
    assert malformed.count == 2
    assert sorted(e.record or "" for e in malformed.examples) == [
        "C2,2025-02-03,9.5",
        "C9,2025-01-05,1.00,5812,extra",
    ]
    assert str(malformed).startswith(f"transactions.csv: {MALFORMED_MESSAGE}: 2 rows, e.g. record ")
    # The rest of the file is checked; the malformed lines are in no other kind (C9 is no cardholder).
    assert kinds[("transactions.csv", "amount", "is not a finite number")].count == 1
    assert {k.column for k in result.kinds} == {None, "amount"}
    local = validate_data(data, max_problems=100)
    assert sum("expected 4 columns" in p.message for p in local.problems) == 2
    assert local.total == result.total == 3


def test_training_stops_on_the_first_problem_of_each_kind_with_the_total() -> None:
    kinds = [
        ProblemKind(
            "transactions.csv", "amount", "is not a finite number", 2, (Example(None, "abc", "C1,x"),), 1
        ),
        ProblemKind("nps.csv", None, MALFORMED_MESSAGE, 1, (Example(None, None, "K9"),), 1),
    ]
    SparkValidation([], {"nps.csv": 3}).raise_for_problems()  # valid: nothing raised
    with pytest.raises(ValidationError) as caught:
        SparkValidation(kinds, {}).raise_for_problems()
    assert caught.value.total == 3 and len(caught.value.problems) == 2
    assert str(caught.value) == (
        "transactions.csv: column amount: is not a finite number: 2 rows, e.g. record 'C1,x' ('abc') "
        "(and 2 more problems)"
    )
