"""Records: what the feedback room holds and hands on — a call's decision with its suggestions as shown,
outcomes, NPS answers, contact events — and the rules a decision must meet to be stored."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt

from nba.errors import DataError
from nba.vocab import CALL_REASONS

if TYPE_CHECKING:
    from nba.decision._engine import Suggestion

NOT_DISCUSSED: Final = "not_discussed"


@dataclass(frozen=True, slots=True)
class ShownSuggestion:
    """One suggestion as the agent saw it, with what offline evaluation needs about it later.

    `pair_features` is the part of the model's input row after the cardholder's columns, as
    little-endian float64 bytes; `CallDecision.features_of` gives the whole row (`feature_values` reads
    it): exact, NaN and infinities kept.
    """

    suggestion_id: str
    rank: int
    benefit_id: str
    benefit_name: str
    talking_point: str
    reasons: tuple[str, ...]
    value_usd: float
    score: float
    p_adopt: float
    logging_prob: float
    pair_features: bytes

    @classmethod
    def of(cls, suggestion_id: str, suggestion: Suggestion, holder_bytes: int) -> ShownSuggestion:
        """The engine's suggestion as shown under `suggestion_id` (the fields are the engine's, by name),
        with its feature row after the first `holder_bytes` (the cardholder's columns, kept by the call)."""
        values = [getattr(suggestion, name) for name in _SHARED_WITH_ENGINE]
        values.append(suggestion.features[holder_bytes:])
        return cls(suggestion_id, *values)


# ShownSuggestion's fields between suggestion_id and pair_features, in order: the engine's Suggestion
# has them by name.
_SHARED_WITH_ENGINE: Final = tuple(f.name for f in fields(ShownSuggestion))[1:-1]


@dataclass(frozen=True, slots=True)
class CallDecision:
    """Everything served on one call: the context and the suggestions shown (possibly none).

    `holder_features` is the leading part of every suggestion's model input row that they all share
    (the cardholder's columns), little-endian float64 bytes, held and stored once per call rather than
    once per suggestion; empty when there is none.
    """

    call_id: str
    cardholder_id: str
    call_reason: str
    model_version: str
    profile_as_of: str
    served_at: datetime
    note: str | None
    holder_features: bytes
    suggestions: tuple[ShownSuggestion, ...]
    agent_id: str | None = None

    def features_of(self, suggestion: ShownSuggestion) -> bytes:
        """The model's whole input row for one of the call's suggestions, as float64 bytes.

        Example:
            >>> [feature_values(decision.features_of(s)) for s in decision.suggestions]
        """
        return self.holder_features + suggestion.pair_features


@dataclass(frozen=True)
class OutcomeRecord:
    """The current outcome of a suggestion; `changed` says it replaced an earlier, different one."""

    suggestion_id: str
    call_id: str
    cardholder_id: str
    benefit_id: str
    outcome: str
    decline_reason: str | None
    agent_id: str | None
    recorded_at: datetime
    changed: bool


@dataclass(frozen=True)
class NpsRecord:
    """A call's Net Promoter Score answer."""

    call_id: str
    score: int
    recorded_at: datetime


@dataclass(frozen=True)
class ContactEvent:
    """A benefit presented to a cardholder (`at` = when it was served) and its current outcome."""

    benefit_id: str
    outcome: str
    at: datetime


def feature_bytes(values: Sequence[float] | npt.NDArray[np.floating[Any]]) -> bytes:
    """A feature vector as stored: little-endian float64 bytes."""
    return np.asarray(values, dtype="<f8").tobytes()


def feature_values(blob: bytes) -> tuple[float, ...]:
    """The numbers of a stored feature vector (see `feature_bytes`)."""
    return tuple(np.frombuffer(blob, dtype="<f8").tolist())


def check_decision(decision: CallDecision) -> None:
    where = f"call {decision.call_id!r}"
    for name in ("call_id", "cardholder_id", "model_version"):
        value = getattr(decision, name)
        if not isinstance(value, str) or not value:
            raise DataError(f"{where}: `{name}` must be a non-empty string, got {value!r}")
    if decision.call_reason not in CALL_REASONS:
        raise DataError(
            f"{where}: `call_reason` must be one of {', '.join(CALL_REASONS)}, got {decision.call_reason!r}"
        )
    if decision.served_at.tzinfo is None:
        raise DataError(f"{where}: `served_at` must be timezone-aware, got {decision.served_at.isoformat()}")
    _parse_as_of(decision.profile_as_of, where)
    if not _is_float64_bytes(decision.holder_features):
        raise DataError(
            f"{where}: `holder_features` must be float64 bytes (see feature_bytes), "
            f"got {_shown_type(decision.holder_features)}"
        )
    seen_ids: set[str] = set()
    seen_benefits: set[str] = set()
    for s in decision.suggestions:
        at = f"{where}, suggestion {s.suggestion_id!r}"
        if not s.suggestion_id or s.suggestion_id in seen_ids:
            raise DataError(f"{at}: `suggestion_id` must be non-empty and unique within the call")
        if s.benefit_id in seen_benefits:
            raise DataError(f"{at}: `benefit_id` {s.benefit_id!r} is shown twice on the call")
        seen_ids.add(s.suggestion_id)
        seen_benefits.add(s.benefit_id)
        if isinstance(s.rank, bool) or not isinstance(s.rank, int) or s.rank < 1:
            raise DataError(f"{at}: `rank` must be a positive integer, got {s.rank!r}")
        if not _is_float64_bytes(s.pair_features):
            raise DataError(
                f"{at}: `pair_features` must be float64 bytes (see feature_bytes), "
                f"got {_shown_type(s.pair_features)}"
            )
        if not 0.0 < s.logging_prob <= 1.0:
            raise DataError(f"{at}: `logging_prob` must be a float in (0, 1], got {s.logging_prob!r}")
        for name in ("value_usd", "score", "p_adopt"):
            value = getattr(s, name)
            if not math.isfinite(value):
                raise DataError(f"{at}: `{name}` must be a finite number, got {value!r}")


def _is_float64_bytes(value: object) -> bool:
    return isinstance(value, bytes) and len(value) % 8 == 0


def _shown_type(value: object) -> str:
    return f"{len(value)} bytes" if isinstance(value, bytes) else type(value).__name__


def _parse_as_of(value: str, where: str) -> date:
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError):
        raise DataError(
            f"{where}: `profile_as_of` must be a date in YYYY-MM-DD form, got {value!r}"
        ) from None
