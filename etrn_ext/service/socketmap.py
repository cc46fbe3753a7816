"""Sendmail's check_etrn hook behind etrn-socketmap: the shared ETRN decision, in
answers the check_etrn ruleset of ``etrnctl sendmail-config`` acts on."""

from __future__ import annotations

import math

from etrn_ext.config import Settings
from etrn_ext.core.policy import Verdict
from etrn_ext.core.sendmail_setup import HOOK, PASS, REFUSE
from etrn_ext.core.trigger import EtrnReply
from etrn_ext.mta.sendmail import SendmailAdapter
from etrn_ext.service.etrn import EtrnHook, EtrnOutcome, EtrnRequest
from etrn_ext.wire.socketmap import Lookup


def answer_lookup(
    hook: EtrnHook, lookup: Lookup, map_name: str, deadline: float | None = None
) -> str | None:
    """The ``OK`` value for an ETRN lookup (key: ``<client_addr> <ETRN argument>``);
    None for a map we do not serve. ``deadline``: see ``EtrnHook.decide``.

    Sendmail's own ETRN matches recipients by substring (``ETRN site.tes`` and
    ``ETRN @bob`` run bob@site.test's mail), so whenever it may run (PASS) the ETRN is
    decided for every registered domain whose queued mail it would run; only an ETRN
    of a registered domain that the hook flushes itself (HOOK) is that domain's alone.
    """
    if lookup.map_name != map_name:
        return None
    client_address, _, argument = lookup.key.partition(" ")
    argument = argument.strip()
    settings = hook.ctx.settings

    def sendmail_runs() -> list[str]:
        return SendmailAdapter(settings.mta).recipients_etrn_runs(argument)

    exact = _hook_flushes(settings) and hook.named_entry(argument)[1] is not None
    outcome = hook.decide(
        EtrnRequest(argument, client_address),
        deadline=deadline,
        mta_runs=None if exact else sendmail_runs,
    )
    return _answer(hook, outcome, argument)


def _hook_flushes(settings: Settings) -> bool:
    """Whether an allowed ETRN is flushed by the hook (HOOK) rather than Sendmail (PASS)."""
    return settings.mta.sendmail_flush == "exact" and settings.etrn.targeted_flush


def _answer(hook: EtrnHook, outcome: EtrnOutcome, argument: str) -> str:
    if outcome.verdict is Verdict.ALLOW:
        return _allowed(outcome, hook.ctx.settings)
    # Sendmail can only refuse with a reply; an action word (DUNNO, OK) leaves it be, as
    # does an undecided ETRN: what the daemon could answer in time.
    reply = hook.configured_reply(outcome, argument)
    return f"{REFUSE} {reply}" if reply and reply[:1].isdigit() else PASS


def _allowed(outcome: EtrnOutcome, settings: Settings) -> str:
    """HOOK when the hook flushes the exact queue ids itself (Sendmail then replies 250
    and runs nothing), else PASS (Sendmail runs its own ``-qR``). After HOOK nothing
    runs while the hook is throttled, so the client gets RFC 1985's 458 and the seconds
    to wait, not a 250 that would move nothing (words only: Sendmail's ruleset drops the
    space after a comma, and a parenthesis starts a comment)."""
    if not _hook_flushes(settings):
        return PASS
    if outcome.throttled is None or outcome.domain is None:
        return HOOK
    seconds = max(1, math.ceil(outcome.throttled.retry_seconds))
    return (
        f"{REFUSE} {EtrnReply.UNABLE.value} 4.7.1 Unable to queue messages for node "
        f"{outcome.domain.ascii} for another {seconds} seconds"
    )
