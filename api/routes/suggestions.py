"""Suggestions: a cardholder and the call's context → the talking points, logged once per call."""

from __future__ import annotations

import os
import re
import time
from operator import attrgetter
from typing import Annotated, Any, Final
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Header, HTTPException, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field, ValidationError

from api.asgi import ASGIApp, Receive, Scope, Send
from api.deps import AgentDep, Services, ServicesDep, authorize, freeze_heap, serving_of
from api.errors import http_error_response, nba_error_response
from api.logs import get_logger
from api.schemas import ID_PATTERN, ErrorOut, QueryLimit, SuggestionOut, SuggestionsOut
from nba.decision import PUBLIC_FIELD_NAMES, Decision
from nba.errors import ConflictError, DataError, NbaError
from nba.feedback import CallDecision, ShownSuggestion
from nba.vocab import CALL_REASONS, CallReason

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


def to_call_decision(
    call_id: str | None, decision: Decision, services: Services, holder_bytes: int
) -> CallDecision:
    """The decision under its call id (created when the caller gave none) and new suggestion ids.

    The first `holder_bytes` of every suggestion's feature row are the cardholder's columns, the same for
    all of them (`Engine.holder_bytes`): the call keeps them once.
    """
    ids = new_ids(len(decision.suggestions) + 1)
    shown = decision.suggestions
    return CallDecision(
        call_id=call_id or f"c_{ids[-1]}",
        cardholder_id=decision.cardholder_id,
        call_reason=decision.call_reason,
        model_version=decision.model_version,
        profile_as_of=decision.profile_as_of,
        served_at=services.clock(),
        note=decision.note,
        shared_reasons=decision.shared_reasons,
        holder_features=shown[0].features[:holder_bytes] if shown else b"",
        suggestions=tuple(
            ShownSuggestion.of(f"s_{suggestion_id}", s, holder_bytes)
            for suggestion_id, s in zip(ids, shown, strict=False)
        ),
    )


# What the answer shows of each suggestion: SuggestionOut's fields, the suggestion record's but
# `logging_prob` (tests/api/test_schema.py holds them to it), then the outcome recorded on the call.
_SHOWN: Final = tuple(name for name in SuggestionOut.model_fields if name != "outcome")
_FIELD_OF: Final = {public: field for field, public in PUBLIC_FIELD_NAMES.items()}
_shown_of: Final = attrgetter(*(_FIELD_OF.get(name, name) for name in _SHOWN))


def _shown(suggestion: ShownSuggestion, outcomes: dict[str, str]) -> dict[str, Any]:
    shown = dict(zip(_SHOWN, _shown_of(suggestion)))  # noqa: B905 (_SHOWN names what _shown_of gets)
    shown["outcome"] = outcomes.get(suggestion.suggestion_id)
    return shown


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
            "shared_reasons": list(call.shared_reasons),
            "suggestions": [_shown(s, outcomes) for s in call.suggestions],
            "note": call.note,
            "call_closed": closed,
        }
    )


SUGGESTIONS_PATH: Final = "/v1/cardholders/{cardholder_id}/suggestions"


class SuggestionsQuery(BaseModel):
    """The route's query parameters, in one model: `SuggestionsFastPath` validates with it too."""

    call_reason: CallReason = Field("general", description="why the cardholder called")
    limit: QueryLimit | None = Field(
        None, description="at most this many suggestions (default: the engine's top_k, 3)"
    )
    call_id: str | None = Field(
        None, pattern=ID_PATTERN, max_length=64, description="the desktop's call id (else created)"
    )


