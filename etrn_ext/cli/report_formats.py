"""The report in four formats: text for a terminal and a cron mail (80 columns), JSON and
CSV for scripts, and one self-contained HTML page (no external assets) with a sortable
table and age bars."""

from __future__ import annotations

import csv
import html
import io
import json
import textwrap
from collections.abc import Callable
from typing import Any, Final

from etrn_ext.cli import render
from etrn_ext.core.model import DomainUsage, Event
from etrn_ext.core.report import AGE_BUCKET_LABELS, DomainReport, FlushSummary, Report
from etrn_ext.core.units import format_duration, format_size

WIDTH: Final = 80
SUMMARY_HEADERS: Final = (
    "DOMAIN",
    "MSGS",
    "RCPTS",
    "SIZE",
    "OLDEST",
    "QUOTA",
    "EXPIRING",
    "LAST ETRN",
)


def _ago(now: float, at: float | None, never: str = "-") -> str:
    return never if at is None else format_duration(now - at)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}%"


def _client(event: Event) -> str:
    """``name[address]`` as Postfix logs a client."""
    name = event.detail.get("client_name")
    return f"{name}[{event.actor}]" if isinstance(name, str) and name else event.actor


def _outcome(flush: FlushSummary) -> str:
    counts = flush.outcome()
    if not counts:
        return flush.event.outcome
    return ", ".join(f"{count} {state}" for state, count in counts.items())


def _etrn_line(event: Event) -> str:
    return f"ETRN {render.local_time(event.at)} from {_client(event)}: {event.outcome}"


def _flush_line(flush: FlushSummary) -> str:
    messages = flush.event.detail.get("messages", "?")
    return (
        f"flush {render.local_time(flush.event.at)} by {flush.event.actor}, "
        f"{messages} message(s): {_outcome(flush)}"
    )


def _wrap(text: str, indent: str) -> list[str]:
    """``text`` on lines of WIDTH at most; textwrap only for the few that need it (it is
    the report's slowest step on thousands of domains)."""
    if len(indent) + len(text) <= WIDTH:
        return [indent + text]
    return textwrap.wrap(
        text,
        WIDTH,
        initial_indent=indent,
        subsequent_indent=indent + "    ",
        break_on_hyphens=False,
    )


def text(report: Report) -> str:
    """For people: a summary table, qshape's age table, then what needs attention."""
    now, policy, totals = report.generated_at, report.policy, report.totals
    lines = [
        f"etrn-ext report for {report.node}, {render.local_time_with_zone(now)}",
        f"Queue lifetime {format_duration(policy.queue_lifetime_seconds)}; expiry warnings "
        f"{format_duration(policy.expiry_warning_seconds)} ahead.",
        "",
    ]
    rows: list[list[object]] = [
        [
            item.domain.name.ascii,
            item.usage.messages,
            item.usage.recipients,
            format_size(item.usage.bytes),
            _ago(now, item.usage.oldest_arrival),
            _percent(item.quota_use.highest),
            item.expiring.messages,
            _ago(now, item.last_etrn.at if item.last_etrn else None, "never"),
        ]
        for item in report.domains
    ]
    rows.append(
        [
            "TOTAL",
            totals.messages,
            totals.recipients,
            format_size(totals.bytes),
            _ago(now, totals.oldest_arrival),
            "",
            report.total_expiring.messages,
            "",
        ]
    )
    lines.append(
        render.table(SUMMARY_HEADERS, rows, right=SUMMARY_HEADERS[1:], width=WIDTH, shrink="DOMAIN")
    )
    lines += ["", "Held recipients by age in minutes (qshape's buckets):"]
    age_headers = ["DOMAIN", "T", *AGE_BUCKET_LABELS]
    age_rows: list[list[object]] = [
        [item.domain.name.ascii, item.usage.recipients, *item.ages]
        for item in report.domains
        if item.usage.recipients
    ]
    age_rows.append(["TOTAL", totals.recipients, *report.total_ages])
    lines.append(
        render.table(age_headers, age_rows, right=age_headers[1:], width=WIDTH, shrink="DOMAIN")
    )
    lines += _attention(report)
    return "\n".join(lines) + "\n"


