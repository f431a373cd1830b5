"""`SmtpEmailSender`: email over SMTP with aiosmtplib, on a small pool of kept-open connections.

URLs: `smtp://user:pass@host:port` (plain), `smtp+starttls://...` (STARTTLS required),
`smtps://...` (TLS from the first byte). SMTP 4xx, timeouts and refused or dropped connections
are transient; 5xx is permanent.
"""

from __future__ import annotations

import asyncio
import email.charset
import email.utils
import functools
import re
import ssl
from dataclasses import dataclass
from email.header import Header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from urllib.parse import unquote, urlsplit

import aiosmtplib

from townhall.notifications.domain import (
    Channel,
    Delivered,
    EmailMessage,
    Permanent,
    SendOutcome,
    Transient,
    message_id_for,
)
from townhall.platform.clock import Clock, SystemClock

_DEFAULT_PORTS = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}


@dataclass(frozen=True)
class SmtpTarget:
    host: str
    port: int
    username: str | None
    password: str | None
    use_tls: bool
    start_tls: bool


def parse_smtp_url(url: str) -> SmtpTarget:
    parts = urlsplit(url)
    if parts.scheme not in _DEFAULT_PORTS:
        raise ValueError(
            f"unknown SMTP URL scheme {parts.scheme!r}; use smtp://, smtp+starttls:// or smtps://"
        )
    if not parts.hostname:
        raise ValueError("the SMTP URL names no host")
    return SmtpTarget(
        host=parts.hostname,
        port=parts.port or _DEFAULT_PORTS[parts.scheme],
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        use_tls=parts.scheme == "smtps",
        start_tls=parts.scheme == "smtp+starttls",
    )


def build_message(
    message: EmailMessage, sender: str, message_id_domain: str, clock: Clock
) -> Message:
    """The MIME message: text/plain alone, or multipart/alternative with text then HTML.

    Built with the compat32 classes, about five times cheaper than `email.message.EmailMessage`
    on a worker's hot path; header values are checked for line breaks here because compat32
    does not refuse them.
    """
    for value in (sender, message.to, message.subject):
        if "\r" in value or "\n" in value:
            raise ValueError(f"header value {value!r} contains a line break")
    text = _text_part(message.text, "plain")
    mime: Message = text
    if message.html is not None:
        mime = MIMEMultipart("alternative", _subparts=[text, _text_part(message.html, "html")])
    for name, value in _headers(message, sender, message_id_domain, clock).items():
        if name == "Subject" and not _foldable(name, value):
            value = Header(value, "utf-8", header_name=name).encode()
        mime[name] = value
    return mime


# RFC 5322 2.1.1 and RFC 5321 4.5.3.1.6: a line is at most 998 octets, CRLF not counted.
MAX_LINE_OCTETS = 998


def _foldable(name: str, value: str) -> bool:
    """Whether compat32 writes this header value so that it reads back as it is: ASCII, its
    first word on the header's first line (else a reader sees a leading space) and every other
    word within a folded line (folding breaks only at whitespace). Anything else is RFC
    2047-encoded, which can be split anywhere and reads back exactly."""
    if not value.isascii():
        return False
    words = value.split()
    if not words:
        return True
    return len(name) + 2 + len(words[0]) <= _MAX_LINE and max(map(len, words)) < _MAX_LINE


def _lines_fit(text: str) -> bool:
    """Whether every line of ASCII `text` (ended by CRLF, CR or LF) fits in an SMTP line, and
    it holds no NUL: the conditions for sending it as it is (7bit, RFC 2045 2.7)."""
    if "\0" in text:
        return False
    if len(text) <= MAX_LINE_OCTETS:
        return True
    lines = text.replace("\r", "\n").split("\n")  # CRLF counts as two breaks: lengths hold
    return max(map(len, lines)) <= MAX_LINE_OCTETS


# A header value the compat32 generator writes exactly as it is: printable ASCII words split by
# single spaces. Such a header line of at most 78 characters is never folded or encoded.
_PLAIN_VALUE = re.compile(r"[!-~]+(?: [!-~]+)*")
_MAX_LINE = 78
_PLAIN_TEXT_HEAD = (
    'Content-Type: text/plain; charset="us-ascii"\nMIME-Version: 1.0\n'
    "Content-Transfer-Encoding: 7bit\n"
)


def render_message(
    message: EmailMessage, sender: str, message_id_domain: str, clock: Clock
) -> tuple[bytes, str]:
    """The message as bytes, and its Message-ID.

    Most notifications are short ASCII text: those are written here directly, the very bytes
    `build_message(...).as_bytes()` gives, at a fraction of its cost. Anything else (HTML,
    non-ASCII text or headers, a header that would fold, a line too long for SMTP or a NUL)
    goes through `build_message`.

    Either way the bytes are a valid RFC 5322 message for SMTP (RFC 5321): lines end in "\\n"
    (the SMTP client sends CRLF and dot-stuffs lines that start with "."), no line is longer
    than 998 octets, and a body that would break that is quoted-printable.
    """
    if message.html is None and message.text.isascii() and _lines_fit(message.text):
        headers = _headers(message, sender, message_id_domain, clock)
        lines = [f"{name}: {value}" for name, value in headers.items()]
        if all(
            len(line) <= _MAX_LINE and _PLAIN_VALUE.fullmatch(value)
            for line, value in zip(lines, headers.values(), strict=True)
        ):
            # The generator ends every body line with "\n", whatever it ended with before.
            body = message.text.replace("\r\n", "\n").replace("\r", "\n")
            text = _PLAIN_TEXT_HEAD + "\n".join(lines) + "\n\n" + body
            return text.encode("ascii"), headers["Message-ID"]
    mime = build_message(message, sender, message_id_domain, clock)
    return mime.as_bytes(), str(mime["Message-ID"])


