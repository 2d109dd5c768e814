"""Answered calls: calls, conversations and NPS from a data directory and/or the feedback store → one row per
answered call (what happened to its suggestions, why there were none, reason, product, agent, week), the NPS
group-bys over it, the rows left out and the calls on which the two sources disagree.

Everything heavy is a DuckDB group-by; numpy only draws the bootstrap over the groups' counts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import duckdb

from nba.contract import Catalog
from nba.errors import DataError
from nba.insights._nps import NpsRow, PitchRow, bootstrap_nps, bootstrap_pitch_difference, counts_from_rows
from nba.vocab import (
    INSIGHTS_BOOTSTRAP_RESAMPLES,
    INSIGHTS_MIN_AGENT_CALLS,
    INSIGHTS_MIN_GROUP_ANSWERS,
    LOGGED_OUTCOMES,
    NPS_DETRACTOR_MAX,
    NPS_PROMOTER_MIN,
    SENSITIVE_CALL_REASONS,
    SUGGESTION_STATUSES,
    UNMARKED,
)

# The two places the tables can come from; each needs the views `<source>_calls`, `<source>_conversations`
# and `<source>_nps` in the data contract's columns. `data` wins nothing: a call they disagree on is left out.
INSIGHT_SOURCES: Final = ("data", "store")
# The dimensions of the report, in the order shown; each is one table (and one CSV file).
DIMENSIONS: Final = ("outcome", "nothing_suggested", "benefit", "call_reason", "product", "agent", "week")
UNKNOWN: Final = "unknown"
# Why a call had no suggestion, as far as the tables can tell.
WHY_SENSITIVE: Final = "sensitive call reason"
WHY_NOTHING_ELIGIBLE: Final = "nothing eligible"
# A call "with a pitch": one of its suggestions was discussed (accepted, declined or already aware);
# "without": its suggestions were all not discussed, or it had none. Unmarked ones are neither.
PITCH_STATUSES: Final = (("accepted", "declined", "already_aware"), ("not_discussed", "nothing suggested"))
# More than this share of answered calls without an agent id is said on the report's first lines.
AGENT_MISSING_SHARE: Final = 0.5
_EXAMPLES: Final = 5


@dataclass(frozen=True)
class LeftOut:
    """Rows the report does not count, why, and a few of their call ids."""

    reason: str
    rows: int
    examples: tuple[str, ...]


@dataclass(frozen=True)
class Disagreement:
    """A call on which the data directory and the feedback store say different things."""

    call_id: str
    benefit_id: str | None
    field: str
    data_value: str | None
    store_value: str | None


@dataclass(frozen=True)
class Insights:
    """The NPS report: the centre's NPS, one table per dimension, and what was left out and why."""

    sources: tuple[str, ...]
    calls: int
    answered_calls: int
    centre: NpsRow
    tables: Mapping[str, tuple[NpsRow, ...]]
    min_agent_calls: int
    min_answers: int
    notes: tuple[str, ...]
    left_out: tuple[LeftOut, ...]
    disagreements: tuple[Disagreement, ...]
    # Per call reason: NPS with a talking point discussed beside without one (PITCH_STATUSES).
    pitch: tuple[PitchRow, ...] = ()


def _sql_list(values: Sequence[str]) -> str:
    return "(" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + ")"


def _union(sources: Sequence[str], table: str, columns: str) -> str:
    return " UNION ALL ".join(
        f"SELECT '{s}' AS src, {i} AS pri, {columns} FROM {s}_{table}" for i, s in enumerate(sources)
    )


def _load_catalog_tables(con: duckdb.DuckDBPyConnection, catalog: Catalog | None) -> None:
    con.execute("CREATE OR REPLACE TEMP TABLE ins_products (product_id VARCHAR)")
    con.execute(
        "CREATE OR REPLACE TEMP TABLE ins_product_benefits "
        "(product_id VARCHAR, benefit_id VARCHAR, unsuitable VARCHAR[], suitable VARCHAR[])"
    )
    if catalog is None:
        return
    con.executemany("INSERT INTO ins_products VALUES (?)", [[p.id] for p in catalog.products])
    rows = [
        [
            p.id,
            b,
            list(catalog.benefit_by_id[b].unsuitable_call_reasons),
            list(catalog.benefit_by_id[b].suitable_call_reasons),
        ]
        for p in catalog.products
        for b in p.benefits
        if b in catalog.benefit_by_id
    ]
    if rows:
        con.executemany("INSERT INTO ins_product_benefits VALUES (?, ?, ?, ?)", rows)


