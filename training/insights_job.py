"""NPS insights: a data directory and/or the feedback store → one self-contained HTML page and a CSV per table.

The store is read through `nba export-feedback`'s own export (into a temporary folder), so the report sees
exactly what training would.
"""

from __future__ import annotations

import base64
import csv
import html
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Final

import duckdb

from nba.contract import catalog_for, load_catalog, open_data
from nba.errors import DataError
from nba.insights import (
    DIMENSIONS,
    Adoption,
    AdoptionRow,
    CausedRow,
    Disagreement,
    Insights,
    NpsRow,
    PitchRow,
    build_adoption,
    build_insights,
)
from nba.vocab import INSIGHTS_MIN_AGENT_CALLS
from training.engine_job import mcc_map_for
from training.export_job import export_feedback
from training.plots import plot_nps_groups, plot_nps_weeks
from training.progress import Reporter

PAGE: Final = "insights.html"
TITLES: Final = {
    "outcome": "NPS by what happened to the call's suggestions",
    "nothing_suggested": "Calls with nothing suggested: why",
    "benefit": "NPS by benefit suggested (a call counts once per benefit it had)",
    "call_reason": "NPS by call reason",
    "product": "NPS by the cardholder's product",
    "agent": "NPS by agent",
    "week": "NPS by week of the call (weeks start on Monday)",
}
_TABLES: Final = ("calls", "conversations", "nps")
_EMPTY_CONTEXT: Final = {
    "cardholders": "cardholder_id VARCHAR, product_id VARCHAR",
    "benefit_usage": "cardholder_id VARCHAR, benefit_id VARCHAR, first_used_date DATE",
}


@dataclass(frozen=True)
class InsightsResult:
    """What `nba insights` wrote, the report itself and how long it took."""

    out: Path
    page: Path
    files: tuple[Path, ...]
    insights: Insights
    adoption: Adoption | None
    seconds: float

    def __str__(self) -> str:
        c = self.insights.centre
        lines = [
            f"{self.page}: NPS {c.nps:+.1f} (95% interval {c.low:+.1f} to {c.high:+.1f}) over "
            f"{self.insights.answered_calls:,} answered calls of {self.insights.calls:,}, in {self.seconds:.1f} s",
            *self.insights.notes,
            *(
                f"left out: {item.rows:,} {item.reason} (e.g. {', '.join(item.examples)})"
                for item in self.insights.left_out
            ),
        ]
        if self.insights.disagreements:
            calls = len({d.call_id for d in self.insights.disagreements})
            lines.append(
                f"{len(self.insights.disagreements):,} disagreements on {calls:,} calls: disagreements.csv"
            )
        lower = [r.call_reason for r in self.insights.pitch if r.verdict == "lower with a pitch"]
        if lower:
            lines.append(f"NPS is lower on calls with a pitch than without, for: {', '.join(lower)}")
        lines.extend(adoption_lines(self.adoption))
        lines.append(f"tables: {', '.join(path.name for path in self.files if path.suffix == '.csv')}")
        return "\n".join(lines)


