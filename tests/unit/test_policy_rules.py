"""ETRN authorisation, quotas and flush throttling: pure decisions."""

from __future__ import annotations

import ipaddress

import pytest

from etrn_ext.core.model import Quota
from etrn_ext.core.policy import (
    DnsFacts,
    EtrnClient,
    FlushThrottle,
    Throttled,
    Verdict,
    may_etrn,
    over_quota,
)
from etrn_ext.core.registry import DomainChanges, new_domain

DOMAIN = new_domain(
    "site.example",
    DomainChanges(
        allow=("192.0.2.0/24", "2001:db8::/32", "mx.site.example", "sasl:siteuser", "dns:mx")
    ),
    now=0.0,
)
NOBODY = new_domain("closed.example", DomainChanges(), now=0.0)


def client(address: str = "198.51.100.9", name: str = "unknown", sasl: str = "") -> EtrnClient:
    return EtrnClient(ipaddress.ip_address(address), name, sasl)


@pytest.mark.parametrize(
    ("who", "dns", "verdict", "reason"),
    [
        pytest.param(
            client("192.0.2.7"), None, Verdict.ALLOW, "address in 192.0.2.0/24", id="network-v4"
        ),
        pytest.param(
            client("2001:db8::5"), None, Verdict.ALLOW, "address in 2001:db8::/32", id="network-v6"
        ),
        pytest.param(
            client(sasl="siteuser"), None, Verdict.ALLOW, "SASL login siteuser", id="sasl"
        ),
        pytest.param(
            client(name="MX.site.example."),
            None,
            Verdict.ALLOW,
            "client name mx.site.example",
            id="name",
        ),
        pytest.param(
            client(sasl="intruder"), None, Verdict.REFUSE, "no allow rule matches", id="other-sasl"
        ),
        pytest.param(
            client(name="unknown"), None, Verdict.REFUSE, "no allow rule matches", id="no-match"
        ),
        pytest.param(
            client(),
            DnsFacts({"mx.site.example": frozenset({ipaddress.ip_address("198.51.100.9")})}),
            Verdict.ALLOW,
            "address of mx.site.example",
            id="host-address",
        ),
        pytest.param(
            client(),
            DnsFacts(mx_addresses=frozenset({ipaddress.ip_address("198.51.100.9")})),
            Verdict.ALLOW,
            "MX or A record",
            id="dns-mx",
        ),
        pytest.param(
            client(), DnsFacts(), Verdict.REFUSE, "no allow rule matches", id="dns-no-match"
        ),
    ],
)
def test_may_etrn(who: EtrnClient, dns: DnsFacts | None, verdict: Verdict, reason: str) -> None:
    decision = may_etrn(DOMAIN, who, dns)
    assert decision.verdict is verdict
    assert reason in decision.reason


def test_unregistered_and_closed_domains() -> None:
    assert may_etrn(None, client()).verdict is Verdict.UNREGISTERED
    closed = may_etrn(NOBODY, client("192.0.2.7", sasl="siteuser"))
    assert (closed.verdict, closed.reason) == (Verdict.REFUSE, "no client may ETRN for this domain")


@pytest.mark.parametrize(
    ("quota", "messages", "held", "incoming", "over"),
    [
        pytest.param(Quota(), 10**6, 10**12, 10**9, False, id="unlimited"),
        pytest.param(Quota(messages=5), 4, 0, 0, False, id="last-message-fits"),
        pytest.param(Quota(messages=5), 5, 0, 0, True, id="messages-full"),
        pytest.param(Quota(bytes=1000), 0, 900, 100, False, id="bytes-exactly"),
        pytest.param(Quota(bytes=1000), 0, 900, 101, True, id="bytes-over"),
        pytest.param(Quota(messages=0), 0, 0, 0, True, id="zero-quota"),
    ],
)
def test_over_quota(quota: Quota, messages: int, held: int, incoming: int, over: bool) -> None:
    assert (over_quota(quota, messages, held, incoming) is not None) is over


def test_flush_throttle_per_domain_and_client() -> None:
    throttle = FlushThrottle(domain_interval=60, client_limit=3, client_window=60)
    assert throttle.admit("site.example", "192.0.2.7", now=0) is None
    assert throttle.admit("site.example", "192.0.2.7", now=10) == Throttled(
        "site.example was flushed 10s ago", retry_seconds=50
    )
    assert throttle.admit("other.example", "192.0.2.7", now=11) is None
    assert throttle.admit("third.example", "192.0.2.7", now=12) == Throttled(
        "client sent 4 ETRNs in 60s",
        retry_seconds=58,  # then 10, 11 and 12 have expired
    )
    assert throttle.admit("site.example", "192.0.2.8", now=61) is None  # window passed, new client
    assert (
        throttle.admit("fourth.example", "192.0.2.7", now=200) is None
    )  # the old requests expired
