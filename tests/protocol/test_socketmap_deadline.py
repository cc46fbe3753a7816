"""etrn-socketmap answers every lookup within ``[socketmap] answer_timeout_seconds``, well
inside the ``-d`` timeout of sendmail.cf's K line: past that, Sendmail itself answers
the ETRN with ``451 socket_map_lookup(etrnpolicy): read timeout``."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Iterator

import dns.resolver
import pytest

from etrn_ext.config import SocketmapSettings
from etrn_ext.core.model import EventKind
from etrn_ext.core.policy import Verdict
from etrn_ext.core.registry import DomainChanges
from etrn_ext.daemons.socketmapd import socketmap_server
from etrn_ext.net.resolve import CachingResolver
from etrn_ext.service.etrn import EtrnHook, EtrnOutcome, EtrnRequest
from etrn_ext.service.recording import HeldMailRecorder
from etrn_ext.testing.loopback import free_loopback_address
from etrn_ext.wire.socketmap import Lookup, found

ANSWER_SECONDS = 1.0
SLOW_DNS_SECONDS = 8.0  # far beyond Sendmail's -d5


@pytest.fixture
def silent_dns() -> Iterator[dns.resolver.Resolver]:
    """A name server that takes queries and never answers (as a dead site's DNS does)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind((free_loopback_address(()), 0))
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [sink.getsockname()[0]]
        resolver.port = sink.getsockname()[1]
        yield resolver


@pytest.fixture
def hook(
    make_socketmap_hook: Callable[..., EtrnHook], silent_dns: dns.resolver.Resolver
) -> EtrnHook:
    made = make_socketmap_hook(
        {"site.test": DomainChanges(allow=("mx.site.test",))},  # a rule that needs DNS
        socketmap=SocketmapSettings(answer_timeout_seconds=ANSWER_SECONDS),
    )
    made.configure(
        made.ctx.settings.etrn,
        CachingResolver(timeout=SLOW_DNS_SECONDS, cache_seconds=300, resolver=silent_dns),
    )
    return made


def timed_answer(hook: EtrnHook, key: str) -> tuple[bytes, float]:
    server = socketmap_server(hook, HeldMailRecorder(hook.ctx, hook.writer), None)

    async def ask() -> tuple[bytes, float]:
        started = time.monotonic()
        reply = await server.answer(Lookup("etrnpolicy", key))
        return reply, time.monotonic() - started

    return asyncio.run(ask())


def test_a_decision_waiting_for_dns_is_answered_in_time(hook: EtrnHook) -> None:
    reply, seconds = timed_answer(hook, "192.0.2.7 site.test")
    assert seconds < ANSWER_SECONDS
    # DNS that did not answer in time is a failed lookup: the host rule does not match.
    assert reply == found("REFUSE 459 4.7.1 not allowed to flush site.test")


@pytest.mark.expect_log("WARNING", "not decided within 1s")
def test_a_decision_not_ready_in_time_is_answered_pass(hook: EtrnHook) -> None:
    def stuck(request: EtrnRequest, **_deadline: float) -> EtrnOutcome:
        time.sleep(ANSWER_SECONDS + 1)
        return EtrnOutcome(Verdict.REFUSE, None, "too late to matter")

    hook.decide = stuck  # type: ignore[method-assign]
    reply, seconds = timed_answer(hook, "192.0.2.7 site.test")
    assert seconds < ANSWER_SECONDS + 0.5
    assert reply == found("PASS")  # Sendmail's own ETRN, as when etrn-socketmap is down


def test_a_decision_finished_after_its_deadline_says_so(hook: EtrnHook) -> None:
    late = hook.decide(EtrnRequest("site.test", "192.0.2.7"), deadline=time.monotonic() - 1)
    assert (late.verdict, late.reason) == (
        Verdict.UNDECIDED,
        "not decided in time; the MTA's own ETRN ran",
    )
    assert hook.writer.flush(timeout=5)
    events = hook.ctx.store.events_for(kinds={EventKind.ETRN})
    assert [(e.outcome, e.domain) for e in events] == [("undecided", "site.test")]
