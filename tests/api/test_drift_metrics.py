"""Drift in service: /metrics shows the served snapshot's PSI against the model's training data (measured at
load) and, over the latest recorded outcomes, each benefit's acceptance rate beside the training data's."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.metrics import DRIFT_TOP_FEATURES, OutcomeWindow
from nba.drift import load_drift_reference
from tests.deployment import Deployment


@pytest.fixture
def client(sample_deployment: Deployment, tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(sample_deployment.settings(tmp_path), start_background=False, collect_at_start=False)
    with TestClient(app) as test_client:
        yield test_client


def _gauge(text: str, name: str, labels: str = "") -> float | None:
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.M)
    return None if match is None else float(match.group(1))


def test_the_snapshot_in_service_is_measured_against_the_training_data_at_load(client: TestClient) -> None:
    serving = client.app.state.services.state.serving  # type: ignore[attr-defined]
    drift = serving.drift
    assert drift.problem is None and len(drift.features) == len(serving.engine.bundle.holder.feature_names)
    text = client.get("/metrics").text
    psi_max = _gauge(text, "nba_profile_drift_psi_max")
    # The sample's snapshot is the training data's own cardholders at its as-of: nothing has moved.
    assert psi_max is not None and 0.0 <= psi_max < 0.01
    per_feature = re.findall(r'^nba_profile_drift_psi\{feature="([^"]+)"\} (\S+)$', text, re.M)
    assert [name for name, _ in per_feature] == [f.name for f in drift.features[:DRIFT_TOP_FEATURES]]
    assert _gauge(text, "nba_profile_drift_features", '{band="stable"}') == len(drift.features)
    assert _gauge(text, "nba_profile_drift_features", '{band="major"}') == 0.0


def _suggestions(client: TestClient, deployment: Deployment, calls: int) -> list[dict[str, Any]]:
    import pandas as pd

    shown: list[dict[str, Any]] = []
    for cardholder_id in pd.read_parquet(deployment.data_dir / "cardholders.parquet")["cardholder_id"][:300]:
        body = client.get(f"/v1/cardholders/{cardholder_id}/suggestions").json()
        shown.extend(body["suggestions"])
        if len(shown) >= calls:
            break
    return shown


def test_recent_acceptance_is_shown_beside_the_training_rate(
    client: TestClient, sample_deployment: Deployment
) -> None:
    shown = _suggestions(client, sample_deployment, 12)
    benefit = max({s["benefit_id"] for s in shown}, key=lambda b: sum(s["benefit_id"] == b for s in shown))
    mine = [s for s in shown if s["benefit_id"] == benefit]
    outcomes = ["accepted", "declined", "not_discussed", "declined"][: len(mine)]
    for s, outcome in zip(mine, outcomes, strict=False):
        assert (
            client.post(
                f"/v1/suggestions/{s['suggestion_id']}/outcome", json={"outcome": outcome}
            ).status_code
            == 200
        )
    heard = [o for o in outcomes if o != "not_discussed"]
    text = client.get("/metrics").text
    recent = _gauge(text, "nba_benefit_acceptance_rate", f'{{benefit_id="{benefit}",source="recent"}}')
    assert recent == pytest.approx(heard.count("accepted") / len(heard))
    assert _gauge(text, "nba_benefit_outcomes_recent", f'{{benefit_id="{benefit}"}}') == len(heard)
    bundle = client.app.state.services.state.serving.engine.bundle  # type: ignore[attr-defined]
    reference = load_drift_reference(bundle.path, bundle.manifest)
    assert reference is not None
    trained = reference.benefit(benefit)
    if trained is not None and trained.acceptance_rate is not None:
        training = _gauge(
            text, "nba_benefit_acceptance_rate", f'{{benefit_id="{benefit}",source="training"}}'
        )
        assert training == pytest.approx(trained.acceptance_rate)
    # A changed outcome replaces the earlier one in the window instead of counting twice.
    first = mine[0]["suggestion_id"]
    client.post(f"/v1/suggestions/{first}/outcome", json={"outcome": "declined"})
    text = client.get("/metrics").text
    again = _gauge(text, "nba_benefit_acceptance_rate", f'{{benefit_id="{benefit}",source="recent"}}')
    assert again == pytest.approx((heard.count("accepted") - 1) / len(heard))


def test_the_outcome_window_keeps_the_latest_outcome_per_suggestion_and_forgets_the_oldest() -> None:
    window = OutcomeWindow(size=3)
    window.set_training_rates({"a": 0.25})
    window.record("s1", "a", "accepted")
    window.record("s2", "a", "declined")
    window.record("s1", "a", "declined")  # replaces s1's accepted
    window.record("s3", "b", "not_discussed")  # not discussed: not in b's rate
    window.record("s4", "a", "accepted")  # the window holds s2, s1, s3, s4 → s2 (the oldest) goes
    families = {f.name: f for f in window.collect()}
    rates = {
        (s.labels["benefit_id"], s.labels["source"]): s.value
        for s in families["nba_benefit_acceptance_rate"].samples
    }
    assert rates == {("a", "recent"): 0.5, ("a", "training"): 0.25}
    counts = {s.labels["benefit_id"]: s.value for s in families["nba_benefit_outcomes_recent"].samples}
    assert counts == {"a": 2}
