"""The impact report as text (the CLI), CSV (the export) and SVG (the chart in the approval UI).

Why server-rendered SVG: the approval UI runs no script under its Content-Security-Policy, and a CS
leader reads a dot with a bar through it faster than a table: each outcome gets one panel, the
naive difference and the stratified one each drawn as a point with its 95% interval, against a zero
line. Where there is not enough data the panel says so and draws no point: no lift is suggested.
Every text that came from data (a tier or an industry from the CRM) is XML-escaped here.
"""
from __future__ import annotations

import csv
import io
from collections.abc import Callable
from xml.sax.saxutils import escape

from milestone_stream.sinks.impact import stats
from milestone_stream.sinks.impact.report import LABELS, OUTCOMES, RATES, Report, Row

CAVEAT = ("Anniversaries reach only long-tenured accounts, and tenure itself predicts renewal: a naive comparison "
          "can mix the celebration's effect with tenure's. Read the stratified line (tier x industry x tenure) first.")
METHODS = ("Rates: difference in percentage points, Newcombe hybrid score interval (Wilson); stratified: "
           "Mantel-Haenszel risk difference with Sato's variance. NPS: difference in NPS points, Welch t interval; "
           f"stratified: Mantel-Haenszel-weighted mean difference. All intervals 95%. Fewer than {stats.MIN_PER_ARM} "
           "accounts in an arm: not enough data, no difference shown.")


def value(outcome: str, v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.1f}%" if outcome in RATES else f"{v:+.1f}"


def _unit(outcome: str) -> str:
    return "pts" if outcome in RATES else "NPS pts"


def difference(row: Row) -> str:
    """"+10.0 pts [+2.1, +17.9]", or the reason there is none."""
    i = row.interval
    if row.verdict == stats.NOT_ENOUGH or i is None:
        return f"{stats.NOT_ENOUGH} (n={row.n1}/{row.n0}; {stats.MIN_PER_ARM} per arm needed)"
    return f"{i.estimate:+.1f} {_unit(row.outcome)} [{i.low:+.1f}, {i.high:+.1f}]"


def text(report: Report) -> str:
    head = [f"Impact of celebrating: cohort {report.cohort or '(none)'}, "
            f"{'milestone kind ' + report.kind if report.kind else 'all milestone kinds'}, "
            f"as of {report.as_of:%Y-%m-%d %H:%M} UTC",
            f"accounts: {report.celebrated} celebrated, {report.held_out} held out", ""]
    w = (26, 18, 18, 34)
    lines = [f"{'Outcome':<{w[0]}} {'Celebrated':<{w[1]}} {'Held out':<{w[2]}} {'Difference (95% CI)':<{w[3]}} Verdict"]
    for outcome in OUTCOMES:
        naive, pooled = report.row(outcome), report.row(outcome, "stratified", "tier x industry x tenure")
        lines.append(f"{LABELS[outcome]:<{w[0]}} {value(outcome, naive.v1) + f' (n={naive.n1})':<{w[1]}} "
                     f"{value(outcome, naive.v0) + f' (n={naive.n0})':<{w[2]}} {difference(naive):<{w[3]}} "
                     f"{naive.verdict}")
        lines.append(f"{'  stratified':<{w[0]}} {'':<{w[1]}} {'':<{w[2]}} {difference(pooled):<{w[3]}} "
                     f"{pooled.verdict}" + (f" ({pooled.dropped} accounts in one-arm strata left out)"
                                           if pooled.dropped else ""))
    lines += ["", "By stratum (naive difference within each):",
              f"{'Outcome':<{w[0]}} {'Stratum':<30} {'Celebrated':<{w[1]}} {'Held out':<{w[2]}} Difference (95% CI)"]
    for r in report.rows:
        if r.scope in ("overall", "stratified"):
            continue
        lines.append(f"{LABELS[r.outcome]:<{w[0]}} {(r.scope + ': ' + r.stratum)[:30]:<30} "
                     f"{value(r.outcome, r.v1) + f' (n={r.n1})':<{w[1]}} "
                     f"{value(r.outcome, r.v0) + f' (n={r.n0})':<{w[2]}} {difference(r)}")
    return "\n".join(head + lines + ["", METHODS, CAVEAT, *report.notes])


CSV_COLUMNS = ["cohort", "kind", "outcome", "scope", "stratum", "celebrated_n", "celebrated_value", "held_out_n",
               "held_out_value", "difference", "ci_low", "ci_high", "unit", "method", "verdict"]


