"""Synthetic world, simulation: one chunk's seed → its cardholders, card spend, calls, what was presented and
what happened, as tables (and the oracle's rows)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from nba.vocab import (
    BENEFIT_KINDS,
    CALL_REASONS,
    NOT_DISCUSSED,
    OUTCOMES,
    SPEND_CATEGORIES,
    TRAVEL_CATEGORIES,
)
from training.presentations import LABEL_WINDOW_DAYS
from training.synth._counterfactual import (
    NATURAL_WINDOW_DAYS,
    UPLIFT_CLASSES,
    draw_natural_tau,
    natural_base_rate,
    natural_ratio,
    p_natural,
)
from training.synth._parameters import (
    _CALL_REASON_SHARES,
    _CALLS_PER_YEAR,
    _DRIFT_PER_YEAR,
    _EARN,
    _EPOCH,
    _INCOME_CUTS,
    _N_CATS,
    _NEVER,
    _NPS_REASON_EFFECT,
    _RECURRING,
    _REGION_SHARES,
    _STARTS_USING_LOGIT,
    _TICKET_MEAN,
    _TICKET_SIGMA,
    _US_PER_DAY,
    ACCEPTED_IF_ADOPTED,
    AGENT_COUNT,
    CALL_TRUTH_COLUMNS,
    DECLINE_MEMORY_DAYS,
    F64,
    I64,
    INCOME_BANDS,
    LEGACY_POPULARITY_WEIGHT,
    NEW_CARDHOLDER_SHARE,
    NPS_IRRELEVANT_DROP,
    NPS_IRRELEVANT_VALUE_USD,
    NPS_LATENT_BASE,
    NPS_NOISE_SD,
    NPS_RELEVANT_ACCEPT_LIFT,
    NPS_RELEVANT_VALUE_USD,
    NPS_RESPONSE_SHARE,
    NPS_SATISFACTION_WEIGHT,
    NPS_TENSE_PITCH_DROP,
    NPS_TENSE_REASONS,
    OPEN_SPAN_DAYS,
    ORACLE_AS_OF_COLUMN,
    ORACLE_CLASS_COLUMN,
    ORACLE_NATURAL_COLUMN,
    PRESENT_UP_TO,
    REFUND_SHARE,
    REGIONS,
    SEGMENTS,
    Bool,
    _cat,
    _day_number,
    _logit,
    _sigmoid,
)
from training.synth._personas import (
    _benefit_values,
    _draw_personas,
    _Persona,
    _product_utility,
    _spend_shares,
)
from training.synth._truth import TRUTH, RegimeShift
from training.synth._world import _World

# --- one chunk ------------------------------------------------------------------------------------------------


@dataclass
class _Chunk:
    """Mutable state of one chunk while its story is simulated."""

    n: int
    ids: pa.Array
    persona: _Persona
    product: I64
    open_day: I64
    active_day: I64
    slot_benefit: I64  # (n, slots), −1 padded
    slot_value_usd: F64
    slot_share: F64  # share of the cardholder's yearly spend in the slot's categories
    slot_affinity: F64
    adopted_day: I64  # (n, slots) the day the cardholder starts using the benefit on their own account
    last_declined_day: I64
    ever_declined: Bool
    gate_day: I64  # (n, categories) first day card spend in the category can happen
    inject_category: I64  # (n, slots) category of the first purchase that marks an earn-rate benefit used
    inject_amount_usd: F64
    inject_mcc: npt.NDArray[np.int32]

    slot_kind: npt.NDArray[np.int8]  # (n, slots) index into the benefit kinds, −1 for padding
    slot_member: Bool  # (n, slots, categories) the slot's benefit names the category
    # Counterfactual worlds only: each slot's natural hazard λ₀ (per day) and the day the cardholder starts
    # on their own, not clipped at as_of (`adopted_day` is that day or an earlier one a conversation caused).
    natural_rate: F64 | None = None
    natural_day: I64 | None = None

    def first_used_day(self, rows: I64) -> I64:
        """benefit_usage.first_used_date (day numbers) of these cardholders' slots, as known so far.

        An earn-rate benefit counts as used from the first card purchase in any of its categories.
        """
        member = self.slot_member[rows]
        earliest = np.where(member, self.gate_day[rows][:, None, :], _NEVER).min(axis=2)
        used: I64 = np.where(self.slot_kind[rows] == _EARN, earliest, self.adopted_day[rows])
        return used

    def refresh_gates(self) -> None:
        """Card spend in an earn-rate benefit's categories starts when the first such benefit is adopted."""
        earn = (self.slot_benefit >= 0) & (self.slot_kind == _EARN)
        opening = np.where(self.slot_member & earn[:, :, None], self.adopted_day[:, :, None], _NEVER).min(
            axis=1
        )
        gated = (self.slot_member & earn[:, :, None]).any(axis=1)
        self.gate_day = np.where(gated, opening, -_NEVER)


