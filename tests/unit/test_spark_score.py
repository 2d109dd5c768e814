"""`nba score --engine spark`: the same file as local `nba score`, the model checked on the executors, and
no file at all when the Spark job fails."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.deployment import Deployment
from tests.spark import SPARK_TEST
from training.cli import main
from training.spark_score import HISTORY_COLUMN, _unnest, job_error

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

pytestmark = SPARK_TEST


def _score(deployment: Deployment, out: Path, *more: str, model: Path | None = None) -> int:
    return main(
        [
            "score",
            "--data",
            str(deployment.data_dir),
            "--model",
            str(model or deployment.models_dir),
            "--out",
            str(out),
            *more,
        ]
    )


def test_spark_scores_equal_local_scores_row_for_row(
    spark: SparkSession, sample_deployment: Deployment, tmp_path: Path
) -> None:
    # CSV, compared as text: every digit of every score. Local from the data (the feature SQL, the spend
    # estimator), Spark from the snapshot built from it.
    local, on_spark = tmp_path / "local.csv", tmp_path / "spark.csv"
    assert _score(sample_deployment, local) == 0
    snapshot = ["--profiles", str(sample_deployment.profiles_dir)]
    assert (
        _score(sample_deployment, on_spark, "--engine", "spark", "--spark-master", "local[2]", *snapshot) == 0
    )
    assert on_spark.read_text() == local.read_text() and local.read_text().count("\n") > 3000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["local.csv", "spark.csv"]  # no temporary left


def test_spark_scores_with_the_nps_term_equal_local_scores_with_it(
    spark: SparkSession, sample_deployment: Deployment, tmp_path: Path
) -> None:
    """--detractor-weight reaches the executors: with the NPS term on, Spark writes what local scoring writes
    with it, and that is not what either writes with the term off (pitches reordered or left out)."""
    off, local, on_spark = tmp_path / "off.csv", tmp_path / "local.csv", tmp_path / "spark.csv"
    weight = ["--detractor-weight", "5"]  # heavy: on the sample's general calls it leaves some pitches out
    snapshot = ["--profiles", str(sample_deployment.profiles_dir)]
    assert _score(sample_deployment, off) == 0
    assert _score(sample_deployment, local, *weight) == 0
    assert _score(sample_deployment, on_spark, "--engine", "spark", *snapshot, *weight) == 0
    assert on_spark.read_text() == local.read_text()
    with_term, without = local.read_text().splitlines(), off.read_text().splitlines()
    assert with_term != without and len(with_term) < len(without)


def test_a_model_file_changed_after_shipping_fails_on_the_executor_and_writes_nothing(
    spark: SparkSession,
    sample_deployment: Deployment,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The driver's check passes; the bytes the executors get differ from the manifest's checksum: the
    partition refuses them, the job fails mid-way, and no score file (nor a hidden temporary) is left."""
    import training.spark_score as spark_score

    shipped = spark_score.read_model_files

    def tampered(model_dir: Path) -> dict[str, bytes]:
        files = shipped(model_dir)
        files["calibrator.json"] = files["calibrator.json"] + b" "
        return files

    monkeypatch.setattr(spark_score, "read_model_files", tampered)
    out = tmp_path / "scores" / "spark.csv"
    snapshot = ["--profiles", str(sample_deployment.profiles_dir)]
    assert _score(sample_deployment, out, "--engine", "spark", *snapshot) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: the Spark scoring job failed: ModelError: ") and "calibrator.json" in err, (
        err
    )
    assert "\n" not in err
    assert not out.exists() and (not out.parent.exists() or list(out.parent.iterdir()) == [])


def test_spark_score_refuses_a_bad_model_folder_before_spark_runs(
    sample_deployment: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "model"
    shutil.copytree(sample_deployment.models_dir / sample_deployment.version, model)
    manifest = json.loads((model / "manifest.json").read_text())
    (model / "calibrator.json").write_bytes(b"{}")
    out = tmp_path / "spark.csv"
    snapshot = ["--profiles", str(sample_deployment.profiles_dir)]
    assert _score(sample_deployment, out, "--engine", "spark", *snapshot, model=model) == 1
    assert "calibrator.json" in capsys.readouterr().err and manifest["files"]
    assert not out.exists()


@pytest.mark.slow  # the feature SQL on Spark: about a hundred stages to plan and run
def test_spark_scores_from_the_data_equal_local_scores(
    spark: SparkSession, sample_deployment: Deployment, tmp_path: Path
) -> None:
    """Without --profiles the feature SQL runs on Spark and its rows go to the partitions uncollected."""
    local, on_spark = tmp_path / "local.parquet", tmp_path / "spark.parquet"
    assert _score(sample_deployment, local) == 0
    assert _score(sample_deployment, on_spark, "--engine", "spark") == 0
    got, expected = pq.read_table(on_spark), pq.read_table(local)
    assert got.schema == expected.schema and got.equals(expected) and got.num_rows > 3000


def test_unnesting_gives_one_row_per_struct_beside_its_cardholder() -> None:
    structs = pa.array(
        [
            [{"benefit_id": "a", "used": True}, {"benefit_id": "b", "used": False}],
            None,
            [{"benefit_id": "c", "used": True}],
        ]
    )
    table = pa.table({"cardholder_id": ["C1", "C2", "C3"], HISTORY_COLUMN: structs})
    rows = _unnest(table, HISTORY_COLUMN, ["benefit_id", "used"])
    assert rows.to_pylist() == [
        {"cardholder_id": "C1", "benefit_id": "a", "used": True},
        {"cardholder_id": "C1", "benefit_id": "b", "used": False},
        {"cardholder_id": "C3", "benefit_id": "c", "used": True},
    ]


def test_job_error_names_the_nba_error_raised_on_the_executor() -> None:
    text = "An exception was thrown\nTraceback ...\nnba.errors.ModelError: x.json: checksum differs\n"
    assert job_error(RuntimeError(text)) == "ModelError: x.json: checksum differs"
    assert job_error(RuntimeError("\n  Job aborted\nmore")) == "Job aborted"