def _disagreements(con: duckdb.DuckDBPyConnection, sources: Sequence[str]) -> None:
    """`ins_disagreements`: every field two sources give different values for on one call (a value one
    source lacks is not a disagreement: the other fills it)."""
    if tuple(sources) != INSIGHT_SOURCES:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE ins_disagreements (call_id VARCHAR, benefit_id VARCHAR, "
            "field VARCHAR, data_value VARCHAR, store_value VARCHAR)"
        )
        return
    call_fields = " UNION ALL ".join(
        f"SELECT call_id, NULL::VARCHAR AS benefit_id, '{f}' AS field, d.{f} AS data_value, s.{f} AS store_value "
        "FROM data_calls d JOIN store_calls s USING (call_id) "
        f"WHERE d.{f} <> s.{f}"
        for f in ("cardholder_id", "call_reason", "agent_id")
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE ins_disagreements AS
        WITH both_calls AS (
            SELECT DISTINCT call_id FROM data_conversations
            INTERSECT SELECT DISTINCT call_id FROM store_conversations
        ),
        d AS (SELECT call_id, benefit_id, outcome FROM data_conversations WHERE call_id IN (FROM both_calls)),
        s AS (SELECT call_id, benefit_id, outcome FROM store_conversations WHERE call_id IN (FROM both_calls))
        SELECT * FROM ({call_fields})
        UNION ALL
        SELECT call_id, benefit_id, 'outcome', d.outcome, s.outcome FROM d JOIN s USING (call_id, benefit_id)
        WHERE d.outcome <> s.outcome AND '{UNMARKED}' NOT IN (d.outcome, s.outcome)
        UNION ALL
        SELECT coalesce(d.call_id, s.call_id), coalesce(d.benefit_id, s.benefit_id), 'suggested',
               CASE WHEN d.call_id IS NULL THEN 'no' ELSE 'yes' END,
               CASE WHEN s.call_id IS NULL THEN 'no' ELSE 'yes' END
        FROM d FULL JOIN s USING (call_id, benefit_id) WHERE d.call_id IS NULL OR s.call_id IS NULL
        UNION ALL
        SELECT call_id, NULL, 'nps score', CAST(d.score AS VARCHAR), CAST(s.score AS VARCHAR)
        FROM ins_nps_latest d JOIN ins_nps_latest s USING (call_id)
        WHERE d.src = 'data' AND s.src = 'store' AND d.score <> s.score
        """
    )


def _prepare(con: duckdb.DuckDBPyConnection, sources: Sequence[str]) -> None:
    """The merged tables: `ins_nps_latest`, `ins_call_info`, `ins_suggestions`, `ins_call_status`."""
    in_range = "score BETWEEN 0 AND 10"
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE ins_nps_ranked AS
        SELECT src, call_id, score, responded_at, {in_range} AND call_id IS NOT NULL AS usable,
               row_number() OVER (PARTITION BY src, call_id ORDER BY {in_range} DESC,
                                  responded_at DESC NULLS LAST, score) AS k
        FROM ({_union(sources, "nps", "call_id, score, responded_at")})
        """
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE ins_nps_latest AS "
        "SELECT src, call_id, score FROM ins_nps_ranked WHERE usable AND k = 1"
    )
    from_calls = _union(sources, "calls", "call_id, cardholder_id, started_at, call_reason, agent_id")
    from_conversations = " UNION ALL ".join(
        f"SELECT '{s}', {len(sources) + i}, call_id, any_value(cardholder_id), min(presented_at), "
        f"any_value(call_reason), any_value(agent_id) FROM {s}_conversations GROUP BY call_id"
        for i, s in enumerate(sources)
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE ins_call_info AS
        SELECT call_id,
               arg_min(cardholder_id, pri) FILTER (WHERE cardholder_id IS NOT NULL) AS cardholder_id,
               arg_min(started_at, pri) FILTER (WHERE started_at IS NOT NULL) AS started_at,
               arg_min(call_reason, pri) FILTER (WHERE call_reason IS NOT NULL) AS call_reason,
               arg_min(agent_id, pri) FILTER (WHERE agent_id IS NOT NULL) AS agent_id
        FROM ({from_calls} UNION ALL {from_conversations})
        WHERE call_id IS NOT NULL
        GROUP BY call_id
        """
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE ins_conversation_rows AS
        SELECT call_id, benefit_id, outcome,
               call_id IS NOT NULL AND benefit_id IS NOT NULL AND outcome IN {_sql_list(LOGGED_OUTCOMES)} AS usable
        FROM ({_union(sources, "conversations", "call_id, benefit_id, outcome")})
        """
    )
    # An unmarked suggestion lacks its outcome: where the other source has one, that one fills it.
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE ins_suggestions AS
        SELECT DISTINCT call_id, benefit_id, outcome FROM ins_conversation_rows AS r
        WHERE usable AND NOT (outcome = '{UNMARKED}' AND EXISTS (
            SELECT 1 FROM ins_conversation_rows AS m
            WHERE m.usable AND m.call_id = r.call_id AND m.benefit_id = r.benefit_id AND m.outcome <> '{UNMARKED}'))
        """
    )
    ranks = " ".join(f"WHEN '{s}' THEN {i}" for i, s in enumerate(SUGGESTION_STATUSES))
    names = " ".join(f"WHEN {i} THEN '{s}'" for i, s in enumerate(SUGGESTION_STATUSES))
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE ins_call_status AS
        SELECT call_id, CASE min(CASE outcome {ranks} END) {names} END AS status
        FROM ins_suggestions GROUP BY call_id
        """
    )