def _draw_cardholders(
    world: _World, rng: np.random.Generator, first_number: int, n: int
) -> tuple[_Chunk, pa.Table]:
    """Draws n cardholders (persona, card, account, benefit state); returns the chunk and its table."""
    cat, cal = world.catalog, world.calendar
    persona = _draw_personas(rng, n, world.mcc)
    gumbel = -np.log(-np.log(rng.random((n, len(cat.product_ids)))))
    utility = _product_utility(world.choice_catalog(), persona) + world.product_constant + gumbel
    product = np.argmax(utility, axis=1).astype(np.int64)

    new = rng.random(n) < NEW_CARDHOLDER_SHARE
    settled_days = 90 + ((OPEN_SPAN_DAYS - 90) * rng.beta(1.1, 1.6, n)).astype(np.int64)
    tenure_days = np.where(new, rng.integers(1, 91, n), settled_days)
    open_day = cal.as_of_day - tenure_days
    active_day = open_day + np.floor(rng.exponential(10.0, n)).astype(np.int64)  # first use of the card
    persona = dataclasses.replace(persona, age=np.maximum(persona.age, 18.0 + tenure_days / 365.25))
    ids = pa.array([f"C{i:0{world.id_width}d}" for i in range(first_number, first_number + n)], pa.string())
    table = _cardholder_table(world, rng, ids, persona, product, open_day)

    slot_benefit = cat.product_slots[product]
    valid = slot_benefit >= 0
    safe = np.where(valid, slot_benefit, 0)
    rows = np.arange(n)[:, None]
    values = _benefit_values(cat, persona.true_spend_usd, cat.product_base_rate[product])[rows, safe]
    shares = persona.true_spend_usd / np.maximum(persona.true_spend_usd.sum(axis=1, keepdims=True), 1.0)
    related = (shares @ cat.affinity_weights.T)[rows, safe]
    own_share = _spend_shares(cat, persona.true_spend_usd)[rows, safe]
    affinity = np.clip(np.log((related + 0.01) / (cat.affinity_base[safe] + 0.01)), -2.0, 2.0)
    member = (cat.member[safe] > 0) & valid[:, :, None]
    kind = np.where(valid, cat.view.kind[safe], -1).astype(np.int8)
    natural_rate, natural_day = None, None
    if world.counterfactual is None:
        adopted = _natural_adoption_days(
            world, rng, persona, active_day, values, affinity, member, kind, safe
        )
    else:
        natural_rate = np.where(
            valid, _natural_base_rates(world, rng, persona, values, own_share, affinity, safe), 0.0
        )
        natural_day = active_day[:, None] + np.floor(draw_natural_tau(rng, natural_rate)).astype(np.int64)
        natural_day = np.where(valid, natural_day, _NEVER)
        adopted = np.where(natural_day < cal.as_of_day, natural_day, _NEVER)
    adopted = np.where(valid, adopted, _NEVER)

    # The first card purchase of an earn-rate benefit goes to its category with the most card spend.
    card_usd = persona.true_spend_usd * persona.wallet
    inject_category = np.argmax(np.where(member, card_usd[:, None, :] + 1e-9, -1.0), axis=2)
    flat = inject_category.ravel()
    sigma = _TICKET_SIGMA[flat]
    mean_usd = (persona.ticket_scale[:, None] * _TICKET_MEAN[inject_category]).ravel()
    inject_amount = np.maximum(mean_usd * np.exp(rng.normal(-(sigma**2) / 2, sigma)), 1.0)

    chunk = _Chunk(
        n=n,
        ids=ids,
        persona=persona,
        product=product,
        open_day=open_day,
        active_day=active_day,
        slot_benefit=slot_benefit,
        slot_value_usd=np.where(valid, values, 0.0),
        slot_share=np.where(valid, own_share, 0.0),
        slot_affinity=np.where(valid, affinity, 0.0),
        adopted_day=adopted,
        last_declined_day=np.full(slot_benefit.shape, -_NEVER, dtype=np.int64),
        ever_declined=np.zeros(slot_benefit.shape, dtype=bool),
        gate_day=np.zeros((n, _N_CATS), dtype=np.int64),
        inject_category=inject_category,
        inject_amount_usd=np.round(inject_amount, 2).reshape(inject_category.shape),
        inject_mcc=world.mcc.draw(rng, flat).reshape(inject_category.shape),
        slot_kind=kind,
        slot_member=member,
        natural_rate=natural_rate,
        natural_day=natural_day,
    )
    chunk.refresh_gates()
    return chunk, table


def _natural_base_rates(
    world: _World,
    rng: np.random.Generator,
    persona: _Persona,
    values: F64,
    own_share: F64,
    affinity: F64,
    benefit: I64,
) -> F64:
    """λ₀ of every (cardholder, slot) in a counterfactual world (see `_counterfactual`): a settled
    cardholder starts within 30 days on their own with chance r × the truth on a general call at rank 1."""
    assert world.counterfactual is not None
    p_reference = _sigmoid(
        TRUTH.general_call_logit(
            world.catalog.view.take(benefit),
            values,
            own_share,
            affinity,
            persona.age,
            persona.z_income,
            persona.engagement,
        )
    )
    ratio = natural_ratio(world.counterfactual, benefit, persona.engagement[:, None], rng)
    return natural_base_rate(p_reference, ratio)


def _cardholder_table(
    world: _World, rng: np.random.Generator, ids: pa.Array, persona: _Persona, product: I64, open_day: I64
) -> pa.Table:
    """The cardholders table: what a CRM knows (income band and credit limit, not spend or wallet share)."""
    n = len(product)
    as_of_year = (_EPOCH + timedelta(days=world.calendar.as_of_day)).year
    birth_year = np.floor(as_of_year - persona.age).astype(np.int64)
    band = np.searchsorted(_INCOME_CUTS, persona.z_income)
    yearly_usd = persona.true_spend_usd.sum(axis=1)
    segment = np.where(band >= 3, SEGMENTS.index("affluent"), SEGMENTS.index("mass"))
    segment = np.where((band == 4) & (yearly_usd > 40_000), SEGMENTS.index("premier"), segment)
    student = (persona.age < 25) & (band <= 1) & (rng.random(n) < 0.8)
    segment = np.where(student, SEGMENTS.index("student"), segment)
    region = np.searchsorted(np.cumsum(_REGION_SHARES), rng.random(n) * _REGION_SHARES.sum(), side="right")
    fee_lift = 1.0 + world.catalog.product_fee_usd[product] / 1_000.0
    credit_limit = np.exp(np.log(6_500.0) + 0.6 * persona.z_income + rng.normal(0.0, 0.3, n)) * fee_lift
    credit_limit = np.clip(np.round(credit_limit / 100.0) * 100.0, 500.0, 100_000.0)
    return pa.table(
        {
            "cardholder_id": ids,
            "product_id": pa.array(np.asarray(world.catalog.product_ids, dtype=object)[product], pa.string()),
            "open_date": _dates(open_day),
            "birth_year": pa.array(birth_year, pa.int64()),
            "region": pa.array(np.asarray(REGIONS, dtype=object)[region], pa.string()),
            "segment": pa.array(np.asarray(SEGMENTS, dtype=object)[segment], pa.string()),
            "credit_limit_usd": pa.array(credit_limit, pa.float64()),
            "income_band": pa.array(np.asarray(INCOME_BANDS, dtype=object)[band], pa.string()),
        }
    )


