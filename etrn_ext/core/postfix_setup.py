"""What a Postfix relay needs to hold mail for ETRN, and what is wrong with a live one.

Pure knowledge, no I/O: the adapter gathers the facts (``postconf -x``, ``postconf -M``,
``postmap -q``), this module decides. The recipe is ETRN_README's "domain for ETRN
service only": the domain is a relay domain, routed to an ``etrn-only`` clone of the
smtp transport that is listed in ``defer_transports``, so only a flush delivers it.
Each check below is a trap seen on a real Postfix (see the research notes).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from etrn_ext.core.model import IntermittentDomain
from etrn_ext.core.units import QUEUE_LIFETIME_UNIT, format_duration, parse_duration

ETRN_TRANSPORT: Final = "etrn-only"
DEFAULT_LIFETIME: Final = "5d"
LIFETIME_MARGIN: Final = 2 * 86400.0
PARAMETERS: Final = (
    "relay_domains",
    "fast_flush_domains",
    "parent_domain_matches_subdomains",
    "transport_maps",
    "defer_transports",
    "maximal_queue_lifetime",
    "authorized_flush_users",
    "mail_owner",
    "smtpd_etrn_restrictions",
    "smtpd_recipient_restrictions",
    "smtpd_end_of_data_restrictions",
    "smtpd_restriction_classes",
    "queue_directory",
    "smtpd_milters",
    "milter_default_action",
    "smtpd_policy_service_default_action",
)
POLICY_CLASS: Final = "etrn_policy"
RECIPIENT_MAP: Final = "etrn-recipients"
RESTRICTION_LISTS: Final = (
    "smtpd_recipient_restrictions",
    "smtpd_end_of_data_restrictions",
    "smtpd_etrn_restrictions",
)


def split_list(value: str) -> list[str]:
    """A Postfix list parameter (commas and/or whitespace) as items."""
    return [item for item in re.split(r"[\s,]+", value) if item]


def split_restrictions(value: str) -> list[str]:
    """A restriction list as items, keeping ``{ ... }`` groups (Postfix 3.0 syntax) whole."""
    items: list[str] = []
    current: list[str] = []
    depth = 0
    for char in value:
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        if depth == 0 and (char == "," or char.isspace()):
            if current:
                items.append("".join(current).strip())
                current = []
            continue
        current.append(char)
    if current:
        items.append("".join(current).strip())
    return items


def _policy_without_default(restrictions: str) -> bool:
    items = split_restrictions(restrictions)
    for position, item in enumerate(items):
        if item == "check_policy_service":
            following = items[position + 1] if position + 1 < len(items) else ""
            if "default_action" not in following:
                return True
    return False


def _permitted_before_our_check(restrictions: str) -> bool:
    entries = _entries(restrictions)
    for position, entry in enumerate(entries):
        if entry.startswith("check_recipient_access") and RECIPIENT_MAP in entry:
            return any(earlier.lower().startswith("permit") for earlier in entries[:position])
    return False


def _is_table(item: str) -> bool:
    return ":" in item or item.startswith("/")


def is_listed(domain: str, items: Sequence[str], *, parents_match: bool) -> bool | None:
    """True/False if a literal entry decides; None if only lookup tables could say."""
    for item in items:
        name = item.lower().rstrip(".")
        if name == domain or (name.startswith(".") and domain.endswith(name)):
            return True
        if parents_match and domain.endswith("." + name):
            return True
    return None if any(_is_table(item) for item in items) else False


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem with the live configuration, and how to fix it."""

    severity: str  # "error": mail or ETRN fails; "warning": works, but risky
    problem: str
    fix: str


@dataclass(frozen=True, slots=True)
class PostfixFacts:
    """What the adapter read from the live Postfix."""

    parameters: Mapping[str, str]
    services: Sequence[tuple[str, str]]
    transports: Mapping[str, str | None] = field(default_factory=dict)
    user: str = "root"


