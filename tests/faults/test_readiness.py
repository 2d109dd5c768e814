"""Readiness and errors tell the truth in the caller's terms: which model serves, what was refused and why,
with no database URL, driver error or file-system path in an answer (the log has the detail, no password)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.logs import JsonFormatter, get_logger
from api.main import check_for_changes, create_app
from api.serving import without_paths
from nba.model._registry import set_current
from tests.deployment import Deployment, twin_model
from tests.serving import (
    ADMIN,
    AGENT,
    KEYS,
    Clock,
    first_with_suggestions,
    services_of,
)


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    get_logger().addHandler(handler)
    try:
        yield stream
    finally:
        get_logger().removeHandler(handler)


def refused_gauge(client: TestClient, kind: str) -> float:
    text = client.get("/metrics").text
    line = next(
        line for line in text.splitlines() if line.startswith(f'nba_refused_artifact{{kind="{kind}"}}')
    )
    return float(line.split()[-1])


def test_a_refused_model_keeps_the_service_ready_and_readyz_says_which_serves_and_why(
    sample_deployment: Deployment, tmp_path: Path, log_lines: io.StringIO
) -> None:
    clock = Clock()
    deployment = sample_deployment.copy(tmp_path / "deploy")
    models, good = deployment.models_dir, sample_deployment.version
    settings = deployment.settings(tmp_path, api_keys=KEYS)
    with TestClient(create_app(settings, clock=clock, start_background=False)) as client:
        client.headers["X-API-Key"] = ADMIN
        assert client.get("/readyz").json()["refused"] is None and refused_gauge(client, "model") == 0
        bad = twin_model(models, good, clock.now + timedelta(seconds=1))
        with (models / bad / "model.txt").open("a") as model_file:
            model_file.write("\n")
        (models / "CURRENT").write_text(bad + "\n")

        assert check_for_changes(services_of(client)) is False  # the watcher: refused, logged once
        assert check_for_changes(services_of(client)) is False  # and not loaded again every step
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        body = ready.json()
        assert body["ready"] is True and body["model_version"] == good
        assert body["profile_as_of"] == sample_deployment.as_of.isoformat()
        assert body["refused"]["kind"] == "model" and body["refused"]["name"] == bad
        assert body["refused"]["reason"].startswith("model.txt: checksum mismatch")
        assert refused_gauge(client, "model") == 1 and refused_gauge(client, "profiles") == 0

        reload = client.post("/v1/admin/reload")
        assert reload.status_code == 409
        detail = reload.json()["detail"]
        assert detail.startswith(
            f"reload refused: the new model {bad} was refused: model.txt: checksum mismatch"
        )
        assert detail.endswith(f"still serving {good}")
        for answer in (ready.text, reload.text):
            assert str(tmp_path) not in answer and "/models/" not in answer
        refusals = [json.loads(line) for line in log_lines.getvalue().splitlines()]
        refusals = [line for line in refusals if line["message"] == "reload refused"]
        assert len(refusals) == 2  # the watcher's first step and the admin's reload
        assert str(models / bad) in refusals[0]["detail"]  # the log has where

        set_current(models, good)  # CURRENT put back: nothing is refused any more
        assert check_for_changes(services_of(client)) is False
        assert client.get("/readyz").json()["refused"] is None and refused_gauge(client, "model") == 0


def test_nothing_to_serve_is_said_without_paths(sample_deployment: Deployment, tmp_path: Path) -> None:
    settings = sample_deployment.settings(tmp_path, models_dir=tmp_path / "empty-models")
    with TestClient(create_app(settings, start_background=False)) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["reason"].startswith("no model in service: the models folder has no CURRENT")
        answer = client.get("/v1/cardholders/someone/suggestions")
        assert answer.status_code == 503 and answer.json()["detail"] == ready.json()["reason"]
        assert str(tmp_path) not in ready.text + answer.text


def test_a_database_outage_is_said_in_the_callers_terms_and_logged_without_its_password(
    sample_deployment: Deployment, tmp_path: Path, log_lines: io.StringIO
) -> None:
    secret_url = "postgresql://nba:pa55-w0rd@127.0.0.1:9/nba_db"  # the discard port: nothing listens
    settings = sample_deployment.settings(tmp_path, database_url=secret_url)
    with TestClient(create_app(settings, clock=Clock(), start_background=False)) as client:
        client.headers["X-API-Key"] = AGENT
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["reason"] == "feedback database unavailable"
        body = first_with_suggestions(client, sample_deployment)
        outcome = client.post(
            f"/v1/suggestions/{body['suggestions'][0]['suggestion_id']}/outcome", json={"outcome": "accepted"}
        )
        assert outcome.status_code == 503 and outcome.headers["Retry-After"] == "5"
        assert (
            outcome.json()["detail"] == "feedback database unavailable; retry after the Retry-After seconds"
        )
        for answer in (ready.text, outcome.text):
            assert "127.0.0.1" not in answer and "nba_db" not in answer and "Connection refused" not in answer
    # Whoever writes a URL into the log (a driver's message, say), its password is masked.
    get_logger().warning("driver said", extra={"reason": "cannot reach postgresql://nba:pa55-w0rd@db:5432/x"})
    logged = log_lines.getvalue()
    assert "postgresql://nba:***@db:5432/x" in logged
    assert "127.0.0.1:9/nba_db" in logged  # the log says where
    assert "pa55-w0rd" not in logged


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("/srv/nba/models/v1: model.txt: checksum mismatch", "model.txt: checksum mismatch"),
        ("cannot read /etc/nba/catalog.yaml: denied", "cannot read …: denied"),
        ("var/profiles/2026-10-01/features.parquet: cannot read it", "…: cannot read it"),
        (
            "expected 3f9a…, got 77c1…; the file was changed",
            "expected 3f9a…, got 77c1…; the file was changed",
        ),
    ],
)
def test_without_paths_takes_out_known_folders_and_anything_like_a_path(text: str, shown: str) -> None:
    assert without_paths(text, [Path("/srv/nba/models/v1")]) == shown
