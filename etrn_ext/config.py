"""Settings: one TOML file, validated completely at start-up.

Every setting is a field of a frozen section dataclass below, with its default and a
one-line description in the field metadata; that table feeds ``etrnctl config show``
and is checked against ``etrn-ext.conf(5)`` by the test suite. An unknown key or a bad
value is an error that names the key, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import platform
import re
import string
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from etrn_ext.core.errors import ConfigError, InvalidDomainError, InvalidInputError
from etrn_ext.core.names import parse_domain, parse_mailbox
from etrn_ext.core.trigger import TlsPolicy, parse_relay, parse_relays, parse_targets

DEFAULT_CONFIG_PATH: Final = "/etc/etrn-ext/etrn-ext.toml"
CONFIG_ENV: Final = "ETRN_EXT_CONFIG"

Check = Callable[[Any], str | None]


def setting(default: Any, doc: str, check: Check | None = None) -> Any:
    """Declare one setting: its default, what it is for, and an optional extra check."""
    return field(default=default, metadata={"doc": doc, "check": check})


def _positive(value: float) -> str | None:
    return None if math.isfinite(value) and value > 0 else "must be a finite number greater than 0"


def _absolute_path(value: str) -> str | None:
    return None if value.startswith("/") else "must be an absolute path"


def _absolute_path_or_empty(value: str) -> str | None:
    return _absolute_path(value) if value else None


def _one_of(*choices: str) -> Check:
    def check(value: str) -> str | None:
        return None if value in choices else f"must be one of: {', '.join(choices)}"

    return check


def _database_url(value: str) -> str | None:
    if re.match(r"[a-z][a-z0-9+]*://", value):
        return None
    return "must be an SQLAlchemy URL such as sqlite:////var/lib/etrn-ext/index.sqlite"


def _node_name(value: str) -> str | None:
    if not value:
        return None
    try:
        parse_domain(value)
    except InvalidDomainError as exc:
        return exc.reason
    return None


@dataclass(frozen=True, slots=True)
class IndexSettings:
    """[index]: where the SQL view of held mail lives and how writes are batched."""

    url: str = setting(
        "sqlite:////var/lib/etrn-ext/index.sqlite",
        "SQLAlchemy URL of the index (SQLite file, or PostgreSQL shared by several relays)",
        _database_url,
    )
    busy_timeout_seconds: float = setting(
        5.0, "how long to wait for a locked SQLite database before giving up", _positive
    )
    batch_max_rows: int = setting(
        5000, "largest number of writes the batched writer commits in one transaction", _positive
    )
    batch_max_delay_seconds: float = setting(
        0.05,
        "longest a write waits in the batched writer for others to share its commit",
        _positive,
    )
    writer_queue_limit: int = setting(
        100000,
        "writes that may wait for the database; beyond it they are dropped (run sync)",
        _positive,
    )


@dataclass(frozen=True, slots=True)
class MtaSettings:
    """[mta]: which MTA this relay runs and where its commands and configuration are."""

    kind: str = setting(
        "postfix", "the MTA on this relay: postfix or sendmail", _one_of("postfix", "sendmail")
    )
    node_name: str = setting(
        "", "name of this relay in the index (empty: the host name); unique per relay", _node_name
    )
    config_directory: str = setting(
        "/etc/postfix",
        "Postfix configuration directory, passed to its commands with -c",
        _absolute_path,
    )
    postqueue: str = setting("/usr/sbin/postqueue", "path of postqueue(1)", _absolute_path)
    postsuper: str = setting("/usr/sbin/postsuper", "path of postsuper(1)", _absolute_path)
    postconf: str = setting("/usr/sbin/postconf", "path of postconf(1)", _absolute_path)
    postmap: str = setting("/usr/sbin/postmap", "path of postmap(1)", _absolute_path)
    sendmail: str = setting("/usr/sbin/sendmail", "path of the sendmail program", _absolute_path)
    sendmail_cf: str = setting(
        "/etc/mail/sendmail.cf",
        "Sendmail's configuration (queue directories, options)",
        _absolute_path,
    )
    sendmail_flush: str = setting(
        "exact",
        "how Sendmail flushes a domain: exact queue ids (-qI), or substring (-qR@domain)",
        _one_of("exact", "substring"),
    )
    command_timeout_seconds: float = setting(
        60.0, "longest an MTA command may run before it is killed", _positive
    )
    mail_log: str = setting(
        "",
        "MTA log file read by sync to tell delivered from bounced mail (empty: not read)",
        _absolute_path_or_empty,
    )


def _policy_action(value: str) -> str | None:
    """A Postfix access action on one line: a word (DUNNO, OK, REJECT...) or a 4xx/5xx reply."""
    if not value or "\n" in value or "\r" in value:
        return "must be one non-empty line"
    word = value.split(maxsplit=1)[0]
    if re.fullmatch(r"[45][0-9][0-9]", word) or re.fullmatch(r"[A-Z_]+", word):
        return None
    return "must be an access action such as DUNNO, OK, or a 4xx/5xx reply"


def _smtp_reply(value: str) -> str | None:
    if _policy_action(value) is None and re.match(r"[45][0-9][0-9] ", value):
        return None
    return "must be a 4xx or 5xx reply with text, e.g. '452 4.2.2 quota exceeded'"


# What ``{domain}`` stands for when a reply template is checked at start-up.
_SAMPLE_DOMAIN: Final = "site.example"


def _domain_template(check: Check) -> Check:
    """``check`` for a reply in which ``{domain}`` is replaced, applied once it is filled
    in: a stray placeholder is then a start-up error, not a failure at the first request."""

    def check_template(value: str) -> str | None:
        hint = "only {domain} is replaced; write {{ or }} for a literal brace"
        try:
            names = {name for _text, name, _spec, _conv in string.Formatter().parse(value)}
            unknown = sorted(str(name) for name in names - {None, "domain"})
            if unknown:
                return f"unknown placeholder {{{unknown[0]}}}: {hint}"
            filled = value.format(domain=_SAMPLE_DOMAIN)
        except (ValueError, KeyError) as exc:
            return f"{exc}: {hint}"
        return check(filled)

    return check_template


def _listen_address(value: str) -> str | None:
    if not value:
        return None
    host, _, port = value.rpartition(":")
    if host and port.isdigit() and 0 < int(port) < 65536:
        return None
    return "must be HOST:PORT (e.g. 127.0.0.1:10040) or empty"


def _octal_mode(value: str) -> str | None:
    return None if re.fullmatch(r"0?[0-7]{3}", value) else "must be an octal mode such as 0660"


@dataclass(frozen=True, slots=True)
class PolicydSettings:
    """[policyd]: the Postfix policy daemon (quota at RCPT, recording at END-OF-MESSAGE, ETRN)."""

    listen: str = setting(
        "/var/spool/postfix/private/etrn-policy",
        "unix socket to listen on (empty: none); in the Postfix spool a chrooted smtpd reaches it",
        _absolute_path_or_empty,
    )
    listen_tcp: str = setting(
        "", "also listen on this loopback HOST:PORT (empty: no)", _listen_address
    )
    socket_mode: str = setting("0666", "permissions of the unix socket", _octal_mode)
    on_error: str = setting(
        "DUNNO", "answer when handling a request fails: never block mail", _policy_action
    )
    quota_action: str = setting(
        "452 4.2.2 held-mail quota for {domain} exceeded",
        "answer to a recipient of a domain over its quota ({domain} is replaced)",
        _domain_template(_smtp_reply),
    )
    registry_refresh_seconds: float = setting(
        30.0, "how often the registry of domains is re-read from the index", _positive
    )
    usage_refresh_seconds: float = setting(
        10.0, "how often held-mail totals for quotas are re-read from the index", _positive
    )
    idle_timeout_seconds: float = setting(
        600.0, "close a policy connection after this long without a request", _positive
    )


def _milter_socket(value: str) -> str | None:
    if re.fullmatch(r"(unix|local):/\S+|inet6?:[0-9]+(@\S+)?", value):
        return None
    return "must be unix:/path or inet:PORT@HOST (libmilter's socket syntax)"


def _header_name(value: str) -> str | None:
    return None if re.fullmatch(r"[A-Za-z0-9-]+", value) else "must be a header field name"


def _names(value: str) -> str | None:
    return (
        None if re.fullmatch(r"[A-Za-z0-9_.,\s-]*", value) else "must be names separated by commas"
    )


@dataclass(frozen=True, slots=True)
class MilterSettings:
    """[milter]: etrn-milter, which tags and records held mail from inside the MTA."""

    listen: str = setting(
        "unix:/var/spool/postfix/private/etrn-milter",
        "libmilter socket: unix:/path or inet:PORT@HOST (loopback)",
        _milter_socket,
    )
    socket_mode: str = setting("0666", "permissions of a unix socket", _octal_mode)
    holding_mailers: str = setting(
        "etrn-only",
        "{rcpt_mailer} values (Postfix transports, Sendmail mailers) that mean 'held'",
        _names,
    )
    add_header: bool = setting(True, "add a trace header to held mail")
    header_name: str = setting("X-ETRN-Held", "name of the trace header", _header_name)
    timeout_seconds: float = setting(10.0, "libmilter's timeout for talking to the MTA", _positive)
    registry_refresh_seconds: float = setting(
        30.0, "how often the registry of domains is re-read from the index", _positive
    )


@dataclass(frozen=True, slots=True)
class SocketmapSettings:
    """[socketmap]: etrn-socketmap, Sendmail's check_etrn hook."""

    listen: str = setting(
        "/run/etrn-socketmap/socketmap.sock",
        "unix socket to listen on (empty: none); sendmail.cf names it in the K line",
        _absolute_path_or_empty,
    )
    listen_tcp: str = setting(
        "", "also listen on this loopback HOST:PORT (empty: no)", _listen_address
    )
    socket_mode: str = setting("0666", "permissions of the unix socket", _octal_mode)
    map_name: str = setting("etrnpolicy", "the socketmap's name in sendmail.cf", _header_name)
    registry_refresh_seconds: float = setting(
        30.0, "how often the registry of domains is re-read from the index", _positive
    )
    idle_timeout_seconds: float = setting(
        600.0, "close a connection that sent no lookup for this long", _positive
    )
    answer_timeout_seconds: float = setting(
        2.5,
        "answer PASS (Sendmail's own ETRN) when a decision takes longer; keep it well "
        "below the K line's -d (5 s), past which Sendmail answers the ETRN 451",
        _positive,
    )


