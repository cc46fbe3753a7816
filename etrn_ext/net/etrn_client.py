"""The site's ETRN client (smtplib): one SMTP session per relay, one ETRN per target.

The client reports what happened, step by step; ``core.trigger`` decides whether to
start TLS, whether credentials may be sent and what each reply means. The relay is
dialled at an address the caller chose (IPv6 first, then IPv4) while its name stays
what TLS checks the certificate against.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from etrn_ext.core.errors import ConfigError
from etrn_ext.core.policy import IPAddress
from etrn_ext.core.trigger import (
    Credentials,
    Relay,
    SessionFailure,
    Stage,
    TlsPolicy,
    auth_failure,
    etrn_failure,
    plain_after_refused_starttls,
    tls_failure,
    wants_starttls,
)
from etrn_ext.wire.etrn import SmtpAnswer, clean_text, decode_reply

SMTP_READY = 220
EHLO_OK = 250


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """How to talk to every relay of one run."""

    helo_name: str
    timeout: float
    tls: TlsPolicy = TlsPolicy.OPPORTUNISTIC
    tls_context: ssl.SSLContext | None = None
    credentials: Credentials | None = None


@dataclass(frozen=True, slots=True)
class SessionReport:
    """What one session got: the address that answered, TLS, the ETRN answers, the failure.

    Targets without an answer share ``failure``: the session ended before their turn.
    """

    address: str = ""
    encrypted: bool = False
    answers: Mapping[str, SmtpAnswer] = field(default_factory=dict)
    failure: SessionFailure | None = None
    dialled: bool = True  # False: the run's deadline passed before any address was tried


def make_tls_context(*, verify: bool, ca_file: str = "") -> ssl.SSLContext:
    """Verification of chain and name by default; ``ca_file`` replaces the system's CAs."""
    try:
        context = ssl.create_default_context(cafile=ca_file or None)
    except (OSError, ValueError) as exc:
        raise ConfigError("site.tls_ca_file", f"cannot load {ca_file}: {exc}") from exc
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class _DialledSMTP(smtplib.SMTP):
    """smtplib that connects to a chosen address but keeps the relay's name for TLS.

    smtplib checks the certificate against the host given to its constructor, which
    would also connect there; the name is set after, the address used in the dial.
    """

    def __init__(self, address: str, relay_name: str, options: ClientOptions) -> None:
        self._address = address
        super().__init__(local_hostname=options.helo_name, timeout=options.timeout)
        self._host = relay_name

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return socket.create_connection((self._address, port), timeout)


def _failure_from(stage: Stage, exc: OSError) -> SessionFailure:
    if isinstance(exc, smtplib.SMTPResponseException):
        answer = decode_reply(exc.smtp_code, exc.smtp_error)
        return SessionFailure(stage, str(answer), answer.code)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return SessionFailure(
            stage, f"certificate verification failed: {exc.verify_message}", final=True
        )
    if isinstance(exc, ssl.SSLError):  # a dropped handshake is worth another try
        return SessionFailure(stage, f"TLS failed: {exc.reason or exc}")
    if isinstance(exc, smtplib.SMTPException) and not isinstance(
        exc, smtplib.SMTPServerDisconnected
    ):
        return SessionFailure(stage, clean_text(str(exc)), final=True)
    return SessionFailure(stage, clean_text(str(exc) or type(exc).__name__))


SecondsLeft = Callable[[], float]


def _step_timeout(timeout: float, seconds_left: float) -> float:
    """The socket timeout of one step: never past the run's deadline."""
    if seconds_left <= 0:
        raise TimeoutError("the run's deadline passed")
    return min(timeout, seconds_left)


