"""Metrics: what the service did → Prometheus counters, histograms and gauges in the app's own registry
(counters and histograms summed across `nba serve --workers` through shared files)."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from nba.drift import FeatureShift
from nba.errors import DataError
from nba.vocab import NOT_DISCUSSED

# Request latency buckets in seconds: the suggestions budget is a few milliseconds.
LATENCY_BUCKETS: Final = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# The acceptance rates beside the training data's are over the latest this many recorded outcomes.
OUTCOME_WINDOW: Final = 2_000
# How many of the most shifted cardholder features get a PSI gauge of their own.
DRIFT_TOP_FEATURES: Final = 10
# Where prometheus_client's multiprocess mode looks for the shared files (its own variable's name).
MULTIPROC_DIR_VARIABLE: Final = "PROMETHEUS_MULTIPROC_DIR"


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


# The gauges with no labels, each read from the worker's state when scraped (`Metrics.watch`).
WATCHED_GAUGES: Final[Mapping[str, str]] = {
    "nba_model_age_seconds": "Age of the model in service.",
    "nba_profile_age_seconds": "Age of the profile snapshot in service (since its as-of).",
    "nba_decision_buffer_pending": "Decisions waiting in the local buffer for the database.",
    "nba_decisions_pending": "Decisions shown but not yet written (held in memory).",
    "nba_database_reachable": "1 while the feedback database answered this worker's last ping, else 0 (suggestions "
    "are served either way; outcomes get 503).",
    "nba_draining": "1 from SIGTERM until the worker stops (the drain interval).",
}
ARTIFACT_KINDS: Final = ("model", "profiles", "catalog")
DRIFT_BANDS: Final = ("stable", "moderate", "major")


class WorkerGauges(Collector):
    """The gauges: the state of the worker that answers the scrape (the artifacts it serves, their ages and
    drift, its decision log, database and drain), read when scraped and never written per request.

    They are not summed across workers, unlike the counters: every worker serves the same artifacts
    (save for the moment of a reload), and a worker's own queue or drain is its own.
    """

    def __init__(self) -> None:
        self.model_version: str | None = None
        self.refused: str | None = None
        self.drift: tuple[FeatureShift, ...] = ()
        self.readers: dict[str, Callable[[], float]] = {}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        info = GaugeMetricFamily(
            "nba_model_info", "The model version in service (value 1).", labels=["version"]
        )
        if self.model_version is not None:
            info.add_metric([self.model_version], 1.0)
        yield info
        for name, documentation in WATCHED_GAUGES.items():
            read = self.readers.get(name)
            yield GaugeMetricFamily(name, documentation, value=read() if read else float("nan"))
        refused = GaugeMetricFamily(
            "nba_refused_artifact",
            "1 while a newer artifact (model, profiles or catalog) named for service was refused and an "
            "older one serves; see /readyz for which and why.",
            labels=["kind"],
        )
        for kind in ARTIFACT_KINDS:
            refused.add_metric([kind], 1.0 if kind == self.refused else 0.0)
        yield refused
        features = self.drift
        yield GaugeMetricFamily(
            "nba_profile_drift_psi_max",
            "Largest population stability index (PSI) of any cardholder feature in the profile snapshot in "
            "service against the model's training data (0.1 moderate, 0.25 major shift); computed at load.",
            value=max((f.psi for f in features), default=float("nan")),
        )
        psi = GaugeMetricFamily(
            "nba_profile_drift_psi",
            f"PSI of the {DRIFT_TOP_FEATURES} most shifted cardholder features (snapshot in service against "
            "the model's training data); computed at load.",
            labels=["feature"],
        )
        for shift in features[:DRIFT_TOP_FEATURES]:
            psi.add_metric([shift.name], shift.psi)
        yield psi
        bands = GaugeMetricFamily(
            "nba_profile_drift_features",
            "Cardholder features of the snapshot in service per PSI band (stable, moderate, major).",
            labels=["band"],
        )
        if features:
            for band in DRIFT_BANDS:
                bands.add_metric([band], float(sum(f.band == band for f in features)))
        yield bands


@dataclass
class Metrics:
    """The service's metrics, registered in a registry of their own (no global state).

    Counters and histograms count what this worker did; with `nba serve --workers` they are written to
    files every worker shares (`share_counts_across_workers`), so a scrape answered by any worker sums
    them all. The gauges (`WorkerGauges`) and the recent acceptance rates (`OutcomeWindow`) are the
    answering worker's.
    """

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
        self.reloads = Counter("nba_reloads_total", "Reload attempts by result.", ["result"], registry=r)
        # The decision log on call: where do decisions go, and how long do writes take?
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
        self.contact_feed_rows = Counter(
            "nba_contact_feed_rows_total",
            "Outcomes read from the store for the contact policy (recorded by any worker or replica).",
            registry=r,
        )
        self.decision_write_seconds = Histogram(
            "nba_decision_write_seconds",
            "Time to write one batch of decisions.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
            registry=r,
        )
        self.gauges = WorkerGauges()
        self.outcome_window = OutcomeWindow()
        # This worker's own part of a scrape: with shared counts, the registry's counters are read from
        # the shared files instead (`exposition`).
        self.own = CollectorRegistry(auto_describe=True)
        for collector in (self.gauges, self.outcome_window):
            r.register(collector)
            self.own.register(collector)

        # Labelled children met on the request path, kept: `labels()` checks and locks on every call
        # (~3 µs each, five a suggestions request). The label values are few (routes, statuses, benefits).
        self._request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._suggestion_children: dict[str, Counter] = {}

    def count_request(self, method: str, route: str, status: int, elapsed_s: float) -> None:
        """One HTTP request answered: its count by route and status, and its latency by route."""
        key = (method, route, status)
        children = self._request_children.get(key)
        if children is None:
            children = self._request_children[key] = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
        children[0].inc()
        children[1].observe(elapsed_s)

    def count_suggestion(self, benefit_id: str) -> None:
        """One suggestion shown to an agent."""
        child = self._suggestion_children.get(benefit_id)
        if child is None:
            child = self._suggestion_children[benefit_id] = self.suggestions.labels(benefit_id)
        child.inc()

    def watch(self, gauge: str, read: Callable[[], float]) -> None:
        """Gauge `gauge` (one of WATCHED_GAUGES) is `read()` whenever Prometheus scrapes."""
        if gauge not in WATCHED_GAUGES:
            raise ValueError(f"`gauge` must be one of {', '.join(WATCHED_GAUGES)}, got {gauge!r}")
        self.gauges.readers[gauge] = read

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

        self.watch("nba_model_age_seconds", age(model_created))
        self.watch("nba_profile_age_seconds", age(profile_as_of))

    def set_refused(self, kind: str | None) -> None:
        self.gauges.refused = kind

    def set_model_version(self, version: str) -> None:
        self.gauges.model_version = version

    def set_drift(self, features: tuple[FeatureShift, ...], training_acceptance: Mapping[str, float]) -> None:
        """Publishes the drift measured at load; no features (nothing measured) leaves the PSI gauges empty."""
        self.gauges.drift = features
        self.outcome_window.set_training_rates(training_acceptance)

    def exposition(self) -> bytes:
        """The text a scrape gets: with counts shared across workers, every worker's counters and
        histograms summed from the shared files, then this worker's gauges; else this registry."""
        if not values_shared():
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
        return generate_latest(merged) + generate_latest(self.own)


def share_counts_across_workers(folder: Path) -> None:
    """From now on in this process (and the workers forked from it), every counter and histogram created
    writes its values to a file of the process's own in `folder` (prometheus_client's multiprocess mode),
    so that any worker's scrape sums them all; `folder` is emptied first (counts start again with the
    service, as Prometheus expects of a restarted target). Called by the supervisor before it forks.

    A worker that dies leaves its file: what it counted stays in the sums, so counters never go down.
    DataError, naming the folder, when it cannot be made or emptied.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):
            stale.unlink()
    except OSError as exc:
        raise DataError(
            f"{folder}: the workers' shared metrics cannot be kept there ({exc.strerror or exc}); "
            "it is made beside NBA_BUFFER_PATH, whose folder the service must be able to write"
        ) from exc
    os.environ[MULTIPROC_DIR_VARIABLE] = str(folder)
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]


def values_shared() -> bool:
    return MULTIPROC_DIR_VARIABLE in os.environ and getattr(values.ValueClass, "_multiprocess", False)