async def suggestions_body(
    services: Services, cardholder_id: str, query: SuggestionsQuery, x_call_id: str | None
) -> bytes:
    """The answer to a valid request from an authorized caller: decides (or finds the call's earlier
    answer), logs it.

    Raises NbaError (404/409/422/503) before anything is logged; the decision is logged last.
    """
    serving = serving_of(services)
    call_id = query.call_id
    if call_id is not None and x_call_id is not None and call_id != x_call_id:
        raise DataError("`call_id` (query) and `X-Call-Id` (header) differ; send one")
    call_id = call_id or x_call_id
    if call_id is not None:
        # The desktop's call id: a repeat this worker answered is answered from memory as first served.
        # Any other is decided, then claimed in the store (below), whose answer is the call's first
        # decision when there is one: one round trip for a first request, a decision thrown away for a
        # repeat first served elsewhere.
        earlier = services.decisions.cached(call_id)
        if earlier is not None:
            _check_cardholder(earlier, cardholder_id)
            return answer(earlier, *await services.decisions.call_state(call_id))
    since = serving.profile_as_of_time
    decision = serving.engine.decide(
        cardholder_id, query.call_reason, query.limit, services.ledger.recent(cardholder_id, since)
    )
    call = to_call_decision(call_id, decision, services, serving.engine.holder_bytes)
    if call_id is None:  # a call id made here is new everywhere: nothing to arbitrate
        services.decisions.add(call)
    else:
        # The desktop's call id may be asked on another replica at the same moment: the store's insert
        # decides whose decision is the call, and both answer it.
        claim = await services.decisions.claim(call)
        if not claim.won:
            _check_cardholder(claim.decision, cardholder_id)
            return answer(claim.decision, claim.outcomes, claim.closed)
    body = answer(call, {}, False)
    for s in call.suggestions:
        services.metrics.count_suggestion(s.benefit_id)
    return body


def _check_cardholder(served: CallDecision, cardholder_id: str) -> None:
    """ConflictError when a call already served (by this worker or another) was for another cardholder."""
    if served.cardholder_id != cardholder_id:
        raise ConflictError(f"call {served.call_id!r} was served for another cardholder")


@router.get(
    SUGGESTIONS_PATH,
    response_model=SuggestionsOut,
    responses=ERRORS,
    summary="The talking points for this call",
)
async def get_suggestions(
    request: Request,
    services: ServicesDep,
    # The key first, as on every route: a caller without one learns nothing from 422s about the input.
    _caller: AgentDep,
    cardholder_id: IdPath,
    query: Annotated[SuggestionsQuery, Query()],
    x_call_id: Annotated[
        str | None, Header(pattern=ID_PATTERN, max_length=64, description="the call id, as a header")
    ] = None,
) -> Response:
    """Two or three benefits the card includes that the cardholder is not using, in words for the agent.

    The same `call_id` asked again returns the same suggestions (logged once) with the outcomes
    recorded so far.
    """
    # Requests SuggestionsFastPath can check cheaply are answered there; this route answers the rest
    # (requests it hands on unjudged, every dependency override) and documents the operation.
    names = [name for name, _ in request.query_params.multi_items()]
    repeated = next((name for name in _QUERY_NAMES if names.count(name) > 1), None)
    if repeated is not None:  # the parser would keep the last silently; the fast path hands these on
        raise DataError(f"`{repeated}` (query): given more than once; send it once")
    body = await suggestions_body(services, cardholder_id, query, x_call_id)
    return Response(body, media_type="application/json")


# Cardholders tried by `warm_up` for one with suggestions to show (the first usually has some).
WARM_UP_TRIES: Final = 50


def warm_up(services: Services) -> bool:
    """Runs the request path once per call reason on a real cardholder of the snapshot in service —
    the query's validation, the decision (its compiled kernels loaded, the scorer called), the call's
    ids, the answer's JSON — so the first agent's request does not pay for it (3 s before, on a fresh
    process: numba's cached machine code loaded on first call, lazy imports, the first LightGBM call).
    Nothing is logged to the decision store and nothing is counted in the metrics. Returns whether a
    decision with suggestions was made (False: nothing in service, or no cardholder had any).
    """
    serving = services.state.serving
    if serving is None:
        return False
    engine = serving.engine
    since = serving.profile_as_of_time
    for row in range(min(WARM_UP_TRIES, len(engine.profiles))):
        cardholder_id = engine.profiles.ids[row]
        decisions = [
            engine.decide(
                cardholder_id,
                SuggestionsQuery.model_validate({"call_reason": reason}).call_reason,
                None,
                services.ledger.recent(cardholder_id, since),
            )
            for reason in CALL_REASONS
        ]
        for decision in decisions:
            answer(to_call_decision(None, decision, services, engine.holder_bytes), {}, False)
        if any(decision.suggestions for decision in decisions):
            return True
    return False


