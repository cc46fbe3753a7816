"""``etrnctl trigger``: on the site, ask the relays (ETRN) to send the held mail now."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from etrn_ext.cli import render

if TYPE_CHECKING:
    from etrn_ext.cli.main import CliState
    from etrn_ext.core.trigger import TriggerHistory, TriggerOutcome

REPLY_WIDTH = 60


def outcome_json(outcome: TriggerOutcome) -> dict[str, Any]:
    return {
        "target": outcome.target,
        "relay": outcome.relay or None,
        "address": outcome.address or None,
        "tls": outcome.encrypted,
        "status": outcome.status.value,
        "code": outcome.code,
        "reply": outcome.reply,
        "pending_messages": outcome.pending_messages,
        "attempts": outcome.attempts,
        "at": render.iso_time(outcome.at),
    }


def _print_history(entries: list[TriggerHistory], as_json: bool) -> None:
    if as_json:
        render.emit_json(
            [
                {
                    **outcome_json(entry.last),
                    "last_reached": render.iso_time(entry.last_reached_at),
                    "last_flushed": render.iso_time(entry.last_flushed_at),
                }
                for entry in entries
            ]
        )
        return
    rows = [
        [
            entry.last.target,
            entry.last.relay or "-",
            render.local_time(entry.last.at),
            entry.last.status.value,
            render.local_time(entry.last_reached_at),
            entry.last.reply[:REPLY_WIDTH],
        ]
        for entry in entries
    ]
    render.emit_table(["TARGET", "RELAY", "LAST TRY", "STATUS", "LAST REACHED", "REPLY"], rows)


@click.command("trigger")
@click.argument("targets", nargs=-1, metavar="[DOMAIN | @DOMAIN | #QUEUE]...")
@click.option("--all", "all_configured", is_flag=True, help="Every target in site.domains too.")
@click.option(
    "--relay",
    "relays",
    multiple=True,
    metavar="HOST[:PORT]",
    help="Ask this relay instead of the MX hosts. Repeatable.",
)
@click.option(
    "--tls",
    type=click.Choice(["required", "opportunistic", "off"]),
    help="STARTTLS policy (default: site.tls).",
)
@click.option(
    "--tls-verify/--no-tls-verify",
    default=None,
    help="Verify the relay's certificate (default: site.tls_verify).",
)
@click.option("--ca-file", metavar="FILE", help="CA certificates to verify relays with.")
@click.option(
    "--deadline",
    "deadline_seconds",
    type=render.Seconds(),
    metavar="SECONDS",
    help="Retry temporary failures until then (default: site.deadline_seconds).",
)
@click.option(
    "--wait-local", is_flag=True, help="First wait until the local MTA accepts connections."
)
@click.option("--history", is_flag=True, help="Show what each relay said last, and when.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def trigger(
    state: CliState,
    /,
    *,
    targets: tuple[str, ...],
    all_configured: bool,
    relays: tuple[str, ...],
    tls: str | None,
    tls_verify: bool | None,
    ca_file: str | None,
    deadline_seconds: float | None,
    wait_local: bool,
    history: bool,
    as_json: bool,
) -> None:
    """Ask the relays to deliver the mail they hold for DOMAIN (ETRN, RFC 1985)."""
    from etrn_ext.cli.main import TRIGGER_EXIT_CODES
    from etrn_ext.service import trigger as service

    if history:
        if all_configured or relays or wait_local:
            raise click.UsageError("--history takes only targets (and --json)")
        _print_history(service.history(state.context(), targets), as_json)
        return
    if not targets and not all_configured:
        raise click.UsageError("name a DOMAIN (or @DOMAIN, #QUEUE), or give --all")
    request = service.TriggerRequest(
        targets=targets,
        all_configured=all_configured,
        relays=relays,
        tls=tls,
        tls_verify=tls_verify,
        ca_file=ca_file,
        deadline_seconds=deadline_seconds,
        wait_local=wait_local,
    )
    result = service.trigger(state.context(), request)
    if as_json:
        render.emit_json(
            {
                "summary": result.summary.value,
                "outcomes": [outcome_json(outcome) for outcome in result.outcomes],
            }
        )
    else:
        from etrn_ext.core.trigger import outcome_line

        for outcome in result.outcomes:
            click.echo(outcome_line(outcome))
    code = TRIGGER_EXIT_CODES[result.summary.value]
    if code:
        raise click.exceptions.Exit(code)