def transport_keys(domain: IntermittentDomain) -> list[str]:
    """The transport_maps keys a domain needs: itself, and ``.domain`` for subdomains."""
    name = domain.name.ascii
    return [name, f".{name}"] if domain.include_subdomains else [name]


def _user_may_flush(facts: PostfixFacts) -> bool | None:
    user = facts.user
    if user in ("root", facts.parameters.get("mail_owner", "postfix")):
        return True
    items = split_list(facts.parameters.get("authorized_flush_users", "static:anyone"))
    if "static:anyone" in items or user in items:
        return True
    return None if any(_is_table(item) for item in items) else False


def _domain_findings(domain: IntermittentDomain, facts: PostfixFacts) -> list[Finding]:
    name = domain.name.ascii
    parameters = facts.parameters
    parents = split_list(parameters.get("parent_domain_matches_subdomains", ""))
    findings = []
    relayed = is_listed(
        name,
        split_list(parameters.get("relay_domains", "")),
        parents_match="relay_domains" in parents,
    )
    if relayed is False:
        findings.append(
            Finding(
                "error",
                f"{name} is not in relay_domains: the relay refuses its mail (Relay access denied)",
                f"add {name} to relay_domains",
            )
        )
    flushable = is_listed(
        name,
        split_list(parameters.get("fast_flush_domains", "")),
        parents_match="fast_flush_domains" in parents,
    )
    if flushable is False:
        findings.append(
            Finding(
                "error",
                f"{name} is not in fast_flush_domains: ETRN gets 459 and postqueue -s exits 69",
                "set fast_flush_domains = $relay_domains (the default) or add the domain",
            )
        )
    defer = split_list(parameters.get("defer_transports", ""))
    for key in transport_keys(domain):
        result = facts.transports.get(key)
        what = "subdomains of " + name if key.startswith(".") else name
        if result is None:
            findings.append(
                Finding(
                    "error",
                    f"{what} has no transport_maps entry ({key}): its mail is not held",
                    f"add '{key} {ETRN_TRANSPORT}:' to the transport map and run postmap",
                )
            )
            continue
        transport = result.split(":", 1)[0]
        if transport not in defer:
            findings.append(
                Finding(
                    "error",
                    f"{what} goes to transport {transport!r}, which is not in defer_transports: "
                    "mail is delivered at once instead of held",
                    f"add {transport} to defer_transports (or route {key} to {ETRN_TRANSPORT})",
                )
            )
    if domain.include_subdomains and "relay_domains" not in parents:
        findings.append(
            Finding(
                "error",
                f"subdomains of {name} are refused: relay_domains is not in "
                "parent_domain_matches_subdomains",
                f"add .{name} to relay_domains",
            )
        )
    lifetime = parse_duration(
        parameters.get("maximal_queue_lifetime", DEFAULT_LIFETIME), QUEUE_LIFETIME_UNIT
    )
    outage = domain.expected_outage_seconds
    if outage is not None and lifetime < outage:
        findings.append(
            Finding(
                "error",
                f"maximal_queue_lifetime ({format_duration(lifetime)}) is shorter than {name}'s "
                f"expected outage ({format_duration(outage)}): held mail bounces first",
                f"maximal_queue_lifetime = {format_duration(outage + LIFETIME_MARGIN)}",
            )
        )
    return findings


