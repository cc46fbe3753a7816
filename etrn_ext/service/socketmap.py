"""Sendmail's check_etrn hook behind etrn-socketmap: the shared ETRN decision, in
answers the check_etrn ruleset of ``etrnctl sendmail-config`` acts on."""

from __future__ import annotations

from etrn_ext.core.policy import Verdict
from etrn_ext.core.sendmail_setup import HOOK, PASS, REFUSE
from etrn_ext.service.etrn import EtrnHook, EtrnRequest
from etrn_ext.wire.socketmap import Lookup


def answer_lookup(hook: EtrnHook, lookup: Lookup, map_name: str) -> str | None:
    """The ``OK`` value for an ETRN lookup (key: ``<client_addr> <ETRN argument>``);
    None for a map we do not serve.

    An allowed ETRN is answered HOOK when the hook flushes the exact queue ids itself
    (Sendmail then replies 250 and runs nothing), else PASS (Sendmail runs ``-qR``).
    """
    if lookup.map_name != map_name:
        return None
    client_address, _, argument = lookup.key.partition(" ")
    outcome = hook.decide(EtrnRequest(argument.strip(), client_address))
    if outcome.verdict is Verdict.ALLOW:
        settings = hook.ctx.settings
        exact = settings.mta.sendmail_flush == "exact" and settings.etrn.targeted_flush
        return HOOK if exact else PASS
    # Sendmail can only refuse with a reply; an action word (DUNNO, OK) leaves it be.
    reply = hook.configured_reply(outcome, argument)
    return f"{REFUSE} {reply}" if reply and reply[:1].isdigit() else PASS
