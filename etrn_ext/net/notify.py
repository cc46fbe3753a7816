"""Mail for people over SMTP (smtplib): notices to sites and the operator's digest.

Messages go to a submission host, by default the relay's own MTA, which queues and
retries them: we hand over and are done. Every failure to hand over becomes a
``MailSubmissionError`` that names the host and says why.
"""

from __future__ import annotations

import contextlib
import smtplib
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from etrn_ext.core.errors import MailSubmissionError
from etrn_ext.core.model import OutgoingMail

Send = Callable[[OutgoingMail], dict[str, int]]
"""Sends one mail; returns the recipients the host refused, with its reply codes."""


def build_message(mail: OutgoingMail, message_id_domain: str) -> EmailMessage:
    """The MIME message: text, with the HTML as an alternative part when there is one.

    ``Auto-Submitted: auto-generated`` (RFC 3834) keeps vacation responders quiet.
    """
    message = EmailMessage()
    message["From"] = mail.sender
    message["To"] = ", ".join(mail.recipients)
    message["Subject"] = mail.subject
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = make_msgid("etrn-ext", domain=message_id_domain)
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(mail.text)
    if mail.html is not None:
        message.add_alternative(mail.html, subtype="html")
    return message


def _text(reply: bytes | str) -> str:
    return reply.decode(errors="replace") if isinstance(reply, bytes) else reply


def _reason(exc: Exception) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{exc.smtp_code} {_text(exc.smtp_error)}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


class MailSubmitter:
    """Sends mail through one SMTP submission host."""

    def __init__(self, host: str, port: int, *, timeout: float, local_hostname: str) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.local_hostname = local_hostname

    def _error(self, exc: Exception) -> MailSubmissionError:
        return MailSubmissionError(self.host, self.port, _reason(exc))

    @contextlib.contextmanager
    def session(self) -> Iterator[Send]:
        """One SMTP connection; the function it yields sends a mail and returns the
        recipients the host refused. A mail that every recipient refused is no reason
        to stop the session (smtplib has reset it); any other failure raises."""
        try:
            client = smtplib.SMTP(
                self.host, self.port, timeout=self.timeout, local_hostname=self.local_hostname
            )
        except (OSError, smtplib.SMTPException) as exc:
            raise self._error(exc) from exc

        def send(mail: OutgoingMail) -> dict[str, int]:
            message = build_message(mail, self.local_hostname)
            try:
                refused = client.send_message(
                    message, from_addr=mail.sender, to_addrs=list(mail.recipients)
                )
            except smtplib.SMTPRecipientsRefused as exc:
                refused = exc.recipients
            except (OSError, smtplib.SMTPException) as exc:
                raise self._error(exc) from exc
            return {address: code for address, (code, _reply) in sorted(refused.items())}

        try:
            yield send
        finally:
            # The mail is handed over already; a host that drops the line at QUIT is no news.
            with contextlib.suppress(OSError, smtplib.SMTPException):
                client.quit()
