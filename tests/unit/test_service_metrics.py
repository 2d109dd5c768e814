"""The service's Prometheus metrics (api/metrics.py): gauges read from the worker's state when scraped."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from api.metrics import Metrics, share_counts_across_workers, values_shared
from nba.errors import DataError


def test_gauges_are_read_from_the_workers_state_when_scraped_and_only_known_ones_are_watched() -> None:
    metrics = Metrics()
    pending = [3.0]
    metrics.watch("nba_decisions_pending", lambda: pending[0])
    assert metrics.registry.get_sample_value("nba_decisions_pending") == 3.0
    pending[0] = 5.0
    assert metrics.registry.get_sample_value("nba_decisions_pending") == 5.0
    # Not watched: NaN, never a made-up zero.
    assert math.isnan(metrics.registry.get_sample_value("nba_draining") or 0.0)
    metrics.set_model_version("v1")
    metrics.set_model_version("v2")  # the version replaced, not added beside the old one
    assert metrics.registry.get_sample_value("nba_model_info", {"version": "v1"}) is None
    assert metrics.registry.get_sample_value("nba_model_info", {"version": "v2"}) == 1.0
    with pytest.raises(ValueError, match="`gauge` must be one of"):
        metrics.watch("nba_no_such_gauge", lambda: 1.0)
    # One worker: the exposition is the registry's own.
    assert b"nba_decisions_pending 5.0" in metrics.exposition()


def test_a_shared_metrics_folder_that_cannot_be_made_is_one_clear_error_naming_it(tmp_path: Path) -> None:
    blocker = tmp_path / "buffer.jsonl"
    blocker.write_text("")  # a file where the folder's parent should be
    folder = blocker / "nba.metrics"
    with pytest.raises(
        DataError, match=rf"^{re.escape(str(folder))}: the workers' shared metrics cannot be kept"
    ):
        share_counts_across_workers(folder)
    assert not values_shared()  # nothing switched to shared files
    assert blocker.read_text() == ""


def test_the_request_paths_kept_children_count_as_labels_would() -> None:
    metrics = Metrics()
    route = "/v1/cardholders/{cardholder_id}/suggestions"
    for status in (200, 200, 404):
        metrics.count_request("GET", route, status, 0.002)
    for benefit in ("dining_4x", "lounge", "dining_4x"):
        metrics.count_suggestion(benefit)
    sample = metrics.registry.get_sample_value
    assert sample("nba_http_requests_total", {"method": "GET", "route": route, "status": "200"}) == 2.0
    assert sample("nba_http_requests_total", {"method": "GET", "route": route, "status": "404"}) == 1.0
    assert sample("nba_http_request_duration_seconds_count", {"method": "GET", "route": route}) == 3.0
    assert sample("nba_suggestions_served_total", {"benefit_id": "dining_4x"}) == 2.0
    assert sample("nba_suggestions_served_total", {"benefit_id": "lounge"}) == 1.0
