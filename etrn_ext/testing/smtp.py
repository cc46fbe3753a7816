"""Sending test mail over real SMTP, the way a client on the internet does."""

from __future__ import annotations

import email.policy
import smtplib
from collections.abc import Sequence
from email.message import EmailMessage


def send_message(
    address: str,
    port: int,
    recipients: Sequence[str],
    *,
    sender: str = "alice@example.org",
    subject: str = "test",
    body: str = "Hello from the test suite.\n",
    source_address: str | None = None,
) -> str:
    """Send one message; returns the text of the server's reply to the end of DATA."""
    message = EmailMessage()
    message["From"] = sender or "MAILER-DAEMON@example.org"
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject
    message.set_content(body)
    source = (source_address, 0) if source_address else None
    with smtplib.SMTP(address, port, timeout=30, source_address=source) as client:
        client.ehlo("client.example.org")
        client.mail(sender)
        for recipient in recipients:
            code, reply = client.rcpt(recipient)
            if code != 250:
                raise smtplib.SMTPRecipientsRefused({recipient: (code, reply)})
        code, reply = client.data(message.as_bytes(policy=email.policy.SMTP))  # CRLF lines
    if code != 250:
        raise smtplib.SMTPDataError(code, reply)
    return reply.decode()