@dataclass(frozen=True, slots=True)
class EtrnSettings:
    """[etrn]: who may ETRN and how often it starts flush work (policyd, socketmap)."""

    unregistered_action: str = setting(
        "DUNNO",
        "answer for a domain that is not registered ({domain} is replaced; "
        "DUNNO: the MTA's own rules decide)",
        _domain_template(_policy_action),
    )
    refuse_action: str = setting(
        "459 4.7.1 not allowed to flush {domain}",
        "answer to a client that may not flush a registered domain ({domain} is replaced)",
        _domain_template(_smtp_reply),
    )
    domain_flush_interval_seconds: float = setting(
        60.0, "an ETRN starts flush work for a domain at most once in this time", _positive
    )
    client_limit: int = setting(
        10, "ETRNs per client and window that may start flush work", _positive
    )
    client_window_seconds: float = setting(60.0, "the window of client_limit", _positive)
    targeted_flush: bool = setting(
        True,
        "after an allowed ETRN, also flush held messages Postfix's flush log does not cover",
    )
    dns_timeout_seconds: float = setting(
        3.0, "DNS lookups for host-name and dns:mx allow rules give up after this", _positive
    )
    dns_cache_seconds: float = setting(300.0, "how long DNS answers are reused", _positive)


def _host_name(value: str) -> str | None:
    if value and re.fullmatch(r"[A-Za-z0-9.:_-]+|\[[0-9A-Fa-f:.]+\]", value):
        return None
    return "must be a host name or address"


