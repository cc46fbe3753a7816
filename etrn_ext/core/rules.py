"""Pure decisions: values in, value out; every front end shares them."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from etrn_ext.core.errors import InvalidInputError
from etrn_ext.core.model import DomainUsage, IntermittentDomain, Quota
from etrn_ext.core.names import DomainName, domain_part, parse_domain

K = TypeVar("K", bound=Hashable)


def registered_domain_for(
    domain: DomainName, registry: Mapping[str, IntermittentDomain]
) -> IntermittentDomain | None:
    """The registry entry that holds mail for ``domain``, if any.

    The domain itself wins; otherwise the nearest parent registered with subdomains
    included (the same walk Postfix does for ``.parent`` entries in transport_maps).
    """
    entry = registry.get(domain.ascii)
    if entry is not None:
        return entry
    for parent in domain.parents():
        entry = registry.get(parent.ascii)
        if entry is not None and entry.include_subdomains:
            return entry
    return None


@dataclass(frozen=True, slots=True)
class QuotaUse:
    """How full a domain's quota is, in percent; ``None`` where there is no limit."""

    messages_percent: float | None
    bytes_percent: float | None

    @property
    def highest(self) -> float | None:
        known = [p for p in (self.messages_percent, self.bytes_percent) if p is not None]
        return max(known) if known else None


def _percent(used: int, limit: int | None) -> float | None:
    if limit is None:
        return None
    if limit == 0:
        return 0.0 if used == 0 else 100.0
    return 100.0 * used / limit


def quota_use(quota: Quota, usage: DomainUsage) -> QuotaUse:
    """Share of the message and byte quotas that the held mail takes up."""
    return QuotaUse(_percent(usage.messages, quota.messages), _percent(usage.bytes, quota.bytes))


def message_leads(recipients: Iterable[tuple[K, str]]) -> set[tuple[K, str]]:
    """The (group, address) pairs that carry a message's count and bytes in per-domain sums.

    A message with several held recipients in one domain has one row per recipient in
    the index; exactly one of them, the smallest address of its group (message and
    domain), counts the message, so per-domain totals are one flat GROUP BY.
    """
    smallest: dict[K, str] = {}
    for group, address in recipients:
        if group not in smallest or address < smallest[group]:
            smallest[group] = address
    return set(smallest.items())


class HeldDomains:
    """Which registered domain holds mail for an address, remembered per address domain.

    Sync and the hooks ask this for every recipient; parsing and the parent walk run
    once per distinct domain. Addresses without a usable domain are never held.
    """

    def __init__(self, registry: Mapping[str, IntermittentDomain]) -> None:
        self._registry = registry
        self._answers: dict[str, str | None] = {}

    def for_address(self, address: str) -> str | None:
        """The registered domain (A-label text) holding mail for ``address``, or None."""
        domain_text = domain_part(address)
        try:
            return self._answers[domain_text]
        except KeyError:
            pass
        try:
            entry = registered_domain_for(parse_domain(domain_text), self._registry)
        except InvalidInputError:
            entry = None
        answer = entry.name.ascii if entry else None
        self._answers[domain_text] = answer
        return answer


def storable_text(text: str) -> str:
    """``text`` as UTF-8 can encode it, for the index and the trace header.

    pymilter hands 8-bit SMTP bytes over as lone surrogates (``surrogateescape``), which
    SQLite's driver and libmilter refuse: bytes that are UTF-8 become their characters,
    other bytes U+FFFD, and any other lone surrogate ``?``.
    """
    if text.isascii():  # nearly every address: nothing to do, on the milter's hot path
        return text
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "replace")
    return raw.decode("utf-8", "replace")


def held_header(domains: list[str], node: str, now: float) -> str:
    """The trace header's value: ``site.example, ship.example; relay=mx2; queued=<UTC time>``."""
    queued = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{', '.join(sorted(set(domains)))}; relay={node}; queued={queued}"