def _answers(con: duckdb.DuckDBPyConnection) -> None:
    """`ins_answers`: one row per answered call the report counts."""
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE ins_answers AS
        WITH answer AS (
            SELECT call_id, any_value(score) AS score FROM ins_nps_latest
            WHERE call_id NOT IN (SELECT call_id FROM ins_disagreements)
            GROUP BY call_id
        ),
        base AS (
            SELECT a.call_id, a.score, i.cardholder_id, i.started_at, i.agent_id,
                   coalesce(i.call_reason, '{UNKNOWN}') AS call_reason,
                   coalesce(ch.product_id, '{UNKNOWN}') AS product,
                   coalesce(st.status, 'nothing suggested') AS status,
                   coalesce(strftime(date_trunc('week', i.started_at), '%Y-%m-%d'), '{UNKNOWN}') AS week
            FROM answer a
            JOIN ins_call_info i USING (call_id)
            LEFT JOIN (SELECT cardholder_id, any_value(product_id) AS product_id FROM cardholders
                       GROUP BY cardholder_id) ch ON ch.cardholder_id = i.cardholder_id
            LEFT JOIN ins_call_status st USING (call_id)
        ),
        eligible AS (
            SELECT b.call_id, count(*) AS benefits
            FROM base b
            JOIN ins_product_benefits pb ON pb.product_id = b.product
            LEFT JOIN benefit_usage u
              ON u.cardholder_id = b.cardholder_id AND u.benefit_id = pb.benefit_id
             AND u.first_used_date < CAST(b.started_at AS DATE)
            WHERE b.status = 'nothing suggested' AND u.cardholder_id IS NULL
              AND NOT list_contains(pb.unsuitable, b.call_reason)
            GROUP BY b.call_id
        )
        SELECT base.*,
               CASE WHEN status <> 'nothing suggested' THEN NULL
                    WHEN call_reason IN {_sql_list(sorted(SENSITIVE_CALL_REASONS))} THEN '{WHY_SENSITIVE}'
                    WHEN product IN (FROM ins_products) AND started_at IS NOT NULL
                         AND coalesce(eligible.benefits, 0) = 0 THEN '{WHY_NOTHING_ELIGIBLE}'
                    ELSE '{UNKNOWN}' END AS why_none
        FROM base LEFT JOIN eligible USING (call_id)
        """
    )


def _left_out(con: duckdb.DuckDBPyConnection) -> tuple[LeftOut, ...]:
    checks = (
        (
            "NPS answers with no call id, or a score missing or outside 0-10",
            "SELECT coalesce(call_id, '(no call id)') FROM ins_nps_ranked WHERE NOT coalesce(usable, false)",
        ),
        (
            "conversation rows with no call id, no benefit id or an outcome outside the contract "
            "(not counted as suggestions)",
            "SELECT coalesce(call_id, '(no call id)') FROM ins_conversation_rows WHERE NOT coalesce(usable, false)",
        ),
        (
            "earlier NPS answers to a call answered again (the latest is counted)",
            "SELECT call_id FROM ins_nps_ranked WHERE usable AND k > 1",
        ),
        (
            "NPS answers to a call in neither calls nor conversations",
            "SELECT DISTINCT call_id FROM ins_nps_latest WHERE call_id NOT IN (SELECT call_id FROM ins_call_info)",
        ),
        (
            "answered calls the data directory and the feedback store disagree on (see disagreements.csv)",
            "SELECT DISTINCT call_id FROM ins_nps_latest WHERE call_id IN (SELECT call_id FROM ins_disagreements)",
        ),
    )
    return count_left_out(con, checks)


def count_left_out(con: duckdb.DuckDBPyConnection, checks: Sequence[tuple[str, str]]) -> tuple[LeftOut, ...]:
    """Each (reason, SQL yielding one call id per row left out) → a LeftOut when it yields any: the rows
    counted, the first few distinct call ids as examples."""
    found = []
    for reason, sql in checks:
        rows, examples = con.execute(
            f"SELECT count(*), list(DISTINCT x ORDER BY x)[1:{_EXAMPLES}] FROM ({sql}) t(x)"
        ).fetchall()[0]
        if rows:
            found.append(LeftOut(reason, int(rows), tuple(examples)))
    return tuple(found)


def _group_rows(
    con: duckdb.DuckDBPyConnection,
    key: str,
    source: str = "ins_answers",
    where: str = "true",
    having: str = "true",
) -> list[tuple[str, int, int, int]]:
    sql = f"""
        SELECT {key} AS grp,
               count(*) FILTER (WHERE score >= {NPS_PROMOTER_MIN}),
               count(*) FILTER (WHERE score > {NPS_DETRACTOR_MAX} AND score < {NPS_PROMOTER_MIN}),
               count(*) FILTER (WHERE score <= {NPS_DETRACTOR_MAX})
        FROM {source} WHERE {where} GROUP BY grp HAVING {having}
        ORDER BY count(*) DESC, grp
    """
    return [(str(r[0]), int(r[1]), int(r[2]), int(r[3])) for r in con.execute(sql).fetchall()]


def build_insights(
    con: duckdb.DuckDBPyConnection,
    sources: Sequence[str],
    *,
    catalog: Catalog | None,
    source_names: Sequence[str],
    min_agent_calls: int = INSIGHTS_MIN_AGENT_CALLS,
    min_answers: int = INSIGHTS_MIN_GROUP_ANSWERS,
    resamples: int = INSIGHTS_BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> Insights:
    """The NPS report over `sources` (a non-empty subset of INSIGHT_SOURCES, in that order).

    `con` must hold, per source, the views `<source>_calls`, `<source>_conversations` and `<source>_nps`, and
    the views `cardholders` and `benefit_usage` (empty when unknown: products and eligibility are then
    "unknown"). `catalog` says which benefits each product includes (None: "nothing eligible" is never
    said). `source_names` name the sources in messages.

    Raises DataError when there is no NPS answer at all, or none the report can count.
    """
    unknown = [s for s in sources if s not in INSIGHT_SOURCES]
    if not sources or unknown:
        raise ValueError(f"`sources` must be a non-empty subset of {INSIGHT_SOURCES}, got {list(sources)}")
    where = " and ".join(source_names)
    _load_catalog_tables(con, catalog)
    _prepare(con, sources)
    if con.execute("SELECT count(*) FROM ins_nps_ranked").fetchall()[0][0] == 0:
        raise DataError(
            f"{where}: no NPS answers at all (the nps table has no rows), so there is no NPS to report"
        )
    _disagreements(con, sources)
    _answers(con)
    left_out = _left_out(con)
    answered = int(con.execute("SELECT count(*) FROM ins_answers").fetchall()[0][0])
    if answered == 0:
        reasons = "; ".join(f"{item.rows:,} {item.reason}" for item in left_out)
        raise DataError(f"{where}: no NPS answer can be counted ({reasons})")
    calls = int(con.execute("SELECT count(*) FROM ins_call_info").fetchall()[0][0])

    def rows(dimension: str, index: int, key: str, **kw: str) -> tuple[NpsRow, ...]:
        counts = counts_from_rows(_group_rows(con, key, **kw))
        return bootstrap_nps(
            counts, dimension, seed=seed + index, resamples=resamples, min_answers=min_answers
        )

    centre = rows("centre", 0, "'all answered calls'")[0]
    order = {status: i for i, status in enumerate(SUGGESTION_STATUSES)}
    tables = {
        "outcome": tuple(sorted(rows("outcome", 1, "status"), key=lambda r: order[r.group])),
        "nothing_suggested": rows("nothing_suggested", 2, "why_none", where="why_none IS NOT NULL"),
        "benefit": rows(
            "benefit",
            3,
            "benefit_id",
            source="ins_answers JOIN (SELECT DISTINCT call_id, benefit_id FROM ins_suggestions) USING (call_id)",
        ),
        "call_reason": rows("call_reason", 4, "call_reason"),
        "product": rows("product", 5, "product"),
        "agent": rows(
            "agent", 6, "agent_id", where="agent_id IS NOT NULL", having=f"count(*) >= {min_agent_calls}"
        ),
        "week": tuple(sorted(rows("week", 7, "week"), key=lambda r: r.group)),
    }
    notes = _agent_notes(con, answered, min_agent_calls, len(tables["agent"]))
    sides = [
        {row[0]: row for row in _group_rows(con, "call_reason", where=f"status IN {_sql_list(statuses)}")}
        for statuses in PITCH_STATUSES
    ]
    both = [reason for reason in sides[0] if reason in sides[1]]
    pitch = bootstrap_pitch_difference(
        counts_from_rows([sides[0][r] for r in both]),
        counts_from_rows([sides[1][r] for r in both]),
        seed=seed + 8,
        resamples=resamples,
        min_answers=min_answers,
    )
    disagreements = tuple(
        Disagreement(*row)
        for row in con.execute(
            "SELECT call_id, benefit_id, field, data_value, store_value FROM ins_disagreements "
            "ORDER BY call_id, field, benefit_id"
        ).fetchall()
    )
    return Insights(
        sources=tuple(source_names),
        calls=calls,
        answered_calls=answered,
        centre=centre,
        tables=tables,
        min_agent_calls=min_agent_calls,
        min_answers=min_answers,
        notes=notes,
        left_out=left_out,
        disagreements=disagreements,
        pitch=pitch,
    )


def _agent_notes(
    con: duckdb.DuckDBPyConnection, answered: int, min_agent_calls: int, shown: int
) -> tuple[str, ...]:
    missing, agents, below_agents, below_calls = con.execute(
        f"""
        WITH per AS (SELECT agent_id, count(*) AS n FROM ins_answers WHERE agent_id IS NOT NULL GROUP BY agent_id)
        SELECT (SELECT count(*) FROM ins_answers WHERE agent_id IS NULL), count(*),
               count(*) FILTER (WHERE n < {min_agent_calls}), coalesce(sum(n) FILTER (WHERE n < {min_agent_calls}), 0)
        FROM per
        """
    ).fetchall()[0]
    notes = []
    if missing > AGENT_MISSING_SHARE * answered:
        notes.append(
            f"agent id missing on {missing:,} of {answered:,} answered calls ({missing / answered:.0%}): "
            "the agent table covers only the rest"
        )
    elif missing:
        notes.append(
            f"agent id missing on {missing:,} of {answered:,} answered calls (not in the agent table)"
        )
    if below_agents:
        notes.append(
            f"{below_agents:,} of {agents:,} agents have fewer than {min_agent_calls} answered calls "
            f"({int(below_calls):,} calls in all) and are not listed ({shown:,} listed)"
        )
    return tuple(notes)
