"""The service end to end in process: suggestions, outcomes, NPS, keys, errors, metrics, logs, reload."""

from __future__ import annotations

import asyncio
import gc
import io
import json
import logging
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.decision_log import CLAIM_DEADLINE_S
from api.deps import Services
from api.logs import JsonFormatter, get_logger
from api.main import check_for_changes, create_app
from api.serving import kept_drift, kept_model
from nba.contract._mcc import load_mcc_map
from nba.contract._tables import open_data
from nba.errors import DataError, ModelError, UnavailableError
from nba.feedback import FeedbackStore
from nba.model._bundle import load_bundle
from nba.model._registry import set_current
from nba.profiles._snapshots import compute_profile_tables, set_current_snapshot, write_snapshot
from tests.deployment import Deployment, twin_model
from tests.serving import (
    ADMIN,
    AGENT,
    KEYS,
    Clock,
    first_with_suggestions,
    services_of,
    some_cardholders,
)


class FlakyStore(FeedbackStore):
    """A real store whose database can be 'unplugged' (or made slow to find a call) by the test."""

    down = False
    slow_s = 0.0
    claim_slow_s = 0.0
    claims_tried = 0

    def _check(self) -> None:
        if self.down:
            raise UnavailableError("the feedback database is unavailable (unplugged by the test)")

    def log_decision(self, *a: Any, **k: Any) -> Any:
        self._check()
        return super().log_decision(*a, **k)

    def log_decisions(self, *a: Any, **k: Any) -> Any:
        self._check()
        return super().log_decisions(*a, **k)

    def record_outcome(self, *a: Any, **k: Any) -> Any:
        self._check()
        return super().record_outcome(*a, **k)

    def find_decision(self, *a: Any, **k: Any) -> Any:
        self._check()
        time.sleep(self.slow_s)
        return super().find_decision(*a, **k)

    def claim_decision(self, *a: Any, **k: Any) -> Any:
        self.claims_tried += 1
        self._check()
        time.sleep(self.claim_slow_s)
        return super().claim_decision(*a, **k)

    def ping(self) -> None:
        self._check()
        super().ping()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(sample_deployment: Deployment, tmp_path: Path, clock: Clock) -> Iterator[TestClient]:
    settings = sample_deployment.settings(tmp_path, api_keys=KEYS)
    store = FlakyStore(settings.database_url, clock=clock)
    # No full garbage collection at each start: it would walk all this test process holds (~0.3 s).
    app = create_app(settings, clock=clock, store=store, start_background=False, collect_at_start=False)
    with TestClient(app) as test_client:
        test_client.headers["X-API-Key"] = AGENT
        yield test_client


def test_suggestions_carry_everything_the_agent_and_the_log_need(
    client: TestClient, sample_deployment: Deployment
) -> None:
    body = first_with_suggestions(client, sample_deployment)
    assert body["model_version"] == sample_deployment.version
    assert body["profile_as_of"] == sample_deployment.as_of.isoformat()
    assert body["call_id"].startswith("c_") and body["call_closed"] is False
    assert 2 <= len(body["suggestions"]) <= 3
    for rank, s in enumerate(body["suggestions"], start=1):
        assert s["rank"] == rank and s["suggestion_id"].startswith("s_")
        assert "{" not in s["talking_point"] and len(s["talking_point"]) > 20
        assert s["value_usd"] >= 0 and 0 <= s["p_adopt"] <= 1 and s["outcome"] is None
    services = services_of(client)
    assert services.decisions.write_pending() >= 1
    stored = services.store.find_decision(body["call_id"])
    assert stored is not None
    assert [s.suggestion_id for s in stored.suggestions] == [s["suggestion_id"] for s in body["suggestions"]]
    bundle = services.state.serving.engine.bundle  # type: ignore[union-attr]
    # The cardholder's columns once for the call, the rest per suggestion: together the model's whole row.
    assert len(stored.holder_features) == 8 * len(bundle.holder.feature_names)
    assert all(
        len(stored.features_of(s)) == 8 * len(bundle.manifest.feature_names) for s in stored.suggestions
    )


def test_a_repeated_call_returns_the_same_suggestions_and_is_logged_once(
    client: TestClient, sample_deployment: Deployment
) -> None:
    body = first_with_suggestions(client, sample_deployment)
    cardholder_id, call_id = body["cardholder_id"], body["call_id"]
    services = services_of(client)
    services.decisions.write_pending()
    again = client.get(
        f"/v1/cardholders/{cardholder_id}/suggestions", params={"call_id": call_id, "limit": 5}
    )
    assert again.json()["suggestions"] == body["suggestions"]
    header = client.get(f"/v1/cardholders/{cardholder_id}/suggestions", headers={"X-Call-Id": call_id})
    assert header.json()["suggestions"] == body["suggestions"]
    assert services.decisions.write_pending() == 0
    # The given call id of a new call is kept; asked again after the process forgot it, it comes from the store.
    fresh = client.get(
        f"/v1/cardholders/{cardholder_id}/suggestions", params={"call_id": "desk-call-1"}
    ).json()
    assert fresh["call_id"] == "desk-call-1"
    services.decisions.write_pending()
    services.decisions.forget_cached()
    assert (
        client.get(f"/v1/cardholders/{cardholder_id}/suggestions", params={"call_id": "desk-call-1"}).json()[
            "suggestions"
        ]
        == fresh["suggestions"]
    )
    other = some_cardholders(sample_deployment)[-1]
    clash = client.get(f"/v1/cardholders/{other}/suggestions", params={"call_id": call_id})
    assert clash.status_code == 409
    assert clash.json()["detail"] == f"call {call_id!r} was served for another cardholder"


