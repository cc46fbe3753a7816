"""``etrnctl sync``: reconcile the index with the live queue."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from etrn_ext.cli import render

if TYPE_CHECKING:
    from etrn_ext.cli.main import CliState


@click.command("sync")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_obj
def sync(state: CliState, /, as_json: bool) -> None:
    """Add queued held mail to the index and finish what left the queue."""
    from etrn_ext.service.sync import sync as run_sync

    def progress(messages: int) -> None:
        click.echo(f"\rsync: {messages} messages scanned", nl=False, err=True)

    result = run_sync(state.context(), progress if sys.stderr.isatty() and not as_json else None)
    if sys.stderr.isatty() and not as_json and result.messages_scanned >= 1000:
        click.echo("", err=True)
    if as_json:
        render.emit_json(
            {
                "messages_scanned": result.messages_scanned,
                "held_recipients": result.held_recipients,
                "added": result.added,
                "updated": result.updated,
                "finished": result.finished,
                "seconds": result.seconds,
            }
        )
        return
    finished = ", ".join(f"{count} {name}" for name, count in sorted(result.finished.items()))
    click.echo(
        f"sync: {result.messages_scanned} message(s) scanned, {result.held_recipients} held "
        f"recipient(s) ({result.added} new, {result.updated} updated); "
        f"finished: {finished or 'none'}; {result.seconds:.2f}s"
    )
