"""The newsletter's own mail code: find a recipient, render the notice, send it over SMTP.

throttlemail never reads an address or a message. It decides when :func:`send` runs for
which recipient id and records the outcome, so this module is all the mail code an
application writes itself.

Settings come from the environment when they are used, so a test can change them:

``NEWSLETTER_SMTP_HOST``, ``NEWSLETTER_SMTP_PORT``
    The SMTP server (default ``127.0.0.1`` and ``8025``, where ``main_job.py`` and
    ``python -m aiosmtpd -n`` listen).
``NEWSLETTER_RECIPIENTS``
    The CSV file of ``id,email,name`` rows (default ``examples/data/recipients.csv``).
"""

from __future__ import annotations

import csv
import functools
import html
import os
import smtplib
import threading
import time
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from urllib.parse import quote

from throttlemail import RetryLater

SUBJECT = "Our terms of service are changing"
SENDER = Address("Example Newsletter", "newsletter", "example.com")
UNSUBSCRIBE_MAILBOX = "unsubscribe@example.com"
UNSUBSCRIBE_URL = "https://example.com/unsubscribe"

DEFAULT_RECIPIENTS_FILE = Path(__file__).resolve().parent.parent / "data" / "recipients.csv"
DEFAULT_SMTP_HOST = "127.0.0.1"
DEFAULT_SMTP_PORT = 8025

# smtplib's default EHLO name comes from socket.getfqdn(), which may query DNS.
EHLO_NAME = "newsletter.example.com"
SMTP_TIMEOUT_SECONDS = 30.0
# Servers drop idle sessions (aiosmtpd 1.4 after 300 seconds, many providers sooner), so a
# connection idle for longer than this is checked with NOOP before it is reused.
IDLE_CHECK_SECONDS = 10.0

_TEXT_BODY = """\
Hello {name},

We are updating our terms of service. The new terms take effect on
1 July. You can read them, with a summary of what changes, at
https://example.com/terms.

You do not need to do anything. If you keep using the service after
1 July, the new terms apply.

The Example team
"""

_HTML_BODY = """\
<!DOCTYPE html>
<html>
  <body>
    <p>Hello {name},</p>
    <p>We are updating our terms of service. The new terms take effect
    on 1 July. You can read them, with a summary of what changes,
    <a href="https://example.com/terms">on our website</a>.</p>
    <p>You do not need to do anything. If you keep using the service
    after 1 July, the new terms apply.</p>
    <p>The Example team</p>
  </body>
</html>
"""


@dataclass(frozen=True)
class Recipient:
    """One row of the recipient file."""

    recipient_id: str
    email: str
    name: str


@dataclass
class _Connection:
    smtp: smtplib.SMTP
    address: tuple[str, int]
    pid: int
    last_used: float


_local = threading.local()


def send(recipient_id: str) -> None:
    """Render the notice for ``recipient_id`` and send it.

    Raises :class:`LookupError` for an id that is not in the recipient file, the
    :mod:`smtplib` error when the server rejects the message, and
    :class:`throttlemail.RetryLater` when the server cannot be reached, because then
    nothing was sent and a later batch may try again.
    """
    message = render(find_recipient(recipient_id))
    _send_message(message)


def find_recipient(recipient_id: str) -> Recipient:
    """Return the recipient file's row for ``recipient_id``."""
    path = recipients_file()
    try:
        return load_recipients(path)[recipient_id]
    except KeyError:
        raise LookupError(f"recipient {recipient_id!r} is not in {path}") from None


def recipients_file() -> Path:
    """Return the recipient file that ``NEWSLETTER_RECIPIENTS`` names, or the default."""
    return Path(os.environ.get("NEWSLETTER_RECIPIENTS", DEFAULT_RECIPIENTS_FILE)).resolve()


@functools.lru_cache(maxsize=4)
def load_recipients(path: Path) -> dict[str, Recipient]:
    """Read an ``id,email,name`` CSV file into a dict keyed by id, once per path."""
    with path.open(encoding="utf-8", newline="") as file:
        return {
            row["id"]: Recipient(row["id"], row["email"], row["name"])
            for row in csv.DictReader(file)
        }


