"""Closing the loop: train → serve → outcomes and NPS through the API → export → retrain on the new rows."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from nba.contract._tables import open_data
from nba.contract._validation import validate_data
from nba.model import load_bundle
from tests.deployment import Deployment
from training.cli import main
from training.presentations import load_presentations
from training.train_job import train_model
from training.training_run import TrainOptions

pytestmark = pytest.mark.slow  # retrains on the feedback it records

SERVED_AT = datetime(2026, 7, 20, 10, 0, tzinfo=UTC)  # inside the sample world, labels known by its as-of


def test_outcomes_recorded_through_the_api_come_back_as_training_rows(
    sample_deployment: Deployment, tmp_path: Path
) -> None:
    app = create_app(sample_deployment.settings(tmp_path), clock=lambda: SERVED_AT, start_background=False)
    holders = pd.read_parquet(sample_deployment.data_dir / "cardholders.parquet")["cardholder_id"][:400]
    served: dict[str, list[dict[str, object]]] = {}
    with TestClient(app) as client:
        for i, cardholder_id in enumerate(holders):
            body = client.get(
                f"/v1/cardholders/{cardholder_id}/suggestions", params={"call_id": f"API{i:05d}"}
            )
            suggestions = body.json()["suggestions"]
            if not suggestions:
                continue
            served[f"API{i:05d}"] = suggestions
            outcome = ("accepted", "declined", "already_aware", "not_discussed")[i % 4]
            posted = client.post(
                f"/v1/suggestions/{suggestions[0]['suggestion_id']}/outcome", json={"outcome": outcome}
            )
            assert posted.status_code == 200
            if i % 4 == 0:
                assert client.post(f"/v1/calls/API{i:05d}/nps", json={"score": i % 11}).status_code == 200
            if len(served) == 60:
                break
    assert len(served) == 60

    feedback = tmp_path / "feedback"
    assert (
        main(["export-feedback", "--db", f"sqlite:///{tmp_path / 'feedback.db'}", "--out", str(feedback)])
        == 0
    )
    exported = pd.read_csv(feedback / "conversations.csv")
    assert set(exported["call_id"]) == set(served)
    assert len(exported) == sum(len(s) for s in served.values())
    unmarked = exported[exported["rank"] > 1]
    assert (unmarked["outcome"] == "unmarked").all()  # shown but never marked: kept apart from not_discussed
    assert (exported.loc[exported["rank"] == 1, "outcome"] == "not_discussed").any()
    assert (exported["logging_prob"] == 1.0).all()

    # The data scientist's next month: last month's data plus what the desktop recorded.
    data = tmp_path / "data"
    shutil.copytree(sample_deployment.data_dir, data)
    for table in ("calls", "conversations", "nps"):
        before = pd.read_parquet(data / f"{table}.parquet")
        new = pd.read_csv(feedback / f"{table}.csv")
        for column in ("started_at", "presented_at", "responded_at"):
            if column in new:
                new[column] = pd.to_datetime(new[column])
        pd.concat([before, new[before.columns]], ignore_index=True).to_parquet(data / f"{table}.parquet")
    assert validate_data(data).ok
    as_of = sample_deployment.as_of
    with open_data(data) as source:
        rows = load_presentations(source, as_of).table.to_pandas()
    new_rows = rows[rows["call_id"].str.startswith("API")]
    discussed = exported[~exported["outcome"].isin(["not_discussed", "unmarked"])]
    assert set(new_rows["call_id"]) >= set(discussed["call_id"]) - _already_used(data, discussed)
    assert (new_rows["as_of"] == date(2026, 7, 20)).all()
    assert set(new_rows["outcome"]) >= {"not_discussed", "unmarked"}
    result = train_model(data, tmp_path / "models", TrainOptions())
    assert result.model_dir.exists()
    summary = load_bundle(result.model_dir).manifest.data_summary
    assert summary["rows_unmarked"] == int((rows["outcome"] == "unmarked").sum()) > 0
    # Neither not-discussed nor unmarked rows are heard: no label of the adoption model comes from them.
    assert summary["rows_heard"] == int((~rows["outcome"].isin(["not_discussed", "unmarked"])).sum())
    assert as_of - timedelta(days=30) > date(2026, 7, 20)


def _already_used(data: Path, discussed: pd.DataFrame) -> set[str]:
    """Calls whose first suggestion the cardholder had already used before (left out of training by design)."""
    usage = pd.read_parquet(data / "benefit_usage.parquet")
    merged = discussed.merge(usage, on=["cardholder_id", "benefit_id"])
    return set(merged.loc[pd.to_datetime(merged["first_used_date"]) < pd.Timestamp(2026, 7, 20), "call_id"])