def _natural_adoption_days(
    world: _World,
    rng: np.random.Generator,
    persona: _Persona,
    active_day: I64,
    values: F64,
    affinity: F64,
    member: Bool,
    kind: npt.NDArray[np.int8],
    benefit: I64,
) -> I64:
    """The day each (cardholder, slot) starts using the benefit unprompted; _NEVER if not before as_of.

    Many start within weeks of activation (more so for valuable benefits, engaged people and, for earn
    rates, a high wallet share in the categories); the rest drift in at a slow yearly rate. A counterfactual
    world draws these days from its natural hazard instead (`_counterfactual`), the truth its oracle's
    p_natural comes from.
    """
    value_term = np.log1p(values) - np.log1p(60.0)
    wallet_in = (persona.wallet[:, None, :] * member).sum(axis=2) / np.maximum(member.sum(axis=2), 1)
    start_logit = (
        np.array([_STARTS_USING_LOGIT[k] for k in BENEFIT_KINDS])[np.maximum(kind, 0)]
        + 0.8 * value_term
        + 0.5 * persona.engagement[:, None]
        + 0.4 * affinity
        - 0.4 * world.catalog.view.enroll[benefit]
        + np.where(kind == _EARN, 2.0 * (wallet_in - 0.55), 0.0)
    )
    starts = rng.random(values.shape) < _sigmoid(start_logit)
    # A benefit launched later is there to be found from its launch on, not from the card's activation.
    available = (
        active_day[:, None]
        if world.launch_day is None
        else np.maximum(active_day[:, None], world.launch_day[benefit])
    )
    start_day = available + np.floor(rng.exponential(40.0, values.shape)).astype(np.int64)
    yearly_rate = _DRIFT_PER_YEAR * np.exp(0.5 * value_term + 0.3 * persona.engagement[:, None])
    drift_day = available + np.floor(rng.exponential(365.0 / yearly_rate)).astype(np.int64)
    adopted = np.where(starts, start_day, drift_day)
    day: I64 = np.where(adopted < world.calendar.as_of_day, adopted, _NEVER)
    return day


@dataclass(frozen=True)
class _Stream:
    """Potential card purchases (before gating), sorted by (cardholder, category, day)."""

    holder: I64
    category: npt.NDArray[np.int8]
    day: I64
    amount_usd: F64
    mcc: npt.NDArray[np.int32]
    key: I64  # (holder·categories + category)·(span + 1) + day offset, ascending
    cumulative_usd: F64  # running sum of amount_usd, with a leading 0


def _draw_stream(world: _World, rng: np.random.Generator, chunk: _Chunk) -> _Stream:
    cal = world.calendar
    persona = chunk.persona
    first_day = np.maximum(chunk.active_day, cal.start_day)
    active_years = np.maximum(cal.as_of_day - first_day, 0) / 365.25

    scale = persona.ticket_scale
    card_usd = persona.true_spend_usd * persona.wallet
    card_usd[:, [_cat(c) for c in _RECURRING]] = 0.0
    expected = card_usd * active_years[:, None] / (scale[:, None] * _TICKET_MEAN)
    counts = rng.poisson(expected).ravel()
    cell = np.repeat(np.arange(counts.size), counts)
    holder = cell // _N_CATS
    category = (cell % _N_CATS).astype(np.int8)
    day = cal.draw_days(rng, category, first_day[holder])
    sigma = _TICKET_SIGMA[category]
    mean = scale[holder] * _TICKET_MEAN[category]
    amount = np.round(np.maximum(mean * np.exp(rng.normal(-(sigma**2) / 2, sigma)), 0.5), 2)
    mcc = world.mcc.draw(rng, category)

    # Recurring charges: once a month on their day, from the first active month.
    months = cal.month_start_days
    sub_days = months[None, :] + persona.sub_day_of_month[:, None] - 1
    sub_live = (sub_days >= first_day[persona.sub_owner][:, None]) & (sub_days < cal.as_of_day)
    sub_index, month_index = np.nonzero(sub_live)
    wobble = np.where(
        persona.sub_category[sub_index] == _cat("telecom_utilities"),
        np.exp(rng.normal(0, 0.07, len(sub_index))),
        1.0,
    )
    holder = np.concatenate([holder, persona.sub_owner[sub_index]])
    category = np.concatenate([category, persona.sub_category[sub_index].astype(np.int8)])
    day = np.concatenate([day, sub_days[sub_index, month_index]])
    amount = np.concatenate([amount, np.round(persona.sub_amount_usd[sub_index] * wobble, 2)])
    mcc = np.concatenate([mcc, persona.sub_mcc[sub_index]])

    key = (holder * _N_CATS + category) * (cal.span_days + 1) + (day - cal.start_day)
    order = np.argsort(key, kind="stable")
    amount = amount[order]
    return _Stream(
        holder=holder[order],
        category=category[order],
        day=day[order],
        amount_usd=amount,
        mcc=mcc[order],
        key=key[order],
        cumulative_usd=np.concatenate([[0.0], np.cumsum(amount)]),
    )


_TRAVEL_MASK: Final = np.array([c in TRAVEL_CATEGORIES for c in SPEND_CATEGORIES])


def _thin_travel(shift: RegimeShift, rng: np.random.Generator, stream: _Stream) -> _Stream:
    """The stream with travel purchases after the shift kept at the shift's travel factor of their day."""
    travel = _TRAVEL_MASK[stream.category]
    keep = ~travel | (rng.random(len(stream.day)) < shift.travel_factor(stream.day))
    amount = stream.amount_usd[keep]
    return _Stream(
        holder=stream.holder[keep],
        category=stream.category[keep],
        day=stream.day[keep],
        amount_usd=amount,
        mcc=stream.mcc[keep],
        key=stream.key[keep],
        cumulative_usd=np.concatenate([[0.0], np.cumsum(amount)]),
    )


def _shift_callers(
    world: _World,
    shift: RegimeShift,
    rng: np.random.Generator,
    chunk: _Chunk,
    holder: I64,
    day: I64,
    calls_per_year: F64,
    first_day: I64,
) -> tuple[I64, I64]:
    """Calls after the shift at each cardholder's rate × exp(slope × income score) / its mean.

    Calls of cardholders whose rate falls are thinned; those whose rate rises get extra calls after the
    shift, on uniformly drawn days.
    """
    shift_day, as_of_day = _day_number(shift.starts), world.calendar.as_of_day
    weight = np.exp(shift.caller_income_slope * chunk.persona.z_income)
    weight /= weight.mean()
    keep = (day < shift_day) | (rng.random(len(day)) < np.minimum(weight[holder], 1.0))
    window_from = np.maximum(first_day, shift_day)
    years_after = np.maximum(as_of_day - window_from, 0) / 365.25
    extra = rng.poisson(calls_per_year * years_after * np.maximum(weight - 1.0, 0.0))
    extra_holder = np.repeat(np.arange(chunk.n), extra)
    span = as_of_day - window_from[extra_holder]
    extra_day = window_from[extra_holder] + np.floor(rng.random(len(extra_holder)) * span).astype(np.int64)
    return np.concatenate([holder[keep], extra_holder]), np.concatenate([day[keep], extra_day])


