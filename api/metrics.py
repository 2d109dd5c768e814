"""Metrics: what the service did → Prometheus counters, histograms and gauges in the app's own registry."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from nba.drift import FeatureShift
from nba.vocab import NOT_DISCUSSED

# Request latency buckets in seconds: the suggestions budget is a few milliseconds.
LATENCY_BUCKETS: Final = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# The acceptance rates beside the training data's are over the latest this many recorded outcomes.
OUTCOME_WINDOW: Final = 2_000
# How many of the most shifted cardholder features get a PSI gauge of their own.
DRIFT_TOP_FEATURES: Final = 10


class OutcomeWindow(Collector):
    """The latest recorded outcomes (one per suggestion: a changed outcome replaces the earlier one) →
    per benefit, the acceptance rate among those discussed, beside the training data's rate.

    Recording is O(1) under a lock; the rates are computed when Prometheus scrapes.
    """

    def __init__(self, size: int = OUTCOME_WINDOW) -> None:
        self.size = size
        self._latest: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._heard: dict[str, int] = {}
        self._accepted: dict[str, int] = {}
        self._training: dict[str, float] = {}
        self._lock = threading.Lock()

    def _count(self, benefit_id: str, outcome: str, sign: int) -> None:
        if outcome != NOT_DISCUSSED:
            self._heard[benefit_id] = self._heard.get(benefit_id, 0) + sign
        if outcome == "accepted":
            self._accepted[benefit_id] = self._accepted.get(benefit_id, 0) + sign

    def record(self, suggestion_id: str, benefit_id: str, outcome: str) -> None:
        with self._lock:
            earlier = self._latest.pop(suggestion_id, None)
            if earlier is not None:
                self._count(*earlier, -1)
            self._latest[suggestion_id] = (benefit_id, outcome)
            self._count(benefit_id, outcome, +1)
            while len(self._latest) > self.size:
                _, dropped = self._latest.popitem(last=False)
                self._count(*dropped, -1)

    def set_training_rates(self, rates: Mapping[str, float]) -> None:
        with self._lock:
            self._training = dict(rates)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            heard = {b: n for b, n in self._heard.items() if n > 0}
            accepted = dict(self._accepted)
            training = dict(self._training)
        rate = GaugeMetricFamily(
            "nba_benefit_acceptance_rate",
            f"Share of discussed presentations accepted, per benefit: over the latest {self.size} recorded "
            "outcomes (source=recent) and in the model's training data (source=training).",
            labels=["benefit_id", "source"],
        )
        for benefit_id in sorted(heard):
            rate.add_metric([benefit_id, "recent"], accepted.get(benefit_id, 0) / heard[benefit_id])
        for benefit_id in sorted(training):
            rate.add_metric([benefit_id, "training"], training[benefit_id])
        rows = GaugeMetricFamily(
            "nba_benefit_outcomes_recent",
            "Discussed presentations per benefit among the latest recorded outcomes (how much the recent rate rests on).",
            labels=["benefit_id"],
        )
        for benefit_id in sorted(heard):
            rows.add_metric([benefit_id], heard[benefit_id])
        yield rate
        yield rows


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
        self.claims_late = Counter(
            "nba_call_claims_late_total",
            "Claims of client-supplied call ids the store did not settle within their deadline "
            "(answered unclaimed: a concurrent first request on another replica may answer differently).",
            registry=r,
        )
        # Workers and replicas (api/replicas.py): what the load balancer's health check reports.
        self.database_reachable = Gauge(
            "nba_database_reachable",
            "1 while the feedback database answered this worker's last ping, else 0 (suggestions are "
            "served either way; outcomes get 503).",
            registry=r,
        )
        self.draining = Gauge(
            "nba_draining", "1 from SIGTERM until the worker stops (the drain interval).", registry=r
        )
        self.contact_feed_rows = Counter(
            "nba_contact_feed_rows_total",
            "Outcomes read from the store for the contact policy (recorded by any worker or replica).",
            registry=r,
        )
        # Drift of the profile snapshot in service against the model's training data (set at load).
        self.drift_psi_max = Gauge(
            "nba_profile_drift_psi_max",
            "Largest population stability index (PSI) of any cardholder feature in the profile snapshot in "
            "service against the model's training data (0.1 moderate, 0.25 major shift); computed at load.",
            registry=r,
        )
        self.drift_psi = Gauge(
            "nba_profile_drift_psi",
            f"PSI of the {DRIFT_TOP_FEATURES} most shifted cardholder features (snapshot in service against "
            "the model's training data); computed at load.",
            ["feature"],
            registry=r,
        )
        self.drift_features = Gauge(
            "nba_profile_drift_features",
            "Cardholder features of the snapshot in service per PSI band (stable, moderate, major).",
            ["band"],
            registry=r,
        )
        self.outcome_window = OutcomeWindow()
        r.register(self.outcome_window)
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

    def set_drift(self, features: tuple[FeatureShift, ...], training_acceptance: Mapping[str, float]) -> None:
        """Publishes the drift measured at load; no features (nothing measured) leaves the PSI gauges empty."""
        self.drift_psi.clear()
        self.drift_features.clear()
        self.drift_psi_max.set(max((f.psi for f in features), default=float("nan")))
        for shift in features[:DRIFT_TOP_FEATURES]:
            self.drift_psi.labels(feature=shift.name).set(shift.psi)
        if features:
            for band in ("stable", "moderate", "major"):
                self.drift_features.labels(band=band).set(sum(f.band == band for f in features))
        self.outcome_window.set_training_rates(training_acceptance)
