"""The site side's decisions: what to ask for, whom to ask, what the answer means, when to retry.

``etrnctl trigger`` runs on the intermittent site and asks its relays (RFC 1985) to send
the held mail. Everything here is values in, value out: the service brings the DNS
answers, the SMTP replies, the clock and the random numbers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Final

from etrn_ext.core.errors import InvalidDomainError, InvalidInputError
from etrn_ext.core.names import DomainName, parse_domain
from etrn_ext.core.policy import IPAddress, parse_address

DEFAULT_SMTP_PORT: Final = 25


class EtrnReply(IntEnum):
    """The replies RFC 1985 defines for ETRN, plus the plain SMTP refusals relays send."""

    STARTED = 250  # OK, queuing for node <x> started
    NO_MESSAGES = 251  # OK, no messages waiting for node <x>
    PENDING_STARTED = 252  # OK, pending messages for node <x> started
    PENDING_COUNT = 253  # OK, <n> pending messages for node <x> started
    UNABLE = 458  # Unable to queue messages for node <x>
    NOT_ALLOWED = 459  # Node <x> not allowed: <reason>
    SYNTAX_ERROR = 500  # Syntax Error
    PARAMETER_ERROR = 501  # Syntax Error in Parameters
    NOT_IMPLEMENTED = 502  # RFC 5321: command not implemented


class Status(StrEnum):
    """How one (target, relay) pair ended; the words the output and the history use."""

    FLUSHED = "flushed"
    NOTHING_WAITING = "nothing-waiting"
    TEMPORARY = "temporary"
    REFUSED = "refused"
    UNREACHABLE = "unreachable"
    NO_RELAY = "no-relay"


SUCCESS: Final = frozenset({Status.FLUSHED, Status.NOTHING_WAITING})
RETRYABLE: Final = frozenset({Status.TEMPORARY, Status.UNREACHABLE})
NOT_REACHED: Final = frozenset({Status.UNREACHABLE, Status.NO_RELAY})


class Summary(StrEnum):
    """The whole run in one word; ``etrnctl`` turns it into its exit status."""

    FLUSHED = "flushed"
    PARTIAL = "partial"
    REFUSED = "refused"
    UNREACHABLE = "unreachable"


class TlsPolicy(StrEnum):
    """STARTTLS: insist on it, use it when the relay offers it, or never."""

    REQUIRED = "required"
    OPPORTUNISTIC = "opportunistic"
    OFF = "off"


# --- what to ask for ------------------------------------------------------------------------

_QUEUE_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")


@dataclass(frozen=True, slots=True, order=True)
class EtrnTarget:
    """One ETRN argument: ``domain``, ``@domain`` (with its subdomains) or ``#queue``."""

    argument: str

    @property
    def domain(self) -> DomainName | None:
        """The domain whose MX records name the relays; none for a ``#queue``."""
        if self.argument.startswith("#"):
            return None
        return DomainName(self.argument.removeprefix("@"))

    def __str__(self) -> str:
        return self.argument


def parse_target(text: str) -> EtrnTarget:
    """Validate what goes after ``ETRN``: nothing that could end or extend the command line."""
    if text.startswith("#"):
        if not _QUEUE_NAME.match(text[1:]):
            raise InvalidInputError(
                "queue name", text, "expected #NAME with letters, digits, '.', '_' and '-'"
            )
        return EtrnTarget(text)
    if text.startswith("@"):
        return EtrnTarget("@" + parse_domain(text[1:]).ascii)
    return EtrnTarget(parse_domain(text).ascii)


def parse_targets(text: str) -> tuple[EtrnTarget, ...]:
    """Targets separated by commas or white space, in order, without repeats."""
    parsed = [parse_target(word) for word in re.split(r"[\s,]+", text.strip()) if word]
    return tuple(dict.fromkeys(parsed))


