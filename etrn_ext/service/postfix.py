"""Postfix set-up: print the lines a relay needs, and check a live relay for known traps."""

from __future__ import annotations

import getpass
from collections.abc import Sequence

from etrn_ext.core.postfix_setup import (
    PARAMETERS,
    Finding,
    PostfixFacts,
    check_postfix,
    milter_service_name,
    policy_service_name,
    render_postfix_config,
    split_list,
    transport_keys,
)
from etrn_ext.mta.postfix import PostfixAdapter
from etrn_ext.service.context import Context
from etrn_ext.service.domains import registered_domains


def postfix_config(
    ctx: Context,
    names: Sequence[str],
    *,
    live: bool = True,
    policyd: bool = True,
    milter: bool = False,
) -> str:
    """main.cf/master.cf/map lines for the domains, merged with the live values if asked."""
    domains = registered_domains(ctx, names)
    current = PostfixAdapter(ctx.settings.mta).parameters(PARAMETERS) if live else {}
    queue_directory = current.get("queue_directory", "/var/spool/postfix")
    policy = policy_service_name(ctx.settings.policyd.listen, queue_directory) if policyd else None
    milter_service = (
        milter_service_name(ctx.settings.milter.listen, queue_directory) if milter else None
    )
    return render_postfix_config(
        domains, current, ctx.settings.mta.config_directory, policy, milter_service
    )


def doctor(ctx: Context, names: Sequence[str] = (), *, user: str | None = None) -> list[Finding]:
    """Known traps in the live Postfix configuration, for ``user`` (default: who runs it)."""
    domains = registered_domains(ctx, names)
    postfix = PostfixAdapter(ctx.settings.mta)
    parameters = postfix.parameters(PARAMETERS)
    classes = split_list(parameters.get("smtpd_restriction_classes", ""))
    if classes:
        parameters |= postfix.parameters(classes)
    keys = [key for domain in domains for key in transport_keys(domain)]
    facts = PostfixFacts(
        parameters=parameters,
        services=[(service.name, service.type) for service in postfix.master_services()],
        transports={key: postfix.lookup(parameters.get("transport_maps", ""), key) for key in keys},
        user=user or getpass.getuser(),
    )
    return check_postfix(facts, domains)
