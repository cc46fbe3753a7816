"""DNS lookups for the hooks, with a timeout and a small TTL cache (dnspython).

A failed lookup (timeout, NXDOMAIN, SERVFAIL) yields no addresses: an allow rule that
needs DNS then simply does not match. Failures are cached for a shorter time than
answers so that a DNS outage does not stick. A caller that must answer by a deadline
(etrn-socketmap: Sendmail waits 5 s) passes ``until``; lookups then end by it, and one
there is no time left for fails as a timeout would. ``mx_lookup`` also says why a lookup
failed, and whether that may pass, for ``etrnctl trigger`` on the site.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import dns.exception
import dns.resolver

from etrn_ext.core.model import IntermittentDomain
from etrn_ext.core.policy import DnsFacts, IPAddress, parse_address

log = logging.getLogger(__name__)

FAILURE_CACHE_FRACTION = 0.1


@dataclass(frozen=True, slots=True)
class Lookup:
    """One answer: the records as text, or why there are none (``temporary``: try again)."""

    values: tuple[str, ...] = ()
    problem: str = ""
    temporary: bool = False


@dataclass(frozen=True, slots=True)
class MxLookup:
    """A domain's MX hosts as (preference, host), best first, or why there are none."""

    hosts: tuple[tuple[int, str], ...] = ()
    problem: str = ""
    temporary: bool = False


def _system_resolver() -> dns.resolver.Resolver:
    """The servers in /etc/resolv.conf; none yet (a ppp link writes it when it comes up)
    means every lookup fails as temporary rather than the program failing to start."""
    try:
        return dns.resolver.Resolver()
    except dns.resolver.NoResolverConfiguration as exc:
        log.debug("no DNS servers configured: %s", exc)
        return dns.resolver.Resolver(configure=False)


def _failure(exc: dns.exception.DNSException | OSError) -> Lookup:
    if isinstance(exc, dns.resolver.NXDOMAIN):
        return Lookup(problem="NXDOMAIN (no such domain)")
    if isinstance(exc, dns.resolver.NoAnswer):
        return Lookup()
    if isinstance(exc, dns.resolver.NoNameservers) and "SERVFAIL" in str(exc):
        return Lookup(problem="SERVFAIL from the name server", temporary=True)
    if isinstance(exc, dns.exception.Timeout):
        return Lookup(problem="DNS timeout", temporary=True)
    return Lookup(problem=f"DNS failure: {exc}", temporary=True)


class CachingResolver:
    """A/AAAA and MX lookups with a per-name cache; safe to share between threads."""

    def __init__(
        self,
        *,
        timeout: float,
        cache_seconds: float,
        resolver: dns.resolver.Resolver | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._resolver = resolver or _system_resolver()
        self._resolver.lifetime = timeout
        self._timeout = timeout
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._cache: dict[tuple[str, str], tuple[float, Lookup]] = {}
        self._lock = threading.Lock()

    def _query(self, name: str, rdtype: str, until: float | None) -> Lookup:
        """``until``: a ``time.monotonic()`` by which the lookup must end, or None."""
        key = (name, rdtype)
        now = self._clock()
        with self._lock:
            cached = self._cache.get(key)
            if cached and cached[0] > now:
                return cached[1]
        lifetime = self._timeout if until is None else min(self._timeout, until - time.monotonic())
        if lifetime <= 0:
            return Lookup(problem="no time left for DNS", temporary=True)
        try:
            answer = self._resolver.resolve(name, rdtype, search=False, lifetime=lifetime)
            lookup = Lookup(tuple(sorted(rdata.to_text() for rdata in answer)))
            expires = now + self._cache_seconds
        except (dns.exception.DNSException, OSError) as exc:
            log.debug("DNS %s %s failed: %s", name, rdtype, exc)
            lookup = _failure(exc)
            expires = now + self._cache_seconds * FAILURE_CACHE_FRACTION
        with self._lock:
            self._cache[key] = (expires, lookup)
        return lookup

    def addresses(self, host: str, until: float | None = None) -> frozenset[IPAddress]:
        """The IPv4 and IPv6 addresses of ``host``."""
        found = set()
        for rdtype in ("A", "AAAA"):
            for text in self._query(host, rdtype, until).values:
                address = parse_address(text)
                if address is not None:
                    found.add(address)
        return frozenset(found)

    def mx_lookup(self, domain: str, until: float | None = None) -> MxLookup:
        """The domain's MX hosts, best first; a null MX (RFC 7505) gives none."""
        lookup = self._query(domain, "MX", until)
        hosts = []
        for text in lookup.values:
            preference, _, exchange = text.partition(" ")
            host = exchange.rstrip(".").lower()
            if preference.isdigit() and host:
                hosts.append((int(preference), host))
        return MxLookup(tuple(sorted(hosts)), lookup.problem, lookup.temporary)

    def facts_for(self, domain: IntermittentDomain, until: float | None = None) -> DnsFacts:
        """Everything DNS can tell about the domain's allow rules (by ``until``, if given)."""
        host_addresses = {
            host.ascii: self.addresses(host.ascii, until) for host in domain.clients.hosts
        }
        mx_addresses: frozenset[IPAddress] = frozenset()
        if domain.clients.mx:
            name = domain.name.ascii
            found = set(self.addresses(name, until))
            for _preference, host in self.mx_lookup(name, until).hosts:
                found |= self.addresses(host, until)
            mx_addresses = frozenset(found)
        return DnsFacts(host_addresses, mx_addresses)
