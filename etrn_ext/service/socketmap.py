"""Sendmail's check_etrn hook behind etrn-socketmap: the shared ETRN decision, in
answers the check_etrn ruleset of ``etrnctl sendmail-config`` acts on."""

from __future__ import annotations

from etrn_ext.core.policy import Verdict
from etrn_ext.core.sendmail_setup import HOOK, PASS, REFUSE
from etrn_ext.service.etrn import EtrnHook, EtrnRequest
from etrn_ext.wire.socketmap import Lookup


def answer_lookup(
    hook: EtrnHook, lookup: Lookup, map_name: str, deadline: float | None = None
) -> str | None:
    """The ``OK`` value for an ETRN lookup (key: ``<client_addr> <ETRN argument>``);
    None for a map we do not serve.

    An allowed ETRN is answered HOOK when the hook flushes the exact queue ids itself
    (Sendmail then replies 250 and runs nothing), else PASS (Sendmail runs ``-qR``).
    ``deadline``: see ``EtrnHook.decide``; a decision that misses it is answered PASS.
    """
    if lookup.map_name != map_name:
        return None
    client_address, _, argument = lookup.key.partition(" ")
    outcome = hook.decide(EtrnRequest(argument.strip(), client_address), deadline=deadline)
    settings = hook.ctx.settings
    if outcome.verdict is Verdict.UNDECIDED:
        return PASS  # what the daemon answered when the deadline passed
    if outcome.verdict is Verdict.ALLOW:
        exact = settings.mta.sendmail_flush == "exact" and settings.etrn.targeted_flush
        return HOOK if exact else PASS
    if outcome.verdict is Verdict.REFUSE:
        target = outcome.domain.ascii if outcome.domain else argument
        return f"{REFUSE} {settings.etrn.refuse_action.format(domain=target)}"
    action = settings.etrn.unregistered_action
    if outcome.domain is not None and action[:1].isdigit():
        return f"{REFUSE} {action.format(domain=outcome.domain.ascii)}"
    return PASS
