"""Suggestions: a cardholder and the call's context → the talking points, logged once per call."""

from __future__ import annotations

import secrets
from typing import Annotated, Any, Final

from fastapi import APIRouter, Header, Path, Query
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from api.deps import AgentDep, ServicesDep, ServingDep
from api.schemas import ID_PATTERN, ErrorOut, SuggestionOut, SuggestionsOut
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


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


def to_call_decision(call_id: str, decision: Decision, services: ServicesDep) -> CallDecision:
    return CallDecision(
        call_id=call_id,
        cardholder_id=decision.cardholder_id,
        call_reason=decision.call_reason,
        model_version=decision.model_version,
        profile_as_of=decision.profile_as_of,
        served_at=services.clock(),
        note=decision.note,
        suggestions=tuple(ShownSuggestion.of(new_id("s"), s) for s in decision.suggestions),
    )


def to_out(call: CallDecision, outcomes: dict[str, str], closed: bool) -> SuggestionsOut:
    return SuggestionsOut.model_construct(
        call_id=call.call_id,
        cardholder_id=call.cardholder_id,
        call_reason=call.call_reason,
        model_version=call.model_version,
        profile_as_of=call.profile_as_of,
        note=call.note,
        call_closed=closed,
        suggestions=[
            SuggestionOut.model_construct(
                suggestion_id=s.suggestion_id,
                rank=s.rank,
                benefit_id=s.benefit_id,
                benefit_name=s.benefit_name,
                talking_point=s.talking_point,
                reasons=list(s.reasons),
                value_usd=s.value_usd,
                score=s.score,
                p_adopt=s.p_adopt,
                outcome=outcomes.get(s.suggestion_id),
            )
            for s in call.suggestions
        ],
    )


def _repeat(services: ServicesDep, call: CallDecision) -> SuggestionsOut:
    """The stored answer of a call asked again, with the outcomes recorded so far."""
    try:
        outcomes = services.store.current_outcomes(call.call_id)
        closed = services.store.is_closed(call.call_id)
    except UnavailableError:
        outcomes, closed = {}, False
    return to_out(call, outcomes, closed)


@router.get(
    "/v1/cardholders/{cardholder_id}/suggestions",
    response_model=SuggestionsOut,
    responses=ERRORS,
    summary="The talking points for this call",
)
async def get_suggestions(
    services: ServicesDep,
    serving: ServingDep,
    _caller: AgentDep,
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
    if call_id is not None and x_call_id is not None and call_id != x_call_id:
        raise DataError("`call_id` (query) and `X-Call-Id` (header) differ; send one")
    call_id = call_id or x_call_id
    if call_id is not None:
        # Off the event loop: it may read the database.
        earlier = await run_in_threadpool(services.log.lookup, call_id)
        if earlier is not None:
            if earlier.cardholder_id != cardholder_id:
                raise ConflictError(f"call {call_id!r} was served for another cardholder")
            repeat = await run_in_threadpool(_repeat, services, earlier)
            return Response(repeat.model_dump_json(), media_type="application/json")
    since = serving.profile_as_of_time
    decision = serving.engine.decide(
        cardholder_id, call_reason, limit, services.ledger.recent(cardholder_id, since)
    )
    call = to_call_decision(call_id or new_id("c"), decision, services)
    services.log.add(call)
    for s in call.suggestions:
        services.metrics.suggestions.labels(benefit_id=s.benefit_id).inc()
    return Response(to_out(call, {}, False).model_dump_json(), media_type="application/json")