def _port(value: int) -> str | None:
    return None if 0 < value < 65536 else "must be a port number (1 to 65535)"


def _mailbox_or_empty(value: str) -> str | None:
    if not value:
        return None
    try:
        parse_mailbox(value)
    except InvalidInputError as exc:
        return exc.reason
    return None


@dataclass(frozen=True, slots=True)
class ReportSettings:
    """[report]: etrnctl report and notify: thresholds, and where their mail goes."""

    expiry_warning_seconds: float = setting(
        86400.0,
        "warn about held mail the MTA will return to its senders within this time",
        _positive,
    )
    waiting_after_seconds: float = setting(
        43200.0,
        "tell a domain's contacts once its oldest mail waited this long "
        "(or the domain's expected outage, when longer)",
        _positive,
    )
    silent_after_seconds: float = setting(
        604800.0,
        "flag a domain with nothing held and no ETRN for this long "
        "(or its expected outage, when longer)",
        _positive,
    )
    submission_host: str = setting(
        "localhost", "SMTP host that takes notices and digests (the local MTA)", _host_name
    )
    submission_port: int = setting(25, "its port", _port)
    submission_timeout_seconds: float = setting(
        30.0, "give up on the submission host after this long", _positive
    )
    from_address: str = setting(
        "", "sender of notices and digests (empty: postmaster@ the node name)", _mailbox_or_empty
    )
    template_directory: str = setting(
        "/etc/etrn-ext/templates",
        "notice templates here (waiting.txt, expiry.txt) replace the built-in ones",
        _absolute_path,
    )