def _card_spend_90d(
    world: _World, stream: _Stream, chunk: _Chunk, holder: I64, day: I64, first_used: I64
) -> F64:
    """Card purchases (refunds not netted) per category in the 90 days before `day`: (calls, categories)."""
    cal = world.calendar
    span = cal.span_days + 1
    low = np.maximum(day[:, None] - 90, chunk.gate_day[holder])
    low = np.clip(low, cal.start_day, day[:, None]) - cal.start_day
    base = (holder[:, None] * _N_CATS + np.arange(_N_CATS)) * span
    lo = np.searchsorted(stream.key, base + low)
    hi = np.searchsorted(stream.key, base + (day - cal.start_day)[:, None])
    spend = stream.cumulative_usd[hi] - stream.cumulative_usd[lo]
    # First purchases that marked an earn-rate benefit used are card spend too.
    injected = (first_used >= np.maximum(day[:, None] - 90, cal.start_day)) & (first_used < day[:, None])
    injected &= chunk.slot_kind[holder] == _EARN
    rows = np.repeat(np.arange(len(holder)), injected.sum(axis=1))
    np.add.at(
        spend, (rows, chunk.inject_category[holder][injected]), chunk.inject_amount_usd[holder][injected]
    )
    return spend


@dataclass(frozen=True)
class _Calls:
    holder: I64
    started_us: I64
    reason: I64
    agent: I64
    call_number: I64  # global ordinal, for call ids


@dataclass
class _Presentations:
    call: list[I64]
    slot: list[I64]
    rank: list[I64]
    logging_prob: list[F64]
    p_true: list[F64]
    outcome: list[I64]
    adopted: list[Bool]
    # With `call_truth`: every eligible (call, slot) and its expected adoptions if shown at rank 1, 2, ...
    truth_call: list[I64] = dataclasses.field(default_factory=list)
    truth_slot: list[I64] = dataclasses.field(default_factory=list)
    truth_value: list[F64] = dataclasses.field(default_factory=list)
    # ... and what it does to the call's NPS answer: per rank the chance it is discussed and, discussed, the
    # chance it is taken up and accepted where worth it; the points a discussion costs; the call's latent mean
    # and tenseness (columns of `_call_truth_table`).
    truth_nps: list[F64] = dataclasses.field(default_factory=list)


_ACCEPTED, _DECLINED, _NOT_DISCUSSED, _ALREADY_AWARE = (
    OUTCOMES.index(name) for name in ("accepted", "declined", NOT_DISCUSSED, "already_aware")
)


def _draw_calls(
    world: _World,
    rng: np.random.Generator,
    chunk: _Chunk,
    first_call_number: int,
    shift_rng: np.random.Generator | None = None,
) -> _Calls:
    cal = world.calendar
    first_day = np.maximum(chunk.open_day, cal.start_day)
    years = (cal.as_of_day - first_day) / 365.25
    propensity = rng.gamma(2.0, 0.5, chunk.n) * np.exp(-0.15 * chunk.persona.z_income)
    counts = rng.poisson(_CALLS_PER_YEAR * propensity * years)
    holder = np.repeat(np.arange(chunk.n), counts)
    day = first_day[holder] + np.floor(rng.random(len(holder)) * (cal.as_of_day - first_day[holder])).astype(
        np.int64
    )
    if world.shift is not None and shift_rng is not None:
        holder, day = _shift_callers(
            world, world.shift, shift_rng, chunk, holder, day, _CALLS_PER_YEAR * propensity, first_day
        )
    seconds = np.clip(rng.normal(14.0 * 3600, 3.2 * 3600, len(holder)), 7 * 3600, 22 * 3600).astype(np.int64)
    started = day * _US_PER_DAY + seconds * 1_000_000
    order = np.lexsort((started, holder))
    holder, started = holder[order], started[order]

    # Reasons: the usual mix, travel notices from people who travel, hardship more among low incomes.
    log_share = np.log(np.array([_CALL_REASON_SHARES[r] for r in CALL_REASONS]))
    # In SPEND_CATEGORIES order: a frozenset's order changes with each process's string hashing, and so
    # would the last bits of the sum below.
    travel = np.array([_cat(c) for c in SPEND_CATEGORIES if c in TRAVEL_CATEGORIES])
    spend = chunk.persona.true_spend_usd
    travel_share = spend[:, travel].sum(axis=1) / np.maximum(spend.sum(axis=1), 1.0)
    lift = np.zeros((chunk.n, len(CALL_REASONS)))
    lift[:, CALL_REASONS.index("travel_notice")] = 8.0 * (travel_share - 0.12)
    lift[:, CALL_REASONS.index("hardship")] = -0.6 * chunk.persona.z_income
    lift[:, CALL_REASONS.index("rewards_question")] = 0.3 * chunk.persona.engagement
    gumbel = -np.log(-np.log(rng.random((len(holder), len(CALL_REASONS)))))
    reason_score = log_share + lift[holder] + gumbel
    if world.shift is not None:
        # After the shift: other reasons to call, and travel notices as rare as travel itself.
        call_day = started // _US_PER_DAY
        after = call_day >= _day_number(world.shift.starts)
        moved = np.array([world.shift.reason_log_odds.get(r, 0.0) for r in CALL_REASONS])
        reason_score[after] += moved
        reason_score[after, CALL_REASONS.index("travel_notice")] += np.log(
            world.shift.travel_factor(call_day[after])
        )
    reason = np.argmax(reason_score, axis=1).astype(np.int64)
    agent = rng.integers(0, AGENT_COUNT, len(holder))
    number = first_call_number + np.arange(len(holder), dtype=np.int64)
    return _Calls(holder, started, reason, agent, number)


def _shifted_truth(world: _World, benefit: I64, value_usd: F64, day: I64) -> tuple[F64, F64 | None]:
    """A benefit's true yearly worth and the income terms' factor on these days (unchanged without a shift)."""
    shift = world.shift
    if shift is None:
        return value_usd, None
    travel = world.catalog.view.travel[benefit]
    worth: F64 = np.where(travel, value_usd * shift.travel_factor(day), value_usd)
    effect: F64 = np.where(day >= _day_number(shift.starts), shift.income_effect, 1.0)
    return worth, effect