# --- whom to ask ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, order=True)
class Relay:
    """A relay to connect to: a host name or an address literal, and a port."""

    host: str
    port: int = DEFAULT_SMTP_PORT

    @property
    def address(self) -> IPAddress | None:
        """The address when ``host`` is a literal (nothing to resolve)."""
        return parse_address(self.host)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_relay(text: str, default_port: int = DEFAULT_SMTP_PORT) -> Relay:
    """``HOST``, ``HOST:PORT``, ``ADDRESS``, ``[IPV6]`` or ``[IPV6]:PORT``."""
    host, port_text = text, ""
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise InvalidInputError("relay", text, "expected [ADDRESS] or [ADDRESS]:PORT")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    if (port_text or text.endswith(":")) and not (
        port_text.isdigit() and 0 < int(port_text) < 65536
    ):
        raise InvalidInputError("relay", text, "port must be a number from 1 to 65535")
    port = int(port_text) if port_text else default_port
    address = parse_address(host)
    if address is not None:
        return Relay(str(address), port)
    try:
        return Relay(parse_domain(host).ascii, port)
    except InvalidDomainError as exc:
        raise InvalidInputError("relay", text, exc.reason) from exc


def parse_relays(text: str, default_port: int = DEFAULT_SMTP_PORT) -> tuple[Relay, ...]:
    """Relays separated by commas or white space, in order, without repeats."""
    parsed = [parse_relay(word, default_port) for word in re.split(r"[\s,]+", text.strip()) if word]
    return tuple(dict.fromkeys(parsed))


def normalise_host(name: str) -> str:
    """A host name as DNS and ``gethostname`` may spell it, compared case- and dot-blind."""
    return name.lower().rstrip(".")


@dataclass(frozen=True, slots=True)
class LocalIdentity:
    """What makes an MX host "this machine": one of its names, or one of its addresses."""

    names: frozenset[str] = frozenset()
    addresses: frozenset[IPAddress] = frozenset()


def is_this_host(name: str, addresses: Iterable[IPAddress], identity: LocalIdentity) -> bool:
    known = {normalise_host(known) for known in identity.names}
    return normalise_host(name) in known or not identity.addresses.isdisjoint(addresses)


@dataclass(frozen=True, slots=True)
class RelayChoice:
    """The MX hosts to ask, best preference first, and those skipped as this machine."""

    relays: tuple[str, ...]
    this_host: tuple[str, ...]


def choose_relays(
    mx_hosts: Sequence[tuple[int, str]],
    addresses: Mapping[str, Iterable[IPAddress]],
    identity: LocalIdentity,
) -> RelayChoice:
    """Every MX host but this machine, by preference, then name (each may hold mail).

    Unlike an SMTP client delivering mail (RFC 5321 5.1), the site asks every relay,
    whatever its preference relative to the site's own MX: any of them may hold mail.
    """
    relays: list[str] = []
    skipped: list[str] = []
    for _preference, host in sorted((p, normalise_host(h)) for p, h in mx_hosts):
        if not host or host in relays or host in skipped:
            continue
        own = is_this_host(host, addresses.get(host, ()), identity)
        (skipped if own else relays).append(host)
    return RelayChoice(tuple(relays), tuple(skipped))


def no_relay_reason(
    domain: str, lookup_problem: str, temporary: bool, mx_found: bool, choice: RelayChoice
) -> tuple[Status, str] | None:
    """Why MX discovery left nobody to ask (DNS trouble passes, the rest does not), or None."""
    if lookup_problem:
        status = Status.UNREACHABLE if temporary else Status.NO_RELAY
        return status, f"MX lookup of {domain}: {lookup_problem}"
    if not mx_found:
        return Status.NO_RELAY, f"{domain} has no MX records; name the relay with --relay"
    if not choice.relays:
        return (
            Status.NO_RELAY,
            f"every MX host of {domain} is this host ({', '.join(choice.this_host)})",
        )
    return None


def connection_order(addresses: Iterable[IPAddress]) -> tuple[IPAddress, ...]:
    """IPv6 first, then IPv4 (RFC 6724's default preference), each in a stable order."""
    return tuple(sorted(set(addresses), key=lambda a: (a.version != 6, a.packed)))


