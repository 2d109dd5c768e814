"""Features: typed data views + (cardholder_id, as_of) snapshots → point-in-time feature rows.

One SQL statement computes every feature for any set of (cardholder_id, as_of) pairs: all cardholders at
one date (serving profiles) or one pair per presentation (training). Only rows dated strictly before a
pair's as_of count; timestamps count on their UTC calendar day. A row `age_days` = as_of − date days old
is in the last w days when age_days ≤ w. Purchases are rows with amount > 0, refunds amount < 0.

- `spend_{c}_{w}d_usd`: net spend (purchases minus refunds) in category c, last w ∈ {30, 90, 365} days;
  `tx_{c}_{w}d`: purchases; `share_{c}_{w}d`: max(spend, 0) over the sum of the categories' positive
  spend (0 when none); `trend_{c}`: (a − b) / (a + b + 1) with a, b the positive spend of the last 90
  days and of the 90 before; `days_since_{c}`: since the last purchase, NULL when none ever.
- `spend_total_{w}d_usd`, `tx_total_{w}d`, `active_days_{w}d` (days with a purchase), `refund_{w}d_usd`
  (absolute), `refund_count_{w}d`, `days_since_last_tx` (last purchase), `months_with_spend_365d`
  (30-day periods counted back from as_of with a purchase; the 13th period is 5 days long).
- `product_id`, `region`, `segment` (categories), `tenure_months` (whole months since open_date),
  `age_years` (as_of's year − birth_year), then the chosen extra cardholder columns.
- History: `benefits_used_count`, `calls_so_far`, `presentations_so_far`, `accepted_so_far`,
  `declined_so_far`, `presentations_180d`, `nps_count`, `nps_mean`, `nps_last`, `days_since_last_call`.
  A presentation whose outcome is `not_discussed` or `unmarked` is not known to be heard and is no presentation; a call is dated
  by its earliest sighting (calls table or presentations); an NPS answer counts from `responded_at`,
  else from its call.

Money is rounded to cents, so the same data gives the same bytes whatever order a parallel sum took.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated, Final, Literal

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic import ValidationError as PydanticValidationError

from nba.contract._catalog import SAFE_YAML_LOADER
from nba.contract._mcc import N_CODES, MccMap
from nba.contract._tables import TABLES
from nba.errors import DataError, SchemaError
from nba.features._dialect import DUCKDB, Dialect, SqlEngine, as_sql_engine
from nba.vocab import CATEGORY_INDEX, SPEND_CATEGORIES, UNHEARD_OUTCOMES

# Feature "as of D" uses rows dated strictly before D. Every window below counts whole days back from D:
# a row `age_days = D - date` days old is in the last w days when 1 <= age_days <= w.
WINDOWS_DAYS: Final = (30, 90, 365)
TREND_DAYS: Final = 90
# `months_with_spend_365d` splits the 365-day window into periods of this many days counted back from D.
PERIOD_DAYS: Final = 30
HISTORY_WINDOW_DAYS: Final = 180
PRESENTATION_WINDOWS_DAYS: Final = (60, 180)

BASE_CATEGORICAL: Final = ("product_id", "region", "segment")
CARD_FEATURES: Final = ("product_id", "tenure_months", "age_years", "region", "segment")
HISTORY_FEATURES: Final = (
    "benefits_used_count",
    "calls_so_far",
    "presentations_so_far",
    "accepted_so_far",
    "declined_so_far",
    f"presentations_{HISTORY_WINDOW_DAYS}d",
    "nps_count",
    "nps_mean",
    "nps_last",
    "days_since_last_call",
)
_HISTORY_CTES: Final = ("call_history", "presentation_history", "usage_history", "nps_history")
# History features that are NULL rather than 0 when there is nothing before the date.
# The outcomes of presentations no feature counts (not heard, or not known to be: nba.vocab says why).
_UNHEARD: Final = ", ".join(f"'{outcome}'" for outcome in UNHEARD_OUTCOMES)
_NULLABLE_HISTORY: Final = frozenset({"nps_mean", "nps_last", "days_since_last_call"})
KEY_COLUMNS: Final = ("cardholder_id", "as_of")
BENEFIT_HISTORY_COLUMNS: Final = (
    "cardholder_id",
    "as_of",
    "benefit_id",
    "used",
    *(f"presented_{w}d" for w in PRESENTATION_WINDOWS_DAYS),
    *(f"declined_{w}d" for w in PRESENTATION_WINDOWS_DAYS),
    "accepted_ever",
    "days_since_last_presented",
)

ExtraKind = Literal["numeric", "categorical"]
_MCC_VIEW: Final = "nba_features_mcc"
DEFAULT_SNAPSHOT_VIEW: Final = "nba_snapshots"
# Finite doubles only: NaN sorts above every number and the infinities lie outside, so both fail this range.
_FINITE_LIMIT: Final = "1e308"
# Names that look like keys; an integer column with one of these endings and a different value in every row
# is an account number, not a quantity.
_ID_SUFFIXES: Final = ("id", "_no", "_num", "_number", "_key", "_code")


# ---------------------------------------------------------------------------------------------------------
# Configuration and the extra (CRM) columns of the cardholders table


class FeatureConfig(BaseModel):
    """Which extra columns of `cardholders` (a bank's own CRM attributes) become features.

    Columns are chosen by the rules in `select_extra_columns`; `include` takes a column whatever the
    rules say, `exclude` leaves one out. Load one from YAML or JSON with `load_feature_config`:

        include: [credit_limit_usd]
        exclude: [branch_code]
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    max_category_levels: Annotated[int, Field(ge=2, le=10_000)] = 50

    @model_validator(mode="after")
    def _check_disjoint(self) -> FeatureConfig:
        both = sorted(set(self.include) & set(self.exclude))
        if both:
            raise ValueError(f"columns both in `include` and `exclude`: {', '.join(both)}")
        return self


def load_feature_config(path: Path) -> FeatureConfig:
    """Reads a FeatureConfig from a YAML or JSON file.

    Raises DataError naming the file when it cannot be read or does not describe a FeatureConfig.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"{path}: cannot read the feature config ({exc.strerror or exc})") from None
    try:
        raw = json.loads(text) if path.suffix == ".json" else yaml.load(text, Loader=SAFE_YAML_LOADER)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise DataError(
            f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'} ({first})"
        ) from None
    try:
        return FeatureConfig.model_validate(raw if raw is not None else {})
    except PydanticValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        message = error["msg"] if not where else f"`{where}`: {error['msg']}"
        raise DataError(f"{path}: {message}") from None


class ExtraColumns(BaseModel):
    """The extra cardholder columns taken as features (name → kind, in file order) and those left out.

    Decided once on training data by `select_extra_columns`, stored with the model, and passed unchanged
    to `build_cardholder_features` when serving.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    taken: dict[str, ExtraKind] = Field(default_factory=dict)
    left_out: dict[str, str] = Field(default_factory=dict)

    @property
    def numeric(self) -> tuple[str, ...]:
        return tuple(name for name, kind in self.taken.items() if kind == "numeric")

    @property
    def categorical(self) -> tuple[str, ...]:
        return tuple(name for name, kind in self.taken.items() if kind == "categorical")


def _text_sql(column: str, alias: str = "", dialect: Dialect = DUCKDB) -> str:
    """A column's value as trimmed text, NULL when empty (CSV columns arrive as text, Parquet ones typed)."""
    quoted = dialect.quote_ident(column)
    qualified = f"{alias}.{quoted}" if alias else quoted
    return f"NULLIF(TRIM(CAST({qualified} AS {dialect.text_type})), '')"


def _number_sql(column: str, alias: str = "", dialect: Dialect = DUCKDB) -> str:
    """A column's value as a finite DOUBLE, NULL when empty or not a number."""
    cast = f"TRY_CAST({_text_sql(column, alias, dialect)} AS DOUBLE)"
    return f"CASE WHEN {cast} BETWEEN -{_FINITE_LIMIT} AND {_FINITE_LIMIT} THEN {cast} END"


def extra_column_names(con: duckdb.DuckDBPyConnection | SqlEngine) -> tuple[str, ...]:
    """The columns of the `cardholders` view that the data contract does not define, in file order."""
    known = {column.name for column in TABLES["cardholders"].columns}
    return tuple(name for name in as_sql_engine(con).column_names("cardholders") if name not in known)


def select_extra_columns(con: duckdb.DuckDBPyConnection | SqlEngine, config: FeatureConfig) -> ExtraColumns:
    """Decides which extra columns of `cardholders` become features, and why the others do not.

    Rules, on the non-empty values of each column: all parse as numbers → numeric (a float feature),
    unless it is an integer key (a different value in every row and a name ending in id, _no, _number,
    _key, _code); otherwise text with at most `max_category_levels` distinct values and fewer distinct
    values than half its non-empty rows → categorical; otherwise left out (identifier-like: unique per
    row; or high-cardinality text). A column with no values, or whose name is already a built-in
    feature, is left out too. `config.include` takes a column as numeric when its values parse, else as
    categorical; `config.exclude` leaves one out.

    Raises DataError when `include` or `exclude` names a column `cardholders` does not have as an extra.
    """
    engine = as_sql_engine(con)
    names = extra_column_names(engine)
    unknown = [name for name in (*config.include, *config.exclude) if name not in names]
    if unknown:
        found = ", ".join(names) or "none"
        raise DataError(
            f"feature config names column {unknown[0]!r}, which is not an extra column of cardholders "
            f"(extra columns: {found})"
        )
    builtin = set(feature_names(ExtraColumns())) | set(KEY_COLUMNS)
    clashing = [name for name in config.include if name in builtin]
    if clashing:
        raise DataError(
            f"feature config includes {clashing[0]!r}, whose name is a built-in feature; rename it"
        )
    taken: dict[str, ExtraKind] = {}
    left_out: dict[str, str] = {}
    for name, stats in zip(names, _column_stats(engine, names), strict=True):
        if name in config.exclude:
            left_out[name] = "excluded by the feature config"
        elif name in config.include:
            taken[name] = "numeric" if stats.non_numeric == 0 else "categorical"
        elif name in builtin:
            left_out[name] = "its name is a built-in feature's"
        else:
            kind, reason = _classify(name, stats, config.max_category_levels)
            if kind is not None:
                taken[name] = kind
            else:
                left_out[name] = reason
    return ExtraColumns(taken=taken, left_out=left_out)


@dataclass(frozen=True)
class _ColumnStats:
    """Counts over one extra column's non-empty values."""

    values: int
    distinct: int
    non_numeric: int
    non_integer: int


def _column_stats(engine: SqlEngine, names: tuple[str, ...]) -> list[_ColumnStats]:
    if not names:
        return []
    parts = []
    for name in names:
        text, number = _text_sql(name, dialect=engine.dialect), _number_sql(name, dialect=engine.dialect)
        parts.append(
            f"count({text}), count(DISTINCT {text}), count({text}) FILTER (WHERE {number} IS NULL), "
            f"count({text}) FILTER (WHERE {number} IS NULL OR {number} <> FLOOR({number}))"
        )
    row = engine.rows(f"SELECT {', '.join(parts)} FROM cardholders")[0]
    return [
        _ColumnStats(values=row[i], distinct=row[i + 1], non_numeric=row[i + 2], non_integer=row[i + 3])
        for i in range(0, len(row), 4)
    ]


def _classify(name: str, stats: _ColumnStats, max_levels: int) -> tuple[ExtraKind | None, str]:
    """The kind a column is taken as, or None and the reason it is left out."""
    if stats.values == 0:
        return None, "no values"
    unique = stats.distinct == stats.values and stats.values > 1
    if stats.non_numeric == 0:
        if unique and stats.non_integer == 0 and name.lower().endswith(_ID_SUFFIXES):
            return None, "identifier-like: a different whole number in every row, named like a key"
        return "numeric", ""
    if stats.distinct <= max_levels and 2 * stats.distinct < stats.values:
        return "categorical", ""
    if unique:
        return None, "identifier-like: a different value in every row"
    return None, (
        f"high-cardinality text: {stats.distinct} distinct values in {stats.values} rows "
        f"(a category needs at most {max_levels}, and fewer than half the rows)"
    )


# ---------------------------------------------------------------------------------------------------------
# Names


def spend_feature_names() -> tuple[str, ...]:
    """The per-category spend features, in order: spend, tx, share (category × window), trend, days_since."""
    names: list[str] = []
    for pattern in ("spend_{c}_{w}d_usd", "tx_{c}_{w}d", "share_{c}_{w}d"):
        names.extend(pattern.format(c=c, w=w) for c in SPEND_CATEGORIES for w in WINDOWS_DAYS)
    names.extend(f"trend_{c}" for c in SPEND_CATEGORIES)
    names.extend(f"days_since_{c}" for c in SPEND_CATEGORIES)
    return tuple(names)


def total_feature_names() -> tuple[str, ...]:
    """The whole-card spend features, in order."""
    names: list[str] = []
    for w in WINDOWS_DAYS:
        names.extend(
            (
                f"spend_total_{w}d_usd",
                f"tx_total_{w}d",
                f"active_days_{w}d",
                f"refund_{w}d_usd",
                f"refund_count_{w}d",
            )
        )
    names.extend(("days_since_last_tx", f"months_with_spend_{WINDOWS_DAYS[-1]}d"))
    return tuple(names)


def feature_names(extra: ExtraColumns) -> tuple[str, ...]:
    """Every feature column `build_cardholder_features` returns after `cardholder_id, as_of`, in order.

    Category spend (`spend_feature_names`), card totals (`total_feature_names`), card and person
    (`CARD_FEATURES`), the taken extra columns in file order, then history (`HISTORY_FEATURES`).
    """
    return (*spend_feature_names(), *total_feature_names(), *CARD_FEATURES, *extra.taken, *HISTORY_FEATURES)


def categorical_features(extra: ExtraColumns) -> tuple[str, ...]:
    """The feature columns that hold categories (as strings); every other feature is a number."""
    return (*BASE_CATEGORICAL, *extra.categorical)


# ---------------------------------------------------------------------------------------------------------
# Snapshots: which (cardholder_id, as_of) pairs to compute


def snapshot_all_sql(as_of: date, dialect: Dialect = DUCKDB) -> str:
    """The snapshots relation for every cardholder whose card was open before `as_of`, at that date.

    >>> snapshot_all_sql(date(2025, 3, 1))
    "SELECT cardholder_id, DATE '2025-03-01' AS as_of FROM cardholders WHERE open_date < DATE '2025-03-01'"
    """
    day = dialect.date_literal(as_of)
    return f"SELECT cardholder_id, {day} AS as_of FROM cardholders WHERE open_date < {day}"


def register_snapshots(
    con: duckdb.DuckDBPyConnection | SqlEngine, snapshots: pa.Table, name: str = DEFAULT_SNAPSHOT_VIEW
) -> str:
    """Registers an Arrow table of (cardholder_id, as_of) pairs on `con` and returns its snapshots SQL.

    `as_of` may be a date or a timestamp; a timestamp counts as its UTC calendar date (a presentation's
    features are as of the day it happened). Other columns are ignored. The view stays registered
    under `name` until `con.unregister(name)` (an `SqlEngine`: `unregister(name)`).

    Raises SchemaError when a column is missing or has the wrong type.
    """
    for column in KEY_COLUMNS:
        if column not in snapshots.column_names:
            raise SchemaError(f"snapshots need columns cardholder_id and as_of; {column} is missing")
    as_of = snapshots.column("as_of")
    if pa.types.is_timestamp(as_of.type):
        # Arrow keeps zoned timestamps as UTC instants, so dropping the zone leaves the UTC wall time.
        as_of = pc.cast(pc.cast(as_of, pa.timestamp(as_of.type.unit)), pa.date32())
    elif pa.types.is_date(as_of.type):
        as_of = pc.cast(as_of, pa.date32())
    else:
        raise SchemaError(f"snapshots column as_of must hold dates or timestamps, got {as_of.type}")
    ids = snapshots.column("cardholder_id")
    if not (pa.types.is_string(ids.type) or pa.types.is_large_string(ids.type)):
        raise SchemaError(f"snapshots column cardholder_id must hold strings, got {ids.type}")
    engine = as_sql_engine(con)
    engine.register(name, pa.table({"cardholder_id": ids, "as_of": as_of}))
    return f"SELECT cardholder_id, as_of FROM {engine.dialect.quote_ident(name)}"


# ---------------------------------------------------------------------------------------------------------
# SQL. Written in ANSI SQL (CTEs, FILTER, CASE, window functions) so another engine runs the same text; the
# few expressions engines spell differently come from a `Dialect` (`_dialect`: days between dates, a bit,
# quoting, the text type).


_PAIR_ORDER: Final = "cardholder_id, as_of"


def _snapshots_cte(snapshots_sql: str, dialect: Dialect) -> str:
    # An integer key per pair: the heavy aggregates group by it rather than by (string, date), which is
    # what keeps them close to a bare scan (see bench/bench_features.py). DuckDB's is dense and in pair
    # order; Spark's is numbered per hash bucket, so no step of the plan runs in one partition.
    snap_id = dialect.snapshot_id("cardholder_id", _PAIR_ORDER)
    return (
        f"snap AS (SELECT cardholder_id, as_of, {snap_id} AS snap_id "
        f"FROM (SELECT DISTINCT cardholder_id, CAST(as_of AS DATE) AS as_of FROM ({snapshots_sql}) AS given) AS pairs)"
    )


def _category_alias(category: str) -> str:
    return f"cat_{category}"


def _spend_ctes(mcc_view: str, dialect: Dialect) -> Iterator[str]:
    """CTEs over the transactions before each snapshot's date: per category, per card, purchase days, refunds."""
    windows, longest = WINDOWS_DAYS, WINDOWS_DAYS[-1]
    yield (
        "scoped_tx AS (SELECT s.snap_id, m.category_id, t.amount, "
        f"{dialect.days_between('s.as_of', 't.transaction_date')} AS age_days "
        "FROM transactions AS t JOIN snap AS s ON t.cardholder_id = s.cardholder_id AND t.transaction_date < s.as_of "
        f"JOIN {mcc_view} AS m ON t.mcc = m.mcc)"
    )
    # The raw rows are aggregated once, per (snapshot, category), with a handful of windowed aggregates;
    # the wide layout is a join per category on this small result, not 150 conditional aggregates.
    aggregates = [f"sum(amount) FILTER (WHERE age_days <= {w}) AS net_{w}d" for w in windows]
    aggregates.append(
        f"sum(amount) FILTER (WHERE age_days > {TREND_DAYS} AND age_days <= {2 * TREND_DAYS}) "
        f"AS net_prior_{TREND_DAYS}d"
    )
    aggregates.extend(
        f"count(*) FILTER (WHERE amount > 0 AND age_days <= {w}) AS purchases_{w}d" for w in windows
    )
    aggregates.append("min(age_days) FILTER (WHERE amount > 0) AS days_since_purchase")
    yield (
        f"by_category AS (SELECT snap_id, category_id, {', '.join(aggregates)} "
        "FROM scoped_tx GROUP BY snap_id, category_id)"
    )
    cents = dialect.round_cents
    totals = [f"sum(net_{w}d) AS net_total_{w}d" for w in windows]
    # Shares divide a category's spend by the spend of the categories that are net positive, so a
    # refund-heavy category cannot push another's share above 1 or below 0. Rounded like every amount:
    # a sum in no fixed order must not change a share's last bit.
    for w in windows:
        net = cents(f"net_{w}d")
        totals.append(f"{cents(f'sum(CASE WHEN {net} > 0 THEN {net} ELSE 0 END)')} AS positive_{w}d")
    totals.extend(f"sum(purchases_{w}d) AS tx_total_{w}d" for w in windows)
    totals.append("min(days_since_purchase) AS days_since_last_tx")
    yield f"card_totals AS (SELECT snap_id, {', '.join(totals)} FROM by_category GROUP BY snap_id)"
    # Active days cross categories, and a distinct (snapshot, day) list costs more than everything else.
    # Instead each 30-day period back from the date keeps a 30-bit mask of its days with a purchase; the
    # 30- and 90-day windows are whole periods, so masks give every window's active days and the months.
    period = f"FLOOR((age_days - 1) / {PERIOD_DAYS}.0)"
    day_bit = dialect.bit(f"(age_days - 1) - {period} * {PERIOD_DAYS}")
    yield (
        f"by_period AS (SELECT snap_id, {period} AS period, {dialect.bit_or(day_bit)} AS day_mask FROM scoped_tx "
        f"WHERE amount > 0 AND age_days <= {longest} GROUP BY snap_id, {period})"
    )
    day_count = dialect.bit_count("day_mask")
    day_parts = [
        f"sum({day_count}) FILTER (WHERE period < {w // PERIOD_DAYS}) AS active_days_{w}d"
        for w in windows[:-1]
    ]
    day_parts.append(f"sum({day_count}) AS active_days_{longest}d")
    day_parts.append(f"count(*) AS months_with_spend_{longest}d")
    yield f"activity AS (SELECT snap_id, {', '.join(day_parts)} FROM by_period GROUP BY snap_id)"
    # Refunds are a few percent of the rows: filtering them out first makes their aggregates cheap.
    refund_parts = []
    for w in windows:
        refund_parts.append(f"sum(-amount) FILTER (WHERE age_days <= {w}) AS refund_{w}d_usd")
        refund_parts.append(f"count(*) FILTER (WHERE age_days <= {w}) AS refund_count_{w}d")
    yield (
        f"refunds AS (SELECT snap_id, {', '.join(refund_parts)} FROM scoped_tx "
        f"WHERE amount < 0 AND age_days <= {longest} GROUP BY snap_id)"
    )


def _history_ctes(dialect: Dialect) -> Iterator[str]:
    """CTEs of calls, presentations, benefit usage and NPS known before each snapshot's date."""
    # A call is known from the calls table and from its presentations; taking the earliest sighting counts
    # it once whichever tables hold it (the calls table is optional).
    yield (
        "call_events AS (SELECT call_id, cardholder_id, min(called_at) AS called_at FROM ("
        "SELECT call_id, cardholder_id, started_at AS called_at FROM calls "
        "UNION ALL SELECT call_id, cardholder_id, presented_at FROM conversations) AS sightings "
        "GROUP BY call_id, cardholder_id)"
    )
    call_day = "CAST(e.called_at AS DATE)"
    yield (
        f"call_history AS (SELECT s.snap_id, count(*) AS calls_so_far, "
        f"min({dialect.days_between('s.as_of', call_day)}) AS days_since_last_call "
        f"FROM snap AS s JOIN call_events AS e ON e.cardholder_id = s.cardholder_id AND {call_day} < s.as_of "
        "GROUP BY s.snap_id)"
    )
    day = "CAST(c.presented_at AS DATE)"
    heard = f"c.outcome NOT IN ({_UNHEARD})"
    yield (
        f"presentation_history AS (SELECT s.snap_id, count(*) FILTER (WHERE {heard}) AS presentations_so_far, "
        "count(*) FILTER (WHERE c.outcome = 'accepted') AS accepted_so_far, "
        "count(*) FILTER (WHERE c.outcome = 'declined') AS declined_so_far, "
        f"count(*) FILTER (WHERE {heard} AND {dialect.days_between('s.as_of', day)} <= {HISTORY_WINDOW_DAYS}) "
        f"AS presentations_{HISTORY_WINDOW_DAYS}d "
        f"FROM snap AS s JOIN conversations AS c ON c.cardholder_id = s.cardholder_id AND {day} < s.as_of "
        "GROUP BY s.snap_id)"
    )
    yield (
        "usage_history AS (SELECT s.snap_id, count(*) AS benefits_used_count FROM snap AS s "
        "JOIN benefit_usage AS u ON u.cardholder_id = s.cardholder_id AND u.first_used_date < s.as_of "
        "GROUP BY s.snap_id)"
    )
    # A response is known from when it was given; without `responded_at`, from the day of its call.
    yield (
        "nps_known AS (SELECT s.snap_id, n.score, row_number() OVER (PARTITION BY s.snap_id "
        "ORDER BY COALESCE(n.responded_at, e.called_at) DESC, n.call_id DESC) AS recency "
        "FROM nps AS n JOIN call_events AS e ON e.call_id = n.call_id "
        "JOIN snap AS s ON s.cardholder_id = e.cardholder_id "
        "AND CAST(COALESCE(n.responded_at, e.called_at) AS DATE) < s.as_of)"
    )
    yield (
        "nps_history AS (SELECT snap_id, count(*) AS nps_count, avg(score) AS nps_mean, "
        "min(score) FILTER (WHERE recency = 1) AS nps_last FROM nps_known GROUP BY snap_id)"
    )


def _output_columns(extra: ExtraColumns, dialect: Dialect) -> list[str]:
    """The final SELECT list: one expression per output column, in `feature_names` order."""
    windows, longest = WINDOWS_DAYS, WINDOWS_DAYS[-1]

    def money(expr: str) -> str:
        # Cents: parallel sums add in no fixed order; rounding makes the same data give the same bytes.
        return dialect.round_cents(f"COALESCE({expr}, 0)")

    def count(expr: str) -> str:
        return f"CAST(COALESCE({expr}, 0) AS INTEGER)"

    def positive(expr: str) -> str:
        return f"GREATEST({money(expr)}, 0)"

    def of(category: str, column: str) -> str:
        return f"{_category_alias(category)}.{column}"

    out = ["s.cardholder_id", "s.as_of"]
    out.extend(
        f"{money(of(c, f'net_{w}d'))} AS spend_{c}_{w}d_usd" for c in SPEND_CATEGORIES for w in windows
    )
    out.extend(f"{count(of(c, f'purchases_{w}d'))} AS tx_{c}_{w}d" for c in SPEND_CATEGORIES for w in windows)
    out.extend(
        f"CASE WHEN positive_{w}d > 0 THEN {positive(of(c, f'net_{w}d'))} / positive_{w}d ELSE 0.0 END "
        f"AS share_{c}_{w}d"
        for c in SPEND_CATEGORIES
        for w in windows
    )
    for c in SPEND_CATEGORIES:
        # (a - b) / (a + b + 1): bounded in (-1, 1), and the +1 keeps a few cents from reading as a trend.
        recent, before = positive(of(c, f"net_{TREND_DAYS}d")), positive(of(c, f"net_prior_{TREND_DAYS}d"))
        out.append(f"({recent} - {before}) / ({recent} + {before} + 1) AS trend_{c}")
    out.extend(f"CAST({of(c, 'days_since_purchase')} AS INTEGER) AS days_since_{c}" for c in SPEND_CATEGORIES)
    for w in windows:
        out.append(f"{money(f'net_total_{w}d')} AS spend_total_{w}d_usd")
        out.append(f"{count(f'tx_total_{w}d')} AS tx_total_{w}d")
        out.append(f"{count(f'active_days_{w}d')} AS active_days_{w}d")
        out.append(f"{money(f'refund_{w}d_usd')} AS refund_{w}d_usd")
        out.append(f"{count(f'refund_count_{w}d')} AS refund_count_{w}d")
    out.append("CAST(days_since_last_tx AS INTEGER) AS days_since_last_tx")
    out.append(f"{count(f'months_with_spend_{longest}d')} AS months_with_spend_{longest}d")
    as_of_year, as_of_month = "EXTRACT(YEAR FROM s.as_of)", "EXTRACT(MONTH FROM s.as_of)"
    # Whole months since the card opened, counted like an age: a month is complete on its day of month.
    tenure = (
        f"({as_of_year} - EXTRACT(YEAR FROM ch.open_date)) * 12 + {as_of_month} - EXTRACT(MONTH FROM ch.open_date) "
        "- CASE WHEN EXTRACT(DAY FROM s.as_of) < EXTRACT(DAY FROM ch.open_date) THEN 1 ELSE 0 END"
    )
    out.append("ch.product_id AS product_id")
    out.append(f"CAST({tenure} AS INTEGER) AS tenure_months")
    out.append(f"CAST({as_of_year} - ch.birth_year AS INTEGER) AS age_years")
    out.append("ch.region AS region")
    out.append("ch.segment AS segment")
    for name, kind in extra.taken.items():
        expr = _number_sql(name, "ch", dialect) if kind == "numeric" else _text_sql(name, "ch", dialect)
        out.append(f"{expr} AS {dialect.quote_ident(name)}")
    for name in HISTORY_FEATURES:
        if name == "nps_mean":
            out.append("CAST(nps_mean AS DOUBLE) AS nps_mean")
        elif name in _NULLABLE_HISTORY:
            out.append(f"CAST({name} AS INTEGER) AS {name}")
        else:
            out.append(f"{count(name)} AS {name}")
    return out


def cardholder_features_sql(
    snapshots_sql: str, extra: ExtraColumns, mcc_view: str = _MCC_VIEW, dialect: Dialect = DUCKDB
) -> str:
    """The one SQL statement behind `build_cardholder_features`, in `dialect`.

    It reads the typed views and `mcc_view` (columns mcc, category_id: the position of the code's
    category in SPEND_CATEGORIES), and returns one row per distinct snapshot pair, ordered by
    (cardholder_id, as_of).
    """
    ctes = [_snapshots_cte(snapshots_sql, dialect), *_spend_ctes(mcc_view, dialect), *_history_ctes(dialect)]
    # The pivot: one join per category on the per-category rows (a join key, not a scan, picks each).
    joins = [
        f"LEFT JOIN by_category AS {_category_alias(c)} ON {_category_alias(c)}.snap_id = s.snap_id "
        f"AND {_category_alias(c)}.category_id = {CATEGORY_INDEX[c]}"
        for c in SPEND_CATEGORIES
    ]
    per_snapshot = ("card_totals", "activity", "refunds", *_HISTORY_CTES)
    joins.extend(f"LEFT JOIN {name} ON {name}.snap_id = s.snap_id" for name in per_snapshot)
    return (
        f"WITH {', '.join(ctes)} SELECT {', '.join(_output_columns(extra, dialect))} FROM snap AS s "
        f"LEFT JOIN cardholders AS ch ON ch.cardholder_id = s.cardholder_id {' '.join(joins)} "
        f"ORDER BY {dialect.snapshot_order('s.snap_id', 's.cardholder_id, s.as_of')}"
    )


def mcc_category_table(mcc_map: MccMap) -> pa.Table:
    """One row per merchant category code: `mcc` (int16) and `category_id` (int8, into SPEND_CATEGORIES)."""
    return pa.table(
        {
            "mcc": pa.array(np.arange(N_CODES, dtype=np.int16)),
            "category_id": pa.array(np.asarray(mcc_map.category_index, dtype=np.int8)),
        }
    )


def build_cardholder_features(
    con: duckdb.DuckDBPyConnection | SqlEngine, snapshots_sql: str, mcc_map: MccMap, extra: ExtraColumns
) -> pa.Table:
    """Computes the features of every (cardholder_id, as_of) pair of `snapshots_sql` from the typed views.

    Only rows dated strictly before each pair's as_of count (timestamps by their UTC calendar date), so
    the same call builds serving profiles (`snapshot_all_sql`) and training rows (one pair per
    presentation, `register_snapshots`). Returns one row per distinct pair, ordered by
    (cardholder_id, as_of): `cardholder_id`, `as_of`, then `feature_names(extra)`; categorical columns
    (`categorical_features(extra)`) are strings, the rest numbers. Spend is net of refunds, counts are
    purchases (amount > 0); nothing in a window gives 0, and `days_since_*` is NULL when it never happened.

    `extra` is the decided set of extra cardholder columns (`select_extra_columns` on training data);
    raises SchemaError when `cardholders` lacks one of them. `con` is DuckDB's connection or another
    `SqlEngine` (Spark): the same statement in its dialect.
    """
    engine = as_sql_engine(con)
    missing = [name for name in extra.taken if name not in extra_column_names(engine)]
    if missing:
        raise SchemaError(
            f"cardholders has no column {missing[0]!r}, which the features use (decided on the training data)"
        )
    engine.materialize(_MCC_VIEW, mcc_category_table(mcc_map))
    try:
        return engine.arrow(cardholder_features_sql(snapshots_sql, extra, _MCC_VIEW, engine.dialect))
    finally:
        engine.drop(_MCC_VIEW)


# ---------------------------------------------------------------------------------------------------------
# Benefit history: long and sparse, one row per (snapshot, benefit) with anything before the date


def benefit_history_sql(snapshots_sql: str, dialect: Dialect = DUCKDB) -> str:
    """The one SQL statement behind `build_benefit_history`, in `dialect`."""
    day = "CAST(c.presented_at AS DATE)"
    age = dialect.days_between("s.as_of", day)
    windows = PRESENTATION_WINDOWS_DAYS
    counts = [f"count(*) FILTER (WHERE {age} <= {w}) AS presented_{w}d" for w in windows]
    counts += [
        f"count(*) FILTER (WHERE c.outcome = 'declined' AND {age} <= {w}) AS declined_{w}d" for w in windows
    ]
    presented = (
        f"presented AS (SELECT s.cardholder_id, s.as_of, c.benefit_id, {', '.join(counts)}, "
        "count(*) FILTER (WHERE c.outcome = 'accepted') AS accepted, "
        f"min({age}) AS days_since_last_presented "
        f"FROM snap AS s JOIN conversations AS c ON c.cardholder_id = s.cardholder_id AND {day} < s.as_of "
        f"AND c.outcome NOT IN ({_UNHEARD}) GROUP BY s.cardholder_id, s.as_of, c.benefit_id)"
    )
    used = (
        "used AS (SELECT s.cardholder_id, s.as_of, u.benefit_id FROM snap AS s JOIN benefit_usage AS u "
        "ON u.cardholder_id = s.cardholder_id AND u.first_used_date < s.as_of)"
    )
    columns = [
        "COALESCE(p.cardholder_id, u.cardholder_id) AS cardholder_id",
        "COALESCE(p.as_of, u.as_of) AS as_of",
        "COALESCE(p.benefit_id, u.benefit_id) AS benefit_id",
        "u.benefit_id IS NOT NULL AS used",
    ]
    columns += [f"CAST(COALESCE(p.presented_{w}d, 0) AS INTEGER) AS presented_{w}d" for w in windows]
    columns += [f"CAST(COALESCE(p.declined_{w}d, 0) AS INTEGER) AS declined_{w}d" for w in windows]
    columns.append("COALESCE(p.accepted, 0) > 0 AS accepted_ever")
    columns.append("CAST(p.days_since_last_presented AS INTEGER) AS days_since_last_presented")
    return (
        f"WITH {_snapshots_cte(snapshots_sql, dialect)}, {presented}, {used} SELECT {', '.join(columns)} "
        "FROM presented AS p FULL JOIN used AS u "
        "ON p.cardholder_id = u.cardholder_id AND p.as_of = u.as_of AND p.benefit_id = u.benefit_id "
        "ORDER BY 1, 2, 3"
    )


def build_benefit_history(con: duckdb.DuckDBPyConnection | SqlEngine, snapshots_sql: str) -> pa.Table:
    """Each snapshot's history with each benefit it has any before its as_of date (long and sparse).

    Columns `BENEFIT_HISTORY_COLUMNS`: `used` (benefit_usage.first_used_date < as_of), presentations
    and declines in the last 60 and 180 days, `accepted_ever`, `days_since_last_presented` (NULL when
    never presented). A presentation whose outcome is `not_discussed` (or `unmarked`) was not heard and counts
    for none of them. Pairs with no history for a benefit have no row; ordered by (cardholder_id, as_of, benefit_id).
    """
    engine = as_sql_engine(con)
    return engine.arrow(benefit_history_sql(snapshots_sql, engine.dialect))
