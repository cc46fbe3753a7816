"""What a Sendmail relay needs to hold mail for ETRN, and what is wrong with a live one.

Pure knowledge, no I/O. The recipe (verified on Sendmail 8.17, see the research notes):
the site's domains are routed (mailertable) to a mailer flagged expensive (``F=e``)
while ``HoldExpensive=True``, so mail is queued without a delivery attempt, in a queue
group of its own with a long interval (``I=99d``): periodic queue runs skip it, but
``ETRN``, ``-qR`` and ``-qI`` run it. (With ``R=0`` instead, only ``ETRN #group`` would
work; a domain ETRN would silently do nothing.) ``check_etrn`` asks etrn-socketmap over
a socketmap, which decides per domain and client and can flush the exact queue ids
itself, because Sendmail's own ETRN matches recipients by substring.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from etrn_ext.core.errors import InvalidInputError
from etrn_ext.core.model import IntermittentDomain
from etrn_ext.core.postfix_setup import Finding
from etrn_ext.core.units import parse_duration

HOLD_MAILER: Final = "etrnhold"
QUEUE_GROUP: Final = "etrn"
SOCKETMAP: Final = "etrnpolicy"
# Values etrn-socketmap answers (after "OK "): the check_etrn ruleset acts on them.
PASS: Final = "PASS"  # noqa: S105 - Sendmail runs its own queue run (substring match)
HOOK: Final = "HOOK"  # etrn-socketmap flushed the exact queue ids: reply 250, run nothing
REFUSE: Final = "REFUSE"  # followed by the reply text
# How long Sendmail waits for etrn-socketmap (the K line's -d); past it, it answers the
# ETRN "451 socket_map_lookup: read timeout" itself. The daemon must answer well before.
SOCKETMAP_TIMEOUT_SECONDS: Final = 5
SOCKETMAP_HEADROOM_SECONDS: Final = 1.0


def etrn_runs(argument: str, address: str) -> bool:
    """Whether Sendmail's own ETRN for ``argument`` runs the mail of ``address``.

    Sendmail (srvrsmtp.c, queue.c) looks for ``@site.test`` after ``ETRN site.test`` and
    for ``site.test`` after ``ETRN @site.test``, anywhere in each recipient as its qf
    file has it (``<bob@site.test>``), ignoring ASCII case: ``ETRN site.tes`` runs
    bob@site.test's mail, ``ETRN @bob`` too, and ``ETRN @`` runs everything.
    """
    return etrn_pattern(argument) in _ascii_folded(f"<{address}>")


def etrn_pattern(argument: str) -> bytes:
    """What Sendmail's own ETRN for ``argument`` looks for, in ASCII lower case; every qf
    file it runs contains it (a cheap test before parsing one)."""
    return _ascii_folded(argument[1:] if argument.startswith("@") else "@" + argument)


def _ascii_folded(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape").lower()  # bytes.lower: ASCII only


@dataclass(frozen=True, slots=True)
class SendmailSetup:
    """Where things are on this relay; all have production defaults."""

    queue_directory: str = "/var/spool/mqueue"
    socketmap: str = "unix:/run/etrn-socketmap/socketmap.sock"
    milter: str | None = "unix:/run/etrn-milter/milter.sock"
    site_port: int = 25


def mc_lines(setup: SendmailSetup) -> list[str]:
    """The .mc lines: hold mailer, queue group, check_etrn with the socketmap, the milter."""
    port = "" if setup.site_port == 25 else f" {setup.site_port}"
    lines = [
        "dnl --- hold mail for intermittent sites until ETRN (etrn-ext) ---",
        "dnl Expensive mailers are not tried at receipt while HoldExpensive is set:",
        "define(`confCON_EXPENSIVE', `True')dnl",
        "dnl Queue groups chosen per domain by QGRP: entries in the access map; a mixed",
        "dnl message is split, so other recipients do not wait for the site.",
        "FEATURE(`queuegroup', `mqueue')dnl",
        "dnl I=99d: periodic queue runs skip the group, ETRN, -qR and -qI run it.",
        "dnl Never R=0: then only ETRN #etrn would run it and domain ETRN does nothing.",
        f"QUEUE_GROUP(`{QUEUE_GROUP}', `P={setup.queue_directory}/{QUEUE_GROUP}, I=99d')dnl",
    ]
    if setup.milter:
        lines += [
            "dnl etrn-milter without F=T or F=R: a dead milter must not cost mail or ETRN.",
            f"INPUT_MAIL_FILTER(`etrn-milter', `S={setup.milter}, T=S:10s;R:10s;E:30s')dnl",
        ]
    lines += [
        "MAILER_DEFINITIONS",
        f"M{HOLD_MAILER},\tP=[IPC], F=mDFMuXae, S=EnvFromSMTP/HdrFromSMTP, R=EnvToSMTP, E=\\r\\n, "
        f"L=990,\n\t\tT=DNS/RFC822/SMTP, Q={QUEUE_GROUP},\n\t\tA=TCP $h{port}",
        "LOCAL_CONFIG",
        "dnl etrn-socketmap decides every ETRN; -T<TEMP> marks a connection that failed.",
        "dnl -d: how long Sendmail waits for an answer (the daemon answers well within it).",
        f"K{SOCKETMAP} socket -d{SOCKETMAP_TIMEOUT_SECONDS} -T<TEMP> {setup.socketmap}",
        "LOCAL_RULESETS",
        "Scheck_etrn",
        f"R$*\t\t\t$: < $({SOCKETMAP} $&{{client_addr}} $1 $: NOTFOUND $) > $1",
        f"R< {PASS} > $*\t\t$@ OK",
        f'R< {HOOK} > $*\t\t$#error $@ 2.0.0 $: "250 2.0.0 Queuing for node " $1 " started"',
        f"R< {REFUSE} $* > $*\t$#error $@ 4.7.1 $: $1",
        "dnl etrn-socketmap down (TEMP): fail open, ETRN works as without it.",
        "R< $* <TEMP> > $*\t$@ OK",
        "R< $* > $*\t\t$@ OK",
    ]
    return lines


def mailertable_lines(domains: Sequence[IntermittentDomain], nexthop: str = "") -> list[str]:
    """mailertable entries: each domain (and ``.domain`` for subdomains) to the hold mailer.

    Without a next hop the mailer looks up the domain's MX, where the site's server is
    preferred over this backup MX; give ``[host]`` to name the site's server instead.
    """
    lines = []
    for domain in domains:
        target = f"{HOLD_MAILER}:{nexthop or domain.name.ascii}"
        lines.append(f"{domain.name.ascii}\t{target}")
        if domain.include_subdomains:
            lines.append(f".{domain.name.ascii}\t{target}")
    return lines


def access_lines(domains: Sequence[IntermittentDomain]) -> list[str]:
    """access entries: relay for each domain and choose the hold queue group."""
    lines = []
    for domain in domains:
        lines += [f"To:{domain.name.ascii}\tRELAY", f"QGRP:{domain.name.ascii}\t{QUEUE_GROUP}"]
    return lines


def render_sendmail_config(
    domains: Sequence[IntermittentDomain], setup: SendmailSetup = SendmailSetup()
) -> str:
    """Everything a Sendmail relay needs, as .mc lines and map lines with their warnings."""
    lines = [
        "dnl ===== sendmail.mc (before MAILER(), then rebuild sendmail.cf) =====",
        *mc_lines(setup),
        "",
        "dnl ===== mailertable (then makemap hash mailertable < mailertable) =====",
        *mailertable_lines(domains),
        "",
        "dnl ===== access (then makemap hash access < access) =====",
        *access_lines(domains),
        "",
        "dnl ===== warnings =====",
        "dnl Debian's HostStatusDirectory remembers 'host down' for 30 minutes: an ETRN in",
        "dnl that time does not even connect. Leave confHOST_STATUS_DIRECTORY undefined.",
        "dnl QueueLA/RefuseLA (8 and 12 per CPU) stop queue runs and refuse mail under load:",
        "dnl set confQUEUE_LA and confREFUSE_LA above the relay's normal load average.",
    ]
    return "\n".join(lines) + "\n"


# --- the live configuration -----------------------------------------------------------


_QUEUE_GROUP_LINE: Final = re.compile(r"^Q(?P<name>[\w-]+),\s*(?P<fields>.*)$")


def parse_cf(text: str) -> tuple[dict[str, str], dict[str, dict[str, str]], dict[str, str]]:
    """Options (``O Name=value``), queue groups (``Qname, P=..``) and mailers (``Mname, F=..``)."""
    options: dict[str, str] = {}
    groups: dict[str, dict[str, str]] = {}
    mailers: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("O "):
            name, _, value = line[2:].partition("=")
            options[name.strip()] = value.strip()
        elif match := _QUEUE_GROUP_LINE.match(line):
            fields = dict(
                item.strip().partition("=")[::2]
                for item in match["fields"].split(",")
                if "=" in item
            )
            groups[match["name"]] = fields
        elif line.startswith("M") and "," in line:
            name, _, rest = line[1:].partition(",")
            mailers[name.strip()] = rest
    return options, groups, mailers


def _map_timeout(flags: str) -> float | None:
    """A K line's ``-d`` timeout in seconds, or None without (or with a bad) one."""
    match = re.search(r"(?:^|\s)-d(\S+)", flags)
    try:
        return parse_duration(match[1]) if match else None
    except InvalidInputError:
        return None