def _simulate_calls(
    world: _World, rng: np.random.Generator, chunk: _Chunk, stream: _Stream, calls: _Calls
) -> _Presentations:
    """Runs the legacy policy call by call in time order; outcomes change what later calls see."""
    cat = world.catalog
    out = _Presentations([], [], [], [], [], [], [])
    if len(calls.holder) == 0:
        return out
    first_of_holder = np.searchsorted(calls.holder, calls.holder)
    turn = np.arange(len(calls.holder)) - first_of_holder
    up_to = np.array([PRESENT_UP_TO[r] for r in CALL_REASONS])
    width = chunk.slot_benefit.shape[1]
    top = int(up_to.max())
    for number in range(int(turn.max()) + 1):
        index = np.flatnonzero(turn == number)
        holder = calls.holder[index]
        day = calls.started_us[index] // _US_PER_DAY
        reason = calls.reason[index]
        benefit = chunk.slot_benefit[holder]
        safe = np.where(benefit >= 0, benefit, 0)
        first_used = chunk.first_used_day(holder)
        unused = first_used >= day[:, None]
        eligible = (benefit >= 0) & unused & cat.presentable[safe, reason[:, None]]
        if world.launch_day is not None:
            eligible &= world.launch_day[safe] <= day[:, None]
        n_eligible = eligible.sum(axis=1)
        k = np.minimum(n_eligible, up_to[reason])
        if world.call_truth:
            _call_truth(world, chunk, calls, index, first_used, eligible, top, out)

        spend = _card_spend_90d(world, stream, chunk, holder, day, first_used)
        slot_spend = np.einsum("mc,msc->ms", spend, chunk.slot_member[holder])
        score = np.where(
            eligible, np.log1p(slot_spend) + LEGACY_POPULARITY_WEIGHT * cat.popularity[safe], -np.inf
        )
        top_order = np.argsort(-score, axis=1, kind="stable")
        position = np.empty_like(top_order)
        np.put_along_axis(position, top_order, np.arange(width)[None, :], axis=1)
        in_top = eligible & (position < k[:, None])
        random_order = np.argsort(
            np.where(eligible, rng.random(eligible.shape), np.inf), axis=1, kind="stable"
        )
        explore = rng.random(len(index)) < world.exploration_rate
        order = np.where(explore[:, None], random_order, top_order)[:, :top]
        shown = np.arange(order.shape[1])[None, :] < k[:, None]
        call_row, column = np.nonzero(shown)
        slot = order[call_row, column]
        rank = column + 1
        who = holder[call_row]
        share = k[call_row] / np.maximum(n_eligible[call_row], 1)
        epsilon = world.exploration_rate
        logging_prob = (1.0 - epsilon) * in_top[call_row, slot] + epsilon * share

        when = day[call_row]
        b = chunk.slot_benefit[who, slot]
        declined_at = chunk.last_declined_day[who, slot]
        value_usd, income_effect = _shifted_truth(world, b, chunk.slot_value_usd[who, slot], when)
        p_true = _sigmoid(
            TRUTH.logit(
                cat.view.take(b),
                value_usd,
                chunk.slot_share[who, slot],
                chunk.slot_affinity[who, slot],
                (when - chunk.open_day[who]).astype(np.float64),
                chunk.persona.age[who] - (world.calendar.as_of_day - when) / 365.25,
                chunk.persona.z_income[who],
                chunk.persona.engagement[who],
                declined_at >= when - DECLINE_MEMORY_DAYS,
                chunk.ever_declined[who, slot],
                reason[call_row],
                rank,
                world.agent_effect[calls.agent[index][call_row]],
                income_effect,
            )
        )
        not_discussed = rng.random(len(slot)) < _sigmoid(
            _logit(np.asarray(0.10))
            + 0.55 * (rank - 1)
            + world.agent_not_discussed[calls.agent[index][call_row]]
        )
        if chunk.natural_rate is None or chunk.natural_day is None:
            adopted = ~not_discussed & (rng.random(len(slot)) < p_true)
            caused = adopted
        else:
            # Discussed, the benefit is taken up with chance max(truth, p_natural): those due to start on
            # their own within the window do, and the call converts just enough of the others.
            natural = p_natural(
                chunk.natural_rate[who, slot], (when - chunk.active_day[who]).astype(np.float64)
            )
            p_true = np.maximum(p_true, natural)
            converts = rng.random(len(slot)) < (p_true - natural) / np.maximum(1.0 - natural, 1e-12)
            on_their_own = chunk.natural_day[who, slot] < when + NATURAL_WINDOW_DAYS
            adopted = ~not_discussed & (on_their_own | converts)
            caused = ~not_discussed & converts & ~on_their_own
        says = rng.random(len(slot))
        # Adopters mostly say yes; some knew already. Non-adopters mostly decline, some say yes anyway.
        outcome = np.where(
            adopted,
            np.where(says < ACCEPTED_IF_ADOPTED, _ACCEPTED, _ALREADY_AWARE),
            np.where(says < 0.72, _DECLINED, np.where(says < 0.86, _ACCEPTED, _ALREADY_AWARE)),
        )
        outcome = np.where(not_discussed, _NOT_DISCUSSED, outcome)

        start = when + np.minimum(np.floor(rng.exponential(5.0, len(slot))), LABEL_WINDOW_DAYS).astype(
            np.int64
        )
        np.minimum.at(chunk.adopted_day, (who[caused], slot[caused]), start[caused])
        declined = outcome == _DECLINED
        np.maximum.at(chunk.last_declined_day, (who[declined], slot[declined]), when[declined])
        chunk.ever_declined[who[declined], slot[declined]] = True
        if caused.any():
            chunk.refresh_gates()

        out.call.append(index[call_row])
        out.slot.append(slot)
        out.rank.append(rank)
        out.logging_prob.append(logging_prob)
        out.p_true.append(p_true)
        out.outcome.append(outcome)
        out.adopted.append(adopted)
    return out


