"""What etrn-socketmap answers Sendmail's check_etrn for each kind of ETRN, in exact mode
(the hook flushes exact queue ids and Sendmail runs nothing of its own)."""

from __future__ import annotations

from collections.abc import Callable

from etrn_ext.config import EtrnSettings
from etrn_ext.core.registry import DomainChanges
from etrn_ext.service.etrn import EtrnHook
from etrn_ext.service.socketmap import answer_lookup
from etrn_ext.wire.socketmap import Lookup

SITE_CLIENT = "192.0.2.7"


def ask(hook: EtrnHook, client: str, argument: str) -> str | None:
    return answer_lookup(hook, Lookup("etrnpolicy", f"{client} {argument}"), "etrnpolicy")


def test_a_throttled_etrn_tells_the_client_when_to_come_back(
    make_socketmap_hook: Callable[..., EtrnHook],
) -> None:
    # Sendmail runs nothing after HOOK: a throttled ETRN answered 250 would move nothing.
    hook = make_socketmap_hook(
        {"site.test": DomainChanges(allow=(f"{SITE_CLIENT}/32",))},
        etrn=EtrnSettings(domain_flush_interval_seconds=60),
    )
    now = [1000.0]
    hook.clock = lambda: now[0]
    assert ask(hook, SITE_CLIENT, "site.test") == "HOOK"
    now[0] += 10
    assert ask(hook, SITE_CLIENT, "site.test") == (
        "REFUSE 458 4.7.1 Unable to queue messages for node site.test for another 50 seconds"
    )
