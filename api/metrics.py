"""Metrics: what the service did → Prometheus counters, histograms and gauges in the app's own registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Request latency buckets in seconds: the suggestions budget is a few milliseconds.
LATENCY_BUCKETS: Final = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@dataclass
class Metrics:
    """The service's metrics, registered in a registry of their own (no global state)."""

    registry: CollectorRegistry = field(default_factory=lambda: CollectorRegistry(auto_describe=True))

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            "nba_http_requests_total",
            "HTTP requests by route and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "nba_http_request_duration_seconds",
            "HTTP request latency by route.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.suggestions = Counter(
            "nba_suggestions_served_total",
            "Suggestions shown to agents, by benefit.",
            ["benefit_id"],
            registry=r,
        )
        self.outcomes = Counter(
            "nba_outcomes_total",
            "Outcomes recorded, by benefit and outcome.",
            ["benefit_id", "outcome"],
            registry=r,
        )
        self.nps = Counter("nba_nps_total", "NPS answers recorded, by score.", ["score"], registry=r)
        self.model_info = Gauge(
            "nba_model_info", "The model version in service (value 1).", ["version"], registry=r
        )
        self.model_age = Gauge("nba_model_age_seconds", "Age of the model in service.", registry=r)
        self.profile_age = Gauge(
            "nba_profile_age_seconds", "Age of the profile snapshot in service (since its as-of).", registry=r
        )
        self.buffered = Gauge(
            "nba_decision_buffer_pending",
            "Decisions waiting in the local buffer for the database.",
            registry=r,
        )
        self.refused_artifact = Gauge(
            "nba_refused_artifact",
            "1 while a newer artifact (model, profiles or catalog) named for service was refused and an "
            "older one serves; see /readyz for which and why.",
            ["kind"],
            registry=r,
        )
        self.set_refused(None)
        self.reloads = Counter("nba_reloads_total", "Reload attempts by result.", ["result"], registry=r)
        # The decision log on call: is the writer keeping up, and where do decisions go?
        self.decisions_pending = Gauge(
            "nba_decisions_pending", "Decisions shown but not yet written (held in memory).", registry=r
        )
        self.decisions_written = Counter(
            "nba_decisions_written_total",
            "Decisions written by the decision log, by where they went (store or local buffer file).",
            ["to"],
            registry=r,
        )
        self.lookups_late = Counter(
            "nba_call_lookups_late_total",
            "Call-id look-ups the store did not answer within their deadline (answered as new decisions).",
            registry=r,
        )
        self.decision_write_seconds = Histogram(
            "nba_decision_write_seconds",
            "Time to write one batch of decisions.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
            registry=r,
        )

    def watch_ages(
        self,
        clock: Callable[[], datetime],
        model_created: Callable[[], datetime | None],
        profile_as_of: Callable[[], datetime | None],
    ) -> None:
        """Ages are computed when scraped, so they are right however long ago the last reload was."""

        def age(of: Callable[[], datetime | None]) -> Callable[[], float]:
            def seconds() -> float:
                then = of()
                return float("nan") if then is None else (clock() - then).total_seconds()

            return seconds

        self.model_age.set_function(age(model_created))
        self.profile_age.set_function(age(profile_as_of))

    def set_refused(self, kind: str | None) -> None:
        for each in ("model", "profiles", "catalog"):
            self.refused_artifact.labels(kind=each).set(1 if each == kind else 0)

    def set_model_version(self, version: str) -> None:
        self.model_info.clear()
        self.model_info.labels(version=version).set(1)
