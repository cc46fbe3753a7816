"""etrn-policyd's server over a real unix socket: many requests per connection, garbage, fail-open."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from etrn_ext.config import IndexSettings, MtaSettings, Settings
from etrn_ext.core.registry import DomainChanges
from etrn_ext.daemons.policyd import policy_server
from etrn_ext.index.writer import BatchWriter
from etrn_ext.service.context import Context
from etrn_ext.service.domains import add_domain
from etrn_ext.service.policy import PolicyService
from etrn_ext.service.socketmap import answer_lookup
from etrn_ext.wire.policy import PolicyRequest
from etrn_ext.wire.socketmap import Lookup


def block(**attributes: str) -> bytes:
    lines = "".join(
        f"{name}={value}\n"
        for name, value in {"request": "smtpd_access_policy", **attributes}.items()
    )
    return f"{lines}\n".encode()


QUEUED = (
    '{"queue_name": "deferred", "queue_id": "4jcLFD4bWZzBfrY", "arrival_time": 1795900000, '
    '"message_size": 1234, "sender": "alice@example.org", "recipients": [{"address": "a@site.example"}]}'
)


@pytest.fixture
def make_service(tmp_path: Path) -> Iterator[Callable[..., PolicyService]]:
    """Policy services over one index; ``writer_delay`` holds commits back that long."""
    # A stand-in postqueue: -j lists one held message (never deferred: in no flush log).
    postqueue = tmp_path / "postqueue"
    postqueue.write_text(f"#!/bin/sh\n[ \"$3\" = -j ] && echo '{QUEUED}'\nexit 0\n")
    postqueue.chmod(0o755)
    settings = Settings(
        index=IndexSettings(url=f"sqlite:///{tmp_path}/index.sqlite"),
        mta=MtaSettings(postconf="/bin/true", postqueue=str(postqueue), node_name="relay.test"),
    )
    ctx = Context(settings, actor="test")
    add_domain(ctx, "site.example", DomainChanges(allow=("192.0.2.0/24",), quota_messages="1"))
    made: list[PolicyService] = []

    def make(writer_delay: float = 0.0) -> PolicyService:
        writer = BatchWriter(ctx.store, max_rows=100, queue_limit=1000, max_delay=writer_delay)
        made.append(PolicyService(ctx, writer.start()))
        return made[-1]

    yield make
    for policy in made:
        policy.close()
        policy.writer.close()
    ctx.close()


@pytest.fixture
def service(make_service: Callable[..., PolicyService]) -> PolicyService:
    return make_service()


async def _converse(service: PolicyService, path: Path, data: bytes) -> bytes:
    server = policy_server(service, config_path=None)
    listener = await asyncio.start_unix_server(server.connection, path=str(path))
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(data)
    await writer.drain()
    writer.write_eof()
    replies = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    listener.close()
    await listener.wait_closed()
    return replies


def converse(service: PolicyService, tmp_path: Path, data: bytes) -> bytes:
    return asyncio.run(_converse(service, tmp_path / "policy.sock", data))


def test_a_message_and_an_etrn_on_one_connection(service: PolicyService, tmp_path: Path) -> None:
    message = converse(
        service,
        tmp_path,
        b"".join(
            [
                block(
                    protocol_state="RCPT",
                    recipient="a@site.example",
                    instance="i1",
                    queue_id="",
                    size="0",
                ),
                block(
                    protocol_state="RCPT",
                    recipient="b@other.example",
                    instance="i1",
                    queue_id="4jcLFD4bWZzBfrY",
                ),
                block(protocol_state="DATA", instance="i1", queue_id="4jcLFD4bWZzBfrY"),
                block(
                    protocol_state="END-OF-MESSAGE",
                    instance="i1",
                    queue_id="4jcLFD4bWZzBfrY",
                    size="1234",
                    sender="alice@example.org",
                    recipient_count="2",
                ),
                block(protocol_state="RCPT", recipient="c@site.example", instance="i2", size="0"),
            ]
        ),
    )
    assert message.split(b"\n\n")[:-1] == [
        b"action=DUNNO",
        b"action=DUNNO",
        b"action=DUNNO",
        b"action=DUNNO",
        b"action=452 4.2.2 held-mail quota for site.example exceeded",
    ]
    service.writer.flush()  # the targeted flush below reads what the index holds
    etrns = converse(
        service,
        tmp_path,
        b"".join(
            [
                block(
                    protocol_state="ETRN", etrn_domain="SITE.example", client_address="192.0.2.7"
                ),
                block(
                    protocol_state="ETRN", etrn_domain="site.example", client_address="198.51.100.1"
                ),
                block(
                    protocol_state="ETRN", etrn_domain="other.example", client_address="192.0.2.7"
                ),
                block(
                    protocol_state="ETRN", etrn_domain="-qRsite.example", client_address="192.0.2.7"
                ),
            ]
        ),
    )
    assert etrns.split(b"\n\n")[:-1] == [
        b"action=OK",
        b"action=459 4.7.1 not allowed to flush site.example",
        b"action=DUNNO",
        b"action=DUNNO",
    ]
    service.close()  # waits for the targeted flush started by the allowed ETRN
    service.writer.flush()
    [row] = service.ctx.store.held_rows()
    assert (row.queue_id, row.recipient, row.size, row.sender) == (
        "4jcLFD4bWZzBfrY",
        "a@site.example",
        1234,
        "alice@example.org",
    )
    events = service.ctx.store.events_for()
    assert [(e.kind.value, e.outcome) for e in events if e.kind.value != "flush"][:5] == [
        ("etrn", "unregistered"),  # -qRsite.example: not a domain, audited all the same
        ("etrn", "unregistered"),
        ("etrn", "refused"),
        ("etrn", "allowed"),
        ("quota", "refused"),
    ]
    # Never deferred, so not in any flush log: the hook flushed it by queue id.
    [flush] = [e for e in events if e.kind.value == "flush"]
    assert flush.detail["queue_ids"] == ["4jcLFD4bWZzBfrY"]
    assert flush.actor == "ETRN from 192.0.2.7"


def test_both_etrn_shells_fill_the_domain_into_the_unregistered_action(
    service: PolicyService, tmp_path: Path
) -> None:
    settings = service.ctx.settings
    etrn_settings = dataclasses.replace(
        settings.etrn, unregistered_action="550 5.7.1 {domain} is not served here"
    )
    service.reload(dataclasses.replace(settings, etrn=etrn_settings))
    etrn = PolicyRequest(
        {"protocol_state": "ETRN", "etrn_domain": "Other.example", "client_address": "192.0.2.7"}
    )
    assert service.handle(etrn) == "550 5.7.1 other.example is not served here"
    # etrn-socketmap serves Sendmail, whose (empty) queue it reads for substring matches
    (tmp_path / "mqueue").mkdir()
    sendmail_cf = tmp_path / "sendmail.cf"
    sendmail_cf.write_text(f"O QueueDirectory={tmp_path}/mqueue\n")
    sendmail = dataclasses.replace(settings.mta, kind="sendmail", sendmail_cf=str(sendmail_cf))
    service.reload(dataclasses.replace(settings, etrn=etrn_settings, mta=sendmail))
    lookup = Lookup("etrnpolicy", "192.0.2.7 Other.example")
    assert answer_lookup(service.etrn, lookup, "etrnpolicy") == (
        "REFUSE 550 5.7.1 other.example is not served here"
    )


@pytest.mark.expect_log("ERROR", "broke the protocol")
@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(b"hello\n\n", id="not-name-value"),
        pytest.param(b"protocol_state=RCPT\n\n", id="no-request"),
        pytest.param(b"request=smtpd_access_policy\nx=\x00\x01\n\n", id="binary"),
        pytest.param(b"x" * 100_000, id="endless-line"),
    ],
)
def test_garbage_closes_the_connection(
    service: PolicyService, tmp_path: Path, garbage: bytes
) -> None:
    good = block(protocol_state="RCPT", recipient="x@other.example", instance="i9")
    assert converse(service, tmp_path, good + garbage + good) == b"action=DUNNO\n\n"


@pytest.mark.expect_log("WARNING", "in the middle of a request")
def test_peer_closing_mid_block_is_logged(service: PolicyService, tmp_path: Path) -> None:
    assert converse(service, tmp_path, b"request=smtpd_access_policy\nprotocol_state=RCPT\n") == b""


@pytest.mark.expect_log("ERROR", "RCPT request failed, answering DUNNO")
def test_an_internal_error_answers_on_error(service: PolicyService, tmp_path: Path) -> None:
    def broken(_request: object) -> str:
        raise RuntimeError("boom")

    service.handle = broken  # type: ignore[method-assign]
    assert converse(service, tmp_path, block(protocol_state="RCPT")) == b"action=DUNNO\n\n"


def test_a_message_that_never_ends_frees_its_quota_when_its_smtpd_moves_on(
    service: PolicyService,
) -> None:
    def rcpt(instance: str) -> str:
        attributes = {"protocol_state": "RCPT", "recipient": "a@site.example"}
        return service.handle(PolicyRequest({**attributes, "instance": instance}))

    # The quota is one message. A recipient probe (RCPT, then QUIT) from smtpd 1a ...
    assert rcpt("1a.6b0b2911.8b759.0") == "DUNNO"
    # ... may still become a message while smtpd 2b asks: that one waits its turn ...
    assert rcpt("2b.6b0b2911.9c86a.0").startswith("452 ")
    # ... but once smtpd 1a starts its next message, the probe is over.
    assert rcpt("1a.6b0b2912.1a2b.1") == "DUNNO"


def test_a_refresh_counts_what_the_writer_has_not_committed_yet(
    make_service: Callable[..., PolicyService],
) -> None:
    service = make_service(writer_delay=1.0)

    def request(state: str, instance: str, **attributes: str) -> str:
        return service.handle(
            PolicyRequest({"protocol_state": state, "instance": instance, **attributes})
        )

    assert request("RCPT", "1a.1.1.0", recipient="a@site.example") == "DUNNO"
    assert request("END-OF-MESSAGE", "1a.1.1.0", queue_id="4jcLFD4bWZzBfrY", size="10") == "DUNNO"
    service.refresh_usage()  # the message is still waiting in the writer when this starts
    assert request("RCPT", "2b.1.2.0", recipient="b@site.example").startswith("452 ")


def test_a_reload_keeps_the_rate_limits_memory(service: PolicyService) -> None:
    throttle, resolver = service.etrn.throttle, service.etrn.resolver
    service.reload(service.ctx.settings)
    assert (service.etrn.throttle, service.etrn.resolver) == (throttle, resolver)
    quicker = dataclasses.replace(service.ctx.settings.etrn, client_limit=1)
    service.reload(dataclasses.replace(service.ctx.settings, etrn=quicker))
    assert service.etrn.throttle is not throttle
