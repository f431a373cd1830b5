"""`render_message` writes a short ASCII text email directly; its bytes must be exactly what the
email package would have made, and anything it cannot write that way must go to the package."""

from __future__ import annotations

import uuid

import pytest

from townhall.notifications.adapters.smtp import build_message, render_message
from townhall.notifications.domain import EmailMessage
from townhall.platform.clock import FrozenClock

CLOCK = FrozenClock()
DOMAIN = "townhall.test"


def email_of(text: str, *, subject: str = "Hello", to: str = "ann@example.test") -> EmailMessage:
    return EmailMessage(uuid.UUID(int=7), to, subject, text)


CASES = [
    ("plain", "Noreply <noreply@townhall.test>", email_of("Hi Ann,\nwelcome.")),
    ("bare sender", "noreply@townhall.test", email_of("one line")),
    ("quoted name", "Town, Inc. <no@townhall.test>", email_of("x")),
    ("line endings", "n@townhall.test", email_of("a\r\nb\rc\nd\r\n")),
    ("dot lines", "n@townhall.test", email_of(".\n..\nFrom here\n")),
    ("empty body", "n@townhall.test", email_of("")),
    ("long body line", "n@townhall.test", email_of("y" * 2000)),
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


@pytest.mark.parametrize(("sender", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rendered_bytes_are_those_of_the_email_package(sender: str, message: EmailMessage) -> None:
    content, message_id = render_message(message, sender, DOMAIN, CLOCK)
    expected = build_message(message, sender, DOMAIN, CLOCK)
    assert content == expected.as_bytes()
    assert message_id == expected["Message-ID"] == f"<{message.notification_id}.email@{DOMAIN}>"


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
