"""DNS lookups for the hooks, with a timeout and a small TTL cache (dnspython).

A failed lookup (timeout, NXDOMAIN, SERVFAIL) yields no addresses: an allow rule that
needs DNS then simply does not match. Failures are cached for a shorter time than
answers so that a DNS outage does not stick.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import dns.exception
import dns.resolver

from etrn_ext.core.model import IntermittentDomain
from etrn_ext.core.policy import DnsFacts, IPAddress, parse_address

log = logging.getLogger(__name__)

FAILURE_CACHE_FRACTION = 0.1


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
        self._resolver = resolver or dns.resolver.Resolver()
        self._resolver.lifetime = timeout
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._cache: dict[tuple[str, str], tuple[float, tuple[str, ...]]] = {}
        self._lock = threading.Lock()

    def _query(self, name: str, rdtype: str) -> tuple[str, ...]:
        key = (name, rdtype)
        now = self._clock()
        with self._lock:
            cached = self._cache.get(key)
            if cached and cached[0] > now:
                return cached[1]
        try:
            answer = self._resolver.resolve(name, rdtype, search=False)
            values = tuple(sorted(rdata.to_text() for rdata in answer))
            expires = now + self._cache_seconds
        except (dns.exception.DNSException, OSError) as exc:
            log.debug("DNS %s %s failed: %s", name, rdtype, exc)
            values = ()
            expires = now + self._cache_seconds * FAILURE_CACHE_FRACTION
        with self._lock:
            self._cache[key] = (expires, values)
        return values

    def addresses(self, host: str) -> frozenset[IPAddress]:
        """The IPv4 and IPv6 addresses of ``host``."""
        found = set()
        for rdtype in ("A", "AAAA"):
            for text in self._query(host, rdtype):
                address = parse_address(text)
                if address is not None:
                    found.add(address)
        return frozenset(found)

    def mx_hosts(self, domain: str) -> list[tuple[int, str]]:
        """The domain's MX hosts as (preference, host), best first."""
        hosts = []
        for text in self._query(domain, "MX"):
            preference, _, exchange = text.partition(" ")
            if preference.isdigit() and exchange:
                hosts.append((int(preference), exchange.rstrip(".").lower()))
        return sorted(hosts)

    def facts_for(self, domain: IntermittentDomain) -> DnsFacts:
        """Everything DNS can tell about the domain's allow rules."""
        host_addresses = {host.ascii: self.addresses(host.ascii) for host in domain.clients.hosts}
        mx_addresses: frozenset[IPAddress] = frozenset()
        if domain.clients.mx:
            name = domain.name.ascii
            found = set(self.addresses(name))
            for _preference, host in self.mx_hosts(name):
                found |= self.addresses(host)
            mx_addresses = frozenset(found)
        return DnsFacts(host_addresses, mx_addresses)