def _headers(
    message: EmailMessage, sender: str, message_id_domain: str, clock: Clock
) -> dict[str, str]:
    """The message's headers in their order, as plain values (`build_message` encodes a
    non-ASCII subject)."""
    return {
        "From": _from_header(sender),
        "To": message.to,
        "Subject": message.subject,
        "Date": email.utils.format_datetime(clock.now()),
        "Message-ID": message_id_for(message.notification_id, Channel.EMAIL, message_id_domain),
        "X-Townhall-Notification": str(message.notification_id),
    }


@functools.lru_cache(maxsize=16)
def _from_header(sender: str) -> str:
    """The From value; one sender sends everything, so it is worked out once."""
    name, address = email.utils.parseaddr(sender)
    return email.utils.formataddr((name, address), charset="utf-8") if name else address


_UTF8_QP = email.charset.Charset("utf-8")
_UTF8_QP.body_encoding = email.charset.QP  # readable in raw form, unlike base64
_ASCII_QP = email.charset.Charset("us-ascii")
_ASCII_QP.body_encoding = email.charset.QP


def _text_part(content: str, subtype: str) -> MIMEText:
    """Short-lined ASCII goes as it is (7bit). Anything else is quoted-printable, whose lines
    are at most 76 characters: non-ASCII as UTF-8, and ASCII with a line longer than SMTP
    allows (or a NUL) as US-ASCII, the long lines split by soft breaks the reader removes."""
    if content.isascii():
        if _lines_fit(content):
            return MIMEText(content, subtype, "us-ascii")
        return MIMEText(content, subtype, _ASCII_QP)  # type: ignore[arg-type]
    return MIMEText(content, subtype, _UTF8_QP)  # type: ignore[arg-type]  # a Charset works too


def classify_smtp_error(exc: BaseException) -> SendOutcome:
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        exc = exc.recipients[0]
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        answer = f"{exc.code} {exc.message}"
        if 400 <= exc.code < 500:
            return Transient(answer)
        if 500 <= exc.code < 600:
            return Permanent(answer)
        return Transient(answer)
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        return Permanent(f"not supported by the server: {exc}")
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | TimeoutError):
        return Transient(f"timeout: {exc}")
    return Transient(f"{type(exc).__name__}: {exc}")


class SmtpEmailSender:
    """Sends each message on one of at most `pool_size` open SMTP connections.

    A connection that fails in any way is closed and dropped, never reused; the next send opens
    a fresh one. A failure is reported, not retried here: the bus retries with backoff.
    `timeout` bounds the connection (greeting, EHLO, TLS, login) and then each email's whole
    conversation.
    """

    def __init__(
        self,
        url: str,
        sender: str,
        *,
        timeout: float = 10.0,
        pool_size: int = 4,
        message_id_domain: str | None = None,
        tls_context: ssl.SSLContext | None = None,
        clock: Clock | None = None,
        name: str = "smtp",
    ) -> None:
        self.name = name
        self._target = parse_smtp_url(url)
        self._sender = sender
        self._envelope_from = email.utils.parseaddr(sender)[1] or sender
        self._domain = message_id_domain or self._envelope_from.rpartition("@")[2] or "townhall"
        self._timeout = timeout
        self._tls_context = tls_context
        self._clock = clock or SystemClock()
        self._slots = asyncio.Semaphore(pool_size)
        self._idle: list[aiosmtplib.SMTP] = []
        self._closed = False

    async def _connect(self) -> aiosmtplib.SMTP:
        target = self._target
        client = aiosmtplib.SMTP(
            hostname=target.host,
            port=target.port,
            username=target.username,
            password=target.password,
            use_tls=target.use_tls,
            start_tls=target.start_tls,  # smtp:// stays plain even when STARTTLS is offered
            tls_context=self._tls_context,
            timeout=self._timeout,
        )
        await client.connect()
        return client

    async def send(self, message: EmailMessage) -> SendOutcome:
        try:
            content, message_id = render_message(message, self._sender, self._domain, self._clock)
        except ValueError as exc:  # e.g. a line break smuggled into an address or subject
            return Permanent(f"malformed message: {exc}")
        # An internationalised address needs the server's SMTPUTF8 extension (RFC 6531).
        options = [] if (self._envelope_from + message.to).isascii() else ["SMTPUTF8"]
        async with self._slots:
            client: aiosmtplib.SMTP | None = None
            try:
                client = self._take_idle() or await self._connect()
                # One deadline for the whole conversation instead of aiosmtplib's timer per
                # command: MAIL, RCPT, DATA and the message are four, on every email.
                async with asyncio.timeout(self._timeout):
                    _, response = await client.sendmail(
                        self._envelope_from,
                        [message.to],
                        content,
                        mail_options=options,
                        timeout=None,
                    )
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                if client is not None:
                    client.close()
                return classify_smtp_error(exc)
            except asyncio.CancelledError:
                if client is not None:  # mid-conversation: the connection is unusable
                    client.close()
                raise
            if self._closed:
                await _quit(client)
            else:
                self._idle.append(client)
        return Delivered(provider_id=message_id, answer=response)

    def _take_idle(self) -> aiosmtplib.SMTP | None:
        # A connection the server closed while idle (its timeout) is noticed here, not mid-send.
        while self._idle:
            client = self._idle.pop()
            if client.is_connected:
                return client
            client.close()
        return None

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        await asyncio.gather(*(_quit(client) for client in idle))


async def _quit(client: aiosmtplib.SMTP) -> None:
    try:
        await client.quit()
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        client.close()