@dataclass(frozen=True, slots=True)
class LogSettings:
    """[log]: how much the programs say, and where syslog files it."""

    level: str = setting(
        "info", "lowest level logged", _one_of("debug", "info", "warning", "error")
    )
    syslog_facility: str = setting(
        "mail",
        "syslog facility of the daemons",
        _one_of(
            "mail",
            "daemon",
            "local0",
            "local1",
            "local2",
            "local3",
            "local4",
            "local5",
            "local6",
            "local7",
            "user",
        ),
    )


def _problem_of(parse: Callable[[str], object]) -> Check:
    def check(value: str) -> str | None:
        try:
            parse(value)
        except InvalidInputError as exc:
            return f"{exc.value!r}: {exc.reason}"
        return None

    return check


def _host_names(text: str) -> None:
    for name in re.split(r"[\s,]+", text.strip()):
        if name:
            parse_domain(name)


@dataclass(frozen=True, slots=True)
class SiteSettings:
    """[site]: etrnctl trigger, run on the intermittent site to make its relays send its mail."""

    domains: str = setting(
        "",
        "what trigger --all asks for: domains, @domain (with subdomains) or #queue, by commas",
        _problem_of(parse_targets),
    )
    relays: str = setting(
        "",
        "relays to ask, HOST[:PORT] separated by commas (empty: each domain's MX hosts)",
        _problem_of(parse_relays),
    )
    smtp_port: int = setting(25, "port of relays named without one and of MX hosts", _port)
    helo_name: str = setting(
        "", "name sent with EHLO (empty: this host's fully qualified name)", _node_name
    )
    self_names: str = setting(
        "",
        "more names of this host, separated by commas: MX hosts so named are not relays",
        _problem_of(_host_names),
    )
    tls: str = setting(
        "opportunistic",
        "STARTTLS: required, opportunistic (when the relay offers it) or off",
        _one_of(*TlsPolicy),
    )
    tls_verify: bool = setting(True, "verify the relay's certificate and name when TLS is used")
    tls_ca_file: str = setting(
        "", "CA certificates to verify relays with (empty: the system's)", _absolute_path_or_empty
    )
    auth_file: str = setting(
        "",
        "SASL credentials, lines 'RELAY USER:PASSWORD', mode 0600 (empty: no AUTH)",
        _absolute_path_or_empty,
    )
    timeout_seconds: float = setting(
        30.0, "connecting and each SMTP reply give up after this", _positive
    )
    deadline_seconds: float = setting(
        300.0, "no new try starts after this; temporary failures are retried until then", _positive
    )
    retry_initial_seconds: float = setting(
        5.0, "the first wait before a retry; each later wait doubles, with jitter", _positive
    )
    retry_max_seconds: float = setting(60.0, "the longest wait between retries", _positive)
    dns_timeout_seconds: float = setting(
        5.0, "a DNS lookup of MX and address records gives up after this", _positive
    )
    local_smtp: str = setting(
        "127.0.0.1:25",
        "the local MTA's HOST:PORT, which --wait-local waits for",
        _problem_of(parse_relay),
    )
    local_wait_seconds: float = setting(
        120.0, "the longest --wait-local waits for the local MTA", _positive
    )


SECTIONS: Final[Mapping[str, type]] = {
    "index": IndexSettings,
    "mta": MtaSettings,
    "policyd": PolicydSettings,
    "milter": MilterSettings,
    "socketmap": SocketmapSettings,
    "etrn": EtrnSettings,
    "report": ReportSettings,
    "log": LogSettings,
    "site": SiteSettings,
}