def warm(services: Services) -> None:
    """The request path run once (`warm_up`) while `services.warming` is set; a failure is
    logged, never raised (the service serves cold rather than not at all)."""
    services.warming.set()
    started = time.perf_counter()
    try:
        exercised = warm_up(services)
    except Exception as exc:  # a background task's boundary: logged here, or seen by no one until exit
        get_logger().error("warm-up failed; the first requests may be slow", exc_info=exc)
    else:
        if exercised:
            freeze_heap(generation=1)  # what warming loaded stays out of the collector's way too
        get_logger().info(
            "warmed up",
            extra={"duration_ms": round((time.perf_counter() - started) * 1e3, 1), "exercised": exercised},
        )
    finally:
        services.warming.clear()


_PATH_ID: Final = re.compile(r"^/v1/cardholders/(" + ID_PATTERN.strip("^$") + r")/suggestions$")
_HEADER_ID: Final = re.compile(ID_PATTERN)
_QUERY_NAMES: Final = frozenset(SuggestionsQuery.model_fields)


class SuggestionsFastPath:
    """Pure ASGI: a suggestions request answered without FastAPI's routing and parameter machinery.

    FastAPI 0.165 spends ~0.35 ms of a core per request on this route around the handler's own work
    (routing, parameter parsing recomputed per request, dependency solving, response classes): more than
    the decision. This answers the requests whose input it can check cheaply — the path id and header
    match ID_PATTERN, the query validates as SuggestionsQuery with each name once — with the route's
    exact answer: it checks the key once, then `suggestions_body` decides and logs, and the errors either
    raises (401/403, 404/409/422/503) are answered here in the service's one error format by the app's own
    error handlers' functions; nothing runs twice. Input it cannot judge goes on to the route untouched
    (nothing was looked up or checked yet), and so does every request while the app's
    `dependency_overrides` hold anything, so that an overridden dependency is the one used. Sits inside
    RequestContext (request id, metrics, logs) and tells it the route, for the metrics' route label.
    """

    def __init__(
        self, app: ASGIApp, services: Services, route: Any, overrides: dict[Any, Any] | None = None
    ) -> None:
        self.app = app
        self.services = services
        self.route = route
        self.overrides = {} if overrides is None else overrides

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        answer = (
            await self._answer(scope)
            if scope["type"] == "http" and scope["method"] == "GET" and not self.overrides
            else None
        )
        if answer is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = self.route
        if isinstance(answer, Response):  # an error, in the one error format
            await answer(scope, receive, send)
            return
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})

    async def _answer(self, scope: Scope) -> bytes | Response | None:
        """The body of a valid request's answer, an error response, or None to hand the request on."""
        match = _PATH_ID.match(scope["path"])
        if match is None:
            return None
        pairs = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
        values = dict(pairs)
        if len(values) != len(pairs) or not values.keys() <= _QUERY_NAMES:
            return None
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            if name in (b"x-api-key", b"x-call-id"):
                headers.setdefault(name, value)  # the first of a repeated header, as the route reads it
        x_call_id = headers.get(b"x-call-id")
        if x_call_id is not None and not _HEADER_ID.match(x_call_id.decode("latin-1")):
            return None
        try:
            query = SuggestionsQuery.model_validate(values)
        except ValidationError:  # the route answers it, after checking the key as on every route
            return None
        api_key = headers.get(b"x-api-key")
        try:
            authorize(self.services, None if api_key is None else api_key.decode("latin-1"), "agent")
            return await suggestions_body(
                self.services,
                match.group(1),
                query,
                None if x_call_id is None else x_call_id.decode("latin-1"),
            )
        except HTTPException as exc:
            return http_error_response(exc)
        except NbaError as exc:
            return nba_error_response(exc)