def check_postfix(facts: PostfixFacts, domains: Sequence[IntermittentDomain]) -> list[Finding]:
    """Every known trap in the live configuration, errors first."""
    parameters = facts.parameters
    findings = []
    if domains and not split_list(parameters.get("relay_domains", "")):
        findings.append(
            Finding(
                "error",
                "relay_domains is empty: mail for the intermittent domains is refused "
                "and every ETRN gets 459",
                "list the domains in relay_domains",
            )
        )
    if ("flush", "unix") not in facts.services:
        findings.append(
            Finding(
                "error",
                "master.cf has no flush service: ETRN gets 458 and postqueue -s fails",
                "restore 'flush unix n - n 1000? 0 flush' in master.cf",
            )
        )
    for domain in domains:
        findings.extend(_domain_findings(domain, facts))
    may_flush = _user_may_flush(facts)
    if may_flush is False:
        findings.append(
            Finding(
                "error",
                f"authorized_flush_users does not include {facts.user}: "
                "'etrnctl flush' and postqueue -s/-i fail for this user",
                f"add {facts.user} to authorized_flush_users, or run etrnctl as root",
            )
        )
    classes = split_list(parameters.get("smtpd_restriction_classes", ""))
    global_default = parameters.get("smtpd_policy_service_default_action", "")
    for name in [*RESTRICTION_LISTS, *classes]:
        if global_default.upper() != "DUNNO" and _policy_without_default(parameters.get(name, "")):
            findings.append(
                Finding(
                    "error",
                    f"{name} uses check_policy_service without default_action: while the "
                    "policy daemon is down Postfix answers 451 4.3.5 (for ETRN too)",
                    "write check_policy_service { unix:private/etrn-policy, default_action=DUNNO }",
                )
            )
    if _permitted_before_our_check(parameters.get("smtpd_recipient_restrictions", "")):
        findings.append(
            Finding(
                "warning",
                f"smtpd_recipient_restrictions permits before check_recipient_access "
                f"...{RECIPIENT_MAP}: mail it permits is neither quota-checked nor recorded",
                "move the check before the first permit (etrnctl postfix-config prints it there)",
            )
        )
    if domains and not split_list(parameters.get("smtpd_etrn_restrictions", "")):
        findings.append(
            Finding(
                "warning",
                "smtpd_etrn_restrictions is empty: any client may make the relay flush",
                "smtpd_etrn_restrictions = permit_mynetworks, reject",
            )
        )
    return sorted(findings, key=lambda finding: finding.severity != "error")


# --- the lines to add ---------------------------------------------------------------------


def _merged(current: str | None, additions: Sequence[str]) -> str:
    items = split_restrictions(current or "")
    lowered = {item.lower() for item in items}
    return ", ".join(items + [item for item in additions if item.lower() not in lowered])


def recommended_lifetime(domains: Sequence[IntermittentDomain], current: str | None) -> str:
    """The larger of the current lifetime and the longest expected outage plus a margin."""
    lifetime = parse_duration(current or DEFAULT_LIFETIME, QUEUE_LIFETIME_UNIT)
    outages = [d.expected_outage_seconds for d in domains if d.expected_outage_seconds]
    if outages and max(outages) + LIFETIME_MARGIN > lifetime:
        return format_duration(max(outages) + LIFETIME_MARGIN)
    return current or DEFAULT_LIFETIME


def policy_service_name(listen: str, queue_directory: str) -> str:
    """How main.cf names the socket: ``unix:private/x`` inside the spool, else ``unix:/path``."""
    prefix = queue_directory.rstrip("/") + "/"
    return f"unix:{listen[len(prefix) :]}" if listen.startswith(prefix) else f"unix:{listen}"


_TAKES_ARGUMENT: Final = re.compile(
    r"check_\w+|reject_rbl_client|reject_rhsbl_\w+|permit_dnswl_client|permit_rhswl_client"
)


def _entries(restrictions: str | None) -> list[str]:
    """A restriction list as entries, each restriction with its argument (``check_x_access
    TABLE``), so that the list can be edited entry by entry and written back as it was."""
    entries: list[str] = []
    takes_argument = False
    for item in split_restrictions(restrictions or ""):
        if takes_argument:
            entries[-1] += " " + item
            takes_argument = False
            continue
        entries.append(item)
        takes_argument = bool(_TAKES_ARGUMENT.fullmatch(item.lower()))
    return entries


def _without_ours(restrictions: str | None, marker: str) -> list[str]:
    """The entries of a restriction list but the etrn-ext one (the one naming ``marker``)."""
    return [entry for entry in _entries(restrictions) if marker not in entry]


