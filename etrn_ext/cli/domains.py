"""``etrnctl domain``: the registry of intermittent domains."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from etrn_ext.cli import render

if TYPE_CHECKING:
    from etrn_ext.cli.main import CliState
    from etrn_ext.core.registry import DomainChanges
    from etrn_ext.service.domains import DomainStatus

F = Callable[..., Any]


def _edit_options(function: F) -> F:
    """Options shared by ``add`` and ``set``; list options add to what is there."""
    options = [
        click.option(
            "--subdomains/--no-subdomains",
            default=None,
            help="Hold mail for subdomains too (default for add: no).",
        ),
        click.option(
            "--allow",
            multiple=True,
            metavar="RULE",
            help="Client allowed to ETRN: CIDR or address, host name, or sasl:USER. Repeatable.",
        ),
        click.option("--quota-messages", metavar="N", help="Most held messages, or 'none'."),
        click.option(
            "--quota-bytes", metavar="SIZE", help="Most held bytes (K, M, G, T), or 'none'."
        ),
        click.option(
            "--contact",
            multiple=True,
            metavar="ADDRESS",
            help="Address for notices, not behind the site's link. Repeatable.",
        ),
        click.option(
            "--outage",
            metavar="DURATION",
            help="Longest the site is expected to stay offline (14d), or 'none'; doctor checks it.",
        ),
        click.option("--note", metavar="TEXT", help="Free text for the admins."),
        click.option("--json", "as_json", is_flag=True, help="Print the result as JSON."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _changes(**options: Any) -> DomainChanges:
    from etrn_ext.core.registry import DomainChanges

    return DomainChanges(
        include_subdomains=options["subdomains"],
        allow=options["allow"],
        disallow=options.get("disallow", ()),
        quota_messages=options["quota_messages"],
        quota_bytes=options["quota_bytes"],
        contacts=options["contact"],
        remove_contacts=options.get("remove_contact", ()),
        note=options["note"],
        expected_outage=options["outage"],
    )


def domain_json(status: DomainStatus) -> dict[str, Any]:
    domain, usage = status.domain, status.usage
    return {
        "name": domain.name.ascii,
        "unicode_name": domain.name.unicode,
        "include_subdomains": domain.include_subdomains,
        "allow": domain.clients.as_texts(),
        "quota": {"messages": domain.quota.messages, "bytes": domain.quota.bytes},
        "contacts": list(domain.contacts),
        "note": domain.note,
        "expected_outage_seconds": domain.expected_outage_seconds,
        "created": render.iso_time(domain.created_at),
        "updated": render.iso_time(domain.updated_at),
        "held": {
            "messages": usage.messages,
            "recipients": usage.recipients,
            "bytes": usage.bytes,
            "oldest_arrival": render.iso_time(usage.oldest_arrival),
        },
        "quota_use_percent": {
            "messages": status.quota_use.messages_percent,
            "bytes": status.quota_use.bytes_percent,
        },
    }


def _limit(value: float | None, formatter: Callable[[float], str] = str) -> str:
    return "-" if value is None else formatter(value)


def _emit_status(status: DomainStatus, as_json: bool) -> None:
    from etrn_ext.core.units import format_duration, format_size

    if as_json:
        render.emit_json(domain_json(status))
        return
    domain, usage = status.domain, status.usage
    name = domain.name.ascii
    if domain.name.unicode != name:
        name += f" ({domain.name.unicode})"
    highest = status.quota_use.highest
    render.emit_fields(
        {
            "domain": name,
            "subdomains": "yes" if domain.include_subdomains else "no",
            "allow": " ".join(domain.clients.as_texts()) or "- (nobody may ETRN)",
            "quota messages": _limit(domain.quota.messages),
            "quota bytes": _limit(domain.quota.bytes, format_size),
            "contacts": " ".join(domain.contacts) or "-",
            "note": domain.note or "-",
            "expected outage": _limit(domain.expected_outage_seconds, format_duration),
            "held": f"{usage.messages} message(s), {usage.recipients} recipient(s), "
            f"{format_size(usage.bytes)}",
            "oldest": render.local_time(usage.oldest_arrival),
            "quota use": "-" if highest is None else f"{highest:.0f}%",
            "created": render.local_time(domain.created_at),
            "updated": render.local_time(domain.updated_at),
        }
    )


@click.group()
def domain() -> None:
    """Register and change intermittent domains."""


@domain.command("add")
@click.argument("name")
@_edit_options
@click.pass_obj
def add(state: CliState, /, name: str, as_json: bool, **options: Any) -> None:
    """Register NAME as an intermittent domain."""
    from etrn_ext.service import domains

    ctx = state.context()
    added = domains.add_domain(ctx, name, _changes(**options))
    _emit_status(domains.domain_status(ctx, added.name.ascii), as_json)


@domain.command("set")
@click.argument("name")
@_edit_options
@click.option("--disallow", multiple=True, metavar="RULE", help="Remove a client rule. Repeatable.")
@click.option(
    "--remove-contact", multiple=True, metavar="ADDRESS", help="Remove a contact. Repeatable."
)
@click.pass_obj
def set_(state: CliState, /, name: str, as_json: bool, **options: Any) -> None:
    """Change a registered domain; unnamed settings stay as they are."""
    from etrn_ext.service import domains

    ctx = state.context()
    changed = domains.change_domain(ctx, name, _changes(**options))
    _emit_status(domains.domain_status(ctx, changed.name.ascii), as_json)


@domain.command("remove")
@click.argument("name")
@click.option(
    "--force", is_flag=True, help="Remove even with held mail in the index (the mail stays queued)."
)
@click.pass_obj
def remove(state: CliState, /, name: str, force: bool) -> None:
    """Unregister NAME. Its mail stays in the MTA queue."""
    from etrn_ext.service import domains

    removed = domains.remove_domain(state.context(), name, force=force)
    click.echo(f"{removed.name.ascii}: removed")


@domain.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def list_(state: CliState, /, as_json: bool) -> None:
    """List registered domains with what is held for them."""
    from etrn_ext.core.units import format_duration, format_size
    from etrn_ext.service import domains

    ctx = state.context()
    statuses = domains.list_domains(ctx)
    if as_json:
        render.emit_json([domain_json(status) for status in statuses])
        return
    now = ctx.clock()
    rows = []
    for status in statuses:
        d, usage, highest = status.domain, status.usage, status.quota_use.highest
        rows.append(
            [
                d.name.ascii,
                "yes" if d.include_subdomains else "no",
                usage.messages,
                usage.recipients,
                format_size(usage.bytes),
                "-"
                if usage.oldest_arrival is None
                else format_duration(now - usage.oldest_arrival),
                f"{_limit(d.quota.messages)}/{_limit(d.quota.bytes, format_size)}",
                "-" if highest is None else f"{highest:.0f}%",
                len(d.clients.as_texts()),
            ]
        )
    render.emit_table(
        ["DOMAIN", "SUBDOMAINS", "MSGS", "RCPTS", "SIZE", "OLDEST", "QUOTA", "USE", "ALLOW"],
        rows,
        right=["MSGS", "RCPTS", "SIZE", "OLDEST", "USE", "ALLOW"],
    )


@domain.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def show(state: CliState, /, name: str, as_json: bool) -> None:
    """Show one registered domain."""
    from etrn_ext.service import domains

    _emit_status(domains.domain_status(state.context(), name), as_json)
