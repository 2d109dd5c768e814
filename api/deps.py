"""Dependencies: the app's services and the caller's key → what a route handler receives."""

from __future__ import annotations

import gc
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader

from api.decision_log import ContactLedger, DatabaseHealth, DecisionLog
from api.keys import ApiKey, KeyRing, Role
from api.logs import get_logger
from api.metrics import Metrics
from api.replicas import Drain
from api.serving import ReloadResult, Serving, ServingState
from api.settings import Settings
from nba.errors import ModelError, NbaError, UnavailableError
from nba.feedback import FeedbackStore

API_KEY_HEADER = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="The caller's API key (role agent or admin)."
)


@dataclass(frozen=True, eq=False)
class Services:
    """Everything the routes use, built once by `create_app` and kept on `app.state`."""

    settings: Settings
    clock: Callable[[], datetime]
    state: ServingState
    store: FeedbackStore
    decisions: DecisionLog
    ledger: ContactLedger
    keys: KeyRing
    metrics: Metrics
    health: DatabaseHealth
    drain: Drain
    # Set while `warm_up` runs the request path once after a load: /readyz says so and is not ready yet.
    warming: threading.Event = field(default_factory=threading.Event)
    # Whether start-up walks the whole heap for garbage before freezing it (freeze_heap): off in a process
    # that builds many apps, as the tests do, where every start would walk all the process holds again.
    collect_at_start: bool = True

    def reload(self, retry_refused: bool = True) -> ReloadResult:
        """Reloads what the CURRENT files name (see ServingState.reload), counted and logged; on a change
        the new model version is published and the contact policy replays the stored outcomes.

        Raises NbaError when the new artifact is refused (the old one keeps serving): its message in the
        caller's terms; the log has the detail.
        """
        already = self.state.refused
        try:
            result = self.state.reload(retry_refused)
        except NbaError as exc:
            self.publish_refusal()
            if retry_refused or self.state.refused != already:  # the watcher says it once, not every step
                self.metrics.reloads.labels(result="refused").inc()
                get_logger().warning(
                    "reload refused", extra={"reason": str(exc), "detail": getattr(exc, "detail", str(exc))}
                )
            raise
        self.publish_refusal()
        self.metrics.reloads.labels(result="changed" if result.changed else "unchanged").inc()
        if result.changed:
            self.metrics.set_model_version(result.serving.model_version)
            self.publish_drift(result.serving)
            self.warm_ledger()
            # The young generations only: a full pass walks every call the decision log holds (18 ms
            # at 6,000, ~60 ms at its 20,000) with the GIL held, in the middle of serving.
            freeze_heap(generation=1)
            get_logger().info("reloaded", extra={"model_version": result.serving.model_version})
        return result

    def publish_refusal(self) -> None:
        """The refused-artifact gauge follows ServingState.refused."""
        refused = self.state.refused
        self.metrics.set_refused(None if refused is None else refused.kind)

    def publish_drift(self, serving: Serving) -> None:
        """The drift measured when `serving` was loaded → the metrics; why there is none goes to the log."""
        drift = serving.drift
        self.metrics.set_drift(drift.features, drift.training_acceptance)
        if drift.problem is not None:
            get_logger().warning(
                "no drift measured for the snapshot in service", extra={"reason": drift.problem}
            )

    def warm_ledger(self) -> None:
        """Outcomes the store holds since the profile snapshot's date → the contact policy (after a
        restart, or a newer snapshot). Without the database it starts from what this process records."""
        serving = self.state.serving
        if serving is None:
            return
        since = serving.profile_as_of_time
        self.ledger.forget_before(since)
        try:
            events = self.store.outcomes_since(since)
        except UnavailableError as exc:
            get_logger().warning("contact policy starts without stored outcomes", extra={"reason": str(exc)})
            return
        for cardholder_id, suggestion_id, event in events:
            self.ledger.record(cardholder_id, suggestion_id, event.benefit_id, event.outcome, event.at)
            self.metrics.outcome_window.record(suggestion_id, event.benefit_id, event.outcome)


def freeze_heap(generation: int = 2) -> None:
    """Moves what is alive now (the engine, its profiles, the imports) out of the garbage collector's way.

    The cycle collector's full passes walk every tracked object: with a model and 100,000 profiles
    loaded that is ~300,000 objects and 100+ ms with the event loop stopped, a latency spike a few
    times a minute. Frozen objects are still freed when nothing refers to them (an engine replaced by
    a reload); only a reference cycle among them would stay. `generation` is the oldest one collected
    first: below 2, older garbage cycles are frozen too (and kept) rather than walked for.
    """
    gc.collect(generation)
    gc.freeze()


# Dependencies are `async def`: FastAPI runs plain `def` ones in a worker thread, a hop per request.
async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def serving_of(services: Services) -> Serving:
    """What is in service; ModelError (503) with the reason when nothing is."""
    serving = services.state.serving
    if serving is None:
        raise ModelError(services.state.problem or "no model loaded")
    return serving


def authorize(services: Services, token: str | None, role: Role) -> ApiKey | None:
    """The caller's key if it may act as `role`; 401/403 otherwise (None: no keys, development mode)."""
    if len(services.keys) == 0:  # development mode without keys (production refuses to start so)
        return None
    if not token:  # absent or empty
        raise HTTPException(401, "missing API key: send it in the X-API-Key header")
    key = services.keys.identify(token)
    if key is None:
        raise HTTPException(401, "unknown API key")
    if not key.may(role):
        raise HTTPException(403, f"this API key's role ({key.role}) may not do this; it needs {role}")
    return key


async def get_serving(services: ServicesDep) -> Serving:
    return serving_of(services)


ServingDep = Annotated[Serving, Depends(get_serving)]


def _caller(role: Role) -> Callable[[Services, str | None], Awaitable[ApiKey | None]]:
    async def check(
        services: ServicesDep, token: Annotated[str | None, Security(API_KEY_HEADER)]
    ) -> ApiKey | None:
        return authorize(services, token, role)

    return check


AgentDep = Annotated[ApiKey | None, Depends(_caller("agent"))]
AdminDep = Annotated[ApiKey | None, Depends(_caller("admin"))]