def _attention(report: Report) -> list[str]:
    """The sections after the tables: expiring mail, the last ETRN and flush, silent domains."""
    now, policy = report.generated_at, report.policy
    lines = []
    expiring = [item for item in report.domains if item.expiring.messages]
    if expiring:
        window = format_duration(policy.expiry_warning_seconds)
        lines += ["", f"Returned to their senders within {window} unless delivered:"]
        for item in expiring:
            first = item.first_expiry or now
            lines += _wrap(
                f"{item.domain.name.ascii}: {item.expiring.messages} message(s), "
                f"{format_size(item.expiring.bytes)}, the first at {render.local_time(first)} "
                f"(in {format_duration(first - now)})",
                "  ",
            )
    seen = [item for item in report.domains if item.last_etrn or item.last_flush]
    if seen:
        lines += ["", "Last ETRN and flush:"]
        for item in seen:
            lines.append(f"  {item.domain.name.ascii}")
            if item.last_etrn:
                lines += _wrap(_etrn_line(item.last_etrn), "    ")
            if item.last_flush:
                lines += _wrap(_flush_line(item.last_flush), "    ")
    silent = [item for item in report.domains if item.silent]
    if silent:
        quiet = format_duration(policy.silent_after_seconds)
        lines += [
            "",
            f"Silent: nothing held and no ETRN for over {quiet} (or the expected outage):",
        ]
        for item in silent:
            since = (
                f"last ETRN {_ago(now, item.last_etrn.at)} ago"
                if item.last_etrn
                else f"no ETRN since it was registered {_ago(now, item.domain.created_at)} ago"
            )
            lines += _wrap(f"{item.domain.name.ascii}: {since}", "  ")
    return lines


# --- for scripts ------------------------------------------------------------------------


def _usage_json(usage: DomainUsage) -> dict[str, Any]:
    return {
        "messages": usage.messages,
        "recipients": usage.recipients,
        "bytes": usage.bytes,
        "oldest_arrival": render.iso_time(usage.oldest_arrival),
    }


def _domain_json(item: DomainReport) -> dict[str, Any]:
    etrn, flush = item.last_etrn, item.last_flush
    return {
        "domain": item.domain.name.ascii,
        **_usage_json(item.usage),
        "ages": dict(zip(AGE_BUCKET_LABELS, item.ages, strict=True)),
        "quota_use_percent": item.quota_use.highest,
        "expiring": {
            **_usage_json(item.expiring),
            "first_expiry": render.iso_time(item.first_expiry),
        },
        "last_etrn": None
        if etrn is None
        else {
            "at": render.iso_time(etrn.at),
            "node": etrn.node,
            "client_address": etrn.actor,
            "client_name": etrn.detail.get("client_name") or None,
            "decision": etrn.outcome,
            "reason": etrn.detail.get("reason") or None,
        },
        "last_flush": None
        if flush is None
        else {
            "at": render.iso_time(flush.event.at),
            "node": flush.event.node,
            "by": flush.event.actor,
            "messages": flush.event.detail.get("messages"),
            "recipients": flush.outcome(),
        },
        "silent": item.silent,
    }


def as_json(report: Report) -> str:
    policy = report.policy
    data = {
        "generated": render.iso_time(report.generated_at),
        "node": report.node,
        "queue_lifetime_seconds": policy.queue_lifetime_seconds,
        "expiry_warning_seconds": policy.expiry_warning_seconds,
        "silent_after_seconds": policy.silent_after_seconds,
        "age_buckets_minutes": list(AGE_BUCKET_LABELS),
        "domains": [_domain_json(item) for item in report.domains],
        "totals": {
            **_usage_json(report.totals),
            "ages": dict(zip(AGE_BUCKET_LABELS, report.total_ages, strict=True)),
            "expiring": {
                **_usage_json(report.total_expiring),
                "first_expiry": render.iso_time(report.first_expiry),
            },
        },
    }
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


CSV_HEADERS: Final = (
    "domain",
    "messages",
    "recipients",
    "bytes",
    "oldest_arrival",
    *(f"age_{label}" for label in AGE_BUCKET_LABELS),
    "quota_use_percent",
    "expiring_messages",
    "expiring_bytes",
    "first_expiry",
    "last_etrn_at",
    "last_etrn_client",
    "last_etrn_decision",
    "last_flush_at",
    "last_flush_outcome",
    "silent",
)