def _call_truth(
    world: _World,
    chunk: _Chunk,
    calls: _Calls,
    index: I64,
    first_used: I64,
    eligible: Bool,
    top: int,
    out: _Presentations,
) -> None:
    """The true expected adoptions (the 30-day label) of every eligible benefit of these calls if it were
    shown at rank 1..`top`, in the world's state at the call; draws no random number.

    A benefit the cardholder starts using within the window anyway counts 1. Otherwise it is the chance
    the agent discusses it at that rank times the chance the pitch converts: the truth at that rank (in a
    counterfactual world, what it adds beyond p_natural among those who would not start on their own).
    """
    row, slot = np.nonzero(eligible)
    if len(row) == 0:
        return
    holder = calls.holder[index][row]
    when = calls.started_us[index][row] // _US_PER_DAY
    agent = calls.agent[index][row]
    b = chunk.slot_benefit[holder, slot]
    value_usd, income_effect = _shifted_truth(world, b, chunk.slot_value_usd[holder, slot], when)
    anyway = first_used[row, slot] <= when + LABEL_WINDOW_DAYS
    natural = np.zeros(len(row))
    if chunk.natural_rate is not None:
        natural = p_natural(
            chunk.natural_rate[holder, slot], (when - chunk.active_day[holder]).astype(np.float64)
        )
    values = np.empty((len(row), top))
    # NPS: discussed at each rank, then (relevant and) taken up and accepted; the points a discussion costs.
    nps = np.empty((len(row), 2 * top + 3))
    kind = world.catalog.view.kind[b]
    value_unshifted = chunk.slot_value_usd[holder, slot]
    reason = calls.reason[index][row]
    wrong_call = (
        world.counterfactual.wrong_call_drop[reason, kind]
        if world.counterfactual is not None
        else np.zeros(len(row))
    )
    nps[:, 2 * top] = -wrong_call - NPS_IRRELEVANT_DROP * (value_unshifted < NPS_IRRELEVANT_VALUE_USD)
    nps[:, 2 * top + 1] = _nps_latent_mean(chunk, holder, reason)
    nps[:, 2 * top + 2] = _tense(reason)
    on_their_own = (
        chunk.natural_day[holder, slot] < when + NATURAL_WINDOW_DAYS
        if chunk.natural_day is not None
        else np.zeros(len(row), dtype=bool)
    )
    for rank in range(1, top + 1):
        p_true = _sigmoid(
            TRUTH.logit(
                world.catalog.view.take(b),
                value_usd,
                chunk.slot_share[holder, slot],
                chunk.slot_affinity[holder, slot],
                (when - chunk.open_day[holder]).astype(np.float64),
                chunk.persona.age[holder] - (world.calendar.as_of_day - when) / 365.25,
                chunk.persona.z_income[holder],
                chunk.persona.engagement[holder],
                chunk.last_declined_day[holder, slot] >= when - DECLINE_MEMORY_DAYS,
                chunk.ever_declined[holder, slot],
                calls.reason[index][row],
                np.full(len(row), rank),
                world.agent_effect[agent],
                income_effect,
            )
        )
        converts = (np.maximum(p_true, natural) - natural) / np.maximum(1.0 - natural, 1e-12)
        discussed = 1.0 - _sigmoid(
            _logit(np.asarray(0.10)) + 0.55 * (rank - 1) + world.agent_not_discussed[agent]
        )
        values[:, rank - 1] = np.where(anyway, 1.0, discussed * converts)
        # Discussed, the simulation adopts with chance p_true (stationary) or on_their_own | converts.
        adopts = np.where(on_their_own, 1.0, converts) if chunk.natural_day is not None else p_true
        nps[:, rank - 1] = discussed
        nps[:, top + rank - 1] = adopts * ACCEPTED_IF_ADOPTED * (value_unshifted >= NPS_RELEVANT_VALUE_USD)
    out.truth_call.append(index[row])
    out.truth_slot.append(slot)
    out.truth_value.append(values)
    out.truth_nps.append(nps)


def _call_truth_table(world: _World, chunk: _Chunk, calls: _Calls, shown: _Presentations) -> pa.Table:
    """The call truth's rows: call_id, benefit_id, expected_adoption_rank_1..K, by call."""
    top = max(PRESENT_UP_TO.values())
    call = np.concatenate(shown.truth_call) if shown.truth_call else np.zeros(0, dtype=np.int64)
    slot = np.concatenate(shown.truth_slot) if shown.truth_slot else np.zeros(0, dtype=np.int64)
    values = np.concatenate(shown.truth_value) if shown.truth_value else np.zeros((0, top))
    nps = np.concatenate(shown.truth_nps) if shown.truth_nps else np.zeros((0, 2 * top + 3))
    order = np.argsort(call, kind="stable")
    call, slot, values, nps = call[order], slot[order], values[order], nps[order]
    benefit = chunk.slot_benefit[calls.holder[call], slot]
    columns: dict[str, pa.Array] = {
        "call_id": _call_ids(calls.call_number[call]),
        "benefit_id": pa.array(np.asarray(world.catalog.benefit_ids, dtype=object)[benefit], pa.string()),
    }
    named = CALL_TRUTH_COLUMNS
    for rank in range(1, top + 1):
        columns[named.adoption(rank)] = pa.array(values[:, rank - 1], pa.float64())
    for rank in range(1, top + 1):
        columns[named.discussed(rank)] = pa.array(nps[:, rank - 1], pa.float64())
    for rank in range(1, top + 1):
        columns[named.relevant(rank)] = pa.array(nps[:, top + rank - 1], pa.float64())
    columns[named.nps_points] = pa.array(nps[:, 2 * top], pa.float64())
    columns[named.nps_mean] = pa.array(nps[:, 2 * top + 1], pa.float64())
    columns[named.nps_tense] = pa.array(nps[:, 2 * top + 2] > 0, pa.bool_())
    return pa.table(columns)


def _dates(day: I64) -> pa.Array:
    return pa.array(day.astype(np.int32), pa.date32())


def _timestamps(us: I64) -> pa.Array:
    return pa.array(us, pa.timestamp("us"))


def _finish_transactions(world: _World, rng: np.random.Generator, chunk: _Chunk, stream: _Stream) -> pa.Table:
    cal = world.calendar
    kept = stream.day >= chunk.gate_day[stream.holder, stream.category]
    holder, day, amount, mcc = (
        stream.holder[kept],
        stream.day[kept],
        stream.amount_usd[kept],
        stream.mcc[kept],
    )

    first_used = chunk.first_used_day(np.arange(chunk.n))
    earn = (chunk.slot_benefit >= 0) & (chunk.slot_kind == _EARN)
    injected = earn & (first_used >= cal.start_day) & (first_used < cal.as_of_day)
    inj_holder, inj_slot = np.nonzero(injected)
    holder = np.concatenate([holder, inj_holder])
    day = np.concatenate([day, first_used[inj_holder, inj_slot]])
    amount = np.concatenate([amount, chunk.inject_amount_usd[inj_holder, inj_slot]])
    mcc = np.concatenate([mcc, chunk.inject_mcc[inj_holder, inj_slot]])

    # Refunds: a share of purchases comes back, in full or in part, days later, at the same merchant type.
    refunded = np.flatnonzero(rng.random(len(holder)) < REFUND_SHARE)
    refund_day = day[refunded] + 1 + np.floor(rng.exponential(9.0, len(refunded))).astype(np.int64)
    part = np.where(rng.random(len(refunded)) < 0.75, 1.0, rng.uniform(0.1, 0.9, len(refunded)))
    refund_amount = -np.maximum(np.round(amount[refunded] * part, 2), 0.01)
    in_window = refund_day < cal.as_of_day
    refunded, refund_day, refund_amount = refunded[in_window], refund_day[in_window], refund_amount[in_window]
    holder = np.concatenate([holder, holder[refunded]])
    mcc = np.concatenate([mcc, mcc[refunded]])
    day = np.concatenate([day, refund_day])
    amount = np.concatenate([amount, refund_amount])

    order = np.argsort(holder * (cal.span_days + 1) + (day - cal.start_day), kind="stable")
    return pa.table(
        {
            "cardholder_id": chunk.ids.take(pa.array(holder[order])),
            "transaction_date": _dates(day[order]),
            "amount": pa.array(amount[order], pa.float64()),
            "mcc": pa.array(mcc[order], pa.int32()),
        }
    )


