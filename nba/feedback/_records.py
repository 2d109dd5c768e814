"""Records: what the feedback room holds and hands on — a call's decision with its suggestions as shown,
outcomes, NPS answers, contact events — and the rules a decision must meet to be stored."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from datetime import date, datetime
from operator import attrgetter
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from nba.decision._engine import PUBLIC_FIELD_NAMES, Suggestion, SuggestionBase
from nba.errors import DataError
from nba.vocab import CALL_REASONS


@dataclass(frozen=True, slots=True, kw_only=True)
class ShownSuggestion(SuggestionBase):
    """One suggestion as the agent saw it, with what offline evaluation needs about it later: the record's
    fields (`SuggestionBase`, listed in order in SHOWN_FIELDS), the id it was shown under and its features.

    `pair_features` is the part of the model's input row after the cardholder's columns, as
    little-endian float64 bytes; `CallDecision.features_of` gives the whole row (`feature_values` reads
    it): exact, NaN and infinities kept.
    """

    suggestion_id: str
    pair_features: bytes

    @classmethod
    def of(cls, suggestion_id: str, suggestion: Suggestion, holder_bytes: int) -> ShownSuggestion:
        """The engine's suggestion as shown under `suggestion_id`, with its feature row after the first
        `holder_bytes` (the cardholder's columns, kept by the call)."""
        return cls(
            suggestion_id=suggestion_id,
            pair_features=suggestion.features[holder_bytes:],
            **dict(zip(SHOWN_FIELDS, shown_values(suggestion), strict=True)),
        )

    def plain(self) -> list[Any]:
        """The record's fields in SHOWN_FIELDS order as plain values, for a table row or a JSON body:
        numbers as Python floats, `reasons` as a list."""
        values = list(shown_values(self))
        for i, convert in _TO_PLAIN:
            values[i] = convert(values[i])
        return values

    @classmethod
    def from_plain(cls, suggestion_id: str, values: Sequence[Any], pair_features: bytes) -> ShownSuggestion:
        """A suggestion from its plain values in SHOWN_FIELDS order (a table row's, a JSON body's, `plain`'s);
        `reasons` becomes a tuple."""
        fields_ = dict(zip(SHOWN_FIELDS, values, strict=True))
        for name in _TUPLES:
            fields_[name] = tuple(fields_[name])
        return cls(suggestion_id=suggestion_id, pair_features=pair_features, **fields_)


# The record's fields, in order: a suggestion's columns in the `suggestions` table, its keys in a buffer
# line, and (but `logging_prob`) in the API's answer.
SHOWN_FIELDS: Final = tuple(f.name for f in fields(SuggestionBase))
SHOWN_TYPES: Final = {f.name: str(f.type) for f in fields(SuggestionBase)}
# The same fields in the contract's words (`score` for the priority): the table's columns, a buffer line's keys.
SHOWN_COLUMNS: Final = tuple(PUBLIC_FIELD_NAMES.get(name, name) for name in SHOWN_FIELDS)
# A table row → the record's values in SHOWN_FIELDS order.
shown_columns: Final = attrgetter(*SHOWN_COLUMNS)
# Anything with the record's fields by name (a suggestion, a table row) → their values in that order.
shown_values: Final = attrgetter(*SHOWN_FIELDS)
# A field's type → how its value becomes a plain one (an engine's numpy float a Python float; JSON and the
# JSON column hold a list; `from_plain` makes tuples again). A field of a new type must be given one here
# (and a column type in _schema): importing the room fails until it is.
_PLAIN_OF_TYPE: Final[dict[str, Callable[[Any], Any] | None]] = {
    "int": None,
    "str": None,
    "float": float,
    "tuple[str, ...]": list,
}
_TO_PLAIN: Final = tuple(
    (i, convert) for i, name in enumerate(SHOWN_FIELDS) if (convert := _PLAIN_OF_TYPE[SHOWN_TYPES[name]])
)
_TUPLES: Final = tuple(name for name, type_ in SHOWN_TYPES.items() if type_.startswith("tuple["))
_FLOATS: Final = tuple(name for name, type_ in SHOWN_TYPES.items() if type_ == "float")


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
    # Why these, said once for the call (the engine's Decision.shared_reasons); each suggestion keeps its own.
    shared_reasons: tuple[str, ...] = ()

    def features_of(self, suggestion: ShownSuggestion) -> bytes:
        """The model's whole input row for one of the call's suggestions, as float64 bytes.

        Example:
            >>> [feature_values(decision.features_of(s)) for s in decision.suggestions]
        """
        return self.holder_features + suggestion.pair_features


@dataclass(frozen=True, slots=True)
class Claim:
    """The store's answer to a claim of a call id (`FeedbackStore.claim_decision`): the call's decision,
    which is the claimed one when `won`; else the one stored first, with the outcomes recorded on it so
    far (suggestion_id → outcome) and whether the call is closed, read in the same transaction."""

    decision: CallDecision
    won: bool
    outcomes: dict[str, str] = field(default_factory=dict)
    closed: bool = False


@dataclass(frozen=True)
class OutcomeRecord:
    """The current outcome of a suggestion; `changed` says it replaced an earlier, different one, and
    `stored` that this request wrote it (False: the same outcome again, an idempotent repeat)."""

    suggestion_id: str
    call_id: str
    cardholder_id: str
    benefit_id: str
    outcome: str
    decline_reason: str | None
    agent_id: str | None
    recorded_at: datetime
    changed: bool
    stored: bool = True


# A call's own fields, in CallDecision's order (not its feature bytes or its suggestions): the calls table's
# columns, the buffer file's keys and the reads come from this list. `profile_as_of` is a date column,
# `shared_reasons` a JSON list (NULL before migration 0006; left out of a buffer line when empty).
CALL_FIELDS: Final = tuple(
    f.name for f in fields(CallDecision) if f.name not in ("holder_features", "suggestions")
)
# What an outcome row holds of an OutcomeRecord (the rest is the suggestion's call and benefit).
OUTCOME_COLUMNS: Final = ("outcome", "decline_reason", "agent_id", "recorded_at")


@dataclass(frozen=True)
class NpsRecord:
    """A call's Net Promoter Score answer; `stored` says this request wrote it (False: the same score
    again, an idempotent repeat)."""

    call_id: str
    score: int
    recorded_at: datetime
    stored: bool = True


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
        for name in _FLOATS:
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