def _spreadsheet_safe(text: str) -> str:
    """Text from clients, quoted so that a spreadsheet never runs it as a formula."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def as_csv(report: Report) -> str:
    """One line per domain and a TOTAL line; times in UTC ISO 8601, sizes in bytes."""
    output = io.StringIO()
    writer = csv.writer(output, lineterminator="\n")
    writer.writerow(CSV_HEADERS)
    for item in report.domains:
        etrn, flush = item.last_etrn, item.last_flush
        writer.writerow(
            [
                item.domain.name.ascii,
                item.usage.messages,
                item.usage.recipients,
                item.usage.bytes,
                render.iso_time(item.usage.oldest_arrival) or "",
                *item.ages,
                "" if item.quota_use.highest is None else f"{item.quota_use.highest:.1f}",
                item.expiring.messages,
                item.expiring.bytes,
                render.iso_time(item.first_expiry) or "",
                render.iso_time(etrn.at) if etrn else "",
                _spreadsheet_safe(_client(etrn)) if etrn else "",
                _spreadsheet_safe(etrn.outcome) if etrn else "",
                render.iso_time(flush.event.at) if flush else "",
                _outcome(flush) if flush else "",
                "yes" if item.silent else "no",
            ]
        )
    totals = report.totals
    writer.writerow(
        [
            "TOTAL",
            totals.messages,
            totals.recipients,
            totals.bytes,
            render.iso_time(totals.oldest_arrival) or "",
            *report.total_ages,
            "",
            report.total_expiring.messages,
            report.total_expiring.bytes,
            render.iso_time(report.first_expiry) or "",
            *([""] * 5),
            "",
        ]
    )
    return output.getvalue()


# --- for a browser ----------------------------------------------------------------------

# Young to old: blue through green and yellow to red.
AGE_COLOURS: Final = (
    "#3b6fb6",
    "#3f8fb0",
    "#3aa39a",
    "#4fae74",
    "#86b64f",
    "#c2b53e",
    "#e0a23a",
    "#e57f35",
    "#d9552f",
    "#b3262b",
)

STYLE: Final = """
:root { color-scheme: light; --ink: #1d2733; --muted: #5b6876; --line: #d9dee5;
  --warn: #b3262b; --calm: #2f6f4e; --head: #f2f4f7; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--ink); margin: 24px; background: #fff; }
h1 { font-size: 20px; margin: 0 0 4px; }
p.meta { color: var(--muted); margin: 0 0 16px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin-bottom: 18px; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; min-width: 130px; }
.card b { display: block; font-size: 22px; }
.card.warn b { color: var(--warn); }
.card span { color: var(--muted); font-size: 12px; text-transform: uppercase; }
table { border-collapse: collapse; width: 100%; }
th, td { padding: 6px 10px; border-bottom: 1px solid var(--line); text-align: left;
  vertical-align: middle; white-space: nowrap; }
th { background: var(--head); position: sticky; top: 0; cursor: pointer; user-select: none; }
th[aria-sort=ascending]::after { content: " \\25B2"; font-size: 10px; }
th[aria-sort=descending]::after { content: " \\25BC"; font-size: 10px; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tfoot td { font-weight: 600; border-top: 2px solid var(--ink); }
tr.silent td:first-child::after { content: "silent"; margin-left: 6px; font-size: 11px;
  color: #fff; background: var(--muted); border-radius: 4px; padding: 0 5px; }
td.expiring { color: var(--warn); font-weight: 600; }
td.wrap { white-space: normal; min-width: 160px; max-width: 260px; }
td small { display: block; font-weight: normal; }
.scroll { overflow-x: auto; }
.bar { display: flex; width: 160px; height: 14px; border-radius: 3px; overflow: hidden;
  background: #eef1f4; }
.bar span { display: block; height: 100%; }
.life { width: 90px; height: 5px; background: #eef1f4; border-radius: 3px; margin-top: 3px; }
.life span { display: block; height: 100%; background: var(--calm); border-radius: 3px; }
.life.warn span { background: var(--warn); }
.legend { display: flex; flex-wrap: wrap; gap: 10px; color: var(--muted); font-size: 12px;
  margin: 0 0 10px; }
.legend i { display: inline-block; width: 10px; height: 10px; border-radius: 2px;
  margin-right: 4px; vertical-align: -1px; }
small { color: var(--muted); }
"""

SCRIPT: Final = """
(function () {
  function key(cell, numeric) {
    var value = cell.getAttribute('data-sort');
    if (!numeric) { return value; }
    return value === '' ? -Infinity : parseFloat(value);
  }
  function sortBy(table, th, column) {
    var ascending = th.getAttribute('aria-sort') !== 'ascending';
    var numeric = th.getAttribute('data-type') === 'number';
    Array.prototype.forEach.call(th.parentNode.cells, function (cell) {
      cell.removeAttribute('aria-sort');
    });
    th.setAttribute('aria-sort', ascending ? 'ascending' : 'descending');
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a.cells[column], numeric), y = key(b.cells[column], numeric);
      var order = x < y ? -1 : (x > y ? 1 : 0);
      if (order === 0) { order = a.id < b.id ? -1 : 1; }
      return ascending ? order : -order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  }
  Array.prototype.forEach.call(document.querySelectorAll('table.sortable'), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, column) {
      th.tabIndex = 0;
      th.addEventListener('click', function () { sortBy(table, th, column); });
      th.addEventListener('keydown', function (event) {
        if (event.key === 'Enter' || event.key === ' ') {
          event.preventDefault();
          sortBy(table, th, column);
        }
      });
    });
  });
})();
"""


_NUM: Final = ' class="num"'


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _cell(shown: object, sort: object, css: str = "num", note: str = "") -> str:
    small = f"<small>{_e(note)}</small>" if note else ""
    return f'<td class="{css}" data-sort="{_e(sort)}">{_e(shown)}{small}</td>'


def _age_bar(ages: tuple[int, ...]) -> str:
    total = sum(ages)
    spans = []
    lower = "0"
    for label, count, colour in zip(AGE_BUCKET_LABELS, ages, AGE_COLOURS, strict=True):
        if count:
            span = f"{lower}-{label}" if not label.endswith("+") else label
            spans.append(
                f'<span style="width:{100 * count / total:.2f}%;background:{colour}" '
                f'title="{_e(span)} min: {count}"></span>'
            )
        lower = label
    summary = ", ".join(
        f"{label} min: {count}"
        for label, count in zip(AGE_BUCKET_LABELS, ages, strict=True)
        if count
    )
    label = _e(summary or "nothing held")
    return f'<div class="bar" role="img" aria-label="{label}">{"".join(spans)}</div>'


def _oldest_cell(item: DomainReport, report: Report) -> str:
    oldest = item.usage.oldest_arrival
    if oldest is None:
        return _cell("-", "")
    age = report.generated_at - oldest
    lifetime = report.policy.queue_lifetime_seconds
    share = min(max(age / lifetime, 0.0), 1.0) if lifetime > 0 else 1.0
    warn = " warn" if item.expiring.messages else ""
    return (
        f'<td class="num" data-sort="{age:.0f}">{_e(format_duration(age))}'
        f'<div class="life{warn}" title="{share:.0%} of the queue lifetime">'
        f'<span style="width:{100 * share:.1f}%"></span></div></td>'
    )


def _row(item: DomainReport, report: Report) -> str:
    now, usage = report.generated_at, item.usage
    etrn, flush = item.last_etrn, item.last_flush
    expiring = item.expiring.messages
    first = f"first {render.local_time(item.first_expiry)}" if item.first_expiry else ""
    cells = [
        f'<td data-sort="{_e(item.domain.name.ascii)}">{_e(item.domain.name.unicode)}</td>',
        _cell(usage.messages, usage.messages),
        _cell(usage.recipients, usage.recipients),
        _cell(format_size(usage.bytes), usage.bytes),
        _oldest_cell(item, report),
        f'<td data-sort="{usage.recipients}">{_age_bar(item.ages)}</td>',
        _cell(
            _percent(item.quota_use.highest),
            "" if item.quota_use.highest is None else item.quota_use.highest,
        ),
        _cell(expiring, expiring, "num expiring" if expiring else "num", first),
        _cell(
            f"{_ago(now, etrn.at)} ago: {etrn.outcome}" if etrn else "never",
            f"{etrn.at:.0f}" if etrn else "",
            "wrap",
            _client(etrn) if etrn else "",
        ),
        _cell(
            f"{_ago(now, flush.event.at)} ago: {_outcome(flush)}" if flush else "-",
            f"{flush.event.at:.0f}" if flush else "",
            "wrap",
            f"by {flush.event.actor}" if flush else "",
        ),
    ]
    css = ' class="silent"' if item.silent else ""
    return f'<tr id="{_e(item.domain.name.ascii)}"{css}>{"".join(cells)}</tr>'


def as_html(report: Report) -> str:
    """One page, styles and script inline: it can be mailed, saved or served as it is."""
    now, totals, policy = report.generated_at, report.totals, report.policy
    head = "".join(
        f'<th data-type="{kind}"{css}>{name}</th>'
        for name, kind, css in (
            ("Domain", "text", ""),
            ("Messages", "number", _NUM),
            ("Recipients", "number", _NUM),
            ("Size", "number", _NUM),
            ("Oldest", "number", _NUM),
            ("Age distribution", "number", ""),
            ("Quota", "number", _NUM),
            ("Expiring", "number", _NUM),
            ("Last ETRN", "number", ""),
            ("Last flush", "number", ""),
        )
    )
    cards = [
        ("messages held", totals.messages, False),
        ("recipients", totals.recipients, False),
        ("held", format_size(totals.bytes), False),
        ("domains with mail", sum(1 for item in report.domains if item.usage.messages), False),
        (
            f"expiring within {format_duration(policy.expiry_warning_seconds)}",
            report.total_expiring.messages,
            bool(report.total_expiring.messages),
        ),
        ("silent domains", sum(1 for item in report.domains if item.silent), False),
    ]
    card_html = "".join(
        f'<div class="card{" warn" if warn else ""}">'
        f"<b>{_e(value)}</b><span>{_e(label)}</span></div>"
        for label, value, warn in cards
    )
    legend = "".join(
        f'<span><i style="background:{colour}"></i>{_e(label)}</span>'
        for label, colour in zip(AGE_BUCKET_LABELS, AGE_COLOURS, strict=True)
    )
    foot = "".join(
        [
            "<td>Total</td>",
            f'<td class="num">{totals.messages}</td>',
            f'<td class="num">{totals.recipients}</td>',
            f'<td class="num">{_e(format_size(totals.bytes))}</td>',
            f'<td class="num">{_e(_ago(now, totals.oldest_arrival))}</td>',
            f"<td>{_age_bar(report.total_ages)}</td>",
            "<td></td>",
            f'<td class="num">{report.total_expiring.messages}</td>',
            "<td></td><td></td>",
        ]
    )
    body = "\n".join(_row(item, report) for item in report.domains)
    title = f"etrn-ext report for {report.node}"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title>
<style>{STYLE}</style>
</head>
<body>
<h1>{_e(title)}</h1>
<p class="meta">{_e(render.local_time_with_zone(now))}
&middot; queue lifetime {_e(format_duration(policy.queue_lifetime_seconds))}
&middot; expiry warnings {_e(format_duration(policy.expiry_warning_seconds))} ahead
&middot; click a column heading to sort</p>
<div class="cards">{card_html}</div>
<div class="legend">Age of held recipients, minutes (qshape's buckets): {legend}</div>
<div class="scroll">
<table class="sortable" id="domains">
<thead><tr>{head}</tr></thead>
<tbody>
{body}
</tbody>
<tfoot><tr>{foot}</tr></tfoot>
</table>
</div>
<p><small>Oldest: the bar shows how much of the queue lifetime the oldest message has used;
red when mail will be returned to its senders within the warning window.</small></p>
<script>{SCRIPT}</script>
</body>
</html>
"""


FORMATS: Final[dict[str, Callable[[Report], str]]] = {
    "text": text,
    "json": as_json,
    "csv": as_csv,
    "html": as_html,
}
