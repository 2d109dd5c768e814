"""A fresh `nba serve` process: once /readyz says ready, the first suggestions request is as fast as the rest.

Before the warm-up the first request after a start took ~3 s (numba's cached kernels loaded on first call,
lazy imports, the first LightGBM call) and the next ones ~2 ms. The bounds below are generous (the machine
is small and shared) but far under those 3 s.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.routes.admin import WARMING
from tests.deployment import Deployment
from tests.serving import AGENT, KEYS, serve_process, some_cardholders

pytestmark = pytest.mark.slow  # a served process (`nba serve`)

FIRST_AT_MOST_S = 0.3
FIRST_OVER_MEDIAN_AT_MOST = 10.0
FIRST_FLOOR_S = 0.05


def test_the_first_request_after_ready_is_as_fast_as_the_rest(
    sample_deployment: Deployment, tmp_path: Path
) -> None:
    cardholders = some_cardholders(sample_deployment)[:11]
    with serve_process(sample_deployment, tmp_path / "var", log_level="info") as base:
        log = (tmp_path / "var" / "serve.log").read_text()
        assert '"message": "warmed up"' in log and '"exercised": true' in log, log[-2000:]
        with httpx.Client(base_url=base, headers={"X-API-Key": AGENT}, timeout=30.0) as client:
            client.get("/healthz")  # the connection, so that only the request is timed
            seconds, shown = [], 0
            for cardholder in cardholders:
                started = time.perf_counter()
                response = client.get(f"/v1/cardholders/{cardholder}/suggestions")
                seconds.append(time.perf_counter() - started)
                assert response.status_code == 200, response.text
                shown += len(response.json()["suggestions"])
            metrics = client.get("/metrics").text
    first, median = seconds[0], statistics.median(seconds[1:])
    assert first < FIRST_AT_MOST_S, (first, median)
    # 10x the median, or 50 ms when the median is tiny: one scheduling hiccup on a shared machine is not
    # a cold path (measured cold, with this sample: 121 ms against a 2.5 ms median; 3 s on a fresh clone).
    assert first < max(FIRST_OVER_MEDIAN_AT_MOST * median, FIRST_FLOOR_S), (first, median)
    # The warm-up's decisions were neither logged nor counted: only the eleven requests' are.
    served = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("nba_suggestions_served_total{")
    )
    assert served == shown > 0
    route = 'route="/v1/cardholders/{cardholder_id}/suggestions",status="200"}'
    assert f'nba_http_requests_total{{method="GET",{route} 11.0' in metrics


def test_readyz_says_warming_while_the_request_path_warms(
    sample_deployment: Deployment, tmp_path: Path
) -> None:
    app = create_app(sample_deployment.settings(tmp_path, api_keys=KEYS), start_background=False)
    with TestClient(app) as client:
        assert client.get("/readyz").status_code == 200
        app.state.services.warming.set()  # as while `warm` runs in its thread after a start
        body = client.get("/readyz")
        assert body.status_code == 503
        assert body.json()["reason"] == WARMING and body.json()["model_loaded"] is True
        app.state.services.warming.clear()
        assert client.get("/readyz").status_code == 200