class _Session:
    """One connection's steps; ``stage`` says how far it got when something fails.

    Every step gets its own timeout, cut to what is left of the run's deadline, so a
    relay that answers slowly at each step cannot stretch the run past it.
    """

    def __init__(
        self, client: smtplib.SMTP, options: ClientOptions, seconds_left: SecondsLeft
    ) -> None:
        self.client = client
        self.options = options
        self.seconds_left = seconds_left
        self.stage = Stage.EHLO
        self.encrypted = False
        self.answers: dict[str, SmtpAnswer] = {}

    def _begin(self, stage: Stage) -> None:
        self.stage = stage
        if self.client.sock is not None:
            self.client.sock.settimeout(_step_timeout(self.options.timeout, self.seconds_left()))

    def _ehlo(self) -> SessionFailure | None:
        self._begin(Stage.EHLO)
        code, message = self.client.ehlo(self.options.helo_name)
        if code != EHLO_OK:
            return SessionFailure(Stage.EHLO, str(decode_reply(code, message)), code)
        return None

    def run(self, arguments: Sequence[str]) -> SessionFailure | None:
        failure = self._ehlo()
        if failure:
            return failure
        offered = self.client.has_extn("starttls")
        failure = tls_failure(self.options.tls, offered)
        if failure:
            return failure
        if wants_starttls(self.options.tls, offered):
            failure = self._starttls()
            if failure:
                return failure
        credentials = self.options.credentials
        if credentials is not None:
            self._begin(Stage.AUTH)
            failure = auth_failure(self.encrypted, self.client.has_extn("auth"))
            if failure:
                return failure
            self.client.login(credentials.username, credentials.password)
        self.stage = Stage.ETRN
        failure = etrn_failure(self.client.has_extn("etrn"))
        if failure:
            return failure
        for argument in arguments:
            self._begin(Stage.ETRN)
            self.answers[argument] = decode_reply(*self.client.docmd("ETRN", argument))
        return None

    def _starttls(self) -> SessionFailure | None:
        self._begin(Stage.STARTTLS)
        try:
            self.client.starttls(context=self.options.tls_context)
        except smtplib.SMTPResponseException:
            if plain_after_refused_starttls(self.options.tls):
                return None  # the session is still the plain one, in the same state
            raise
        self.encrypted = True
        return self._ehlo()

    def close(self, *, say_quit: bool) -> None:
        """QUIT when the session is in step and time is left; then close the socket."""
        if say_quit:
            try:
                self._begin(self.stage)
                self.client.quit()
            except OSError:
                pass
        self.client.close()


def ask_relay(
    relay: Relay,
    addresses: Sequence[IPAddress],
    arguments: Sequence[str],
    options: ClientOptions,
    seconds_left: SecondsLeft,
) -> SessionReport:
    """Connect to the first of ``addresses`` that answers, then send ``ETRN`` per argument.

    ``seconds_left`` tells how much of the run's deadline remains: no step waits past
    it and no address is dialled after it.
    """
    tried: list[str] = []
    dialled = bool(addresses)
    for position, address in enumerate(addresses):
        if seconds_left() <= 0:
            tried.append("the run's deadline passed")
            dialled = position > 0
            break
        client = _DialledSMTP(str(address), relay.host, options)
        try:
            client.timeout = _step_timeout(options.timeout, seconds_left())
            code, message = client.connect(relay.host, relay.port)
        except OSError as exc:
            tried.append(f"{address}: {exc.strerror or str(exc) or type(exc).__name__}")
            client.close()
            continue
        if code != SMTP_READY:
            client.close()
            greeting = SessionFailure(Stage.GREETING, str(decode_reply(code, message)), code)
            return SessionReport(str(address), failure=greeting)
        session = _Session(client, options, seconds_left)
        in_step = True
        try:
            failure = session.run(arguments)
        except OSError as exc:  # smtplib's errors, timeouts, resets and TLS errors alike
            failure = _failure_from(session.stage, exc)
            in_step = not isinstance(exc, TimeoutError)  # a reply may still be on its way
        session.close(say_quit=in_step)
        return SessionReport(str(address), session.encrypted, session.answers, failure)
    reason = "; ".join(tried) or "no address"
    return SessionReport(failure=SessionFailure(Stage.CONNECT, clean_text(reason)), dialled=dialled)


def smtp_ready(relay: Relay, timeout: float) -> bool:
    """Whether an SMTP server at ``relay`` greets with 220 (the local MTA, before a trigger)."""
    try:
        with socket.create_connection((relay.host, relay.port), timeout) as connection:
            connection.settimeout(timeout)
            return connection.recv(4).startswith(b"220")
    except OSError:
        return False
