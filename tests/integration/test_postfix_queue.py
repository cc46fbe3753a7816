"""sync, list, show and flush against a real private Postfix relay and a fake site."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from conftest import Etrnctl

from etrn_ext.testing.postfix import PrivatePostfix
from etrn_ext.testing.site import FakeSite

Relay = Callable[..., PrivatePostfix]


def _held(relay: PrivatePostfix, count: int) -> list[dict]:  # type: ignore[type-arg]
    return relay.wait_for_queue(
        lambda q: len(q) == count and all(e["queue_name"] == "deferred" for e in q)
    )


def _index_view(etrnctl: Etrnctl) -> dict[tuple[str, str], tuple[int, str, str]]:
    return {
        (row["queue_id"], row["recipient"]): (row["size"], row["arrival"], row["sender"])
        for row in etrnctl.json("list")
    }


def _queue_view(queue: list[dict]) -> dict[tuple[str, str], tuple[int, str, str]]:  # type: ignore[type-arg]
    import time

    return {
        (entry["queue_id"], rcpt["address"]): (
            entry["message_size"],
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(entry["arrival_time"])),
            entry["sender"],
        )
        for entry in queue
        for rcpt in entry["recipients"]
        if rcpt["address"].endswith("site.example")
    }


def test_sync_indexes_the_queue_and_rebuilds_from_it(
    make_relay: Relay, etrnctl_for: Callable[[PrivatePostfix], Etrnctl], tmp_path: Path
) -> None:
    relay = make_relay(domains=["site.example", "other.example"])
    etrnctl = etrnctl_for(relay)
    assert etrnctl("domain", "add", "site.example", "--subdomains").exit_code == 0
    relay.send(
        ["a@site.example", "b@mx.site.example", "c@other.example"], sender="alice@example.org"
    )
    relay.send(["d@site.example"], sender="bob@example.net", body="x" * 5000)
    relay.send(["e@other.example"])
    queue = _held(relay, 3)

    summary = etrnctl.json("sync")
    assert (summary["messages_scanned"], summary["held_recipients"], summary["added"]) == (3, 3, 3)
    assert _index_view(etrnctl) == _queue_view(queue)
    assert etrnctl.json("sync")["added"] == 0  # idempotent

    (tmp_path / "index.sqlite").unlink()
    (tmp_path / "index.sqlite-wal").unlink(missing_ok=True)
    (tmp_path / "index.sqlite-shm").unlink(missing_ok=True)
    etrnctl("domain", "add", "site.example", "--subdomains")
    assert etrnctl.json("sync")["added"] == 3
    assert _index_view(etrnctl) == _queue_view(queue)


def test_flush_wait_delivers_and_reports_what_remains(
    make_relay: Relay, etrnctl_for: Callable[[PrivatePostfix], Etrnctl], fake_site: FakeSite
) -> None:
    relay = make_relay(domains=["site.example", "other.example"])
    etrnctl = etrnctl_for(relay)
    etrnctl("domain", "add", "site.example")
    mixed = relay.send(["ok1@site.example", "x@other.example"])
    refused = relay.send(["temp1@site.example", "bad1@site.example"])
    relay.send(["ok2@site.example"])
    _held(relay, 3)
    etrnctl("sync")

    result = etrnctl("flush", "site.example", "--wait", "4")
    assert result.exit_code == 1, result.output  # temp1 is still queued
    assert f"note: {mixed} also goes to x@other.example" in result.stdout
    assert "1 bounced, 2 delivered, 1 still queued" in result.stdout
    assert "temp1@site.example" in result.stdout
    assert sorted(fake_site.recipients()) == [
        "ok1@site.example",
        "ok2@site.example",
        "x@other.example",
    ]

    [row] = etrnctl.json("list")
    assert (row["queue_id"], row["recipient"], row["state"]) == (
        refused,
        "temp1@site.example",
        "held",
    )
    assert "450 4.2.1" in row["reason"]
    assert "mailbox temporarily unavailable" in row["reason"]
    states = {
        r["recipient"]: r["state"]
        for r in etrnctl.json("list", "--state", "delivered", "--state", "bounced")
    }
    assert states == {
        "ok1@site.example": "delivered",
        "ok2@site.example": "delivered",
        "bad1@site.example": "bounced",
    }

    shown = etrnctl.json("show", refused)
    assert {r["recipient"]: r["state"] for r in shown["recipients"]} == {
        "temp1@site.example": "held",
        "bad1@site.example": "bounced",
    }
    assert [e["kind"] for e in shown["events"]] == ["flush"]
    assert shown["events"][0]["detail"]["queue_ids"].count(refused) == 1


def test_flush_by_queue_id_moves_only_that_message(
    make_relay: Relay, etrnctl_for: Callable[[PrivatePostfix], Etrnctl], fake_site: FakeSite
) -> None:
    relay = make_relay()
    etrnctl = etrnctl_for(relay)
    etrnctl("domain", "add", "site.example")
    first = relay.send(["one@site.example"])
    relay.send(["two@site.example"])
    _held(relay, 2)
    result = etrnctl("flush", "--id", first, "--wait", "15")
    assert result.exit_code == 0, result.output
    assert fake_site.recipients() == ["one@site.example"]
    assert [e["recipients"][0]["address"] for e in relay.queue()] == ["two@site.example"]
    assert etrnctl("flush", "--id", "-f").exit_code == 65
    assert etrnctl("flush", "--id", "4jcLFD4bWZzBfrY").exit_code == 66


def test_flush_of_a_domain_postfix_cannot_flush_says_what_to_change(
    make_relay: Relay, etrnctl_for: Callable[[PrivatePostfix], Etrnctl]
) -> None:
    relay = make_relay(main_cf={"fast_flush_domains": ""})
    etrnctl = etrnctl_for(relay)
    etrnctl("domain", "add", "site.example")
    relay.send(["held@site.example"])
    _held(relay, 1)
    result = etrnctl("flush", "site.example")
    assert result.exit_code == 69
    assert "site.example is not a fast-flush domain" in result.stderr
    assert "fast_flush_domains" in result.stderr


def test_flush_with_nothing_queued_does_not_touch_postfix(
    make_relay: Relay, etrnctl_for: Callable[[PrivatePostfix], Etrnctl], fake_site: FakeSite
) -> None:
    relay = make_relay()
    etrnctl = etrnctl_for(relay)
    etrnctl("domain", "add", "site.example")
    assert (
        etrnctl("flush", "site.example").stdout
        == "site.example: nothing queued, nothing to flush\n"
    )
    # An empty flush would have let the next message bypass defer_transports (research 1f).
    relay.send(["after@site.example"])
    _held(relay, 1)
    assert fake_site.recipients() == []


def test_sync_without_mail_log_calls_finished_mail_gone(
    make_relay: Relay, tmp_path: Path, fake_site: FakeSite
) -> None:
    relay = make_relay()
    config = tmp_path / "nolog.toml"
    config.write_text(
        f'[index]\nurl = "sqlite:///{tmp_path}/nolog.sqlite"\n'
        f'[mta]\nconfig_directory = "{relay.config_directory}"\n'
    )
    etrnctl = Etrnctl(config)
    etrnctl("domain", "add", "site.example")
    relay.send(["gone@site.example"])
    _held(relay, 1)
    etrnctl("sync")
    relay.command("postqueue", "-s", "site.example")
    fake_site.wait_for_recipients(1, timeout=15)
    relay.wait_for_queue(lambda q: not q)
    assert etrnctl.json("sync")["finished"] == {"gone": 1}