@dataclass(frozen=True, slots=True)
class Settings:
    """The effective configuration, plus where it came from."""

    index: IndexSettings = field(default_factory=IndexSettings)
    mta: MtaSettings = field(default_factory=MtaSettings)
    policyd: PolicydSettings = field(default_factory=PolicydSettings)
    milter: MilterSettings = field(default_factory=MilterSettings)
    socketmap: SocketmapSettings = field(default_factory=SocketmapSettings)
    etrn: EtrnSettings = field(default_factory=EtrnSettings)
    report: ReportSettings = field(default_factory=ReportSettings)
    log: LogSettings = field(default_factory=LogSettings)
    site: SiteSettings = field(default_factory=SiteSettings)
    source: str | None = None
    explicit: frozenset[str] = frozenset()

    @property
    def node(self) -> str:
        """This relay's name in the index."""
        return self.mta.node_name or platform.node() or "localhost"


@dataclass(frozen=True, slots=True)
class SettingInfo:
    """One row of the settings table, for ``config show`` and the man page check."""

    name: str
    value: Any
    default: Any
    doc: str
    explicit: bool


def _type_error(expected: type, value: Any) -> str | None:
    if expected is bool:
        return None if isinstance(value, bool) else "must be true or false"
    if expected is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else "must be a whole number"
    if expected is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return None if ok else "must be a number"
    return None if isinstance(value, str) else "must be a string"


_TYPES: Final = {"str": str, "int": int, "float": float, "bool": bool}


def _unknown(kind: str, name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"unknown {kind}{hint}"


def _parse_section(name: str, cls: type, values: Any, source: str | None) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(name, "must be a table ([" + name + "])", source)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    parsed: dict[str, Any] = {}
    for key, value in values.items():
        full = f"{name}.{key}"
        if key not in fields:
            known = [f"{name}.{k}" for k in fields]
            raise ConfigError(full, _unknown("key", full, known), source)
        meta = fields[key]
        problem = _type_error(_TYPES[str(meta.type)], value)
        check = meta.metadata["check"]
        if problem is None and check is not None:
            problem = check(value)
        if problem:
            raise ConfigError(full, f"{problem} (got {value!r})", source)
        parsed[key] = float(value) if meta.type == "float" else value
    return cls(**parsed)


def parse_settings(data: Mapping[str, Any], source: str | None = None) -> Settings:
    """Build ``Settings`` from a parsed TOML document; raises ``ConfigError`` naming the key."""
    sections: dict[str, Any] = {}
    explicit: set[str] = set()
    for name, values in data.items():
        if name not in SECTIONS:
            raise ConfigError(name, _unknown("section", name, list(SECTIONS)), source)
        sections[name] = _parse_section(name, SECTIONS[name], values, source)
        explicit.update(f"{name}.{key}" for key in values)
    return Settings(**sections, source=source, explicit=frozenset(explicit))


def config_path(explicit: str | None, environ: Mapping[str, str]) -> tuple[str, bool]:
    """Which file to read, and whether it must exist (only the built-in default may be absent)."""
    if explicit:
        return explicit, True
    if environ.get(CONFIG_ENV):
        return environ[CONFIG_ENV], True
    return DEFAULT_CONFIG_PATH, False


def load_settings(path: str | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the configuration (--config, else $ETRN_EXT_CONFIG, else the default)."""
    chosen, required = config_path(path, os.environ if environ is None else environ)
    try:
        text = Path(chosen).read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise ConfigError("", "no such file", chosen) from None
        return Settings()
    except OSError as exc:
        raise ConfigError("", f"cannot read: {exc.strerror}", chosen) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError("", f"not UTF-8 (byte {exc.start}), as TOML must be", chosen) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"not valid TOML: {exc}", chosen) from exc
    return parse_settings(data, chosen)


def describe(settings: Settings) -> Iterator[SettingInfo]:
    """Every setting with its effective value, in file order."""
    for section_name in SECTIONS:
        section = getattr(settings, section_name)
        for meta in dataclasses.fields(section):
            name = f"{section_name}.{meta.name}"
            value = getattr(section, meta.name)
            if name == "mta.node_name" and not value:
                value = settings.node
            yield SettingInfo(
                name, value, meta.default, meta.metadata["doc"], name in settings.explicit
            )