# --- what the answer means ------------------------------------------------------------------

_SUCCESS_CODES: Final = {
    EtrnReply.STARTED: Status.FLUSHED,
    EtrnReply.NO_MESSAGES: Status.NOTHING_WAITING,
    EtrnReply.PENDING_STARTED: Status.FLUSHED,
    EtrnReply.PENDING_COUNT: Status.FLUSHED,
}


def status_for_reply(code: int) -> Status:
    """RFC 1985: 250/252/253 started, 251 nothing waiting, 4xx later (459 no), 5xx no."""
    if code in _SUCCESS_CODES:
        return _SUCCESS_CODES[EtrnReply(code)]
    if code == EtrnReply.NOT_ALLOWED:
        return Status.REFUSED
    if 400 <= code < 500:
        return Status.TEMPORARY
    if 200 <= code < 300:
        return Status.FLUSHED  # a success code RFC 1985 does not name is still a success
    return Status.REFUSED  # 5xx, and anything else a human has to look at


class Stage(StrEnum):
    """Where an SMTP session stopped before (or while) asking ETRN."""

    CONNECT = "connect"
    GREETING = "greeting"
    EHLO = "ehlo"
    STARTTLS = "starttls"
    AUTH = "auth"
    ETRN = "etrn"


@dataclass(frozen=True, slots=True)
class SessionFailure:
    """Why a session ended early: the stage, the reply code if there was one, and the text.

    ``final`` marks failures that retrying cannot fix without a human (a certificate
    that does not verify, a policy this side refuses to bend, a missing extension).
    """

    stage: Stage
    text: str
    code: int | None = None
    final: bool = False


def status_for_failure(failure: SessionFailure) -> Status:
    if failure.stage is Stage.CONNECT and failure.code is None:
        return Status.UNREACHABLE
    if failure.final:
        return Status.REFUSED
    if failure.code is None or 400 <= failure.code < 500:
        return Status.TEMPORARY  # timeouts, dropped connections, 4xx
    return Status.REFUSED


def tls_failure(policy: TlsPolicy, offered: bool) -> SessionFailure | None:
    """Whether the session may go on without STARTTLS; ``None`` when it may (or TLS starts)."""
    if policy is TlsPolicy.REQUIRED and not offered:
        return SessionFailure(
            Stage.STARTTLS, "STARTTLS required but not offered by the relay", final=True
        )
    return None


def wants_starttls(policy: TlsPolicy, offered: bool) -> bool:
    return offered and policy is not TlsPolicy.OFF


def plain_after_refused_starttls(policy: TlsPolicy) -> bool:
    """Whether a relay that answers STARTTLS with an error may be used without TLS.

    RFC 3207 lets the client go on in plain text; only ``opportunistic`` does. A
    handshake that fails (a bad certificate) is never downgraded.
    """
    return policy is TlsPolicy.OPPORTUNISTIC


def auth_failure(encrypted: bool, advertised: bool) -> SessionFailure | None:
    """Credentials are only ever sent inside TLS, and only to a relay that offers AUTH."""
    if not encrypted:
        return SessionFailure(
            Stage.AUTH,
            "credentials configured but the session is not encrypted; not sending them",
            final=True,
        )
    if not advertised:
        return SessionFailure(
            Stage.AUTH, "credentials configured but the relay does not offer AUTH", final=True
        )
    return None


def etrn_failure(advertised: bool) -> SessionFailure | None:
    if advertised:
        return None
    return SessionFailure(Stage.ETRN, "the relay does not advertise ETRN", final=True)


def summarize(statuses: Iterable[Status]) -> Summary:
    """Refused wins (a human must act); then nothing reached; then partial; else flushed."""
    seen = set(statuses)
    if Status.REFUSED in seen:
        return Summary.REFUSED
    if seen and seen <= NOT_REACHED:
        return Summary.UNREACHABLE
    if seen - SUCCESS:
        return Summary.PARTIAL
    return Summary.FLUSHED


# --- when to retry --------------------------------------------------------------------------


