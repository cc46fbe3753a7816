"""The hooks' decisions: may this client ETRN this domain, is this domain over its quota,
and may an ETRN start new flush work now. Values in, value out; the clock is a parameter.
"""

from __future__ import annotations

import ipaddress
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from etrn_ext.core.model import EtrnClients, IntermittentDomain, Quota

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
UNKNOWN_CLIENT: Final = "unknown"


def parse_address(text: str) -> IPAddress | None:
    """A client address as Postfix reports it; None when it is not an address."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class EtrnClient:
    """Who sent ETRN, as the MTA saw it."""

    address: IPAddress | None
    name: str = UNKNOWN_CLIENT  # the verified reverse name, or "unknown"
    sasl_username: str = ""


@dataclass(frozen=True, slots=True)
class DnsFacts:
    """What DNS says about the domain's allow rules: addresses of allowed hosts and of its MX/A."""

    host_addresses: Mapping[str, frozenset[IPAddress]] = field(default_factory=dict)
    mx_addresses: frozenset[IPAddress] = frozenset()


class Verdict(StrEnum):
    ALLOW = "allowed"
    REFUSE = "refused"
    UNREGISTERED = "unregistered"
    UNDECIDED = "undecided"  # not decided by its deadline: the MTA was answered without it


@dataclass(frozen=True, slots=True)
class EtrnDecision:
    """The answer and the rule (or its absence) that decided it, for the audit trail."""

    verdict: Verdict
    reason: str


def needs_dns(domain: IntermittentDomain) -> bool:
    """Whether deciding for this domain can need DNS (host-name or MX rules)."""
    return bool(domain.clients.hosts) or domain.clients.mx


def _network_or_login(rules: EtrnClients, client: EtrnClient) -> str | None:
    if client.sasl_username and client.sasl_username in rules.sasl_users:
        return f"SASL login {client.sasl_username}"
    if client.address is not None:
        for network in rules.networks:
            if client.address in network:
                return f"address in {network}"
    name = client.name.lower().rstrip(".")
    if name and name != UNKNOWN_CLIENT:
        for host in rules.hosts:
            if host.ascii == name:
                return f"client name {host}"
    return None


def _dns_match(rules: EtrnClients, address: IPAddress, dns: DnsFacts) -> str | None:
    for host in rules.hosts:
        if address in dns.host_addresses.get(host.ascii, frozenset()):
            return f"address of {host}"
    if rules.mx and address in dns.mx_addresses:
        return "address of the domain's MX or A record"
    return None


def may_etrn(
    domain: IntermittentDomain | None, client: EtrnClient, dns: DnsFacts | None = None
) -> EtrnDecision:
    """Decide an ETRN for ``domain`` from ``client``; DNS rules count only when ``dns`` is given.

    Rules are tried cheapest first: SASL login, network, the client's verified name,
    then (with ``dns``) the allowed hosts' addresses and the domain's MX/A addresses.
    A domain with no rule refuses everyone.
    """
    if domain is None:
        return EtrnDecision(Verdict.UNREGISTERED, "not a registered intermittent domain")
    rules = domain.clients
    reason = _network_or_login(rules, client)
    if reason is None and dns is not None and client.address is not None:
        reason = _dns_match(rules, client.address, dns)
    if reason is not None:
        return EtrnDecision(Verdict.ALLOW, reason)
    if not rules.as_texts():
        return EtrnDecision(Verdict.REFUSE, "no client may ETRN for this domain")
    return EtrnDecision(Verdict.REFUSE, "no allow rule matches the client")


def over_quota(quota: Quota, messages: int, held_bytes: int, incoming_bytes: int = 0) -> str | None:
    """Why one more message of ``incoming_bytes`` would break the quota, or None if it fits."""
    if quota.messages is not None and messages + 1 > quota.messages:
        return f"{messages} messages held (limit {quota.messages})"
    if quota.bytes is not None and held_bytes + incoming_bytes > quota.bytes:
        return f"{held_bytes} bytes held (limit {quota.bytes})"
    return None


@dataclass(frozen=True, slots=True)
class Throttled:
    """Why an ETRN starts no flush work now, and in how many seconds one would."""

    reason: str
    retry_seconds: float


class FlushThrottle:
    """Decides whether an ETRN may start new flush work, per domain and per client.

    A domain is flushed at most once per ``domain_interval`` seconds, and a client's
    ETRNs beyond ``client_limit`` per ``client_window`` seconds start nothing. Where the
    MTA's own flush runs anyway (Postfix) the client is answered as usual; where nothing
    else would run (Sendmail in exact mode) it is told when to come back.
    """

    def __init__(self, *, domain_interval: float, client_limit: int, client_window: float) -> None:
        self._domain_interval = domain_interval
        self._client_limit = client_limit
        self._client_window = client_window
        self._last_flush: dict[str, float] = {}
        self._client_requests: dict[str, deque[float]] = {}

    def admit(self, domain: str, client: str, now: float) -> Throttled | None:
        """Record an ETRN; None if it may flush, else why not."""
        requests = self._client_requests.setdefault(client, deque())
        while requests and requests[0] <= now - self._client_window:
            requests.popleft()
        requests.append(now)
        self._forget_before(now)
        if len(requests) > self._client_limit:
            # Once the oldest requests leave the window, the next one is within the limit.
            return Throttled(
                f"client sent {len(requests)} ETRNs in {self._client_window:g}s",
                requests[-self._client_limit] + self._client_window - now,
            )
        last = self._last_flush.get(domain)
        if last is not None and now - last < self._domain_interval:
            return Throttled(
                f"{domain} was flushed {now - last:.0f}s ago", last + self._domain_interval - now
            )
        self._last_flush[domain] = now
        return None

    def _forget_before(self, now: float) -> None:
        """Keep memory bounded: drop clients and domains that are quiet long enough."""
        horizon = max(self._client_window, self._domain_interval)
        if len(self._client_requests) > 1000:
            quiet = [
                c
                for c, times in self._client_requests.items()
                if not times or times[-1] < now - horizon
            ]
            for client in quiet:
                del self._client_requests[client]
        if len(self._last_flush) > 1000:
            for domain in [d for d, at in self._last_flush.items() if at < now - horizon]:
                del self._last_flush[domain]
