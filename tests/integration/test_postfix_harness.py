"""The private Postfix relay used by every integration test holds and releases mail for real."""

from __future__ import annotations

from collections.abc import Callable

from etrn_ext.testing.postfix import PrivatePostfix
from etrn_ext.testing.site import FakeSite


def test_intermittent_mail_is_held_until_flushed(
    make_relay: Callable[..., PrivatePostfix], fake_site: FakeSite
) -> None:
    relay = make_relay(domains=["site.example"])
    queue_id = relay.send(["bob@site.example", "carol@mx.site.example"])
    queue = relay.wait_for_queue(lambda q: q and q[0]["queue_name"] == "deferred")
    [entry] = queue
    assert entry["queue_id"] == queue_id
    assert {r["address"]: r.get("delay_reason") for r in entry["recipients"]} == {
        "bob@site.example": "deferred transport",
        "carol@mx.site.example": "deferred transport",
    }
    assert fake_site.recipients() == []  # the site is up, yet nothing was delivered

    relay.command("postqueue", "-s", "site.example")
    assert sorted(fake_site.wait_for_recipients(2, timeout=20)) == [
        "bob@site.example",
        "carol@mx.site.example",
    ]
    assert relay.wait_for_queue(lambda q: not q) == []
    assert relay.wait_for_log(f"{queue_id}: removed")


def test_instances_are_private(make_relay: Callable[..., PrivatePostfix]) -> None:
    first = make_relay()
    second = make_relay()
    assert first.address != second.address
    first.send(["x@site.example"])
    assert first.wait_for_queue(lambda q: len(q) == 1)
    assert second.queue() == []
