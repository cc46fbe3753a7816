"""Managing the registry of intermittent domains."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from etrn_ext.core.errors import DomainInUseError, UnknownDomainError
from etrn_ext.core.model import DomainUsage, Event, EventKind, IntermittentDomain
from etrn_ext.core.names import parse_domain
from etrn_ext.core.registry import DomainChanges, apply_changes, new_domain
from etrn_ext.core.rules import QuotaUse, quota_use
from etrn_ext.service.context import Context


@dataclass(frozen=True, slots=True)
class DomainStatus:
    """A registry entry with what the index holds for it right now."""

    domain: IntermittentDomain
    usage: DomainUsage
    quota_use: QuotaUse


def _audit(ctx: Context, domain: IntermittentDomain, outcome: str) -> None:
    ctx.store.record_event(
        Event(
            at=ctx.clock(),
            kind=EventKind.DOMAIN,
            node=ctx.node,
            actor=ctx.actor,
            outcome=outcome,
            domain=domain.name.ascii,
            detail={
                "include_subdomains": domain.include_subdomains,
                "allow": domain.clients.as_texts(),
                "quota_messages": domain.quota.messages,
                "quota_bytes": domain.quota.bytes,
                "contacts": list(domain.contacts),
            },
        )
    )


def add_domain(ctx: Context, name: str, changes: DomainChanges) -> IntermittentDomain:
    """Register ``name``; everything is validated before anything is written."""
    domain = new_domain(name, changes, ctx.clock())
    ctx.store.add_domain(domain)
    _audit(ctx, domain, "added")
    return domain


def change_domain(ctx: Context, name: str, changes: DomainChanges) -> IntermittentDomain:
    """Apply ``changes`` to a registered domain."""
    domain_name = parse_domain(name)
    current = ctx.store.get_domain(domain_name)
    if current is None:
        raise UnknownDomainError(domain_name.ascii)
    changed = apply_changes(current, changes, ctx.clock())
    ctx.store.save_domain(changed)
    _audit(ctx, changed, "changed")
    return changed


def remove_domain(ctx: Context, name: str, *, force: bool) -> IntermittentDomain:
    """Unregister a domain; with held mail in the index only when forced."""
    domain_name = parse_domain(name)
    current = ctx.store.get_domain(domain_name)
    if current is None:
        raise UnknownDomainError(domain_name.ascii)
    pending = ctx.store.count_pending(domain_name)
    if pending and not force:
        raise DomainInUseError(domain_name.ascii, pending)
    ctx.store.remove_domain(domain_name, with_held_rows=True)
    _audit(ctx, current, "removed")
    return current


def _status(domain: IntermittentDomain, usage: DomainUsage | None) -> DomainStatus:
    usage = usage or DomainUsage(domain.name.ascii)
    return DomainStatus(domain, usage, quota_use(domain.quota, usage))


def domain_status(ctx: Context, name: str) -> DomainStatus:
    """One registered domain with its held mail."""
    domain_name = parse_domain(name)
    domain = ctx.store.get_domain(domain_name)
    if domain is None:
        raise UnknownDomainError(domain_name.ascii)
    return _status(domain, ctx.store.usage_by_domain(only=domain_name).get(domain_name.ascii))


def list_domains(ctx: Context) -> list[DomainStatus]:
    """All registered domains with their held mail, by name."""
    usage = ctx.store.usage_by_domain()
    return [_status(domain, usage.get(domain.name.ascii)) for domain in ctx.store.list_domains()]


def registered_domains(ctx: Context, names: Sequence[str]) -> list[IntermittentDomain]:
    """The named registered domains, or all of them when no name is given."""
    if not names:
        return ctx.store.list_domains()
    domains = []
    for name in names:
        domain = ctx.store.get_domain(parse_domain(name))
        if domain is None:
            raise UnknownDomainError(parse_domain(name).ascii)
        domains.append(domain)
    return domains