def render(recipient: Recipient) -> EmailMessage:
    """Build the notice for one recipient: plain text with an HTML alternative."""
    message = EmailMessage()
    message["From"] = SENDER
    message["To"] = Address(display_name=recipient.name, addr_spec=recipient.email)
    message["Subject"] = SUBJECT
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = make_msgid(idstring="tos-update", domain=SENDER.domain)
    # NOTE: a real application puts a signed token in these links instead of the bare id,
    # because anyone who guesses an id could otherwise unsubscribe that recipient.
    token = quote(recipient.recipient_id, safe="")
    message["List-Unsubscribe"] = (
        f"<mailto:{UNSUBSCRIBE_MAILBOX}?subject=unsubscribe%20{token}>, "
        f"<{UNSUBSCRIBE_URL}?id={token}>"
    )
    # One-click unsubscribe (RFC 8058), which large mailbox providers expect from bulk mail.
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"

    message.set_content(_TEXT_BODY.format(name=recipient.name))
    message.add_alternative(_HTML_BODY.format(name=html.escape(recipient.name)), subtype="html")
    return message


def smtp_address() -> tuple[str, int]:
    """Return the SMTP server's host and port from the environment."""
    host = os.environ.get("NEWSLETTER_SMTP_HOST", DEFAULT_SMTP_HOST)
    port_text = os.environ.get("NEWSLETTER_SMTP_PORT", str(DEFAULT_SMTP_PORT))
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise ValueError(
            f"invalid NEWSLETTER_SMTP_PORT {port_text!r}: expected a port number from 1 to 65535"
        )
    return host, port


def close() -> None:
    """Close this thread's SMTP connection, if it has one. The next send opens a new one."""
    connection: _Connection | None = getattr(_local, "connection", None)
    _local.connection = None
    if connection is not None:
        _discard(connection)


def _send_message(message: EmailMessage) -> None:
    connection = _reusable_connection()
    try:
        connection.smtp.send_message(message)
    except (smtplib.SMTPRecipientsRefused, smtplib.SMTPResponseException):
        # smtplib reset the session after the rejection, so the connection stays usable.
        connection.last_used = time.monotonic()
        raise
    except OSError:
        # The session broke part-way (SMTPServerDisconnected is an OSError too). The server
        # may have taken the message, so it is not sent again on a new connection: the
        # delivery guard records the error and an operator decides.
        close()
        raise
    connection.last_used = time.monotonic()


def _reusable_connection() -> _Connection:
    # One connection per thread, because an smtplib.SMTP session is not thread-safe.
    address = smtp_address()
    connection: _Connection | None = getattr(_local, "connection", None)
    if connection is not None and not _is_usable(connection, address):
        close()
        connection = None
    if connection is None:
        connection = _connect(address)
        _local.connection = connection
    return connection


def _is_usable(connection: _Connection, address: tuple[str, int]) -> bool:
    # A forked child must not talk on its parent's session.
    if connection.pid != os.getpid() or connection.address != address:
        return False
    if time.monotonic() - connection.last_used < IDLE_CHECK_SECONDS:
        return True
    try:
        code, _ = connection.smtp.noop()
    except OSError:
        return False
    return code == 250


def _connect(address: tuple[str, int]) -> _Connection:
    host, port = address
    try:
        # NOTE: a real provider needs starttls() and login() here.
        smtp = smtplib.SMTP(host, port, local_hostname=EHLO_NAME, timeout=SMTP_TIMEOUT_SECONDS)
    except OSError as exc:
        raise RetryLater(f"cannot connect to the SMTP server at {host}:{port}: {exc}") from exc
    return _Connection(smtp, address, os.getpid(), time.monotonic())


def _discard(connection: _Connection) -> None:
    if connection.pid != os.getpid():
        # Only the socket is closed, because QUIT would end the parent's session.
        connection.smtp.close()
        return
    try:
        connection.smtp.quit()
    except OSError:
        connection.smtp.close()