def _before_first_permit(entries: list[str], entry: str) -> str:
    """``entry`` put where Postfix reaches it for every recipient: before the first
    ``permit*`` restriction (which would end the evaluation), else at the end."""
    at = next((i for i, item in enumerate(entries) if item.lower().startswith("permit")), None)
    at = len(entries) if at is None else at
    return ", ".join([*entries[:at], entry, *entries[at:]])


def policyd_main_cf(
    current: Mapping[str, str], config_directory: str, policy_service: str
) -> dict[str, str]:
    """The main.cf parameters that put etrn-policyd in front of RCPT, END-OF-MESSAGE and ETRN.

    Our entries replace earlier etrn-ext ones; every other restriction is kept as it is.
    """
    service = f"check_policy_service {{ {policy_service}, default_action=DUNNO }}"
    recipient_map = f"hash:{config_directory}/{RECIPIENT_MAP}"
    recipients = _without_ours(current.get("smtpd_recipient_restrictions"), RECIPIENT_MAP)
    end_of_data = _without_ours(current.get("smtpd_end_of_data_restrictions"), policy_service)
    etrn = _without_ours(current.get("smtpd_etrn_restrictions"), policy_service)
    return {
        "smtpd_restriction_classes": _merged(
            current.get("smtpd_restriction_classes"), [POLICY_CLASS]
        ),
        POLICY_CLASS: service,
        "smtpd_recipient_restrictions": _before_first_permit(
            recipients, f"check_recipient_access {recipient_map}"
        ),
        "smtpd_end_of_data_restrictions": ", ".join([*end_of_data, service]),
        "smtpd_etrn_restrictions": ", ".join([service, *(etrn or ["permit_mynetworks", "reject"])]),
    }


def milter_service_name(listen: str, queue_directory: str) -> str:
    """The milter socket as main.cf names it (from ``unix:/path`` or ``inet:PORT@HOST``)."""
    kind, _, rest = listen.partition(":")
    if kind in ("unix", "local"):
        return policy_service_name(rest, queue_directory)
    port, _, host = rest.partition("@")
    return f"{kind}:{host or '127.0.0.1'}:{port}"


def milter_main_cf(current: Mapping[str, str], milter_service: str) -> dict[str, str]:
    """main.cf parameters that put etrn-milter in front of smtpd, failing open."""
    service = f"{{ {milter_service}, default_action=accept }}"
    kept = [
        item
        for item in split_restrictions(current.get("smtpd_milters", ""))
        if milter_service not in item
    ]
    lines = {"smtpd_milters": ", ".join([*kept, service])}
    if not kept:  # other milters keep the failure policy their admin chose for them
        lines["milter_default_action"] = "accept"
    return lines


def recipient_map_lines(domains: Sequence[IntermittentDomain]) -> list[str]:
    """The etrn-recipients map: each domain (and so its subdomains) to the policy class."""
    return [f"{domain.name.ascii}\t{POLICY_CLASS}" for domain in domains]


def _policy_lines(
    domains: Sequence[IntermittentDomain],
    current: Mapping[str, str],
    config_directory: str,
    policy_service: str,
) -> list[str]:
    parameters = policyd_main_cf(current, config_directory, policy_service)
    recipient_map = f"hash:{config_directory}/{RECIPIENT_MAP}"
    explained = [
        (
            "# Only recipients in the intermittent domains consult the daemon at RCPT ...",
            ("smtpd_restriction_classes", POLICY_CLASS, "smtpd_recipient_restrictions"),
        ),
        (
            "# ... every message is recorded (or not) at END-OF-MESSAGE, and ETRN is decided per\n"
            "# domain and client. default_action=DUNNO: a dead daemon never blocks mail or ETRN.",
            ("smtpd_end_of_data_restrictions", "smtpd_etrn_restrictions"),
        ),
    ]
    lines = [
        "# --- main.cf: etrn-policyd (quota at RCPT, recording at END-OF-MESSAGE, ETRN hook) ---"
    ]
    for comment, names in explained:
        lines += [comment, *(f"{name} = {parameters[name]}" for name in names)]
    return [
        *lines,
        "",
        f"# --- {config_directory}/{RECIPIENT_MAP} (then: postmap {recipient_map}) ---",
        *recipient_map_lines(domains),
    ]


