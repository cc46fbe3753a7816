"""Relays from MX records, asked of a real DNS server on loopback serving a test zone.

The zone server (``testing.ZoneServer``) answers over UDP and TCP on a 127.x.y.z address;
a ``dns.resolver.Resolver(configure=False)`` asks it and nothing else.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Iterator

import pytest

from etrn_ext.core.trigger import Status, Summary
from etrn_ext.net.resolve import CachingResolver
from etrn_ext.service.context import Context
from etrn_ext.service.trigger import Network, TriggerRequest, TriggerResult, trigger
from etrn_ext.testing.relay import EtrnRelay
from etrn_ext.testing.zone import ZoneServer

MakeRelay = Callable[..., EtrnRelay]
SiteContext = Callable[..., Context]

SITE_ADDRESS = "127.0.0.1"  # the address "this host" claims in these tests


@pytest.fixture
def relays(make_etrn_relay: MakeRelay) -> dict[str, EtrnRelay]:
    """Two relays on one port (as MX hosts are, each on its own address) and one on ::1."""
    return {
        "mx1": make_etrn_relay(),
        "mx2": make_etrn_relay(replies={"*": ["251 OK, no messages waiting"]}),
        "v6": make_etrn_relay(address="::1"),
    }


@pytest.fixture
def zone(relays: dict[str, EtrnRelay]) -> Iterator[ZoneServer]:
    mx1, mx2, v6 = relays["mx1"], relays["mx2"], relays["v6"]
    records = f"""
site        MX 10 gw.site
site        MX 30 mx2.isp
site        MX 20 mx1.isp
gw.site     A  {SITE_ADDRESS}
mx1.isp     A  {mx1.address}
mx2.isp     A  {mx2.address}
ship        MX 10 ship
ship        A  {SITE_ADDRESS}
sixonly     MX 50 v6.isp
v6.isp      AAAA {v6.address}
broken      MX 10 mx1.isp
nomx        A  {mx1.address}
null        MX 0 .
"""
    with ZoneServer("test.", records, servfail=["broken"]) as server:
        yield server


def network(zone: ZoneServer) -> Network:
    """DNS from the zone server; this host is ``gw.site.test`` at ``SITE_ADDRESS``."""
    return Network(
        CachingResolver(timeout=1.0, cache_seconds=1.0, resolver=zone.resolver()),
        helo_name="gw.site.test",
        host_names=lambda: frozenset({"gw.site.test"}),
        is_local_address=lambda address: address == ipaddress.ip_address(SITE_ADDRESS),
    )


def ask(ctx: Context, zone: ZoneServer, *targets: str) -> TriggerResult:
    return trigger(ctx, TriggerRequest(targets=targets), network(zone))


def test_every_mx_but_this_host_in_preference_order(
    zone: ZoneServer, relays: dict[str, EtrnRelay], site_context: SiteContext
) -> None:
    port = relays["mx1"].port
    assert relays["mx2"].port == port
    result = ask(site_context(smtp_port=port), zone, "site.test")
    assert [(o.relay, o.address, o.status) for o in result.outcomes] == [
        (f"mx1.isp.test:{port}", relays["mx1"].address, Status.FLUSHED),
        (f"mx2.isp.test:{port}", relays["mx2"].address, Status.NOTHING_WAITING),
    ]
    assert [s.argument for s in relays["mx1"].seen] == ["site.test"]
    assert ("gw.site.test.", "A") in zone.queries  # asked, then recognised as this host
    assert result.summary is Summary.FLUSHED


def test_an_mx_host_with_this_hosts_address_is_skipped(
    zone: ZoneServer, site_context: SiteContext
) -> None:
    [outcome] = ask(site_context(), zone, "ship.test").outcomes
    assert outcome.status is Status.NO_RELAY
    assert outcome.reply == "every MX host of ship.test is this host (ship.test)"


def test_an_aaaa_only_relay_is_reached_over_ipv6(
    zone: ZoneServer, relays: dict[str, EtrnRelay], site_context: SiteContext
) -> None:
    v6 = relays["v6"]
    [outcome] = ask(site_context(smtp_port=v6.port), zone, "@sixonly.test").outcomes
    assert (outcome.relay, outcome.address, outcome.status) == (
        f"v6.isp.test:{v6.port}",
        "::1",
        Status.FLUSHED,
    )
    assert [s.argument for s in v6.seen] == ["@sixonly.test"]


def test_nxdomain_is_final(zone: ZoneServer, site_context: SiteContext) -> None:
    result = ask(site_context(), zone, "nosuch.test")
    [outcome] = result.outcomes
    assert (outcome.relay, outcome.status, outcome.attempts) == ("", Status.NO_RELAY, 1)
    assert outcome.reply == "MX lookup of nosuch.test: NXDOMAIN (no such domain)"
    assert result.summary is Summary.UNREACHABLE


def test_servfail_is_retried_until_the_deadline(
    zone: ZoneServer, site_context: SiteContext
) -> None:
    started = time.monotonic()
    [outcome] = ask(site_context(deadline_seconds=0.5), zone, "broken.test").outcomes
    assert outcome.status is Status.UNREACHABLE
    assert outcome.reply == "MX lookup of broken.test: SERVFAIL from the name server"
    assert outcome.attempts > 1
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize("domain", ["nomx.test", "null.test"])
def test_no_mx_records_means_no_relay(
    zone: ZoneServer, site_context: SiteContext, domain: str
) -> None:
    [outcome] = ask(site_context(), zone, domain).outcomes
    assert outcome.status is Status.NO_RELAY
    assert outcome.reply == f"{domain} has no MX records; name the relay with --relay"


def test_the_zone_server_answers_over_tcp_too(zone: ZoneServer) -> None:
    import dns.message
    import dns.query

    query = dns.message.make_query("site.test", "MX")
    answer = dns.query.tcp(query, zone.address, port=zone.port, timeout=2)
    assert sorted(str(rdata.exchange) for rdata in answer.answer[0]) == [
        "gw.site.test.",
        "mx1.isp.test.",
        "mx2.isp.test.",
    ]
