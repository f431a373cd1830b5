"""`render_message` writes a short ASCII text email directly; its bytes must be exactly what the
email package would have made, and anything it cannot write that way must go to the package.
Either way the message must be valid for SMTP (RFC 5321/5322) and read back as it was written."""

from __future__ import annotations

import email
import email.policy
import uuid

import pytest

from townhall.notifications.adapters.smtp import build_message, render_message
from townhall.notifications.domain import EmailMessage
from townhall.platform.clock import FrozenClock

CLOCK = FrozenClock()
DOMAIN = "townhall.test"


def email_of(
    text: str, *, subject: str = "Hello", to: str = "ann@example.test", html: str | None = None
) -> EmailMessage:
    return EmailMessage(uuid.UUID(int=7), to, subject, text, html)


CASES = [
    ("plain", "Noreply <noreply@townhall.test>", email_of("Hi Ann,\nwelcome.")),
    ("bare sender", "noreply@townhall.test", email_of("one line")),
    ("quoted name", "Town, Inc. <no@townhall.test>", email_of("x")),
    ("line endings", "n@townhall.test", email_of("a\r\nb\rc\nd\r\n")),
    ("dot lines", "n@townhall.test", email_of(".\n..\nFrom here\n")),
    ("empty body", "n@townhall.test", email_of("")),
    ("long body line", "n@townhall.test", email_of("y" * 2000)),
    ("998-octet line", "n@townhall.test", email_of("a" * 998 + "\n" + "b" * 998)),
    ("999-octet line", "n@townhall.test", email_of("a" * 999)),
    ("long lines, CRLF", "n@townhall.test", email_of(("z" * 1500 + "\r\n") * 3)),
    ("long lines, lone CR", "n@townhall.test", email_of("c" * 1200 + "\r" + "d" * 1200)),
    ("long lines, lone LF", "n@townhall.test", email_of("e" * 1200 + "\n\n" + "f" * 5)),
    ("long line, dot lines", "n@townhall.test", email_of(".\n." + "g" * 1100 + "\n..\n.")),
    ("long line, equals sign", "n@townhall.test", email_of("=" * 1000 + " trailing ")),
    ("form feed", "n@townhall.test", email_of("page 1\fpage 2\x0bend")),
    ("NUL", "n@townhall.test", email_of("a\0b")),
    ("8-bit long line", "n@townhall.test", email_of("é" * 1000 + "\r\n.ß\rñ")),
    ("8-bit dot lines", "n@townhall.test", email_of(".naïve\n..\n.")),
    ("long unbroken subject", "n@townhall.test", email_of("b", subject="s" * 998)),
    ("long word in subject", "n@townhall.test", email_of("b", subject="a " + "w" * 990)),
    ("long 8-bit subject", "n@townhall.test", email_of("b", subject="ü" * 998)),
    # These are not plain, so they take the package's path; the result must not change.
    ("long subject", "n@townhall.test", email_of("b", subject="word " * 30)),
    ("two spaces", "n@townhall.test", email_of("b", subject="a  b")),
    ("tab", "n@townhall.test", email_of("b", subject="a\tb")),
    ("trailing space", "n@townhall.test", email_of("b", subject="a ")),
    ("non-ASCII subject", "n@townhall.test", email_of("b", subject="Grüße")),
    ("non-ASCII body", "n@townhall.test", email_of("naïve")),
    ("non-ASCII name", "Zoë <n@townhall.test>", email_of("b")),
    ("72-char subject", "n@townhall.test", email_of("b", subject="s" * 69)),
    ("73-char subject", "n@townhall.test", email_of("b", subject="s" * 70)),
]
# Multipart: its boundary is random, so these are checked for validity only.
HTML_CASES = [
    ("HTML", "n@townhall.test", email_of("t", html="<p>hi</p>")),
    ("long HTML line", "n@townhall.test", email_of("t" * 1001, html="<p>" + "h" * 3000 + "</p>")),
    ("8-bit HTML", "n@townhall.test", email_of("t", html="<p>" + "ö" * 3000 + "\r\n.</p>")),
]


@pytest.mark.parametrize(("sender", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rendered_bytes_are_those_of_the_email_package(sender: str, message: EmailMessage) -> None:
    content, message_id = render_message(message, sender, DOMAIN, CLOCK)
    expected = build_message(message, sender, DOMAIN, CLOCK)
    assert content == expected.as_bytes()
    assert message_id == expected["Message-ID"] == f"<{message.notification_id}.email@{DOMAIN}>"


def _written(text: str) -> str:
    """What a reader gets of `text`: every line break (CRLF, CR, LF) is one line break."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _part(mime: email.message.Message, subtype: str) -> str | None:
    for part in mime.walk():
        if part.get_content_type() == f"text/{subtype}":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            return payload.decode(part.get_content_charset() or "us-ascii")
    return None


@pytest.mark.parametrize(
    ("sender", "message"),
    [c[1:] for c in CASES + HTML_CASES],
    ids=[c[0] for c in CASES + HTML_CASES],
)
def test_rendered_message_is_valid_for_smtp_and_reads_back_as_written(
    sender: str, message: EmailMessage
) -> None:
    content, _ = render_message(message, sender, DOMAIN, CLOCK)
    # 7-bit data whose lines (the SMTP client ends each with CRLF) fit in 998 octets.
    assert content.isascii()
    assert b"\r" not in content and b"\0" not in content
    assert max(len(line) for line in content.split(b"\n")) <= 998
    mime = email.message_from_bytes(content)
    # A reader unfolds and decodes the subject (the modern policy does both).
    read = email.message_from_bytes(content, policy=email.policy.default)
    assert read["Subject"] == message.subject
    assert _part(mime, "plain") == _written(message.text)
    assert _part(mime, "html") == (None if message.html is None else _written(message.html))


def test_html_email_goes_through_the_package_with_both_parts() -> None:
    message = EmailMessage(uuid.UUID(int=8), "ann@example.test", "Hi", "text", "<p>html</p>")
    content, _ = render_message(message, "n@townhall.test", DOMAIN, CLOCK)
    assert b"multipart/alternative" in content
    assert b"text/plain" in content and b"<p>html</p>" in content


@pytest.mark.parametrize("field", ["to", "subject"])
def test_a_line_break_in_a_header_is_refused(field: str) -> None:
    values = {"to": "ann@example.test", "subject": "Hi"}
    values[field] += "\r\nBcc: eve@example.test"
    message = EmailMessage(uuid.UUID(int=9), values["to"], values["subject"], "text")
    with pytest.raises(ValueError, match="line break"):
        render_message(message, "n@townhall.test", DOMAIN, CLOCK)