def _call_ids(numbers: I64) -> pa.Array:
    return pa.array([f"K{i:09d}" for i in numbers.tolist()], pa.string())


def _agent_ids(agent: I64) -> pa.Array:
    names = pa.array([f"A{i + 1:04d}" for i in range(AGENT_COUNT)], pa.string())
    return names.take(pa.array(agent))


def _finish_calls(
    world: _World, rng: np.random.Generator, chunk: _Chunk, calls: _Calls, shown: _Presentations
) -> tuple[pa.Table, pa.Table, pa.Table]:
    cat = world.catalog
    call = np.concatenate(shown.call) if shown.call else np.zeros(0, dtype=np.int64)
    slot = np.concatenate(shown.slot) if shown.slot else np.zeros(0, dtype=np.int64)
    rank = np.concatenate(shown.rank) if shown.rank else np.zeros(0, dtype=np.int64)
    prob = np.concatenate(shown.logging_prob) if shown.logging_prob else np.zeros(0)
    outcome = np.concatenate(shown.outcome) if shown.outcome else np.zeros(0, dtype=np.int64)
    adopted = np.concatenate(shown.adopted) if shown.adopted else np.zeros(0, dtype=bool)
    order = np.lexsort((rank, call))
    call, slot, rank, outcome = call[order], slot[order], rank[order], outcome[order]
    prob, adopted = prob[order], adopted[order]

    call_ids = _call_ids(calls.call_number)
    reasons = pa.array(np.asarray(CALL_REASONS, dtype=object)[calls.reason], pa.string())
    agents = _agent_ids(calls.agent)
    calls_table = pa.table(
        {
            "call_id": call_ids,
            "cardholder_id": chunk.ids.take(pa.array(calls.holder)),
            "started_at": _timestamps(calls.started_us),
            "call_reason": reasons,
            "agent_id": agents,
        }
    )
    holder = calls.holder[call]
    presented_us = calls.started_us[call] + (60 + 45 * rank + rng.integers(0, 240, len(call))) * 1_000_000
    picks = pa.array(call)
    conversations = pa.table(
        {
            "call_id": call_ids.take(picks),
            "cardholder_id": chunk.ids.take(pa.array(holder)),
            "benefit_id": pa.array(
                np.asarray(cat.benefit_ids, dtype=object)[chunk.slot_benefit[holder, slot]], pa.string()
            ),
            "presented_at": _timestamps(presented_us),
            "outcome": pa.array(np.asarray(OUTCOMES, dtype=object)[outcome], pa.string()),
            "agent_id": agents.take(picks),
            "rank": pa.array(rank, pa.int64()),
            "call_reason": reasons.take(picks),
            "logging_prob": pa.array(prob, pa.float64()),
        }
    )

    value_usd = chunk.slot_value_usd[holder, slot]
    kind = cat.view.kind[chunk.slot_benefit[holder, slot]]
    nps = _survey_answers(world, rng, chunk, calls, call_ids, call, outcome, adopted, value_usd, kind)
    return calls_table, conversations, nps


def _survey_answers(
    world: _World,
    rng: np.random.Generator,
    chunk: _Chunk,
    calls: _Calls,
    call_ids: pa.Array,
    call: I64,
    outcome: I64,
    adopted: Bool,
    value_usd: F64,
    kind: npt.NDArray[np.int8],
) -> pa.Table:
    """NPS answers for about a quarter of calls: latent satisfaction, the call's reason, and what was pitched.

    A relevant benefit taken up lifts the score; pitching on a complaint or dispute, or pitching benefits
    worth little to the cardholder, lowers it. In a counterfactual world every pitch of a kind on the wrong
    call (`WRONG_CALL_NPS_DROP`) lowers it further.
    """
    n_calls = len(calls.holder)
    discussed = outcome != _NOT_DISCUSSED
    took_relevant = (outcome == _ACCEPTED) & adopted & (value_usd >= NPS_RELEVANT_VALUE_USD)
    relevant_accept = np.bincount(call, weights=took_relevant.astype(np.float64), minlength=n_calls) > 0
    irrelevant = np.bincount(
        call,
        weights=(discussed & (value_usd < NPS_IRRELEVANT_VALUE_USD)).astype(np.float64),
        minlength=n_calls,
    )
    any_pitch = np.bincount(call, weights=discussed.astype(np.float64), minlength=n_calls) > 0
    tense = _tense(calls.reason)
    latent = (
        _nps_latent_mean(chunk, calls.holder, calls.reason)
        + NPS_RELEVANT_ACCEPT_LIFT * relevant_accept
        - NPS_TENSE_PITCH_DROP * (tense & any_pitch)
        - NPS_IRRELEVANT_DROP * irrelevant
        + rng.normal(0.0, NPS_NOISE_SD, n_calls)
    )
    if world.counterfactual is not None:
        drop = world.counterfactual.wrong_call_drop[calls.reason[call], kind] * discussed
        latent = latent - np.bincount(call, weights=drop, minlength=n_calls)
    score = np.clip(np.round(latent), 0, 10).astype(np.int64)
    responded_us = calls.started_us + (600 + rng.exponential(10 * 3600, n_calls)).astype(np.int64) * 1_000_000
    before_as_of = responded_us < world.calendar.as_of_day * _US_PER_DAY
    answers = (rng.random(n_calls) < NPS_RESPONSE_SHARE) & before_as_of
    return pa.table(
        {
            "call_id": call_ids.filter(pa.array(answers)),
            "score": pa.array(score[answers], pa.int64()),
            "responded_at": _timestamps(responded_us[answers]),
        }
    )


def _tense(reason: I64) -> Bool:
    """Whether each call's reason makes any pitch unwelcome (NPS_TENSE_REASONS)."""
    tense: Bool = np.isin(reason, [CALL_REASONS.index(r) for r in NPS_TENSE_REASONS])
    return tense


