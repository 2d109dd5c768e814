"""Schemas: the HTTP API's request and response bodies, one family per resource, every field bounded."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from api.errors import ErrorCode
from nba.vocab import MAX_SUGGESTIONS, CallReason, Outcome

ID_PATTERN: Final = r"^[A-Za-z0-9_.:-]{1,64}$"
Id = Annotated[str, StringConstraints(pattern=ID_PATTERN, min_length=1, max_length=64)]
# A query integer is plain digits: pydantic's lax parsing would also take ` 3 `, `3.0` or `+3`.
_DIGITS: Final = frozenset("0123456789")


def _plain_digits(value: object) -> object:
    if isinstance(value, str) and not (0 < len(value) <= 9 and set(value) <= _DIGITS):
        raise ValueError("must be written in plain digits, like 3")
    return int(value) if isinstance(value, str) else value


QueryInt = Annotated[int, BeforeValidator(_plain_digits)]
# How many suggestions a query asks for. Its bounds sit inside the annotation, before the digits check, so
# that the OpenAPI schema shows them when the parameter is optional (`QueryLimit | None`).
QueryLimit = Annotated[int, Field(ge=1, le=MAX_SUGGESTIONS), BeforeValidator(_plain_digits)]


class _In(BaseModel):
    """A request body: strict types (an integer is a JSON integer, never `true`, `"9"` or `1e1`), no
    unknown fields. (A key given twice is refused before parsing: see api.main.RequestContext.)"""

    model_config = ConfigDict(extra="forbid", strict=True)


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class SuggestionOut(_Out):
    """A suggestion as the agent sees it: the id it was shown under, the suggestion record's fields in their
    order (nba.decision's SuggestionBase) but `logging_prob`, and the outcome recorded so far. The route
    writes its body from these names (api/routes/suggestions.py); tests/api/test_schema.py holds them to
    the record."""

    suggestion_id: str = Field(max_length=64, examples=["s_3f2a9c0d41e84b7c"])
    rank: int = Field(ge=1, le=MAX_SUGGESTIONS, examples=[1])
    benefit_id: str = Field(max_length=64, examples=["dining_4x"])
    benefit_name: str = Field(max_length=200, examples=["4x points at restaurants"])
    talking_point: str = Field(
        max_length=2000,
        examples=[
            "Spends ~$3,100 a year dining out; the card earns 4x at restaurants: ~$93 a year in points for them."
        ],
    )
    reasons: list[str] = Field(
        max_length=5,
        description="why this one: about this benefit (its categories' spend, a recent purchase, ...)",
        examples=[["already spends on dining out with this card", "bought dining out recently"]],
    )
    value_usd: float = Field(
        ge=0,
        description="estimated value to the cardholder, dollars a year, rounded as shown (the talking "
        "point says the same number)",
        examples=[93.0],
    )
    score: float = Field(
        description="the arbitration priority the suggestions are ranked by", examples=[0.31]
    )
    p_adopt: float = Field(
        ge=0, le=1, description="predicted chance the cardholder starts using it", examples=[0.31]
    )
    outcome: Outcome | None = Field(
        default=None, description="the outcome recorded so far for this suggestion on this call, if any"
    )


class SuggestionsOut(_Out):
    call_id: str = Field(max_length=64, examples=["c_7d1e0b5a9f3c4e21"])
    cardholder_id: str = Field(max_length=64, examples=["ch_000042"])
    call_reason: CallReason = Field(examples=["general"])
    model_version: str = Field(max_length=64, examples=["20261123T101500Z-3f2a9c"])
    profile_as_of: str = Field(max_length=10, examples=["2026-10-01"])
    shared_reasons: list[str] = Field(
        default_factory=list,
        max_length=5,
        description="why these suggestions, said once for the call (shown above them): what is true of the "
        "cardholder whatever the benefit, or what every suggestion would say; each suggestion's `reasons` "
        "are about its benefit",
        examples=[["new cardholder", "uses the card a lot"]],
    )
    suggestions: list[SuggestionOut] = Field(max_length=MAX_SUGGESTIONS)
    note: str | None = Field(
        default=None,
        max_length=300,
        description="why nothing (or less than asked) is suggested, in words an agent can read",
        examples=[None],
    )
    call_closed: bool = Field(default=False, description="outcomes can no longer be changed on this call")


class OutcomeIn(_In):
    outcome: Outcome = Field(examples=["accepted"])
    decline_reason: str | None = Field(default=None, max_length=200, examples=[None])
    agent_id: Id | None = Field(default=None, examples=["agent_17"])


class OutcomeOut(_Out):
    suggestion_id: str = Field(max_length=64)
    call_id: str = Field(max_length=64)
    benefit_id: str = Field(max_length=64)
    outcome: Outcome
    recorded_at: datetime
    changed: bool = Field(description="true when this replaced an earlier, different outcome")


class NpsIn(_In):
    score: int = Field(ge=0, le=10, examples=[9])


class NpsOut(_Out):
    call_id: str = Field(max_length=64)
    score: int = Field(ge=0, le=10)
    recorded_at: datetime


class ModelOut(_Out):
    version: str = Field(max_length=64)
    created_at: datetime
    metrics: dict[str, float]
    profile_as_of: str = Field(max_length=10)
    profile_cardholders: int = Field(ge=0)
    scorer: str = Field(
        max_length=32, description="how the engine scores candidates: 'tree_walk' or 'booster'"
    )


class ReloadOut(_Out):
    model_version: str = Field(max_length=64)
    profile_as_of: str = Field(max_length=10)
    changed: bool


class HealthOut(_Out):
    status: Literal["ok"] = "ok"


class RefusedOut(_Out):
    kind: Literal["model", "profiles", "catalog"] = Field(description="which artifact was refused")
    name: str = Field(max_length=200, description="its version, as-of date or file name")
    reason: str = Field(max_length=500, description="what is wrong with it")


class BalancerHealthOut(_Out):
    serving: bool = Field(description="a model and a profile snapshot serve and the worker is not draining")
    draining: bool = Field(description="SIGTERM received: the worker stops once the drain interval is over")
    database_reachable: bool = Field(
        description="the feedback database's last ping (suggestions are served without it; outcomes get 503)"
    )
    reason: str | None = Field(default=None, description="why the worker is out of the pool")
    model_version: str | None = Field(default=None, max_length=64, description="the model in service")
    profile_as_of: str | None = Field(
        default=None, max_length=10, description="the profile snapshot in service"
    )


class ReadyOut(_Out):
    ready: bool
    model_loaded: bool
    profiles_loaded: bool
    database_reachable: bool
    reason: str | None = Field(default=None, description="why the service is not ready")
    model_version: str | None = Field(default=None, max_length=64, description="the model in service")
    profile_as_of: str | None = Field(
        default=None, max_length=10, description="the profile snapshot in service"
    )
    refused: RefusedOut | None = Field(
        default=None,
        description="a newer artifact named for service that was refused, while the one above keeps serving",
    )


class ErrorOut(_Out):
    code: ErrorCode = Field(description="stable and machine-readable: branch on this, not on `detail`")
    detail: str = Field(max_length=500, examples=["cardholder 'ch_9' is not in the profile snapshot"])
    request_id: str = Field(max_length=64)
