"""The one door from text to argv-safe values."""

from __future__ import annotations

import pytest

from etrn_ext.core.errors import InvalidDomainError, InvalidInputError, InvalidQueueIdError
from etrn_ext.core.names import (
    DomainName,
    domain_of_address,
    parse_domain,
    parse_mailbox,
    parse_queue_id,
    parse_sasl_username,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("site.example", "site.example", id="plain"),
        pytest.param("Site.EXAMPLE", "site.example", id="upper-case"),
        pytest.param("site.example.", "site.example", id="trailing-dot"),
        pytest.param("bücher.example", "xn--bcher-kva.example", id="idna-u-label"),
        pytest.param("XN--BCHER-KVA.example", "xn--bcher-kva.example", id="idna-a-label"),
        pytest.param("a-b.c-d.example", "a-b.c-d.example", id="inner-hyphens"),
        pytest.param("localhost", "localhost", id="single-label"),
        pytest.param("a" * 63 + ".example", "a" * 63 + ".example", id="63-char-label"),
        pytest.param("xn--zca.de", "xn--zca.de", id="idna-2008-a-label"),
        pytest.param("XN--ZCA.de", "xn--zca.de", id="idna-2008-a-label-upper-case"),
        pytest.param("site\u3002example", "site.example", id="ideographic-full-stop"),
        pytest.param("site\uff0eexample", "site.example", id="fullwidth-full-stop"),
        pytest.param("site\uff61example", "site.example", id="halfwidth-ideographic-full-stop"),
        pytest.param("b\u00fccher\u3002example\u3002", "xn--bcher-kva.example", id="u-label-3002"),
    ],
)
def test_parse_domain_accepts_and_normalises(text: str, expected: str) -> None:
    assert parse_domain(text) == DomainName(expected)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        pytest.param("-f", "must not start with '-'", id="leading-dash"),
        pytest.param("-qRsite.example", "must not start with '-'", id="sendmail-option"),
        pytest.param("a;b", "letters, digits", id="semicolon"),
        pytest.param("a b", "whitespace", id="space"),
        pytest.param("site.example\n", "whitespace", id="newline"),
        pytest.param("$(reboot).example", "letters, digits", id="shell-substitution"),
        pytest.param("a|b.example", "letters, digits", id="pipe"),
        pytest.param("", "empty", id="empty"),
        pytest.param("a..b", "empty label", id="empty-label"),
        pytest.param(".example", "empty label", id="leading-dot"),
        pytest.param("a" * 64 + ".example", "longer than 63", id="64-char-label"),
        pytest.param(".".join(["a" * 60] * 5), "longer than 253", id="300-chars"),
        pytest.param("a" * 300, "longer than 63", id="300-char-label"),
        pytest.param("xn--garbage.example", "not valid IDNA", id="xn-garbage"),
        pytest.param("xn--.example", "not valid IDNA", id="xn-empty"),
        pytest.param("xn--abc-.example", "not valid IDNA", id="xn-not-round-trip"),
        pytest.param("site-.example", "inner hyphens", id="trailing-hyphen"),
        pytest.param("under_score.example", "letters, digits", id="underscore"),
        pytest.param("192.0.2.1", "numeric", id="ip-address"),
        pytest.param("[192.0.2.1]", "letters, digits", id="address-literal"),
        pytest.param("zero\u200bwidth.example", "format character", id="zero-width-space"),
        pytest.param("@site.example", "letters, digits", id="at-prefix"),
        pytest.param("fa\u00df.de", "sharp s .U\\+00DF.* IDNA 2003 and IDNA 2008", id="sharp-s"),
        pytest.param("\u1e9e.de", "capital sharp s", id="capital-sharp-s"),
        pytest.param("\u03c3\u03bf\u03c6\u03bf\u03c2.gr", "final sigma", id="final-sigma"),
        pytest.param("a\u200db.example", "zero width joiner", id="zwj"),
        pytest.param("a\u200cb.example", "zero width non-joiner", id="zwnj"),
        pytest.param("xn--1a.example", "not valid IDNA", id="xn-control-character"),
        pytest.param("xn--ab-r13a.example", "not valid IDNA", id="xn-hidden-full-stop"),
    ],
)
def test_parse_domain_refuses(text: str, reason: str) -> None:
    with pytest.raises(InvalidDomainError, match=reason.replace("(", r"\(")):
        parse_domain(text)


def test_domain_relations() -> None:
    name = parse_domain("a.b.site.example")
    assert [str(parent) for parent in name.parents()] == [
        "b.site.example",
        "site.example",
        "example",
    ]
    assert name.is_within(parse_domain("site.example"))
    assert not parse_domain("notsite.example").is_within(parse_domain("site.example"))
    assert parse_domain("xn--bcher-kva.example").unicode == "bücher.example"
    assert parse_domain("xn--zca.de").unicode == "\u00df.de"


def test_domain_of_address_uses_the_last_at() -> None:
    assert domain_of_address('"odd@local"@Site.Example') == DomainName("site.example")
    with pytest.raises(InvalidDomainError):
        domain_of_address("no-at-sign")


@pytest.mark.parametrize(
    ("text", "syntax"),
    [
        pytest.param("D5D0020E7A9", "postfix-short", id="postfix-short"),
        pytest.param("4jcKvY4mK3zJDP9", "postfix-long", id="postfix-long"),
        pytest.param("4jcLFD4bWZzBfrY", "postfix-long", id="postfix-long-2"),
        pytest.param("4jcNzk54zfzJMg7", "postfix-long", id="postfix-long-z-in-time"),
        pytest.param("6ASJTgh0025001", "sendmail", id="sendmail"),
    ],
)
def test_parse_queue_id(text: str, syntax: str) -> None:
    queue_id = parse_queue_id(text)
    assert (str(queue_id), queue_id.syntax) == (text, syntax)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("-f", id="leading-dash"),
        pytest.param("ALL", id="postsuper-all"),
        pytest.param("D5D0020E7A9;rm", id="shell"),
        pytest.param("D5D0 020E7A9", id="space"),
        pytest.param("../../etc/passwd", id="path"),
        pytest.param("4jcKvY4mK3zJDP9 ", id="trailing-space"),
    ],
)
def test_parse_queue_id_refuses(text: str) -> None:
    with pytest.raises(InvalidQueueIdError):
        parse_queue_id(text)


def test_contacts_and_sasl_names() -> None:
    assert parse_mailbox("ops@Site.Example") == "ops@site.example"
    for bad in ("-x@site.example", "a b@site.example", "<a>@site.example", "nobody"):
        with pytest.raises(InvalidInputError):
            parse_mailbox(bad)
    assert parse_sasl_username("siteuser") == "siteuser"
    with pytest.raises(InvalidInputError):
        parse_sasl_username("bad\tname")
