"""Creating and editing registry entries from what an admin typed.

The command line hands over raw text; this module parses every piece through
``names`` and ``units`` so that a registry entry is valid by construction, whichever
front end made it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from typing import Final

from etrn_ext.core.errors import InvalidInputError
from etrn_ext.core.model import EtrnClients, IntermittentDomain, IPNetwork
from etrn_ext.core.names import (
    DomainName,
    parse_domain,
    parse_mailbox,
    parse_sasl_username,
)
from etrn_ext.core.units import parse_duration, parse_size

SASL_PREFIX: Final = "sasl:"
MX_RULE: Final = "dns:mx"
MAX_NOTE: Final = 1000
UNLIMITED: Final = ("none", "unlimited")


@dataclass(frozen=True, slots=True)
class DomainChanges:
    """Edits to one registry entry as typed; ``None`` leaves a field unchanged."""

    include_subdomains: bool | None = None
    allow: tuple[str, ...] = ()
    disallow: tuple[str, ...] = ()
    quota_messages: str | None = None
    quota_bytes: str | None = None
    contacts: tuple[str, ...] = ()
    remove_contacts: tuple[str, ...] = ()
    note: str | None = None
    expected_outage: str | None = None


class MxRule:
    """The ``dns:mx`` rule: the domain's own MX and A addresses may ETRN."""

    def __str__(self) -> str:
        return MX_RULE


ClientRule = IPNetwork | DomainName | str | MxRule


def parse_client_rule(text: str) -> ClientRule:
    """An address or network, ``sasl:NAME``, ``dns:mx``, or else a host name."""
    if text.lower() == MX_RULE:
        return MxRule()
    if text.startswith(SASL_PREFIX):
        return parse_sasl_username(text[len(SASL_PREFIX) :])
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        pass
    return parse_domain(text)


def _parse_count(text: str) -> int | None:
    if text.lower() in UNLIMITED:
        return None
    if not text.isdigit():
        raise InvalidInputError("message quota", text, "expected a whole number or 'none'")
    return int(text)


def _parse_bytes(text: str) -> int | None:
    return None if text.lower() in UNLIMITED else parse_size(text)


def _parse_outage(text: str) -> float | None:
    return None if text.lower() in UNLIMITED else parse_duration(text)


def _parse_note(text: str) -> str:
    if len(text) > MAX_NOTE:
        raise InvalidInputError("note", text[:40] + "...", f"longer than {MAX_NOTE} characters")
    if any(ord(char) < 32 or ord(char) == 127 for char in text):
        raise InvalidInputError("note", text, "contains control characters")
    return text


def rule_text(rule: ClientRule) -> str:
    """The canonical spelling of a rule (what ``EtrnClients.as_texts`` prints)."""
    return f"{SASL_PREFIX}{rule}" if isinstance(rule, str) else str(rule)


def clients_from_texts(texts: list[str] | tuple[str, ...]) -> EtrnClients:
    """Build the allow list from ``--allow`` style texts (also how the index stores it)."""
    networks: list[IPNetwork] = []
    hosts: list[DomainName] = []
    users: list[str] = []
    mx = False
    for text in texts:
        rule = parse_client_rule(text)
        if isinstance(rule, MxRule):
            mx = True
        elif isinstance(rule, DomainName):
            hosts.append(rule)
        elif isinstance(rule, str):
            users.append(rule)
        else:
            networks.append(rule)
    return EtrnClients(tuple(networks), tuple(hosts), tuple(users), mx)


def _edit_clients(
    clients: EtrnClients, allow: tuple[str, ...], disallow: tuple[str, ...]
) -> EtrnClients:
    rules = clients.as_texts()
    for text in allow:
        canonical = rule_text(parse_client_rule(text))
        if canonical not in rules:
            rules.append(canonical)
    for text in disallow:
        canonical = rule_text(parse_client_rule(text))
        if canonical not in rules:
            raise InvalidInputError("client rule", text, "not in the domain's allow list")
        rules.remove(canonical)
    return clients_from_texts(rules)


def _edit_contacts(
    contacts: tuple[str, ...], add: tuple[str, ...], remove: tuple[str, ...]
) -> tuple[str, ...]:
    result = list(contacts)
    for text in add:
        address = parse_mailbox(text)
        if address not in result:
            result.append(address)
    for text in remove:
        address = parse_mailbox(text)
        if address not in result:
            raise InvalidInputError("contact", text, "not a contact of this domain")
        result.remove(address)
    return tuple(result)


def apply_changes(
    domain: IntermittentDomain, changes: DomainChanges, now: float
) -> IntermittentDomain:
    """Return ``domain`` with ``changes`` applied; raises before anything is half-applied."""
    quota = domain.quota
    if changes.quota_messages is not None:
        quota = replace(quota, messages=_parse_count(changes.quota_messages))
    if changes.quota_bytes is not None:
        quota = replace(quota, bytes=_parse_bytes(changes.quota_bytes))
    return replace(
        domain,
        include_subdomains=(
            domain.include_subdomains
            if changes.include_subdomains is None
            else changes.include_subdomains
        ),
        clients=_edit_clients(domain.clients, changes.allow, changes.disallow),
        quota=quota,
        contacts=_edit_contacts(domain.contacts, changes.contacts, changes.remove_contacts),
        note=domain.note if changes.note is None else _parse_note(changes.note),
        expected_outage_seconds=(
            domain.expected_outage_seconds
            if changes.expected_outage is None
            else _parse_outage(changes.expected_outage)
        ),
        updated_at=now,
    )


def new_domain(name: str, changes: DomainChanges, now: float) -> IntermittentDomain:
    """A fresh registry entry for ``name`` with ``changes`` applied."""
    blank = IntermittentDomain(name=parse_domain(name), created_at=now, updated_at=now)
    return apply_changes(blank, changes, now)
