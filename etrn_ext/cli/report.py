"""``etrnctl report`` and ``etrnctl notify``: what is held and what will bounce, for the
relay's admins and for the sites."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from etrn_ext.cli import render

if TYPE_CHECKING:
    from etrn_ext.cli.main import CliState

NO_SYNC_HELP = "Use the index as it is, without a sync first."


@click.command("report")
@click.option("--domain", metavar="DOMAIN", help="Only this registered domain.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json", "csv", "html"]),
    default="text",
    show_default=True,
    help="text for people and cron mail, json or csv for scripts, html for a browser.",
)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option("--output", metavar="FILE", help="Write FILE (replaced atomically), not stdout.")
@click.option("--no-sync", is_flag=True, help=NO_SYNC_HELP)
@click.option(
    "--mail-to",
    multiple=True,
    metavar="ADDRESS",
    help="Mail the text report, with the HTML one as an alternative, to ADDRESS. Repeatable.",
)
@click.pass_obj
def report(
    state: CliState,
    /,
    *,
    domain: str | None,
    output_format: str,
    as_json: bool,
    output: str | None,
    no_sync: bool,
    mail_to: tuple[str, ...],
) -> None:
    """Per domain: held mail, its ages, quota use, what will expire, the last ETRN and flush."""
    from etrn_ext.cli import report_formats
    from etrn_ext.service import report as reports

    ctx = state.context()
    recipients = reports.digest_recipients(mail_to)
    result = reports.build_report(ctx, domain, sync_first=not no_sync)
    rendered = report_formats.FORMATS["json" if as_json else output_format](result)
    if output:
        render.write_atomically(output, rendered)
    elif not recipients:
        click.echo(rendered, nl=False)
    if recipients:
        text = report_formats.text(result)
        reports.mail_report(ctx, result, recipients, text, report_formats.as_html(result))


@click.command("notify")
@click.option("--dry-run", is_flag=True, help="Print the notices that are due; send nothing.")
@click.option("--no-sync", is_flag=True, help=NO_SYNC_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the notices as JSON.")
@click.pass_obj
def notify(state: CliState, /, dry_run: bool, no_sync: bool, as_json: bool) -> None:
    """Mail each domain's contacts when its mail waits too long or will expire (for cron)."""
    from etrn_ext.service.report import plan_notices, send_notices

    ctx = state.context()
    # a dry run changes nothing: not even the index by a sync
    plan = plan_notices(ctx, sync_first=not (no_sync or dry_run))
    sent = [] if dry_run else send_notices(ctx, plan)
    if as_json:
        render.emit_json(
            [
                {
                    "domain": item.notice.report.domain.name.ascii,
                    "kind": item.notice.kind.value,
                    "to": list(item.mail.recipients),
                    "subject": item.mail.subject,
                    "text": item.mail.text,
                    "sent": item in sent,
                }
                for item in plan.mails
            ]
        )
        return
    for item in plan.mails:
        domain, kind = item.notice.report.domain.name.ascii, item.notice.kind.value
        to = ", ".join(item.mail.recipients)
        if dry_run:
            click.echo(f"--- {domain}: {kind} notice\nTo: {to}\nSubject: {item.mail.subject}\n")
            click.echo(item.mail.text)
        elif item in sent:
            click.echo(f"{domain}: {kind} notice sent to {to}")
