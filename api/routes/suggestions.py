"""Suggestions: a cardholder and the call's context → the talking points, logged once per call."""

from __future__ import annotations

import os
import time
from typing import Annotated, Any, Final

import orjson
from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from api.deps import API_KEY_HEADER, Services, authorize, serving_of
from api.schemas import ID_PATTERN, ErrorOut, SuggestionsOut
from nba.engine import Decision
from nba.errors import ConflictError, DataError, UnavailableError
from nba.store import CallDecision, ShownSuggestion
from nba.vocab import CallReason

router = APIRouter(tags=["suggestions"])

ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    status: {"model": ErrorOut, "description": text}
    for status, text in (
        (401, "missing or unknown API key"),
        (403, "the key's role may not do this"),
        (404, "unknown cardholder"),
        (409, "the call id was used for another cardholder"),
        (422, "invalid input"),
        (503, "no model or profile snapshot loaded"),
    )
}
IdPath = Annotated[str, Path(pattern=ID_PATTERN, max_length=64, examples=["ch_000042"])]


def new_ids(n: int) -> list[str]:
    """`n` new ids: the time in milliseconds (12 hex digits), then 64 random bits (16 hex digits).

    Ids that grow with time are appended at the end of the store's primary-key indexes; random ones
    land all over them, and the decision-log writer's cost per call grew with the table (93 → 141 µs
    over 40,000 calls, against a flat 88 µs). The random bits come from one system call per request.
    """
    stamp = f"{time.time_ns() // 1_000_000:012x}"
    token = os.urandom(8 * n).hex()
    return [stamp + token[16 * i : 16 * (i + 1)] for i in range(n)]


def to_call_decision(call_id: str | None, decision: Decision, services: Services) -> CallDecision:
    """The decision under its call id (created when the caller gave none) and new suggestion ids."""
    ids = new_ids(len(decision.suggestions) + 1)
    return CallDecision(
        call_id=call_id or f"c_{ids[-1]}",
        cardholder_id=decision.cardholder_id,
        call_reason=decision.call_reason,
        model_version=decision.model_version,
        profile_as_of=decision.profile_as_of,
        served_at=services.clock(),
        note=decision.note,
        suggestions=tuple(
            ShownSuggestion.of(f"s_{suggestion_id}", s)
            for suggestion_id, s in zip(ids, decision.suggestions, strict=False)
        ),
    )


def answer(call: CallDecision, outcomes: dict[str, str], closed: bool) -> bytes:
    """The call's suggestions as the JSON body `SuggestionsOut` documents (the schema tests check it).

    Written with orjson from plain values: building and dumping the pydantic models cost more than
    the rest of the route.
    """
    return orjson.dumps(
        {
            "call_id": call.call_id,
            "cardholder_id": call.cardholder_id,
            "call_reason": call.call_reason,
            "model_version": call.model_version,
            "profile_as_of": call.profile_as_of,
            "suggestions": [
                {
                    "suggestion_id": s.suggestion_id,
                    "rank": s.rank,
                    "benefit_id": s.benefit_id,
                    "benefit_name": s.benefit_name,
                    "talking_point": s.talking_point,
                    "reasons": s.reasons,
                    "value_usd": s.value_usd,
                    "score": s.score,
                    "p_adopt": s.p_adopt,
                    "outcome": outcomes.get(s.suggestion_id),
                }
                for s in call.suggestions
            ],
            "note": call.note,
            "call_closed": closed,
        }
    )


def _repeat(services: Services, call: CallDecision) -> bytes:
    """The stored answer of a call asked again, with the outcomes recorded so far."""
    try:
        outcomes = services.store.current_outcomes(call.call_id)
        closed = services.store.is_closed(call.call_id)
    except UnavailableError:
        outcomes, closed = {}, False
    return answer(call, outcomes, closed)


@router.get(
    "/v1/cardholders/{cardholder_id}/suggestions",
    response_model=SuggestionsOut,
    responses=ERRORS,
    summary="The talking points for this call",
    # The key is checked in the handler (see below); the schema still says which scheme the route needs.
    openapi_extra={"security": [{API_KEY_HEADER.scheme_name: []}]},
)
async def get_suggestions(
    request: Request,
    cardholder_id: IdPath,
    call_reason: Annotated[CallReason, Query(description="why the cardholder called")] = "general",
    limit: Annotated[int, Query(ge=1, le=10, description="at most this many suggestions")] = 3,
    call_id: Annotated[
        str | None,
        Query(pattern=ID_PATTERN, max_length=64, description="the desktop's call id (else created)"),
    ] = None,
    x_call_id: Annotated[
        str | None, Header(pattern=ID_PATTERN, max_length=64, description="the call id, as a header")
    ] = None,
) -> Response:
    """Two or three benefits the card includes that the cardholder is not using, in words for the agent.

    The same `call_id` asked again returns the same suggestions (logged once) with the outcomes
    recorded so far.
    """
    # The hot route takes no FastAPI dependencies: the solver costs ~20 µs per dependency and request
    # (FastAPI 0.16x), more than the rest of the route's own work. Same checks, called directly.
    services: Services = request.app.state.services
    authorize(services, request.headers.get("x-api-key"), "agent")
    serving = serving_of(services)
    if call_id is not None and x_call_id is not None and call_id != x_call_id:
        raise DataError("`call_id` (query) and `X-Call-Id` (header) differ; send one")
    call_id = call_id or x_call_id
    if call_id is not None:
        # The desktop's call id: a repeat is answered as first served. The lookup may read the database:
        # inline for SQLite (cheaper than a thread hop, which tripled the route's cost), else off the loop.
        if services.store.reads_are_local:
            earlier = services.log.lookup(call_id)
        else:
            earlier = await run_in_threadpool(services.log.lookup, call_id)
        if earlier is not None:
            if earlier.cardholder_id != cardholder_id:
                raise ConflictError(f"call {call_id!r} was served for another cardholder")
            repeat = await run_in_threadpool(_repeat, services, earlier)
            return Response(repeat, media_type="application/json")
    since = serving.profile_as_of_time
    decision = serving.engine.decide(
        cardholder_id, call_reason, limit, services.ledger.recent(cardholder_id, since)
    )
    call = to_call_decision(call_id, decision, services)
    services.log.add(call)
    for s in call.suggestions:
        services.metrics.suggestions.labels(benefit_id=s.benefit_id).inc()
    return Response(answer(call, {}, False), media_type="application/json")
