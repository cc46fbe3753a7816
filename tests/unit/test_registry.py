"""Registry entries built from what an admin typed."""

from __future__ import annotations

import ipaddress

import pytest

from etrn_ext.core.errors import InvalidDomainError, InvalidInputError
from etrn_ext.core.model import EtrnClients, Quota
from etrn_ext.core.names import DomainName
from etrn_ext.core.registry import DomainChanges, apply_changes, clients_from_texts, new_domain


def test_new_domain_parses_every_piece() -> None:
    domain = new_domain(
        "Site.Example",
        DomainChanges(
            include_subdomains=True,
            allow=("192.0.2.7/24", "mx.site.example", "sasl:siteuser", "2001:db8::1"),
            quota_messages="5000",
            quota_bytes="500M",
            contacts=("ops@site.example",),
            note="ship Aurora",
        ),
        now=1000.0,
    )
    assert domain.name == DomainName("site.example")
    assert domain.include_subdomains
    assert domain.clients == EtrnClients(
        networks=(ipaddress.ip_network("192.0.2.0/24"), ipaddress.ip_network("2001:db8::1/128")),
        hosts=(DomainName("mx.site.example"),),
        sasl_users=("siteuser",),
    )
    assert domain.quota == Quota(messages=5000, bytes=500 * 1024**2)
    assert domain.contacts == ("ops@site.example",)
    assert (domain.created_at, domain.updated_at) == (1000.0, 1000.0)


def test_allow_list_round_trips_through_its_texts() -> None:
    clients = clients_from_texts(["192.0.2.0/24", "mx.site.example", "sasl:bob"])
    assert clients_from_texts(clients.as_texts()) == clients


def test_apply_changes_adds_removes_and_clears() -> None:
    domain = new_domain(
        "site.example", DomainChanges(allow=("192.0.2.0/24",), quota_messages="10"), now=1.0
    )
    changed = apply_changes(
        domain,
        DomainChanges(
            allow=("198.51.100.0/24", "192.0.2.0/24"),
            disallow=("192.0.2.0/24",),
            quota_messages="none",
            contacts=("a@site.example",),
        ),
        now=2.0,
    )
    assert changed.clients.as_texts() == ["198.51.100.0/24"]
    assert changed.quota.messages is None
    assert changed.contacts == ("a@site.example",)
    assert (changed.created_at, changed.updated_at) == (1.0, 2.0)
    assert domain.clients.as_texts() == ["192.0.2.0/24"]  # the original is untouched


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param(DomainChanges(allow=("-f",)), id="dash-rule"),
        pytest.param(DomainChanges(allow=("a;b",)), id="shell-rule"),
        pytest.param(DomainChanges(disallow=("192.0.2.0/24",)), id="disallow-absent"),
        pytest.param(DomainChanges(quota_messages="-5"), id="negative-quota"),
        pytest.param(DomainChanges(quota_bytes="lots"), id="bad-size"),
        pytest.param(DomainChanges(contacts=("nobody",)), id="bad-contact"),
        pytest.param(
            DomainChanges(remove_contacts=("x@site.example",)), id="remove-absent-contact"
        ),
        pytest.param(DomainChanges(note="line\nbreak"), id="control-in-note"),
        pytest.param(DomainChanges(allow=("sasl:",)), id="empty-sasl"),
    ],
)
def test_bad_changes_raise(changes: DomainChanges) -> None:
    with pytest.raises(InvalidInputError):
        new_domain("site.example", changes, now=1.0)


def test_hostile_name_is_refused() -> None:
    with pytest.raises(InvalidDomainError):
        new_domain("-f", DomainChanges(), now=1.0)
