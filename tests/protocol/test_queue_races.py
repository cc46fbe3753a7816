"""flush --wait and sync against a stand-in postqueue that plays the races a real Postfix
shows only now and then: a message missing from one listing (showq scans the active queue
before incoming and deferred), mail delivered while the queue is being listed, and a
subdomain that is not a fast-flush domain."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from etrn_ext.config import IndexSettings, MtaSettings, Settings
from etrn_ext.core.model import EventKind, HeldState
from etrn_ext.core.names import parse_domain
from etrn_ext.core.registry import DomainChanges
from etrn_ext.mta.postfix import NotFastFlushError
from etrn_ext.service.context import Context
from etrn_ext.service.domains import add_domain
from etrn_ext.service.queue import flush_domain
from etrn_ext.service.sync import sync

QUEUE_ID = "4jcLFD4bWZzBfrY"
RECIPIENT = "a@site.example"
HELD = (QUEUE_ID, RECIPIENT)
REASON = "deferred transport"


def queued(queue_id: str = QUEUE_ID, recipient: str = RECIPIENT) -> str:
    """One ``postqueue -j`` line: a deferred message with one held recipient."""
    return json.dumps(
        {
            "queue_name": "deferred",
            "queue_id": queue_id,
            "arrival_time": 1795900000,
            "message_size": 1234,
            "sender": "alice@example.org",
            "recipients": [{"address": recipient, "delay_reason": REASON}],
        }
    )


def sent(queue_id: str = QUEUE_ID, recipient: str = RECIPIENT) -> str:
    return (
        f"relay/smtp[1]: {queue_id}: to=<{recipient}>, relay=site[192.0.2.1]:25, "
        "dsn=2.0.0, status=sent (250 ok)\n"
    )


class StandIn:
    """A postqueue that plays a script: the n-th ``-j`` appends the n-th log lines to the
    mail log, then prints the n-th listing (the last one again once the script runs out);
    ``-s`` is recorded, and exits 69 for the ``refused`` domains as Postfix does."""

    def __init__(
        self,
        directory: Path,
        listings: Sequence[Sequence[str]],
        logged: dict[int, str] | None = None,
        refused: Sequence[str] = (),
    ) -> None:
        self.directory = directory
        self.mail_log = directory / "maillog"
        for number, lines in enumerate(listings, start=1):
            (directory / f"listing.{number}").write_text("".join(f"{line}\n" for line in lines))
        for number, text in (logged or {}).items():
            (directory / f"logged.{number}").write_text(text)
        (directory / "refused").write_text("".join(f"{name}\n" for name in refused))
        (directory / "count").write_text("0")
        self.program = directory / "postqueue"
        self.program.write_text(
            f"#!/bin/sh\ncd {directory}\n"
            'if [ "$3" != -j ]; then\n'
            '    echo "$*" >> flushes\n'
            '    if grep -qxF -- "$4" refused; then\n'
            '        echo "postqueue: fatal: Flush service is not configured for destination \\"$4\\"" >&2\n'
            "        exit 69\n"
            "    fi\n"
            "    exit 0\n"
            "fi\n"
            "n=$(( $(cat count) + 1 )); echo $n > count\n"
            "if [ -e logged.$n ]; then cat logged.$n >> maillog; fi\n"
            f"if [ ! -e listing.$n ]; then n={len(listings)}; fi\n"
            "cat listing.$n\n"
        )
        self.program.chmod(0o755)

    def flushes(self) -> list[str]:
        path = self.directory / "flushes"
        return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[tuple[Context, Path]]:
    """A context whose postqueue and mail log live in a directory the test scripts."""
    settings = Settings(
        index=IndexSettings(url=f"sqlite:///{tmp_path}/index.sqlite"),
        mta=MtaSettings(
            postqueue=str(tmp_path / "postqueue"),
            mail_log=str(tmp_path / "maillog"),
            node_name="relay.test",
        ),
    )
    ctx = Context(settings, actor="test")
    add_domain(ctx, "site.example", DomainChanges(include_subdomains=True))
    yield ctx, tmp_path
    ctx.close()


@pytest.mark.parametrize(
    ("listings", "finished", "remaining"),
    [
        pytest.param([[queued()], [], [queued()]], {}, {HELD: REASON}, id="missed-by-one-listing"),
        pytest.param(
            [[queued()], [], [], [queued()]], {}, {HELD: REASON}, id="listed-again-by-the-sync"
        ),
        pytest.param(
            [[queued()], [], []], {HELD: ("gone", REASON)}, {}, id="missed-by-two-listings"
        ),
    ],
)
def test_flush_wait_calls_mail_gone_only_when_two_listings_in_a_row_miss_it(
    relay: tuple[Context, Path],
    listings: list[list[str]],
    finished: dict[tuple[str, str], tuple[str, str]],
    remaining: dict[tuple[str, str], str],
) -> None:
    ctx, directory = relay
    StandIn(directory, listings)
    result = flush_domain(ctx, "site.example", wait=0.5, poll_seconds=0.05)
    assert (result.finished, result.remaining) == (finished, remaining)


def _state(ctx: Context) -> str:
    [row] = ctx.store.held_rows(queue_id=QUEUE_ID, states=tuple(HeldState))
    return row.state.value


EXPIRED = (
    f"relay/qmgr[1]: {QUEUE_ID}: from=<alice@example.org>, status=expired, returned to sender\n"
)


@pytest.mark.parametrize(
    ("logged", "state"),
    [
        pytest.param({1: sent()}, "delivered", id="sent-during-a-listing-that-still-shows-it"),
        pytest.param({2: sent()}, "delivered", id="sent-during-a-listing-that-misses-it"),
        pytest.param({2: EXPIRED}, "expired", id="expired-during-a-listing-that-misses-it"),
    ],
)
def test_mail_that_leaves_while_sync_lists_the_queue_keeps_its_logged_outcome(
    relay: tuple[Context, Path], logged: dict[int, str], state: str
) -> None:
    ctx, directory = relay
    StandIn(directory, [[queued()], [], []], logged=logged)
    for _ in range(3):
        sync(ctx)
    [row] = ctx.store.held_rows(queue_id=QUEUE_ID, states=tuple(HeldState))
    assert row.state.value == state


def test_a_subdomain_postfix_cannot_flush_leaves_the_flushed_ones_recorded(
    relay: tuple[Context, Path],
) -> None:
    ctx, directory = relay
    other = ("D5D0020E7A9", "b@sub.site.example")
    postqueue = StandIn(directory, [[queued(), queued(*other)]], refused=["sub.site.example"])
    sync(ctx)
    with pytest.raises(NotFastFlushError):
        flush_domain(ctx, "site.example")
    assert [line.split()[-1] for line in postqueue.flushes()] == [
        "site.example",
        "sub.site.example",
    ]
    [event] = ctx.store.events_for(parse_domain("site.example"), kinds={EventKind.FLUSH})
    assert (event.outcome, event.detail["queue_ids"], event.detail["not_flushed"]) == (
        "requested",
        [QUEUE_ID],
        ["sub.site.example"],
    )
    states = {
        (row.queue_id, row.recipient): row.state.value
        for row in ctx.store.held_rows(states=tuple(HeldState))
    }
    assert states == {HELD: "flushing", other: "held"}