def backoff_seconds(attempt: int, random_value: float, *, initial: float, maximum: float) -> float:
    """Exponential backoff with "equal jitter": half the step fixed, half random.

    ``attempt`` counts from 1 (the wait after the first try); ``random_value`` is in
    [0, 1). The fixed half keeps retries from bunching up right after a link comes
    up; the random half spreads sites that came up together.
    """
    step = min(maximum, initial * 2.0 ** max(0, attempt - 1))
    return step / 2 + step / 2 * random_value


def next_retry_seconds(
    attempt: int, random_value: float, remaining: float, *, initial: float, maximum: float
) -> float | None:
    """The wait before the next try, or ``None`` when it would not start before the deadline."""
    delay = backoff_seconds(attempt, random_value, initial=initial, maximum=maximum)
    return delay if delay < remaining else None


# --- credentials ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Credentials:
    """A SASL login; the password never appears in a repr, a log line or an error."""

    username: str
    password: str = field(repr=False)


def parse_credentials(text: str) -> dict[str, Credentials]:
    """``RELAY USER:PASSWORD`` lines (Postfix's sasl_passwd format); ``*`` for any relay.

    RELAY is a host or ``HOST:PORT`` as given to ``--relay`` or found in MX records.
    Blank lines and ``#`` comments are skipped. Errors name the line, never its secret.
    """
    found: dict[str, Credentials] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, *secret = stripped.split(maxsplit=1)
        username, colon, password = "".join(secret).partition(":")
        if not colon or not username or not password:
            raise InvalidInputError("credentials line", str(number), "expected RELAY USER:PASSWORD")
        if not (username + password).isascii():
            # smtplib's AUTH sends ASCII only; its error would quote the secret
            raise InvalidInputError(
                "credentials line", str(number), "user name and password must be ASCII"
            )
        try:
            relay = _credentials_key(key)
        except InvalidInputError as exc:
            raise InvalidInputError("credentials line", str(number), str(exc)) from exc
        found[relay] = Credentials(username, password)
    return found


def _credentials_key(text: str) -> str:
    if text == "*":
        return text
    relay = parse_relay(text, default_port=0)
    return relay.host if relay.port == 0 else str(relay)


def credentials_for(relay: Relay, table: Mapping[str, Credentials]) -> Credentials | None:
    """The entry for ``HOST:PORT``, else the one for the host (any port), else ``*``."""
    for key in (str(relay), relay.host, "*"):
        if key in table:
            return table[key]
    return None


# --- what the site remembers ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TriggerOutcome:
    """How one (target, relay) pair ended: one output line, one row of the history.

    ``relay`` is ``HOST:PORT``, or empty when no relay was found; ``reply`` is the
    relay's last reply, or what went wrong before there was one.
    """

    target: str
    relay: str
    status: Status
    reply: str
    at: float
    address: str = ""
    code: int | None = None
    pending_messages: int | None = None
    attempts: int = 1
    encrypted: bool = False


@dataclass(frozen=True, slots=True)
class TriggerHistory:
    """A pair's last outcome, and when the relay last answered and last flushed."""

    last: TriggerOutcome
    last_reached_at: float | None
    last_flushed_at: float | None


def relay_field(relay: str, address: str) -> str:
    """Postfix's ``relay=`` notation: ``host[address]:port``, or ``none``."""
    if not relay:
        return "none"
    if not address:
        return relay
    parsed = parse_relay(relay)
    return f"{parsed.host}[{address}]:{parsed.port}"


def outcome_line(outcome: TriggerOutcome) -> str:
    """One line in the MTA admins' style, for the terminal and for syslog alike."""
    fields = [f"relay={relay_field(outcome.relay, outcome.address)}"]
    if outcome.relay:
        fields.append(f"tls={'yes' if outcome.encrypted else 'no'}")
    if outcome.pending_messages is not None:
        fields.append(f"pending={outcome.pending_messages}")
    fields += [f"attempts={outcome.attempts}", f"status={outcome.status.value} ({outcome.reply})"]
    return f"{outcome.target}: {', '.join(fields)}"
