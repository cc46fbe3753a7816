"""``etrnctl flush``: deliver held mail now, through the MTA's own commands."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from etrn_ext.cli import render

if TYPE_CHECKING:
    from etrn_ext.cli.main import CliState
    from etrn_ext.service.queue import FlushResult

DEFAULT_WAIT_SECONDS = 120.0
EX_MAIL_REMAINS = 1


class WaitSeconds(render.Seconds):
    """``--wait``'s value is optional, so click reads the word after it as the seconds:
    when that word is the domain, say how to write the option instead."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            float(value)
        except (TypeError, ValueError):
            self.fail(
                f"{value!r} is not a number of seconds; write --wait=SECONDS, "
                "or a bare --wait after DOMAIN",
                param,
                ctx,
            )
        return super().convert(value, param, ctx)


def _result_json(result: FlushResult) -> dict[str, Any]:
    return {
        "target": result.target,
        "queue_ids": result.queue_ids,
        "recipients": len(result.recipients),
        "other_domains": result.other_domains,
        "on_hold": result.on_hold,
        "waited_seconds": result.waited_seconds,
        "finished": [
            {"queue_id": q, "recipient": r, "state": s, "reason": why}
            for (q, r), (s, why) in result.finished.items()
        ],
        "remaining": [
            {"queue_id": q, "recipient": r, "reason": why}
            for (q, r), why in result.remaining.items()
        ],
    }


def _print(result: FlushResult, flush_granularity: str) -> None:
    if not result.queue_ids:
        click.echo(f"{result.target}: nothing queued, nothing to flush")
        return
    click.echo(
        f"{result.target}: flush requested for {len(result.queue_ids)} message(s), "
        f"{len(result.recipients)} recipient(s)"
    )
    for queue_id, others in result.other_domains.items():
        click.echo(
            f"note: {queue_id} also goes to {', '.join(others)}: "
            f"{flush_granularity}, so these recipients are delivered too"
        )
    for queue_id in result.on_hold:
        click.echo(f"note: {queue_id} is on hold; release it with 'postsuper -H {queue_id}' first")
    if result.waited_seconds is None:
        return
    counts: dict[str, int] = {}
    for state, _reason in result.finished.values():
        counts[state] = counts.get(state, 0) + 1
    done = (
        ", ".join(f"{count} {state}" for state, count in sorted(counts.items())) or "none finished"
    )
    click.echo(f"after {result.waited_seconds:g}s: {done}, {len(result.remaining)} still queued")
    if result.remaining:
        render.emit_table(
            ["QUEUE ID", "RECIPIENT", "REASON"],
            [[q, r, why or "-"] for (q, r), why in result.remaining.items()],
        )


@click.command("flush")
@click.argument("domain", required=False)
@click.option(
    "--id",
    "queue_ids",
    multiple=True,
    metavar="QUEUE_ID",
    help="Flush this message instead. Repeatable.",
)
@click.option(
    "--wait",
    "wait_seconds",
    type=WaitSeconds(),
    is_flag=False,
    flag_value=DEFAULT_WAIT_SECONDS,
    default=None,
    metavar="[SECONDS]",
    help=(
        f"Follow the queue until the mail is gone or SECONDS pass ({DEFAULT_WAIT_SECONDS:g}). "
        "The word after --wait is read as SECONDS: write --wait=SECONDS, or a bare --wait "
        "after DOMAIN."
    ),
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def flush(
    state: CliState,
    /,
    domain: str | None,
    queue_ids: tuple[str, ...],
    wait_seconds: float | None,
    as_json: bool,
) -> int:
    """Deliver DOMAIN's held mail (or the --id messages) now; exit 1 if --wait saw mail remain."""
    from etrn_ext.service.queue import flush_domain, flush_messages

    if bool(domain) == bool(queue_ids):
        raise click.UsageError("give either a DOMAIN or one or more --id QUEUE_ID")
    ctx = state.context()
    if domain:
        result = flush_domain(ctx, domain, wait=wait_seconds)
    else:
        result = flush_messages(ctx, queue_ids, wait=wait_seconds)
    if as_json:
        render.emit_json(_result_json(result))
    else:
        _print(result, ctx.mta.flush_granularity)
    if result.remaining:
        raise click.exceptions.Exit(EX_MAIL_REMAINS)
    return 0