def test_outcomes_are_idempotent_changeable_while_open_and_final_once_closed(
    client: TestClient, sample_deployment: Deployment, clock: Clock
) -> None:
    body = first_with_suggestions(client, sample_deployment)
    first, second = (s["suggestion_id"] for s in body["suggestions"][:2])
    url = f"/v1/suggestions/{first}/outcome"
    one = client.post(url, json={"outcome": "declined", "decline_reason": "not now", "agent_id": "a7"})
    assert one.status_code == 200 and one.json()["changed"] is False
    assert client.post(url, json={"outcome": "declined"}).json()["changed"] is False
    changed = client.post(url, json={"outcome": "accepted"})
    assert changed.json()["changed"] is True and changed.json()["outcome"] == "accepted"
    again = client.get(
        f"/v1/cardholders/{body['cardholder_id']}/suggestions", params={"call_id": body["call_id"]}
    ).json()
    assert again["suggestions"][0]["outcome"] == "accepted"
    clock.advance(minutes=31)
    late = client.post(url, json={"outcome": "declined"})
    assert late.status_code == 409
    assert client.post(url, json={"outcome": "accepted"}).status_code == 200  # the same outcome is no change
    assert client.post(f"/v1/suggestions/{second}/outcome", json={"outcome": "declined"}).status_code == 409


def test_nps_is_recorded_once_and_closes_the_call(client: TestClient, sample_deployment: Deployment) -> None:
    body = first_with_suggestions(client, sample_deployment)
    suggestion = body["suggestions"][0]["suggestion_id"]
    assert (
        client.post(f"/v1/suggestions/{suggestion}/outcome", json={"outcome": "accepted"}).status_code == 200
    )
    nps = client.post(f"/v1/calls/{body['call_id']}/nps", json={"score": 9})
    assert nps.status_code == 200 and nps.json()["score"] == 9
    assert client.post(f"/v1/calls/{body['call_id']}/nps", json={"score": 9}).status_code == 200
    assert client.post(f"/v1/calls/{body['call_id']}/nps", json={"score": 3}).status_code == 409
    assert (
        client.post(f"/v1/suggestions/{suggestion}/outcome", json={"outcome": "declined"}).status_code == 409
    )
    again = client.get(
        f"/v1/cardholders/{body['cardholder_id']}/suggestions", params={"call_id": body["call_id"]}
    )
    assert again.json()["call_closed"] is True


def test_a_decline_takes_the_benefit_off_the_next_call_at_once(
    client: TestClient, sample_deployment: Deployment
) -> None:
    body = first_with_suggestions(client, sample_deployment)
    declined = body["suggestions"][0]
    client.post(f"/v1/suggestions/{declined['suggestion_id']}/outcome", json={"outcome": "declined"})
    next_call = client.get(
        f"/v1/cardholders/{body['cardholder_id']}/suggestions", params={"limit": 10}
    ).json()
    assert declined["benefit_id"] not in {s["benefit_id"] for s in next_call["suggestions"]}


def test_sensitive_calls_pitch_nothing_and_say_why(client: TestClient, sample_deployment: Deployment) -> None:
    cardholder_id = some_cardholders(sample_deployment)[0]
    body = client.get(f"/v1/cardholders/{cardholder_id}/suggestions", params={"call_reason": "fraud"}).json()
    assert body["suggestions"] == [] and body["note"] == "nothing is pitched on fraud calls"