def _cell(text: str) -> str:
    """A spreadsheet reads a cell starting with = + - @ as a formula: CRM text gets a leading quote."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def csv_text(report: Report) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in report.rows:
        i = r.interval if r.verdict != stats.NOT_ENOUGH else None
        w.writerow([report.cohort or "", report.kind or "", r.outcome, r.scope, _cell(r.stratum), r.n1,
                    "" if r.v1 is None else f"{r.v1:.2f}", r.n0, "" if r.v0 is None else f"{r.v0:.2f}",
                    "" if i is None else f"{i.estimate:.2f}", "" if i is None else f"{i.low:.2f}",
                    "" if i is None else f"{i.high:.2f}", "percentage points" if r.outcome in RATES else "NPS points",
                    "" if r.interval is None else r.interval.method, r.verdict])
    return out.getvalue()


# the chart ---------------------------------------------------------------------------------------------
WIDTH, PANEL, LEFT, RIGHT = 760, 96, 110, 200
COLOURS = {stats.HIGHER: "#1a7f37", stats.LOWER: "#b42318", stats.NO_CLEAR: "#57606a", stats.NOT_ENOUGH: "#8c959f"}


def _scale(span: float, plot: float) -> Callable[[float], float]:
    """A difference → its x coordinate: zero in the middle of the plot, ±span at its edges."""
    return lambda v: LEFT + plot / 2 + v / span * plot / 2


def svg(report: Report) -> str:
    """One panel per outcome: naive and stratified differences with their intervals, zero line, verdict."""
    height = 40 + PANEL * len(OUTCOMES)
    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{height}' viewBox='0 0 {WIDTH} {height}' "
           "style='max-width:100%;height:auto' role='img' aria-labelledby='impact-title' "
           "font-family='system-ui,sans-serif' font-size='13'>",
           f"<title id='impact-title'>Difference celebrated minus held out, 95% intervals "
           f"(cohort {escape(report.cohort or 'none')})</title>",
           f"<text x='8' y='20' font-weight='bold'>Celebrated minus held out ({report.celebrated} vs "
           f"{report.held_out} accounts), 95% intervals</text>"]
    plot = WIDTH - LEFT - RIGHT
    for k, outcome in enumerate(OUTCOMES):
        top = 36 + k * PANEL
        rows = [report.row(outcome), report.row(outcome, "stratified", "tier x industry x tenure")]
        shown = [r.interval for r in rows if r.interval is not None and r.verdict != stats.NOT_ENOUGH]
        span = max([abs(v) for i in shown for v in (i.low, i.high)] + [1.0]) * 1.15
        x = _scale(span, plot)
        headline = rows[1].verdict  # the stratified one: the fairer comparison (module docstring of stats.py)
        out.append(f"<text x='8' y='{top + 16}'><tspan font-weight='bold'>{escape(LABELS[outcome])}</tspan>"
                   f"<tspan fill='{COLOURS[headline]}'>: {escape(headline)} (stratified)</tspan></text>")
        if shown:  # an axis only where there is something to read on it
            out.append(f"<line x1='{x(0):.1f}' y1='{top + 4}' x2='{x(0):.1f}' y2='{top + PANEL - 14}' "
                       "stroke='#d0d7de'/>")
            out.append(f"<text x='{x(0):.1f}' y='{top + PANEL - 2}' text-anchor='middle' fill='#57606a' "
                       f"font-size='11'>0</text>")
        for end in (-span / 1.15, span / 1.15) if shown else ():
            out.append(f"<text x='{x(end):.1f}' y='{top + PANEL - 2}' text-anchor='middle' fill='#57606a' "
                       f"font-size='11'>{end:+.0f} {_unit(outcome)}</text>")
        for j, (row, name) in enumerate(zip(rows, ("naive", "stratified"), strict=True)):
            y = top + 34 + j * 26
            colour = COLOURS[row.verdict]
            out.append(f"<text x='24' y='{y + 4}' fill='#57606a'>{name}</text>")
            i = row.interval
            if i is None or row.verdict == stats.NOT_ENOUGH:
                out.append(f"<text x='{LEFT}' y='{y + 4}' fill='{colour}'>not enough data (n={row.n1} vs "
                           f"{row.n0}; {stats.MIN_PER_ARM} per arm needed)</text>")
                continue
            out.append(f"<line x1='{x(i.low):.1f}' y1='{y}' x2='{x(i.high):.1f}' y2='{y}' stroke='{colour}' "
                       "stroke-width='3' stroke-linecap='round'/>")
            out.append(f"<circle cx='{x(i.estimate):.1f}' cy='{y}' r='6' fill='{colour}'/>")
            out.append(f"<text x='{WIDTH - RIGHT + 12}' y='{y + 4}' fill='{colour}'>{i.estimate:+.1f} "
                       f"[{i.low:+.1f}, {i.high:+.1f}] {_unit(outcome)}</text>")
    out.append("</svg>")
    return "\n".join(out)