def render_postfix_config(
    domains: Sequence[IntermittentDomain],
    current: Mapping[str, str] | None = None,
    config_directory: str = "/etc/postfix",
    policy_service: str | None = "unix:private/etrn-policy",
    milter_service: str | None = None,
) -> str:
    """The main.cf, master.cf and map lines for these domains, merged with ``current``.

    With ``policy_service`` the etrn-policyd lines are included (and decide ETRN);
    without it, ETRN is left to ``permit_mynetworks, reject``. With ``milter_service``
    the etrn-milter lines are included too.
    """
    current = current or {}
    names = [domain.name.ascii for domain in domains]
    transport_map = current.get("transport_maps") or f"hash:{config_directory}/transport"
    lifetime = recommended_lifetime(domains, current.get("maximal_queue_lifetime"))
    lines = [
        "# --- main.cf (postconf -e 'name = value', then postfix reload) ---",
        "# The intermittent domains are relay domains (backup MX) ...",
        f"relay_domains = {_merged(current.get('relay_domains'), names)}",
        "# ... whose deferred mail gets a per-domain flush log (ETRN, postqueue -s) ...",
        f"fast_flush_domains = {current.get('fast_flush_domains') or '$relay_domains'}",
        "# ... and is routed to a transport that only a flush delivers.",
        f"transport_maps = {transport_map}",
        f"defer_transports = {_merged(current.get('defer_transports'), [ETRN_TRANSPORT])}",
        "# Held mail is retried (as 'deferred transport') on every queue run and bounces",
        "# after maximal_queue_lifetime (default 5d): keep it above the longest outage.",
        f"maximal_queue_lifetime = {lifetime}",
        "# Short queue ids are reused; long ones keep the index unambiguous.",
        "enable_long_queue_ids = yes",
    ]
    if policy_service is None:
        etrn_restrictions = current.get("smtpd_etrn_restrictions") or "permit_mynetworks, reject"
        lines += [
            "# Who may send ETRN: only clients in mynetworks (the ETRN_README default).",
            f"smtpd_etrn_restrictions = {etrn_restrictions}",
        ]
    lines += [
        "",
        "# --- master.cf: a copy of the smtp client that defer_transports holds back ---",
        f"{ETRN_TRANSPORT} unix  -       -       y       -       -       smtp",
        "# (the stock 'flush unix n - n 1000? 0 flush' line must stay)",
        "",
        f"# --- {transport_map.split(':', 1)[-1]} (then: postmap {transport_map}) ---",
        "# An empty next hop delivers to the site's own MX (preferred over this relay);",
        f"# or name it: {ETRN_TRANSPORT}:[mx.site.example]:25",
    ]
    for domain in domains:
        lines += [f"{key}\t{ETRN_TRANSPORT}:" for key in transport_keys(domain)]
    if policy_service is not None:
        lines += ["", *_policy_lines(domains, current, config_directory, policy_service)]
    if milter_service is not None:
        milter = milter_main_cf(current, milter_service)
        lines += [
            "",
            "# --- main.cf: etrn-milter (tags held mail with a trace header and records it) ---",
            "# default_action=accept: a dead milter never costs mail. Postfix 3.11 changed the",
            "# global milter_default_action to 'shutdown'; with no other milter, say 'accept'",
            "# there as well (other milters keep the policy chosen for them).",
            *(f"{name} = {value}" for name, value in milter.items()),
            "# The default milter_rcpt_macros carry {rcpt_mailer} and milter_end_of_data_macros",
            "# carry {i} (the queue id): nothing more is needed.",
        ]
    return "\n".join(lines) + "\n"