def _nps_latent_mean(chunk: _Chunk, holder: I64, reason: I64) -> F64:
    """The survey's latent score before anything pitched and before noise: base, satisfaction, call reason."""
    reason_effect = np.array([_NPS_REASON_EFFECT.get(r, 0.0) for r in CALL_REASONS])
    mean: F64 = (
        NPS_LATENT_BASE + NPS_SATISFACTION_WEIGHT * chunk.persona.satisfaction[holder] + reason_effect[reason]
    )
    return mean


def _finish_usage(
    world: _World, chunk: _Chunk, calls: _Calls, shown: _Presentations
) -> tuple[pa.Table, pa.Table]:
    """benefit_usage rows (used before as_of) and oracle rows (every benefit on the card not used by as_of;
    in a regime-shift world also as of each month's first day from the shift on, with an `as_of` column)."""
    cal, cat = world.calendar, world.catalog
    first_used = chunk.first_used_day(np.arange(chunk.n))
    valid = chunk.slot_benefit >= 0
    used = valid & (first_used < cal.as_of_day)
    holder, slot = np.nonzero(used)
    benefit_names = np.asarray(cat.benefit_ids, dtype=object)
    usage = pa.table(
        {
            "cardholder_id": chunk.ids.take(pa.array(holder)),
            "benefit_id": pa.array(benefit_names[chunk.slot_benefit[holder, slot]], pa.string()),
            "first_used_date": _dates(first_used[holder, slot]),
        }
    )
    if world.shift is None:
        oracle = _oracle_at(
            world, chunk, valid & ~used, cal.as_of_day, chunk.last_declined_day, chunk.ever_declined
        )
        return usage, oracle

    call = np.concatenate(shown.call) if shown.call else np.zeros(0, dtype=np.int64)
    declined = (np.concatenate(shown.outcome) == _DECLINED) if shown.outcome else np.zeros(0, dtype=bool)
    declined_holder = calls.holder[call[declined]]
    declined_slot = np.concatenate(shown.slot)[declined] if shown.slot else np.zeros(0, dtype=np.int64)
    declined_day = calls.started_us[call[declined]] // _US_PER_DAY
    shift_day = _day_number(world.shift.starts)
    months = cal.month_start_days[cal.month_start_days >= shift_day]
    tables = []
    for day in [*months.tolist(), cal.as_of_day]:
        # What the story had reached by `day`: benefits used before it, declines before it.
        before = declined_day < day
        last_declined = np.full(chunk.slot_benefit.shape, -_NEVER, dtype=np.int64)
        np.maximum.at(last_declined, (declined_holder[before], declined_slot[before]), declined_day[before])
        ever_declined = last_declined > -_NEVER
        pending = valid & (first_used >= day) & (chunk.open_day < day)[:, None]
        table = _oracle_at(world, chunk, pending, day, last_declined, ever_declined)
        tables.append(table.append_column(ORACLE_AS_OF_COLUMN, _dates(np.full(table.num_rows, day))))
    return usage, pa.concat_tables(tables)


def _oracle_at(
    world: _World, chunk: _Chunk, pending: Bool, day: int, last_declined: I64, ever_declined: Bool
) -> pa.Table:
    """The truth for the `pending` (cardholder, slot) pairs on a general call, at rank 1, on `day`."""
    cat = world.catalog
    holder, slot = np.nonzero(pending)
    benefit = chunk.slot_benefit[holder, slot]
    declined_at = last_declined[holder, slot]
    value_usd = chunk.slot_value_usd[holder, slot]
    age = chunk.persona.age[holder]
    income_effect = None
    if world.shift is not None:
        value_usd, income_effect = _shifted_truth(world, benefit, value_usd, np.full(len(holder), day))
        age = age - (world.calendar.as_of_day - day) / 365.25
    p_true = _sigmoid(
        TRUTH.logit(
            cat.view.take(benefit),
            value_usd,
            chunk.slot_share[holder, slot],
            chunk.slot_affinity[holder, slot],
            (day - chunk.open_day[holder]).astype(np.float64),
            age,
            chunk.persona.z_income[holder],
            chunk.persona.engagement[holder],
            declined_at >= day - DECLINE_MEMORY_DAYS,
            ever_declined[holder, slot],
            np.full(len(holder), CALL_REASONS.index("general")),
            np.ones(len(holder), dtype=np.int64),
            np.zeros(len(holder)),
            income_effect,
        )
    )
    columns = {
        "cardholder_id": chunk.ids.take(pa.array(holder)),
        "benefit_id": pa.array(np.asarray(cat.benefit_ids, dtype=object)[benefit], pa.string()),
        "p_true": pa.array(p_true, pa.float64()),
        "value_usd": pa.array(np.round(value_usd, 2), pa.float64()),
    }
    if world.counterfactual is not None and chunk.natural_rate is not None:
        natural = p_natural(
            chunk.natural_rate[holder, slot], (day - chunk.active_day[holder]).astype(np.float64)
        )
        columns["p_true"] = pa.array(np.maximum(p_true, natural), pa.float64())
        columns[ORACLE_NATURAL_COLUMN] = pa.array(natural, pa.float64())
        classes = np.asarray(UPLIFT_CLASSES, dtype=object)[world.counterfactual.benefit_class[benefit]]
        columns[ORACLE_CLASS_COLUMN] = pa.array(classes, pa.string())
    return pa.table(columns)


def _generate_chunk(
    world: _World, seed: np.random.SeedSequence, first_number: int, n: int, first_call_number: int
) -> dict[str, pa.Table]:
    rng = np.random.default_rng(seed)
    # What a regime shift draws comes from a stream of its own: the chunk's own draws stay as they are.
    shift_rng = np.random.default_rng(seed.spawn(1)[0]) if world.shift is not None else None
    chunk, cardholders = _draw_cardholders(world, rng, first_number, n)
    stream = _draw_stream(world, rng, chunk)
    if world.shift is not None and shift_rng is not None:
        stream = _thin_travel(world.shift, shift_rng, stream)
    calls = _draw_calls(world, rng, chunk, first_call_number, shift_rng)
    shown = _simulate_calls(world, rng, chunk, stream, calls)
    calls_table, conversations, nps = _finish_calls(world, rng, chunk, calls, shown)
    transactions = _finish_transactions(world, rng, chunk, stream)
    usage, oracle = _finish_usage(world, chunk, calls, shown)
    tables = {
        "cardholders": cardholders,
        "transactions": transactions,
        "benefit_usage": usage,
        "conversations": conversations,
        "calls": calls_table,
        "nps": nps,
        "oracle": oracle,
    }
    if world.call_truth:
        tables["call_truth"] = _call_truth_table(world, chunk, calls, shown)
    return tables