def run_insights(
    data: Path | None,
    db_url: str | None,
    out: Path,
    *,
    min_agent_calls: int = INSIGHTS_MIN_AGENT_CALLS,
    progress: Reporter,
) -> InsightsResult:
    """The NPS report from `data` (a data directory), the feedback store at `db_url`, or both joined.

    Raises DataError when neither is given, when there is no NPS answer at all, and as the export and the
    data directory's reading do.
    """
    if data is None and db_url is None:
        raise DataError("nothing to report on: give --data DIR, --db URL or both")
    started = time.perf_counter()
    sources: list[str] = []
    names: list[str] = []
    source = open_data(data) if data is not None else None
    con = source.con if source is not None else duckdb.connect()
    try:
        catalog = None
        if data is not None:
            progress.step(f"insights: the data directory {data}")
            for table in _TABLES:
                con.execute(f"CREATE VIEW data_{table} AS SELECT * FROM {table}")
            catalog = load_catalog(catalog_for(data))
            sources.append("data")
            names.append(str(data))
        else:
            for table, columns in _EMPTY_CONTEXT.items():
                con.execute(f"CREATE TABLE {table} ({columns})")
        with tempfile.TemporaryDirectory(prefix="nba-insights-") as exported:
            if db_url is not None:
                progress.step("insights: the feedback store's export")
                export_feedback(db_url, Path(exported), "parquet")
                for table in _TABLES:
                    path = Path(exported) / f"{table}.parquet"
                    con.execute(f"CREATE TABLE store_{table} AS SELECT * FROM read_parquet('{path}')")
                sources.append("store")
                names.append("the feedback store")
            progress.step("insights: NPS by group")
            insights = build_insights(
                con, sources, catalog=catalog, source_names=names, min_agent_calls=min_agent_calls
            )
            adoption = None
            if data is not None and catalog is not None:
                progress.step("insights: adoption after the calls, beside comparable benefits not presented")
                adoption = build_adoption(con, catalog, mcc_map_for(data))
    finally:
        con.close()
    progress.step("insights: the page and its tables")
    files = write_report(insights, out, adoption)
    return InsightsResult(out, out / PAGE, files, insights, adoption, time.perf_counter() - started)


def adoption_lines(adoption: Adoption | None) -> list[str]:
    """What standard output says of adoption: the total caused, or why there is none."""
    if adoption is None:
        return ["adoption: needs --data (benefit usage and spend are in the data directory, not the store)"]
    total = adoption.caused_total
    if total is None:
        return [
            f"adoption: no presentation whose {adoption.window_days} days are over by {adoption.data_end}"
        ]
    return [
        f"adoption within {adoption.window_days} days: {total.presented:,} presentations, "
        f"{total.presented_rate:.1%} started vs {total.comparable_rate:.1%} of comparable benefits not presented; "
        f"caused {total.caused_adoptions:,.0f} adoptions (95% interval {total.low * total.presented:,.0f} to "
        f"{total.high * total.presented:,.0f}) worth ${total.caused_value_usd:,.0f} a year "
        f"(${total.caused_value_low:,.0f} to ${total.caused_value_high:,.0f})",
        *(f"left out of adoption: {i.rows:,} {i.reason}" for i in adoption.left_out),
    ]


