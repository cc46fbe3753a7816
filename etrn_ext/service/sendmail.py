"""Sendmail set-up: print the lines a relay needs, and check a live sendmail.cf."""

from __future__ import annotations

from collections.abc import Sequence

from etrn_ext.core.postfix_setup import Finding
from etrn_ext.core.sendmail_setup import (
    SendmailSetup,
    check_sendmail,
    group_parent_directory,
    parse_cf,
    render_sendmail_config,
)
from etrn_ext.mta.sendmail import SendmailAdapter
from etrn_ext.service.context import Context
from etrn_ext.service.domains import registered_domains


def sendmail_config(ctx: Context, names: Sequence[str], *, live: bool = True) -> str:
    """The .mc and map lines for the domains, with this relay's sockets and queue directory."""
    settings = ctx.settings
    queue_directory = "/var/spool/mqueue"
    if live:
        options = parse_cf(SendmailAdapter(settings.mta).cf_text())[0]
        queue_directory = group_parent_directory(options.get("QueueDirectory", queue_directory))
    setup = SendmailSetup(
        queue_directory=queue_directory,
        socketmap=f"unix:{settings.socketmap.listen}",
        milter=settings.milter.listen,
    )
    return render_sendmail_config(registered_domains(ctx, names), setup)


def sendmail_doctor(ctx: Context, names: Sequence[str] = ()) -> list[Finding]:
    """Known traps in the live sendmail.cf for the registered domains."""
    cf_text = SendmailAdapter(ctx.settings.mta).cf_text()
    answer_seconds = ctx.settings.socketmap.answer_timeout_seconds
    return check_sendmail(cf_text, registered_domains(ctx, names), answer_seconds)
