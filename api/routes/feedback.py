"""Feedback: what happened on the call (outcomes per suggestion, the NPS answer) → the feedback store."""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, Path

from api.deps import AgentDep, ServicesDep
from api.schemas import ID_PATTERN, ErrorOut, NpsIn, NpsOut, OutcomeIn, OutcomeOut

router = APIRouter(tags=["feedback"])


def _errors(*pairs: tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    common = (
        (401, "missing or unknown API key"),
        (403, "the key's role may not do this"),
        (422, "invalid input"),
    )
    return {status: {"model": ErrorOut, "description": text} for status, text in (*common, *pairs)}


OUTCOME_ERRORS: Final = _errors(
    (404, "unknown suggestion"),
    (409, "the call has ended: the outcome can no longer change"),
    (503, "the feedback database is unavailable; retry after the Retry-After seconds"),
)
NPS_ERRORS: Final = _errors(
    (404, "unknown call"),
    (409, "a different score was already recorded for this call"),
    (503, "the feedback database is unavailable; retry after the Retry-After seconds"),
)


@router.post(
    "/v1/suggestions/{suggestion_id}/outcome",
    response_model=OutcomeOut,
    responses=OUTCOME_ERRORS,
    summary="Record what happened to a suggestion",
)
async def post_outcome(
    services: ServicesDep,
    _caller: AgentDep,
    suggestion_id: Annotated[str, Path(pattern=ID_PATTERN, max_length=64, examples=["s_3f2a9c0d41e84b7c"])],
    body: OutcomeIn,
) -> OutcomeOut:
    """Idempotent: the same outcome twice is stored once; a different one replaces it while the call is
    open (the earlier stays in the history). Once the call has ended a change is 409.

    Answered within 1.5 s: 503 with Retry-After when the database does not answer in time, or when the
    suggestion's call is not stored yet (it waits in the local buffer for the database)."""
    record = await services.decisions.record_outcome(
        suggestion_id, body.outcome, body.decline_reason, body.agent_id
    )
    services.ledger.record(
        record.cardholder_id, suggestion_id, record.benefit_id, record.outcome, record.recorded_at
    )
    if record.stored:  # the metrics count what was stored: a repeat of the same outcome is not a new one
        services.metrics.outcomes.labels(benefit_id=record.benefit_id, outcome=record.outcome).inc()
        services.metrics.outcome_window.record(suggestion_id, record.benefit_id, record.outcome)
    return OutcomeOut(
        suggestion_id=record.suggestion_id,
        call_id=record.call_id,
        benefit_id=record.benefit_id,
        outcome=record.outcome,  # type: ignore[arg-type]
        recorded_at=record.recorded_at,
        changed=record.changed,
    )


@router.post(
    "/v1/calls/{call_id}/nps",
    response_model=NpsOut,
    responses=NPS_ERRORS,
    summary="Record the cardholder's answer to the NPS survey",
)
async def post_nps(
    services: ServicesDep,
    _caller: AgentDep,
    call_id: Annotated[str, Path(pattern=ID_PATTERN, max_length=64, examples=["c_7d1e0b5a9f3c4e21"])],
    body: NpsIn,
) -> NpsOut:
    """How likely the cardholder is to recommend us (0–10). Recording it ends the call."""
    record = await services.decisions.record_nps(call_id, body.score)
    if record.stored:  # the same score again is an idempotent repeat, not a second answer
        services.metrics.nps.labels(score=str(record.score)).inc()
    return NpsOut(call_id=record.call_id, score=record.score, recorded_at=record.recorded_at)
