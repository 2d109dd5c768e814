"""Admin: the model in service and reloads; health and readiness; Prometheus metrics."""

from __future__ import annotations

from typing import Any, Final

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from api.deps import AdminDep, Services, ServicesDep, ServingDep
from api.routes.suggestions import warm
from api.schemas import BalancerHealthOut, ErrorOut, HealthOut, ModelOut, ReadyOut, RefusedOut, ReloadOut
from api.serving import ReloadResult
from nba.errors import ConflictError, NbaError

router = APIRouter()
WARMING: Final = "warming up: running the request path once before taking calls (seconds after a start)"
ADMIN_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    401: {"model": ErrorOut, "description": "missing or unknown API key"},
    403: {"model": ErrorOut, "description": "the key's role is not admin"},
    503: {"model": ErrorOut, "description": "no model loaded"},
}


@router.get("/v1/model", response_model=ModelOut, responses=ADMIN_ERRORS, tags=["admin"])
async def get_model(serving: ServingDep, _caller: AdminDep) -> ModelOut:
    """The model version in service, when it was trained, its evaluation metrics and the profile snapshot."""
    manifest = serving.engine.bundle.manifest
    return ModelOut(
        version=manifest.version,
        created_at=manifest.created_at,
        metrics=dict(manifest.metrics),
        profile_as_of=serving.profile_as_of.isoformat(),
        profile_cardholders=len(serving.engine.profiles),
        scorer=serving.engine.scorer.name,
    )


@router.post(
    "/v1/admin/reload",
    response_model=ReloadOut,
    responses={
        **ADMIN_ERRORS,
        409: {"model": ErrorOut, "description": "the new model or snapshot was refused"},
    },
    tags=["admin"],
)
async def post_reload(services: ServicesDep, _caller: AdminDep) -> ReloadOut:
    """Loads what models/CURRENT and profiles/CURRENT name beside what is serving, checks it, then swaps.

    A model or snapshot that fails its checks is refused with the reason; the old one keeps serving."""
    try:
        result = await run_in_threadpool(reload_and_warm, services)
    except NbaError as exc:
        serving = services.state.serving
        still = f"; still serving {serving.model_version}" if serving is not None else ""
        raise ConflictError(f"reload refused: {exc}{still}") from None
    return ReloadOut(
        model_version=result.serving.model_version,
        profile_as_of=result.serving.profile_as_of.isoformat(),
        changed=result.changed,
    )


def reload_and_warm(services: Services) -> ReloadResult:
    """`services.reload()`, then the request path warmed when something new serves."""
    result = services.reload()
    if result.changed:
        warm(services)
    return result


@router.get("/healthz", response_model=HealthOut, tags=["health"])
async def healthz() -> HealthOut:
    """The process is up (says nothing about the model or the database: see /readyz)."""
    return HealthOut()


DRAINING: Final = "draining: the worker received SIGTERM and stops after the drain interval"


@router.get(
    "/healthz/lb",
    response_model=BalancerHealthOut,
    responses={503: {"model": BalancerHealthOut, "description": "out of the pool, with the reason"}},
    tags=["health"],
)
async def healthz_lb(services: ServicesDep) -> JSONResponse:
    """The load balancer's check: 200 while this worker serves suggestions (a model and a profile
    snapshot loaded and its request path warm, no SIGTERM received), whatever the feedback database does
    (its state is in the body and in the `nba_database_reachable` gauge): a database outage must not take
    every replica out of the pool, since suggestions go on without it. 503 while it warms (a cold first
    call would miss the panel's deadline) and from SIGTERM on, for the drain interval."""
    serving = services.state.serving
    reachable, _ = await services.health.state()
    draining = services.drain.draining
    warming = serving is not None and services.warming.is_set()
    reason = (
        DRAINING
        if draining
        else WARMING
        if warming
        else (services.state.problem if serving is None else None)
    )
    body = BalancerHealthOut(
        serving=serving is not None and not draining and not warming,
        draining=draining,
        database_reachable=reachable,
        reason=reason,
        model_version=None if serving is None else serving.model_version,
        profile_as_of=None if serving is None else serving.profile_as_of.isoformat(),
    )
    return JSONResponse(body.model_dump(), status_code=200 if body.serving else 503)


@router.get(
    "/readyz",
    response_model=ReadyOut,
    responses={503: {"model": ReadyOut, "description": "not ready, with the reason"}},
    tags=["health"],
)
async def readyz(services: ServicesDep) -> JSONResponse:
    """Ready when a model and a profile snapshot are loaded, the request path is warm (while it warms,
    the reason says so) and the feedback database answers.

    Answers within 100 ms whatever the database does: the database's state is the last ping's (a ping
    still waiting after a second counts as unreachable). Says which model and snapshot serve, and a newer
    one that was refused (still ready: the older one serves), so whoever is on call sees it without
    reading logs. Reasons are in the caller's terms."""
    state = services.state
    serving = state.serving
    reason = None if serving is not None else state.problem
    warming = serving is not None and services.warming.is_set()
    if warming:
        reason = WARMING
    reachable, why = await services.health.state()
    reason = reason or why or (DRAINING if services.drain.draining else None)
    ready = serving is not None and reachable and not warming and not services.drain.draining
    refused = state.refused if serving is not None else None
    body = ReadyOut(
        ready=ready,
        model_loaded=serving is not None,
        profiles_loaded=serving is not None,
        database_reachable=reachable,
        reason=reason,
        model_version=None if serving is None else serving.model_version,
        profile_as_of=None if serving is None else serving.profile_as_of.isoformat(),
        refused=None
        if refused is None
        else RefusedOut(kind=refused.kind, name=refused.name, reason=refused.reason),
    )
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.get(
    "/metrics", tags=["health"], response_class=Response, responses={200: {"content": {"text/plain": {}}}}
)
async def metrics(services: ServicesDep) -> Response:
    """Prometheus metrics: requests and latency per route, suggestions and outcomes per benefit, ages."""
    return Response(services.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