def write_report(insights: Insights, out: Path, adoption: Adoption | None = None) -> tuple[Path, ...]:
    """Writes every table as CSV, the plots as PNG and the page that holds them all into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    written = [_write_rows(out / "centre.csv", [insights.centre])]
    for dimension in DIMENSIONS:
        written.append(
            _write_rows(
                out / f"nps_by_{dimension}.csv",
                insights.tables[dimension],
                insights.centre if dimension == "agent" else None,
            )
        )
    written.append(_write_disagreements(out / "disagreements.csv", insights.disagreements))
    with (out / "left_out.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["reason", "rows", "examples"])
        writer.writerows([item.reason, item.rows, " ".join(item.examples)] for item in insights.left_out)
    written.append(out / "left_out.csv")
    written.append(_write_pitch(out / "nps_pitch_by_call_reason.csv", insights.pitch))
    if adoption is not None:
        written.append(_write_dataclasses(out / "adoption_by_outcome.csv", AdoptionRow, adoption.by_outcome))
        written.append(_write_dataclasses(out / "adoption_by_benefit.csv", AdoptionRow, adoption.by_benefit))
        caused = (*adoption.caused, *((adoption.caused_total,) if adoption.caused_total else ()))
        written.append(_write_dataclasses(out / "caused_adoption.csv", CausedRow, caused))
    plots = _plots(insights, out)
    page = out / PAGE
    page.write_text(render_page(insights, plots, adoption), encoding="utf-8")
    return (page, *written, *plots.values())


def _write_rows(path: Path, rows: Sequence[NpsRow], centre: NpsRow | None = None) -> Path:
    names = [f.name for f in fields(NpsRow)]
    extra = ["centre_nps", "centre_low", "centre_high"] if centre is not None else []
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(names + extra)
        for row in rows:
            values = [round(v, 2) if isinstance(v, float) else v for v in asdict(row).values()]
            if centre is not None:
                values += [round(centre.nps, 2), round(centre.low, 2), round(centre.high, 2)]
            writer.writerow(values)
    return path


def _write_pitch(path: Path, rows: Sequence[PitchRow]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(
            [
                "call_reason",
                *(
                    f"{side}_{name}"
                    for side in ("with", "without")
                    for name in ("answers", "nps", "low", "high")
                ),
                "difference",
                "low",
                "high",
                "verdict",
            ]
        )
        for r in rows:
            sides = [
                (s.answers, round(s.nps, 2), round(s.low, 2), round(s.high, 2))
                for s in (r.with_pitch, r.without_pitch)
            ]
            writer.writerow(
                [
                    r.call_reason,
                    *sides[0],
                    *sides[1],
                    round(r.difference, 2),
                    round(r.low, 2),
                    round(r.high, 2),
                    r.verdict,
                ]
            )
    return path


def _pitch_section(rows: Sequence[PitchRow]) -> list[str]:
    head = (
        "<tr><th>call reason</th><th>answers with a pitch</th><th>NPS</th><th>answers without</th><th>NPS</th>"
        "<th>difference</th><th>95% interval</th><th>verdict</th></tr>"
    )
    body = [
        f"<tr{_FEW if r.too_few else ''}><td>{html.escape(r.call_reason)}</td>"
        f"<td>{r.with_pitch.answers:,}</td><td>{r.with_pitch.nps:+.1f}</td>"
        f"<td>{r.without_pitch.answers:,}</td><td>{r.without_pitch.nps:+.1f}</td>"
        f"<td>{r.difference:+.1f}</td><td>{r.low:+.1f} to {r.high:+.1f}</td><td>{html.escape(r.verdict)}</td></tr>"
        for r in rows
    ] or ['<tr><td colspan="8">no call reason has answered calls both with and without a pitch</td></tr>']
    return [
        '<h2 id="pitch">Does a pitch move NPS? By call reason</h2>',
        "<p>NPS on calls where a talking point was discussed (accepted, declined or already aware) beside calls "
        "where none was (all not discussed, or nothing suggested), within each call reason. An association, not "
        "what a pitch causes: agents choose when to raise one.</p>",
        f"<table><thead>{head}</thead><tbody>{''.join(body)}</tbody></table>",
    ]


def _write_disagreements(path: Path, disagreements: Sequence[Disagreement]) -> Path:
    return _write_dataclasses(path, Disagreement, disagreements)


def _write_dataclasses(path: Path, kind: type, rows: Sequence[object]) -> Path:
    """One CSV row per dataclass instance, its fields as columns (floats to 4 decimals)."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow([f.name for f in fields(kind)])
        writer.writerows(
            [round(v, 4) if isinstance(v, float) else v for v in asdict(row).values()]  # type: ignore[call-overload]
            for row in rows
        )
    return path


def _plots(insights: Insights, out: Path) -> dict[str, Path]:
    plots: dict[str, Path] = {}
    centre = insights.centre.nps
    for dimension in ("outcome", "call_reason"):
        rows = insights.tables[dimension]
        if rows:
            plots[dimension] = plot_nps_groups(
                [r.group for r in rows],
                [r.nps for r in rows],
                [r.low for r in rows],
                [r.high for r in rows],
                [r.too_few for r in rows],
                centre,
                TITLES[dimension],
                out / f"nps_by_{dimension}.png",
            )
    weeks = [r for r in insights.tables["week"] if r.group != "unknown"]
    if weeks:
        plots["week"] = plot_nps_weeks(
            [r.group for r in weeks],
            [r.nps for r in weeks],
            [r.low for r in weeks],
            [r.high for r in weeks],
            out / "nps_by_week.png",
        )
    return plots


