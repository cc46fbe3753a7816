"""``etrnctl list``, ``show`` and ``summary``: what the index says is held."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from etrn_ext.cli import render

if TYPE_CHECKING:
    from etrn_ext.cli.main import CliState
    from etrn_ext.core.model import Event, HeldRecipient

REASON_WIDTH = 60


def recipient_json(row: HeldRecipient) -> dict[str, Any]:
    return {
        "queue_id": row.queue_id,
        "node": row.node,
        "recipient": row.recipient,
        "domain": row.domain,
        "sender": row.sender,
        "size": row.size,
        "arrival": render.iso_time(row.arrival_time),
        "first_seen": render.iso_time(row.first_seen),
        "last_seen": render.iso_time(row.last_seen),
        "state": row.state.value,
        "reason": row.reason,
    }


def event_json(event: Event) -> dict[str, Any]:
    return {**event.fields(), "at": render.iso_time(event.at)}


def _short(text: str, width: int = REASON_WIDTH) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


@click.command("list")
@click.argument("domain", required=False)
@click.option(
    "--older-than", metavar="AGE", help="Only mail that arrived longer ago than AGE (5d, 12h)."
)
@click.option(
    "--state",
    "states",
    multiple=True,
    metavar="STATE",
    help="held, flushing, delivered, bounced, expired or gone (default: held, flushing).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def list_(
    state: CliState,
    /,
    domain: str | None,
    older_than: str | None,
    states: tuple[str, ...],
    as_json: bool,
) -> None:
    """List held mail per recipient, oldest first, from the index (run sync to refresh)."""
    from etrn_ext.core.units import format_duration
    from etrn_ext.service.queue import list_held

    ctx = state.context()
    rows = list_held(ctx, domain, older_than=older_than, states=states)
    if as_json:
        render.emit_json([recipient_json(row) for row in rows])
        return
    if not rows:
        click.echo("nothing held" + (f" for {domain}" if domain else ""))
        return
    now = ctx.clock()
    many_nodes = len({row.node for row in rows}) > 1
    table = []
    previous = None
    for row in rows:
        first = (row.queue_id, row.node) != previous
        previous = (row.queue_id, row.node)
        message = [
            row.queue_id,
            format_duration(now - row.arrival_time),
            row.size,
            row.sender or "<>",
        ]
        cells = (message if first else ["", "", "", ""]) + [
            row.recipient,
            row.state.value,
            _short(row.reason),
        ]
        table.append(([row.node if first else ""] if many_nodes else []) + cells)
    headers = ["QUEUE ID", "AGE", "SIZE", "SENDER", "RECIPIENT", "STATE", "REASON"]
    render.emit_table((["NODE"] if many_nodes else []) + headers, table, right=["AGE", "SIZE"])


@click.command("show")
@click.argument("queue_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def show(state: CliState, /, queue_id: str, as_json: bool) -> None:
    """Show one message: every recipient's state and reason, and the events that touched it."""
    from etrn_ext.core.units import format_duration, format_size
    from etrn_ext.service.queue import show_message

    ctx = state.context()
    view = show_message(ctx, queue_id)
    if as_json:
        render.emit_json(
            {
                "queue_id": view.queue_id,
                "recipients": [recipient_json(row) for row in view.recipients],
                "events": [event_json(event) for event in view.events],
            }
        )
        return
    first = view.recipients[0]
    render.emit_fields(
        {
            "queue id": view.queue_id,
            "node": ", ".join(sorted({row.node for row in view.recipients})),
            "sender": first.sender or "<>",
            "size": format_size(first.size),
            "arrival": f"{render.local_time(first.arrival_time)} "
            f"({format_duration(ctx.clock() - first.arrival_time)} ago)",
            "last seen": render.local_time(max(row.last_seen for row in view.recipients)),
        }
    )
    click.echo("")
    render.emit_table(
        ["RECIPIENT", "DOMAIN", "STATE", "REASON"],
        [[row.recipient, row.domain, row.state.value, row.reason] for row in view.recipients],
    )
    if view.events:
        click.echo("")
        render.emit_table(
            ["TIME", "EVENT", "OUTCOME", "BY"],
            [[render.local_time(e.at), e.kind.value, e.outcome, e.actor] for e in view.events],
        )


@click.command("summary")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def summary(state: CliState, /, as_json: bool) -> None:
    """Per registered domain: held messages, recipients, bytes and the oldest, with totals."""
    from etrn_ext.core.units import format_duration, format_size
    from etrn_ext.service.domains import list_domains

    ctx = state.context()
    statuses = list_domains(ctx)
    if as_json:
        render.emit_json(
            [
                {
                    "domain": s.domain.name.ascii,
                    "messages": s.usage.messages,
                    "recipients": s.usage.recipients,
                    "bytes": s.usage.bytes,
                    "oldest_arrival": render.iso_time(s.usage.oldest_arrival),
                }
                for s in statuses
            ]
        )
        return
    now = ctx.clock()

    def age(oldest: float | None) -> str:
        return "-" if oldest is None else format_duration(now - oldest)

    rows: list[list[object]] = [
        [
            s.domain.name.ascii,
            s.usage.messages,
            s.usage.recipients,
            format_size(s.usage.bytes),
            age(s.usage.oldest_arrival),
        ]
        for s in statuses
    ]
    oldest = [s.usage.oldest_arrival for s in statuses if s.usage.oldest_arrival is not None]
    rows.append(
        [
            "TOTAL",
            sum(s.usage.messages for s in statuses),
            sum(s.usage.recipients for s in statuses),
            format_size(sum(s.usage.bytes for s in statuses)),
            age(min(oldest) if oldest else None),
        ]
    )
    render.emit_table(
        ["DOMAIN", "MSGS", "RCPTS", "SIZE", "OLDEST"],
        rows,
        right=["MSGS", "RCPTS", "SIZE", "OLDEST"],
    )


@click.command("events")
@click.argument("domain", required=False)
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    metavar="KIND",
    help="etrn, flush, sync, quota, domain or notice. Repeatable.",
)
@click.option("--limit", type=int, default=50, show_default=True, help="Show at most this many.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def events(
    state: CliState, /, domain: str | None, kinds: tuple[str, ...], limit: int, as_json: bool
) -> None:
    """The audit trail, newest first: who asked for what, when, and how it ended."""
    from etrn_ext.service.queue import list_events

    found = list_events(state.context(), domain, kinds=kinds, limit=limit)
    if as_json:
        render.emit_json([event_json(event) for event in found])
        return
    render.emit_table(
        ["TIME", "EVENT", "DOMAIN", "OUTCOME", "BY", "DETAIL"],
        [
            [
                render.local_time(e.at),
                e.kind.value,
                e.domain or "-",
                e.outcome,
                e.actor,
                _short(_detail_text(e), 50),
            ]
            for e in found
        ],
    )


def _detail_text(event: Event) -> str:
    return " ".join(
        f"{key}={value}" for key, value in event.detail.items() if value not in (None, "", [], {})
    )
