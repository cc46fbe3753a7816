"""Which registry entry a domain belongs to, and how full a quota is."""

from __future__ import annotations

import pytest

from etrn_ext.core.model import DomainUsage, IntermittentDomain, Quota
from etrn_ext.core.names import parse_domain
from etrn_ext.core.rules import HeldDomains, quota_use, registered_domain_for, storable_text


def _registry(*entries: tuple[str, bool]) -> dict[str, IntermittentDomain]:
    return {
        name: IntermittentDomain(parse_domain(name), include_subdomains=subs)
        for name, subs in entries
    }


@pytest.mark.parametrize(
    ("recipient_domain", "expected"),
    [
        pytest.param("site.example", "site.example", id="exact"),
        pytest.param("mx.site.example", None, id="subdomain-not-included"),
        pytest.param("a.wide.example", "wide.example", id="subdomain-included"),
        pytest.param("x.narrow.wide.example", "wide.example", id="skip-narrow-parent"),
        pytest.param("narrow.wide.example", "narrow.wide.example", id="exact-beats-parent"),
        pytest.param("notsite.example", None, id="suffix-is-not-parent"),
        pytest.param("example", None, id="parent-of-registered"),
    ],
)
def test_registered_domain_for(recipient_domain: str, expected: str | None) -> None:
    registry = _registry(
        ("site.example", False), ("wide.example", True), ("narrow.wide.example", False)
    )
    entry = registered_domain_for(parse_domain(recipient_domain), registry)
    assert (entry.name.ascii if entry else None) == expected


def test_quota_use() -> None:
    usage = DomainUsage("site.example", messages=50, recipients=60, bytes=2048)
    use = quota_use(Quota(messages=100, bytes=None), usage)
    assert (use.messages_percent, use.bytes_percent, use.highest) == (50.0, None, 50.0)
    assert quota_use(Quota(), usage).highest is None
    assert quota_use(Quota(messages=0), DomainUsage("d")).messages_percent == 0.0


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        pytest.param("bob@site.example", "site.example", id="exact"),
        pytest.param("bob@SITE.example", "site.example", id="case"),
        pytest.param("bob@mx.wide.example", "wide.example", id="subdomain"),
        pytest.param("bob@other.example", None, id="other"),
        pytest.param("root", None, id="no-domain"),
        pytest.param("bob@[192.0.2.1]", None, id="address-literal"),
        pytest.param("MAILER-DAEMON", None, id="null-sender-name"),
    ],
)
def test_held_domains_for_address(address: str, expected: str | None) -> None:
    matcher = HeldDomains(_registry(("site.example", False), ("wide.example", True)))
    assert matcher.for_address(address) == expected
    assert matcher.for_address(address) == expected  # cached answer is the same


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        pytest.param("bob@site.example", "bob@site.example", id="ascii"),
        pytest.param("jos\u00e9@site.example", "jos\u00e9@site.example", id="unicode"),
        pytest.param(
            b"\xff\xfe@x".decode("utf-8", "surrogateescape"), "\ufffd\ufffd@x", id="8-bit"
        ),
        pytest.param(
            b"\xc3\xa9@x".decode("ascii", "surrogateescape"), "\u00e9@x", id="utf-8-bytes"
        ),
        pytest.param("\ud800@x", "?@x", id="lone-surrogate"),
    ],
)
def test_storable_text(text: str, stored: str) -> None:
    assert storable_text(text) == stored
    storable_text(text).encode("utf-8")  # what SQLite and the milter's header need