def _cell_nps(row: NpsRow) -> str:
    interval = f"{row.low:+.1f} to {row.high:+.1f}"
    if row.too_few:
        return f'<td class="few">too few to say</td><td>{interval}</td>'
    return f"<td>{row.nps:+.1f}</td><td>{interval}</td>"


def _table(dimension: str, rows: Sequence[NpsRow], insights: Insights) -> str:
    agent = dimension == "agent"
    head = "<tr><th>group</th><th>answers</th><th>promoters</th><th>passives</th><th>detractors</th>"
    head += "<th>NPS</th><th>95% interval</th>" + (
        "<th>centre NPS</th><th>centre 95% interval</th>" if agent else ""
    )
    body = []
    for row in rows:
        centre = _cell_nps(insights.centre) if agent else ""
        marked = ' class="few"' if row.too_few else ""
        body.append(
            f"<tr{marked}><td>{html.escape(row.group)}</td><td>{row.answers:,}</td>"
            f"<td>{row.promoters:,}</td><td>{row.passives:,}</td><td>{row.detractors:,}</td>"
            f"{_cell_nps(row)}{centre}</tr>"
        )
    if not body:
        columns = 9 if agent else 7
        body.append(f'<tr><td colspan="{columns}">no group to show</td></tr>')
    return f"<table><thead>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


_FEW: Final = ' class="few"'


def _percent(value: float) -> str:
    return "—" if value != value else f"{value:.1%}"


def _adoption_table(rows: Sequence[AdoptionRow]) -> str:
    head = (
        "<tr><th>group</th><th>benefits</th><th>started</th><th>share started</th><th>95% interval</th>"
        "<th>yearly value started</th></tr>"
    )
    body = [
        f"<tr{_FEW if r.too_few else ''}><td>{html.escape(r.group)}</td><td>{r.units:,}</td>"
        f"<td>{r.adopted:,}</td><td>{_percent(r.rate)}</td><td>{_percent(r.low)} to {_percent(r.high)}</td>"
        f"<td>${r.value_started_usd:,.0f}</td></tr>"
        for r in rows
    ] or ['<tr><td colspan="6">no group to show</td></tr>']
    return f"<table><thead>{head}</thead><tbody>{''.join(body)}</tbody></table>"


def _caused_table(rows: Sequence[CausedRow]) -> str:
    head = (
        "<tr><th>benefit</th><th>presented</th><th>started</th><th>comparable (effective)</th>"
        "<th>comparable started</th><th>caused per presentation</th><th>95% interval</th>"
        "<th>caused adoptions</th><th>caused yearly value</th></tr>"
    )
    body = []
    for r in rows:
        caused = (
            '<td class="few">too few to say</td>'
            if r.too_few
            else f"<td>{r.caused_per_presentation:+.1%}</td>"
        )
        body.append(
            f"<tr{_FEW if r.too_few else ''}><td>{html.escape(r.benefit_id)}</td>"
            f"<td>{r.presented:,}</td><td>{_percent(r.presented_rate)}</td>"
            f"<td>{r.comparable:,} ({r.comparable_effective:,.0f})</td><td>{_percent(r.comparable_rate)}</td>"
            f"{caused}<td>{r.low:+.1%} to {r.high:+.1%}</td><td>{r.caused_adoptions:,.1f}</td>"
            f"<td>${r.caused_value_usd:,.0f} (${r.caused_value_low:,.0f} to ${r.caused_value_high:,.0f})</td></tr>"
        )
    if not body:
        body.append('<tr><td colspan="9">no presentation whose window is over</td></tr>')
    return f"<table><thead>{head}</thead><tbody>{''.join(body)}</tbody></table>"