def check_sendmail(
    cf_text: str, domains: Sequence[IntermittentDomain], answer_seconds: float
) -> list[Finding]:
    """Known traps in a live sendmail.cf for holding mail until ETRN; ``answer_seconds``
    is how long etrn-socketmap may take (``[socketmap] answer_timeout_seconds``)."""
    options, groups, mailers = parse_cf(cf_text)
    findings = []
    if options.get("HostStatusDirectory"):
        findings.append(
            Finding(
                "warning",
                f"HostStatusDirectory={options['HostStatusDirectory']}: a failed attempt "
                "is remembered for 30 minutes and an ETRN in that time does not even connect",
                "leave confHOST_STATUS_DIRECTORY undefined (or clear the host entry first)",
            )
        )
    group = groups.get(QUEUE_GROUP)
    if domains and group is None:
        findings.append(
            Finding(
                "error",
                f"no queue group {QUEUE_GROUP}: held mail shares the main queue and every "
                "queue run retries it",
                f"QUEUE_GROUP(`{QUEUE_GROUP}', `P=.../{QUEUE_GROUP}, I=99d')",
            )
        )
    elif group is not None and group.get("R", "").strip() == "0":
        findings.append(
            Finding(
                "error",
                f"queue group {QUEUE_GROUP} has R=0: ETRN for a domain, -qR and -qI do "
                f"nothing; only ETRN #{QUEUE_GROUP} runs it",
                "use I=99d instead of R=0",
            )
        )
    hold = mailers.get(HOLD_MAILER)
    if domains and hold is None:
        findings.append(
            Finding(
                "error",
                f"no {HOLD_MAILER} mailer: mail for the intermittent domains is delivered, "
                "not held",
                "etrnctl sendmail-config prints its definition",
            )
        )
    elif hold is not None and options.get("HoldExpensive", "").lower() not in ("true", "t", "yes"):
        findings.append(
            Finding(
                "error",
                f"{HOLD_MAILER} is F=e but HoldExpensive is off: mail is tried at receipt",
                "define(`confCON_EXPENSIVE', `True')",
            )
        )
    milters = options.get("InputMailFilters", "")
    for line in cf_text.splitlines():
        if line.startswith("Xetrn-milter,") and re.search(r"F=[^,]*[TR]", line):
            findings.append(
                Finding(
                    "error",
                    "etrn-milter has F=T or F=R: while it is down Sendmail refuses mail "
                    "and answers ETRN with 451",
                    "drop the F= flag from INPUT_MAIL_FILTER",
                )
            )
    del milters
    socketmap = re.search(rf"^K{SOCKETMAP} socket(?P<flags>.*)$", cf_text, re.MULTILINE)
    timeout = _map_timeout(socketmap["flags"]) if socketmap else None
    if timeout is not None and timeout < answer_seconds + SOCKETMAP_HEADROOM_SECONDS:
        findings.append(
            Finding(
                "warning",
                f"the {SOCKETMAP} map waits {timeout:g}s (-d) and etrn-socketmap may take "
                f"{answer_seconds:g}s: a slow decision makes Sendmail answer ETRN 451",
                f"-d{SOCKETMAP_TIMEOUT_SECONDS} in the K line, or a lower "
                "[socketmap] answer_timeout_seconds",
            )
        )
    if socketmap is None:
        findings.append(
            Finding(
                "warning",
                "no check_etrn socketmap: any client may ETRN, and Sendmail's ETRN "
                "matches recipients by substring (site.example also flushes notsite.example)",
                "etrnctl sendmail-config prints the check_etrn lines for etrn-socketmap",
            )
        )
    for name in ("QueueLA", "RefuseLA"):
        if name not in options:
            findings.append(
                Finding(
                    "warning",
                    f"{name} is Sendmail's default (8 or 12 per CPU): under load queue "
                    "runs are skipped and connections refused",
                    f"set conf{name.upper()} higher",
                )
            )
    return sorted(findings, key=lambda finding: finding.severity != "error")


def queue_directories(cf_text: str) -> list[str]:
    """Every queue directory of a sendmail.cf: the main one and each queue group's."""
    options, groups, _mailers = parse_cf(cf_text)
    directories = [options.get("QueueDirectory", "/var/spool/mqueue")]
    directories += [fields["P"] for fields in groups.values() if fields.get("P")]
    return list(dict.fromkeys(directories))


def group_parent_directory(queue_directory: str) -> str:
    """Where the hold queue group's directory goes: the queue directory, or the one that
    holds the ``q1``, ``q2``... of a wildcard ``QueueDirectory=/var/spool/mqueue/q*``."""
    return queue_directory.rpartition("/")[0] if queue_directory.endswith("*") else queue_directory


def option_seconds(cf_text: str, name: str, default: str) -> str:
    """A raw option value from sendmail.cf (e.g. ``Timeout.queuereturn``), or the default."""
    options: Mapping[str, str] = parse_cf(cf_text)[0]
    return options.get(name, default)