BAD_REQUESTS: list[tuple[str, str, dict[str, Any], int, str, str]] = [
    (
        "GET",
        "/v1/cardholders/bad id!/suggestions",
        {},
        422,
        "invalid_request",
        "`cardholder_id` (path): String should match pattern",
    ),
    (
        "GET",
        "/v1/cardholders/" + "x" * 65 + "/suggestions",
        {},
        422,
        "invalid_request",
        "`cardholder_id` (path)",
    ),
    (
        "GET",
        "/v1/cardholders/CH/suggestions?limit=0",
        {},
        422,
        "invalid_request",
        "`limit` (query): Input should be greater than or equal to 1",
    ),
    (
        "GET",
        "/v1/cardholders/CH/suggestions?limit=11",
        {},
        422,
        "invalid_request",
        "`limit` (query): Input should be less than or equal to 10",
    ),
    (
        "GET",
        "/v1/cardholders/CH/suggestions?call_reason=sales",
        {},
        422,
        "invalid_request",
        "`call_reason` (query): Input should be",
    ),
    ("GET", "/v1/cardholders/CH/suggestions?call_id=a%20b", {}, 422, "invalid_request", "`call_id` (query)"),
    (
        "GET",
        "/v1/cardholders/nobody/suggestions",
        {},
        404,
        "unknown_cardholder",
        "cardholder 'nobody' is not in the profile snapshot",
    ),
    (
        "POST",
        "/v1/suggestions/s_unknown/outcome",
        {"json": {"outcome": "accepted"}},
        404,
        "unknown_suggestion",
        "s_unknown",
    ),
    (
        "POST",
        "/v1/suggestions/s_1/outcome",
        {"json": {"outcome": "maybe"}},
        422,
        "invalid_request",
        "`outcome` (body): Input should be",
    ),
    (
        "POST",
        "/v1/suggestions/s_1/outcome",
        {"json": {"outcome": "accepted", "extra": 1}},
        422,
        "invalid_request",
        "`extra` (body)",
    ),
    (
        "POST",
        "/v1/suggestions/s_1/outcome",
        {"content": b"outcome=accepted", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
        415,
        "unsupported_media_type",
        "send the body as application/json",
    ),
    (
        "POST",
        "/v1/suggestions/s_1/outcome",
        {"content": b"{" + b" " * 20000 + b"}", "headers": {"Content-Type": "application/json"}},
        413,
        "body_too_large",
        "larger than 16384 bytes",
    ),
    (
        "POST",
        "/v1/suggestions/s_1/outcome",
        {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
        422,
        "invalid_json",
        "request body is not valid JSON: Expecting property name enclosed in double quotes at line 1 column 2",
    ),
    (
        "POST",
        "/v1/calls/c_1/nps",
        {"content": b'{\n  "score": 9,\n}', "headers": {"Content-Type": "application/json"}},
        422,
        "invalid_json",
        "request body is not valid JSON: Expecting property name enclosed in double quotes at line 3 column 1",
    ),
    (
        "POST",
        "/v1/calls/c_1/nps",
        {"json": {"score": 11}},
        422,
        "invalid_request",
        "`score` (body): Input should be less than or equal to 10",
    ),
    ("POST", "/v1/calls/c_unknown/nps", {"json": {"score": 7}}, 404, "unknown_call", "c_unknown"),
    ("GET", "/v1/nowhere", {}, 404, "not_found", "Not Found"),
    ("DELETE", "/v1/model", {}, 405, "method_not_allowed", "Method Not Allowed"),
]


@pytest.mark.parametrize(("method", "url", "kwargs", "status", "code", "detail"), BAD_REQUESTS)
def test_bad_input_is_a_clear_json_error_never_a_500(
    client: TestClient, method: str, url: str, kwargs: dict[str, Any], status: int, code: str, detail: str
) -> None:
    if url.startswith("/v1/cardholders/CH/"):
        url = url.replace("CH", "nobody")
    response = client.request(method, url, **kwargs)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code, body
    assert detail in body["detail"]
    assert body["request_id"] == response.headers["X-Request-Id"]


def test_keys_and_roles(client: TestClient, sample_deployment: Deployment) -> None:
    cardholder_id = some_cardholders(sample_deployment)[0]
    url = f"/v1/cardholders/{cardholder_id}/suggestions"
    missing = client.get(url, headers={"X-API-Key": ""})
    assert missing.status_code == 401 and "missing API key" in missing.json()["detail"]
    assert client.get(url, headers={"X-API-Key": "wrong"}).status_code == 401
    assert client.get(url, headers={"X-API-Key": ADMIN}).status_code == 200
    forbidden = client.get("/v1/model")
    assert forbidden.status_code == 403 and "needs admin" in forbidden.json()["detail"]
    assert client.post("/v1/admin/reload").status_code == 403
    model = client.get("/v1/model", headers={"X-API-Key": ADMIN}).json()
    assert model["version"] == sample_deployment.version and "auc" in json.dumps(model["metrics"])
    assert model["scorer"] == "tree_walk"


def test_production_mode_refuses_to_start_without_keys(sample_deployment: Deployment, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="production mode needs API keys"):
        create_app(sample_deployment.settings(tmp_path, production=True))
    bad = sample_deployment.settings(tmp_path, api_keys='[{"name": "x", "role": "root", "sha256": "00"}]')
    with pytest.raises(DataError, match=r"NBA_API_KEYS: entry 0.role"):
        create_app(bad)


def test_database_down_still_serves_buffers_and_loses_nothing(
    client: TestClient, sample_deployment: Deployment
) -> None:
    services = services_of(client)
    store: FlakyStore = services.store  # type: ignore[assignment]
    store.down = True
    body = first_with_suggestions(client, sample_deployment)
    services.decisions.write_pending()
    assert services.decisions.buffer.pending() >= 1
    outcome = client.post(
        f"/v1/suggestions/{body['suggestions'][0]['suggestion_id']}/outcome", json={"outcome": "accepted"}
    )
    assert outcome.status_code == 503 and outcome.headers["Retry-After"] == "5"
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["database_reachable"] is False
    store.down = False
    # Requests never replay the buffer: the writer does, in the background (by hand here).
    again = client.post(
        f"/v1/suggestions/{body['suggestions'][0]['suggestion_id']}/outcome", json={"outcome": "accepted"}
    )
    assert again.status_code == 503 and again.headers["Retry-After"] == "5"
    assert services.decisions.retry_buffer(force=True) >= 1
    assert (
        client.post(
            f"/v1/suggestions/{body['suggestions'][0]['suggestion_id']}/outcome", json={"outcome": "accepted"}
        ).status_code
        == 200
    )
    assert services.decisions.buffer.pending() == 0
    assert store.find_decision(body["call_id"]) is not None
    assert client.get("/readyz").status_code == 200


def test_metrics_count_requests_suggestions_and_outcomes(
    client: TestClient, sample_deployment: Deployment
) -> None:
    body = first_with_suggestions(client, sample_deployment)
    s = body["suggestions"][0]
    client.post(f"/v1/suggestions/{s['suggestion_id']}/outcome", json={"outcome": "accepted"})
    text = client.get("/metrics").text
    assert f'nba_suggestions_served_total{{benefit_id="{s["benefit_id"]}"}}' in text
    assert f'nba_outcomes_total{{benefit_id="{s["benefit_id"]}",outcome="accepted"}} 1.0' in text
    assert 'route="/v1/cardholders/{cardholder_id}/suggestions"' in text
    assert f'nba_model_info{{version="{sample_deployment.version}"}} 1.0' in text
    assert "nba_profile_age_seconds" in text and "nba_model_age_seconds" in text
    assert client.get("/healthz").json() == {"status": "ok"}


def test_metrics_count_what_was_stored_not_each_repeat(
    client: TestClient, sample_deployment: Deployment
) -> None:
    body = first_with_suggestions(client, sample_deployment)
    s = body["suggestions"][0]
    outcome_url = f"/v1/suggestions/{s['suggestion_id']}/outcome"
    for outcome in ("declined", "declined", "accepted", "accepted"):  # a repeat, a change, a repeat
        assert client.post(outcome_url, json={"outcome": outcome}).status_code == 200
    for _ in range(2):
        assert client.post(f"/v1/calls/{body['call_id']}/nps", json={"score": 9}).status_code == 200
    text = client.get("/metrics").text
    benefit = s["benefit_id"]
    assert f'nba_outcomes_total{{benefit_id="{benefit}",outcome="declined"}} 1.0' in text
    assert f'nba_outcomes_total{{benefit_id="{benefit}",outcome="accepted"}} 1.0' in text
    assert 'nba_nps_total{score="9"} 1.0' in text


def test_metrics_show_whether_the_decision_log_keeps_up(
    client: TestClient, sample_deployment: Deployment
) -> None:
    def pending() -> float:
        match = re.search(r"^nba_decisions_pending (\S+)$", client.get("/metrics").text, re.M)
        assert match is not None
        return float(match.group(1))

    services = services_of(client)
    services.decisions.write_pending()
    assert pending() == 0.0
    for cardholder_id in some_cardholders(sample_deployment, 3):
        client.get(f"/v1/cardholders/{cardholder_id}/suggestions")
    assert pending() == 3.0  # shown, not written yet (the tests drive the writer by hand)
    assert services.decisions.write_pending() == 3
    text = client.get("/metrics").text
    assert pending() == 0.0
    written = re.search(r'^nba_decisions_written_total\{to="store"\} (\S+)$', text, re.M)
    assert written is not None and float(written.group(1)) >= 3
    assert re.search(r"^nba_decision_write_seconds_count [1-9]", text, re.M)


def test_logs_are_json_lines_with_request_ids_and_no_ids_or_keys(
    client: TestClient, sample_deployment: Deployment
) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    get_logger().addHandler(handler)
    try:
        cardholder_id = some_cardholders(sample_deployment)[0]
        response = client.get(
            f"/v1/cardholders/{cardholder_id}/suggestions", headers={"X-Request-Id": "req-42"}
        )
    finally:
        get_logger().removeHandler(handler)
    assert response.headers["X-Request-Id"] == "req-42"
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    request = next(line for line in lines if line["message"] == "request")
    assert request["request_id"] == "req-42" and request["status"] == 200
    assert request["route"] == "/v1/cardholders/{cardholder_id}/suggestions"
    text = stream.getvalue()
    assert cardholder_id not in text and AGENT not in text


@pytest.mark.slow  # three reloads and a new profile snapshot computed from the data
def test_reload_swaps_models_and_snapshots_and_refuses_a_tampered_model(
    sample_deployment: Deployment, tmp_path: Path, clock: Clock
) -> None:
    deployment = sample_deployment.copy(tmp_path / "deploy")
    models, version = deployment.models_dir, sample_deployment.version
    app = create_app(
        deployment.settings(tmp_path, api_keys=KEYS),
        clock=clock,
        start_background=False,
    )
    with TestClient(app) as client:
        client.headers["X-API-Key"] = ADMIN
        assert client.post("/v1/admin/reload").json()["changed"] is False
        good = twin_model(models, version, clock.now)
        set_current(models, good)
        swapped = client.post("/v1/admin/reload").json()
        assert swapped == {
            "model_version": good,
            "profile_as_of": sample_deployment.as_of.isoformat(),
            "changed": True,
        }
        assert client.get("/v1/model").json()["version"] == good
        bad = twin_model(models, version, clock.now + timedelta(seconds=1))
        with (models / bad / "model.txt").open("a") as model_file:
            model_file.write("\n")
        (models / "CURRENT").write_text(bad + "\n")  # what a careless copy would do: no checks on the way
        refused = client.post("/v1/admin/reload")
        assert refused.status_code == 409
        detail = refused.json()["detail"]
        assert (
            detail.startswith("reload refused:")
            and "model.txt" in detail
            and detail.endswith(f"still serving {good}")
        )
        assert check_for_changes(services_of(client)) is False
        assert client.get("/v1/model").json()["version"] == good
        # A new profile snapshot (the nightly refresh) is picked up by the watcher, the model unchanged.
        earlier = sample_deployment.as_of - timedelta(days=7)
        (models / "CURRENT").write_text(good + "\n")
        bundle = load_bundle(models / good)
        with open_data(sample_deployment.data_dir) as data:
            write_snapshot(
                deployment.profiles_dir,
                compute_profile_tables(data, earlier, load_mcc_map(), bundle.extra),
                earlier,
            )
        set_current_snapshot(deployment.profiles_dir, earlier)
        reasoner = services_of(client).state.serving.engine.reasoner  # type: ignore[union-attr]
        assert check_for_changes(services_of(client)) is True
        # The same model: its reasoner (costly to build, on the GIL) is kept, not built again.
        assert services_of(client).state.serving.engine.reasoner is reasoner  # type: ignore[union-attr]
        model = client.get("/v1/model").json()
        assert model["profile_as_of"] == earlier.isoformat() and model["version"] == good


def test_a_database_down_at_start_up_still_serves_and_buffers(
    sample_deployment: Deployment, tmp_path: Path, clock: Clock
) -> None:
    closed_port = "postgresql://nba@127.0.0.1:9/nba"  # the discard port: nothing listens
    settings = sample_deployment.settings(tmp_path, database_url=closed_port)
    app = create_app(settings, clock=clock, start_background=False)
    with TestClient(app) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["model_loaded"] is True
        # Said in the caller's terms; the URL and the driver's error go to the log only.
        assert ready.json()["reason"] == "feedback database unavailable"
        body = first_with_suggestions(client, sample_deployment)
        services = services_of(client)
        services.decisions.write_pending()
        assert services.decisions.buffer.pending() >= 1
        outcome = client.post(
            f"/v1/suggestions/{body['suggestions'][0]['suggestion_id']}/outcome", json={"outcome": "accepted"}
        )
        assert outcome.status_code == 503 and outcome.json()["detail"].startswith(
            "feedback database unavailable"
        )
        assert "127.0.0.1" not in outcome.text


def test_a_restarted_service_still_honours_outcomes_recorded_before(
    sample_deployment: Deployment, tmp_path: Path, clock: Clock
) -> None:
    settings = sample_deployment.settings(tmp_path)
    with TestClient(create_app(settings, clock=clock, start_background=False)) as first:
        body = first_with_suggestions(first, sample_deployment)
        declined = body["suggestions"][0]
        assert (
            first.post(
                f"/v1/suggestions/{declined['suggestion_id']}/outcome", json={"outcome": "declined"}
            ).status_code
            == 200
        )
    with TestClient(create_app(settings, clock=clock, start_background=False)) as second:
        again = second.get(
            f"/v1/cardholders/{body['cardholder_id']}/suggestions", params={"limit": 10}
        ).json()
        assert again["suggestions"] and declined["benefit_id"] not in {
            s["benefit_id"] for s in again["suggestions"]
        }


def test_a_model_folder_loaded_again_is_taken_from_memory_once_its_files_check_out(
    client: TestClient, sample_deployment: Deployment, tmp_path: Path
) -> None:
    serving = services_of(client).state.serving
    assert serving is not None
    # Another app in the same process over the same folder: the same bundle, reasons and drift, not rebuilt.
    bundle, reasoner = kept_model(sample_deployment.models_dir / sample_deployment.version)
    assert bundle is serving.engine.bundle and reasoner is serving.engine.reasoner
    assert kept_drift(bundle, serving.engine.profiles) is kept_drift(bundle, serving.engine.profiles)
    models = tmp_path / "models"
    shutil.copytree(sample_deployment.models_dir, models)
    twin = twin_model(models, sample_deployment.version)
    copy, copy_reasoner = kept_model(models / twin)  # another folder (another version): loaded for itself
    assert copy is not bundle and copy.version == twin and copy_reasoner is not reasoner
    assert copy.manifest.files == bundle.manifest.files
    assert kept_model(models / twin)[0] is copy
    with (models / twin / "model.txt").open("a") as model_file:
        model_file.write("\n")
    with pytest.raises(ModelError, match=r"model\.txt: checksum mismatch"):  # checked on every load
        kept_model(models / twin)


@pytest.mark.parametrize("collect_at_start", [True, False])
def test_start_up_walks_the_whole_heap_for_garbage_only_when_asked(
    sample_deployment: Deployment, tmp_path: Path, collect_at_start: bool
) -> None:
    full_collections = []

    def seen(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == 2:
            full_collections.append(info)

    app = create_app(
        sample_deployment.settings(tmp_path), start_background=False, collect_at_start=collect_at_start
    )
    gc.disable()  # no collection of the collector's own: only the ones start-up asks for are seen
    gc.callbacks.append(seen)
    try:
        with TestClient(app) as started:
            assert started.get("/readyz").json()["ready"] is True
            assert gc.get_freeze_count() > 0  # frozen either way
    finally:
        gc.callbacks.remove(seen)
        gc.enable()
    assert len(full_collections) == (1 if collect_at_start else 0)


def test_new_ids_are_unique_and_grow_with_time_so_the_store_appends_them() -> None:
    from api.routes.suggestions import new_ids

    batches = [new_ids(4) for _ in range(2000)]
    ids = [i for batch in batches for i in batch]
    assert len(set(ids)) == len(ids) and all(re.fullmatch(r"[0-9a-f]{28}", i) for i in ids)
    stamps = [batch[0][:12] for batch in batches]
    assert stamps == sorted(stamps)
    assert all(len({i[:12] for i in batch}) == 1 for batch in batches)  # one time per call


def test_the_fast_path_answers_what_it_can_judge_and_hands_the_rest_on_unjudged(
    client: TestClient, sample_deployment: Deployment
) -> None:
    from api.routes.suggestions import SUGGESTIONS_PATH, SuggestionsFastPath, router

    services = services_of(client)
    route = next(r for r in router.routes if getattr(r, "path", None) == SUGGESTIONS_PATH)
    handed_on: list[str] = []

    async def the_route(scope: dict[str, Any], receive: Any, send: Any) -> None:
        handed_on.append(f"{scope['method']} {scope['path']}?{scope['query_string'].decode()}")
        await send({"type": "http.response.start", "status": 599, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    fast = SuggestionsFastPath(the_route, services, route)

    def ask(
        path: str, query: str = "", key: str | None = AGENT, method: str = "GET", **headers: str
    ) -> tuple[int, str]:
        sent: list[dict[str, Any]] = []
        raw = [(b"x-api-key", key.encode())] if key is not None else []
        raw += [(name.replace("_", "-").encode(), value.encode()) for name, value in headers.items()]
        scope = {
            "type": "http",
            "method": method,
            "path": path,
            "query_string": query.encode(),
            "headers": raw,
        }

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b""}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        asyncio.run(fast(scope, receive, send))
        status = int(sent[0]["status"])
        if status == 599:
            return status, ""
        assert scope["route"] is route  # RequestContext labels the metrics by its template
        body = json.loads(sent[1]["body"])
        if status == 200:
            assert "suggestions" in body
            return status, ""
        return status, body["detail"]

    cardholder = some_cardholders(sample_deployment)[0]
    path = f"/v1/cardholders/{cardholder}/suggestions"
    assert ask(path) == (200, "")
    assert ask(path, "call_reason=travel_notice&limit=2&call_id=desk-1") == (200, "")
    assert ask(path, "", x_call_id="desk-2") == (200, "")
    assert handed_on == []
    # Errors raised before anything is logged are answered here, in the one error format.
    assert ask(path, key=None) == (401, "missing API key: send it in the X-API-Key header")
    assert ask(path, key="wrong") == (401, "unknown API key")
    assert ask(path, "call_id=desk-1&", x_call_id="desk-9") == (
        422,
        "`call_id` (query) and `X-Call-Id` (header) differ; send one",
    )
    assert ask(path, "call_id=desk-1") == (200, "")  # a repeat, answered as first served
    other = some_cardholders(sample_deployment)[1]
    assert ask(f"/v1/cardholders/{other}/suggestions", "call_id=desk-1") == (
        409,
        "call 'desk-1' was served for another cardholder",
    )
    assert ask("/v1/cardholders/nobody-here/suggestions") == (
        404,
        "cardholder 'nobody-here' is not in the profile snapshot",
    )
    assert handed_on == []
    # Input it cannot judge cheaply goes on to the route, which checks the key first as every route does.
    for query in ("limit=11", "limit=two", "call_reason=chat", "limit=1&limit=2", "page=2", "call_id=a%20b"):
        assert ask(path, query) == (599, ""), query
    assert ask("/v1/cardholders/a b/suggestions") == (599, "")
    assert ask(path, method="POST") == (599, "")
    assert ask("/v1/model") == (599, "")
    assert len(handed_on) == 9


def test_a_suggestions_request_is_claimed_decided_and_key_checked_at_most_once(
    client: TestClient, sample_deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = services_of(client)
    engine = services.state.serving.engine  # type: ignore[union-attr]
    counts = {"identify": 0, "claim": 0, "decide": 0}

    def counted(name: str, method: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            counts[name] += 1
            return method(*args, **kwargs)

        return call

    monkeypatch.setattr(services.keys, "identify", counted("identify", services.keys.identify))
    monkeypatch.setattr(services.decisions, "claim", counted("claim", services.decisions.claim))
    monkeypatch.setattr(engine, "decide", counted("decide", engine.decide))

    def asked(url: str, status: int, **headers: str) -> dict[str, int]:
        counts.update(identify=0, claim=0, decide=0)
        answer = client.get(url, headers=headers)
        assert answer.status_code == status, answer.text
        return dict(counts)

    first, other = some_cardholders(sample_deployment)[:2]
    # A first request: decided, then claimed (one round trip to the store, no look-up before it).
    assert asked(f"/v1/cardholders/{first}/suggestions?call_id=once-1", 200) == {
        "identify": 1,
        "claim": 1,
        "decide": 1,
    }
    assert asked("/v1/cardholders/nobody-here/suggestions?call_id=once-2", 404) == {
        "identify": 1,
        "claim": 0,
        "decide": 1,
    }
    # This worker answered the call: the conflict is seen in memory, before anything is decided.
    assert asked(f"/v1/cardholders/{other}/suggestions?call_id=once-1", 409) == {
        "identify": 1,
        "claim": 0,
        "decide": 0,
    }
    assert asked(f"/v1/cardholders/{first}/suggestions?call_id=once-1", 200) == {
        "identify": 1,
        "claim": 0,
        "decide": 0,
    }
    # Served elsewhere (another replica, or before a restart): decided, and the claim finds it stored.
    services.decisions.write_pending()
    services.decisions.forget_cached()
    assert asked(f"/v1/cardholders/{other}/suggestions?call_id=once-1", 409) == {
        "identify": 1,
        "claim": 1,
        "decide": 1,
    }
    assert asked(f"/v1/cardholders/{first}/suggestions", 401, **{"X-API-Key": "wrong"}) == {
        "identify": 1,
        "claim": 0,
        "decide": 0,
    }
    assert asked(f"/v1/cardholders/{first}/suggestions?limit=99", 422) == {
        "identify": 1,
        "claim": 0,
        "decide": 0,
    }


def test_the_suggestions_route_takes_its_services_from_an_overridable_dependency(
    client: TestClient, sample_deployment: Deployment
) -> None:
    from api.deps import get_services
    from api.keys import KeyRing

    url = f"/v1/cardholders/{some_cardholders(sample_deployment)[0]}/suggestions"
    assert client.get(url, headers={"X-API-Key": ""}).status_code == 401
    without_keys = replace(services_of(client), keys=KeyRing([]))  # development mode: no key needed

    async def overridden() -> Services:
        return without_keys

    client.app.dependency_overrides[get_services] = overridden  # type: ignore[attr-defined]
    try:
        answer = client.get(url, headers={"X-API-Key": ""})
        assert answer.status_code == 200, answer.text
        assert answer.json()["cardholder_id"] == some_cardholders(sample_deployment)[0]
    finally:
        client.app.dependency_overrides.clear()  # type: ignore[attr-defined]
    assert client.get(url, headers={"X-API-Key": ""}).status_code == 401


def test_a_repeat_before_the_writer_wrote_the_call_gets_the_same_answer(
    client: TestClient, sample_deployment: Deployment
) -> None:
    url = f"/v1/cardholders/{some_cardholders(sample_deployment)[0]}/suggestions"
    first = client.get(url, params={"call_id": "desk-77"})
    again = client.get(url, params={"call_id": "desk-77"})  # the writer has not run: not in the store yet
    assert first.status_code == again.status_code == 200, again.text
    assert again.json() == first.json()


def test_a_request_without_a_valid_key_is_refused_before_its_input_is_judged(
    client: TestClient, sample_deployment: Deployment
) -> None:
    url = f"/v1/cardholders/{some_cardholders(sample_deployment)[0]}/suggestions?limit=99&call_reason=chat"
    assert client.get(url, headers={"X-API-Key": ""}).status_code == 401
    assert client.get(url, headers={"X-API-Key": "wrong"}).status_code == 401
    assert client.get("/v1/cardholders/a%20b/suggestions", headers={"X-API-Key": "wrong"}).status_code == 401
    judged = client.get(url, headers={"X-API-Key": ADMIN})
    assert judged.status_code == 422 and "call_reason" in judged.text
    for path, body in (
        ("/v1/suggestions/s_1/outcome", {"outcome": "maybe"}),
        ("/v1/calls/c_1/nps", {"score": 11}),
    ):
        assert client.post(path, json=body, headers={"X-API-Key": "wrong"}).status_code == 401, path
        assert client.post(path, json=body, headers={"X-API-Key": ADMIN}).status_code == 422, path


def _a_call_only_the_store_knows(
    client: TestClient, deployment: Deployment
) -> tuple[Services, FlakyStore, str, dict[str, Any]]:
    """A call answered and written, then forgotten by this process (another replica, or a restart), the
    store's reads made ten times slower than their 5 ms deadline: the services, the store, the call's URL
    and its first answer."""
    services = services_of(client)
    store: FlakyStore = services.store  # type: ignore[assignment]
    store.reads_are_local = False  # as for PostgreSQL: a read runs on a thread, with a deadline
    cardholder = first_with_suggestions(client, deployment)["cardholder_id"]
    url = f"/v1/cardholders/{cardholder}/suggestions?call_id=DESK-1"
    first = client.get(url).json()
    services.decisions.write_pending()
    services.decisions.forget_cached()  # another replica, or a restart: only the store knows the call
    store.slow_s = 0.05  # ten times the look-up's 5 ms deadline
    return services, store, url, first


def test_a_call_only_the_store_knows_is_claimed_and_answered_as_first_stored(
    client: TestClient, sample_deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The claim answers in time here, whatever a loaded test machine does to a thread (it once took over
    # the 250 ms on a machine at load 11): the late claim is the next test's.
    monkeypatch.setattr("api.decision_log.CLAIM_DEADLINE_S", 5.0)
    services, store, url, first = _a_call_only_the_store_knows(client, sample_deployment)
    tried = store.claims_tried
    late_before = services.metrics.registry.get_sample_value("nba_call_lookups_late_total") or 0.0
    later = client.get(url).json()
    # Decided again, but the claim finds the call stored: the answer is the first one, nothing new kept.
    assert later == first
    # One round trip: the claim, with no (slow) look-up of the call before it.
    assert store.claims_tried == tried + 1
    late = services.metrics.registry.get_sample_value("nba_call_lookups_late_total")
    assert (late or 0.0) == late_before
    assert services.metrics.registry.get_sample_value("nba_call_claims_late_total") == 0
    assert services.decisions.write_pending() == 0


def test_a_call_asked_while_no_claim_can_be_made_is_read_from_the_store_and_answered_as_first_stored(
    client: TestClient, sample_deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Claims pause long enough for a loaded machine, and the read is inline (SQLite's): no thread's 5 ms.
    monkeypatch.setattr("api.decision_log.CLAIM_BACKOFF_S", 60.0)
    services, store, url, first = _a_call_only_the_store_knows(client, sample_deployment)
    store.slow_s = 0.0
    store.reads_are_local = True
    store.claim_slow_s = CLAIM_DEADLINE_S + 0.1
    assert client.get(url.replace("DESK-1", "DESK-2")).status_code == 200  # late: claims pause
    assert services.metrics.registry.get_sample_value("nba_call_claims_late_total") == 1
    tried = store.claims_tried
    assert client.get(url).json() == first
    assert store.claims_tried == tried  # no claim was tried: the store was read instead


def test_a_call_neither_found_nor_claimed_in_time_is_answered_anew_and_the_first_stored_wins(
    client: TestClient, sample_deployment: Deployment
) -> None:
    services, store, url, first = _a_call_only_the_store_knows(client, sample_deployment)
    store.claim_slow_s = CLAIM_DEADLINE_S + 0.1
    late_before = services.metrics.registry.get_sample_value("nba_call_lookups_late_total") or 0.0
    later = client.get(url).json()
    assert later["call_id"] == "DESK-1"
    assert {s["suggestion_id"] for s in later["suggestions"]}.isdisjoint(
        s["suggestion_id"] for s in first["suggestions"]
    )
    # Nothing was read before the claim: the late claim alone made this a new decision.
    late = services.metrics.registry.get_sample_value("nba_call_lookups_late_total")
    assert (late or 0.0) == late_before
    assert services.metrics.registry.get_sample_value("nba_call_claims_late_total") == 1
    store.slow_s = store.claim_slow_s = 0.0
    services.decisions.write_pending()
    # The store keeps the first decision as the call; an outcome on the later one counts for it.
    stored = store.find_decision("DESK-1")
    assert stored is not None and [s.suggestion_id for s in stored.suggestions] == [
        s["suggestion_id"] for s in first["suggestions"]
    ]
    outcome = client.post(
        f"/v1/suggestions/{later['suggestions'][0]['suggestion_id']}/outcome", json={"outcome": "accepted"}
    )
    assert outcome.status_code == 200
    same_benefit = {s["benefit_id"]: s["suggestion_id"] for s in first["suggestions"]}
    expected = same_benefit.get(
        later["suggestions"][0]["benefit_id"], first["suggestions"][0]["suggestion_id"]
    )
    assert outcome.json()["suggestion_id"] == expected
    assert client.get(url).json()["call_id"] == "DESK-1"