def _adoption_section(adoption: Adoption | None) -> list[str]:
    if adoption is None:
        return [
            '<h2 id="adoption">Adoption after the calls</h2>',
            "<p>Needs the data directory (<code>--data</code>): benefit usage and spend are there, not in the "
            "feedback store.</p>",
        ]
    days = adoption.window_days
    notes = [*adoption.assumptions]
    notes += [f"left out: {i.rows:,} {i.reason} (e.g. {', '.join(i.examples)})" for i in adoption.left_out]
    caused = (*adoption.caused, *((adoption.caused_total,) if adoption.caused_total else ()))
    return [
        f'<h2 id="adoption">Adoption within {days} days after the call</h2>',
        f"<p>Each benefit on the cardholder's card, not used before the call and suited to its reason, on "
        f"every logged call whose {days} days are over by {html.escape(adoption.data_end)}: was it started "
        f"in the {days} days after? Value of a benefit started: a credit's or perk's yearly value from the "
        "catalog; an earn rate's extra points on the cardholder's own spend in its categories since the first "
        "use, per year.</p>",
        '<h3 id="adoption_outcome">By what happened to the benefit on the call</h3>',
        _adoption_table(adoption.by_outcome),
        '<h3 id="adoption_benefit">Presented benefits, by benefit</h3>',
        _adoption_table(adoption.by_benefit),
        '<h3 id="caused">What the conversations caused, beside comparable benefits not presented</h3>',
        _caused_table(caused),
        '<ul class="notes">' + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>",
    ]


def render_page(insights: Insights, plots: dict[str, Path], adoption: Adoption | None = None) -> str:
    """The whole report as one HTML page: no script, no link outside it, plots as data: URIs."""
    c = insights.centre
    notes = [*insights.notes]
    notes += [f"left out: {i.rows:,} {i.reason} (e.g. {', '.join(i.examples)})" for i in insights.left_out]
    if insights.disagreements:
        calls = len({d.call_id for d in insights.disagreements})
        notes.append(
            f"{len(insights.disagreements):,} disagreements between the data directory and the feedback store on "
            f"{calls:,} calls (each in disagreements.csv); those calls are left out"
        )
    parts = [
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>nba insights: NPS</title>',
        f"<style>{_STYLE}</style></head><body>",
        "<h1>What the conversations do to NPS</h1>",
        f'<p class="lead">Centre NPS <strong>{c.nps:+.1f}</strong> (95% bootstrap interval {c.low:+.1f} to '
        f"{c.high:+.1f}) over {insights.answered_calls:,} answered calls of {insights.calls:,} calls, from "
        f"{html.escape(' and '.join(insights.sources))}. NPS is % promoters (9-10) − % detractors (0-6). A group "
        f"with fewer than {insights.min_answers} answers shows its interval and <em>too few to say</em>; agents "
        f"are listed from {insights.min_agent_calls} answered calls up.</p>",
    ]
    if notes:
        parts.append('<ul class="notes">' + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    for dimension in DIMENSIONS:
        parts.append(f'<h2 id="{dimension}">{html.escape(TITLES[dimension])}</h2>')
        if dimension in plots:
            encoded = base64.b64encode(plots[dimension].read_bytes()).decode("ascii")
            parts.append(
                f'<img alt="{html.escape(TITLES[dimension])}" src="data:image/png;base64,{encoded}">'
            )
        parts.append(_table(dimension, insights.tables[dimension], insights))
    parts.extend(_pitch_section(insights.pitch))
    parts.extend(_adoption_section(adoption))
    parts.append(
        '<p class="foot">Each table is also a CSV file beside this page (nps_by_*.csv, adoption_by_*.csv, '
        "caused_adoption.csv).</p>"
    )
    parts.append("</body></html>")
    return "\n".join(parts)


_STYLE: Final = (
    "body{font-family:sans-serif;margin:2em auto;max-width:60em;color:#222}"
    "table{border-collapse:collapse;margin:0.5em 0 1.5em}"
    "th,td{border:1px solid #ccc;padding:0.25em 0.6em;text-align:right}"
    "td:first-child,th:first-child{text-align:left}"
    "tr.few{color:#888}td.few{font-style:italic}"
    "img{max-width:100%}.notes li{color:#8a4b00}"
)
