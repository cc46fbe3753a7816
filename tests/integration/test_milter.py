"""etrn-milter in front of a real private Postfix: tagging, recording, and failing open."""

from __future__ import annotations

from collections.abc import Callable

from conftest import PolicyRelay, wait_for

from etrn_ext.testing.site import FakeSite

MakeRelay = Callable[..., PolicyRelay]


def test_held_mail_is_tagged_and_recorded(
    make_milter_relay: MakeRelay, fake_site: FakeSite
) -> None:
    setup = make_milter_relay(["site.example", "ship.example"])
    relay, etrnctl = setup.relay, setup.etrnctl
    mixed = relay.send(
        ["a@site.example", "b@ship.example", "c@other.example"], sender="alice@example.org"
    )
    ordinary = relay.send(["d@other.example"])
    queue = relay.wait_for_queue(lambda q: len(q) == 1 and q[0]["queue_name"] == "deferred")
    assert [e["queue_id"] for e in queue] == [mixed]  # other.example mail left at once

    headers = relay.command("postcat", "-hq", mixed).stdout
    held_header = next(line for line in headers.splitlines() if line.startswith("X-ETRN-Held:"))
    assert held_header.startswith(
        "X-ETRN-Held: ship.example, site.example; relay=relay.test; queued="
    )
    assert "X-ETRN-Held" not in relay.command("postcat", "-hq", ordinary, check=False).stdout

    rows = wait_for(lambda: etrnctl.json("list"))
    pending = {(e["queue_id"], r["address"]) for e in queue for r in e["recipients"]}
    recorded = {(r["queue_id"], r["recipient"]) for r in rows}  # type: ignore[attr-defined]
    assert recorded == {(mixed, "a@site.example"), (mixed, "b@ship.example")}
    assert recorded <= pending  # exactly the held ones, by the queue's own ids
    etrnctl("sync")  # the milter sees no body: sync fills in the queue file's size
    assert {r["size"] for r in etrnctl.json("list")} == {queue[0]["message_size"]}

    relay.command("postqueue", "-s", "site.example")
    fake_site.wait_for_recipients(2, timeout=20)
    at_site = [m for m in fake_site.messages if "a@site.example" in m.rcpt_tos]
    assert at_site[0].headers["X-ETRN-Held"] == held_header.split(": ", 1)[1]


def test_a_dead_milter_costs_no_mail(make_milter_relay: MakeRelay) -> None:
    setup = make_milter_relay(["site.example"])
    setup.daemon.stop(kill=True)
    queue_id = setup.relay.send(["while-down@site.example"])
    setup.relay.wait_for_queue(lambda q: len(q) == 1)
    assert "X-ETRN-Held" not in setup.relay.command("postcat", "-hq", queue_id).stdout
    assert setup.etrnctl.json("sync")["added"] == 1  # and sync fills the gap
