"""The service's Prometheus metrics (api/metrics.py): gauges read from the worker's state when scraped."""

from __future__ import annotations

import math

import pytest

from api.metrics import Metrics


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
