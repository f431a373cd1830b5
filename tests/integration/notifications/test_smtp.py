"""SmtpEmailSender and SmtpSink against real aiosmtpd servers on local ports."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import shutil
import socket
import ssl
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from support.smtp_server import ScriptedServer
from townhall.notifications.adapters.smtp import SmtpEmailSender, parse_smtp_url
from townhall.notifications.adapters.smtp_sink import SmtpSink
from townhall.notifications.domain import Delivered, EmailMessage, Permanent, Transient
from townhall.platform.clock import FrozenClock

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A throwaway self-signed certificate for 127.0.0.1 (made with the openssl CLI)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def tls_pair(certificate: tuple[Path, Path]) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    cert, key = certificate
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=str(cert))
    return server, client


@pytest.fixture
async def sink() -> AsyncIterator[SmtpSink]:
    sink = SmtpSink(limit=3, clock=FrozenClock())
    await sink.start()
    yield sink
    await sink.stop()


def email_to(to: str = "ada@example.org", html: str | None = None) -> EmailMessage:
    return EmailMessage(uuid.uuid4(), to, "Hello", "Plain words", html)


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def sender_to(handler: Handler) -> AsyncIterator[SmtpEmailSender]:
    """A sender with a 0.3 s timeout to a bare TCP server that runs `handler` per connection."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sender = SmtpEmailSender(f"smtp://127.0.0.1:{port}", "noreply@townhall.test", timeout=0.3)
    try:
        yield sender
    finally:
        await sender.aclose()
        server.close()
        await server.wait_closed()


async def test_smtp_urls_name_their_transport_security_and_default_ports() -> None:
    plain = parse_smtp_url("smtp://user:p%40ss@mail.local:2525")
    assert (plain.host, plain.port, plain.username, plain.password) == (
        "mail.local",
        2525,
        "user",
        "p@ss",
    )
    assert not plain.use_tls and not plain.start_tls
    assert parse_smtp_url("smtp+starttls://mail.local").port == 587
    assert parse_smtp_url("smtp+starttls://mail.local").start_tls
    assert parse_smtp_url("smtps://mail.local").port == 465
    assert parse_smtp_url("smtps://mail.local").use_tls
    with pytest.raises(ValueError, match="scheme"):
        parse_smtp_url("http://mail.local")


async def test_accepted_email_reaches_the_sink_with_its_deterministic_message_id(
    sink: SmtpSink,
) -> None:
    sender = SmtpEmailSender(sink.url, "Townhall <noreply@townhall.test>")
    message = email_to()
    try:
        first = await sender.send(message)
        second = await sender.send(message)  # a resend: same notification, same channel
    finally:
        await sender.aclose()
    expected = f"<{message.notification_id}.email@townhall.test>"
    assert first == Delivered(expected, first.answer) and isinstance(first, Delivered)
    assert isinstance(second, Delivered) and second.provider_id == expected
    received = sink.messages
    assert [m.message_id for m in received] == [expected, expected]
    assert received[0].to == "ada@example.org"
    assert (received[0].subject, received[0].body) == ("Hello", "Plain words")
    assert received[0].as_dict()["received_at"] == "2026-01-01T00:00:00+00:00"


async def test_html_email_carries_a_plain_text_alternative(sink: SmtpSink) -> None:
    sender = SmtpEmailSender(sink.url, "noreply@townhall.test")
    try:
        await sender.send(email_to(html="<p>Plain <b>words</b></p>"))
    finally:
        await sender.aclose()
    (received,) = sink.messages
    assert received.body == "Plain words"
    assert received.html is not None and "<b>words</b>" in received.html


async def test_sink_keeps_only_the_newest_messages_up_to_its_bound(sink: SmtpSink) -> None:
    sender = SmtpEmailSender(sink.url, "noreply@townhall.test")
    try:
        for index in range(5):
            await sender.send(email_to(f"user{index}@example.org"))
        async with asyncio.timeout(5):
            await sink.wait_for(5)
    finally:
        await sender.aclose()
    assert [m.to for m in sink.messages] == [f"user{i}@example.org" for i in (2, 3, 4)]
    assert sink.received == 5


async def test_4xx_is_transient_and_5xx_is_permanent_and_the_pool_recovers() -> None:
    server = ScriptedServer("451 4.3.0 Try again later", "550 5.1.1 No such user")
    port = await server.start()
    sender = SmtpEmailSender(f"smtp://127.0.0.1:{port}", "noreply@townhall.test", pool_size=1)
    try:
        busy = await sender.send(email_to())
        unknown = await sender.send(email_to())
        accepted = await sender.send(email_to())
    finally:
        await sender.aclose()
        await server.stop()
    assert isinstance(busy, Transient) and busy.error.startswith("451")
    assert isinstance(unknown, Permanent) and unknown.reason.startswith("550")
    assert isinstance(accepted, Delivered)
    assert len(server.received) == 1
    # a failed connection is dropped, never reused: one per failure, then one for the success
    assert server.connections == 3


async def test_connections_are_reused_between_sends() -> None:
    server = ScriptedServer()
    port = await server.start()
    sender = SmtpEmailSender(f"smtp://127.0.0.1:{port}", "noreply@townhall.test", pool_size=2)
    try:
        outcomes = await asyncio.gather(*(sender.send(email_to()) for _ in range(10)))
    finally:
        await sender.aclose()
        await server.stop()
    assert all(isinstance(outcome, Delivered) for outcome in outcomes)
    assert len(server.received) == 10
    assert server.connections <= 2


async def test_credentials_from_the_url_log_in() -> None:
    server = ScriptedServer(auth=("townhall", "s3cret"))
    port = await server.start()
    good = SmtpEmailSender(f"smtp://townhall:s3cret@127.0.0.1:{port}", "noreply@townhall.test")
    bad = SmtpEmailSender(f"smtp://townhall:wrong@127.0.0.1:{port}", "noreply@townhall.test")
    try:
        assert isinstance(await good.send(email_to()), Delivered)
        refused = await bad.send(email_to())
    finally:
        await good.aclose()
        await bad.aclose()
        await server.stop()
    assert server.logins == ["townhall"]
    assert isinstance(refused, Permanent) and refused.reason.startswith("535")


async def test_refused_connection_is_transient() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sender = SmtpEmailSender(f"smtp://127.0.0.1:{port}", "noreply@townhall.test")
    outcome = await sender.send(email_to())
    await sender.aclose()
    assert isinstance(outcome, Transient)


async def test_silent_server_times_out_as_transient() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never greets
        writer.close()

    async with sender_to(silent) as sender:
        outcome = await sender.send(email_to())
    assert isinstance(outcome, Transient) and "imeout" in outcome.error


async def test_server_silent_mid_conversation_times_out_and_its_connection_is_dropped() -> None:
    connections: list[int] = []

    async def stalls_after_ehlo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        writer.write(b"220 stalling ESMTP\r\n")
        await reader.readline()  # EHLO
        writer.write(b"250 stalling\r\n")
        await reader.read()  # MAIL FROM is never answered
        writer.close()

    async with sender_to(stalls_after_ehlo) as sender:
        started = asyncio.get_running_loop().time()
        first = await sender.send(email_to())
        elapsed = asyncio.get_running_loop().time() - started
        second = await sender.send(email_to())
    assert isinstance(first, Transient) and "imeout" in first.error
    assert elapsed < 2.0
    assert isinstance(second, Transient)
    assert len(connections) == 2  # the stalled connection was not handed out again


async def test_starttls_url_upgrades_before_sending_and_plain_url_is_refused_by_such_a_server(
    certificate: tuple[Path, Path],
) -> None:
    server_tls, client_tls = tls_pair(certificate)
    server = ScriptedServer(starttls=server_tls)
    port = await server.start()
    secure = SmtpEmailSender(
        f"smtp+starttls://127.0.0.1:{port}", "noreply@townhall.test", tls_context=client_tls
    )
    plain = SmtpEmailSender(f"smtp://127.0.0.1:{port}", "noreply@townhall.test")
    try:
        assert isinstance(await secure.send(email_to()), Delivered)
        refused = await plain.send(email_to())
    finally:
        await secure.aclose()
        await plain.aclose()
        await server.stop()
    assert server.tls_sessions == 1 and len(server.received) == 1
    assert isinstance(refused, Permanent) and refused.reason.startswith("530")


async def test_smtps_url_speaks_tls_from_the_first_byte(certificate: tuple[Path, Path]) -> None:
    server_tls, client_tls = tls_pair(certificate)
    server = ScriptedServer(implicit_tls=server_tls)
    port = await server.start()
    sender = SmtpEmailSender(
        f"smtps://127.0.0.1:{port}", "noreply@townhall.test", tls_context=client_tls
    )
    try:
        outcome = await sender.send(email_to())
    finally:
        await sender.aclose()
        await server.stop()
    assert isinstance(outcome, Delivered)
    assert server.tls_sessions == 1


async def test_header_injection_is_refused_as_permanent_without_sending(sink: SmtpSink) -> None:
    sender = SmtpEmailSender(sink.url, "noreply@townhall.test")
    message = EmailMessage(uuid.uuid4(), "ada@example.org", "Hi\r\nBcc: eve@example.org", "x")
    try:
        outcome = await sender.send(message)
    finally:
        await sender.aclose()
    assert isinstance(outcome, Permanent) and outcome.reason.startswith("malformed message")
    assert sink.received == 0


async def test_non_ascii_subject_body_and_sender_name_arrive_intact(sink: SmtpSink) -> None:
    sender = SmtpEmailSender(sink.url, "Hôtel de Ville <noreply@townhall.test>")
    message = EmailMessage(
        uuid.uuid4(), "zoé@example.org", "Bienvenue, Zoé ! " * 6, "Voilà, ça marche. ✓", "<p>ça</p>"
    )
    try:
        assert isinstance(await sender.send(message), Delivered)
    finally:
        await sender.aclose()
    (received,) = sink.messages
    assert received.subject == message.subject
    assert received.body == "Voilà, ça marche. ✓"
    assert received.html is not None and "ça" in received.html


async def test_a_pooled_connection_the_server_closed_while_idle_is_replaced_not_failed() -> None:
    server = ScriptedServer(idle_timeout=0.2)
    port = await server.start()
    sender = SmtpEmailSender(f"smtp://127.0.0.1:{port}", "noreply@townhall.test", pool_size=1)
    try:
        assert isinstance(await sender.send(email_to()), Delivered)
        await asyncio.sleep(0.5)  # the server hangs up on the idle connection
        assert isinstance(await sender.send(email_to()), Delivered)
    finally:
        await sender.aclose()
        await server.stop()
    assert server.connections == 2 and len(server.received) == 2


HOSTILE_TEXTS = {
    "long line": "x" * 1000,
    "long lines, CRLF": ("y" * 2000 + "\r\n") * 3,
    "lone CR and LF": "a" * 1500 + "\rb\n" + "c" * 1001,
    "dots at line starts": ".\n..\n." + "d" * 1200 + "\n.\r\n.end",
    "8-bit": "é" * 1000 + "\n.ß\r\n" + "€" * 400,
    "longest body the API takes": ("z" * 99_999 + "\n")[:100_000],
}


async def test_every_body_the_api_accepts_crosses_a_real_smtp_server_intact() -> None:
    """aiosmtpd, like most servers, refuses a line over 998 octets ("500 Line too long")."""
    server = ScriptedServer()
    port = await server.start()
    sender = SmtpEmailSender(f"smtp://127.0.0.1:{port}", "noreply@townhall.test")
    messages = [
        EmailMessage(uuid.uuid4(), "ada@example.org", f"{name} {'s' * 990}", text)
        for name, text in HOSTILE_TEXTS.items()
    ]
    try:
        outcomes = [await sender.send(message) for message in messages]
    finally:
        await sender.aclose()
        await server.stop()
    assert all(isinstance(outcome, Delivered) for outcome in outcomes), outcomes
    assert len(server.received) == len(messages)
    for message, content in zip(messages, server.received, strict=True):
        assert all(len(line) <= 998 for line in content.split(b"\r\n"))
        read = email.message_from_bytes(content, policy=email.policy.default)
        assert read["Subject"] == message.subject
        body = read.get_body(("plain",))
        assert body is not None
        # Every line break (CRLF, CR or LF) arrives as one line break; SMTP ends the last line.
        written = message.text.replace("\r\n", "\n").replace("\r", "\n")
        written += "" if written.endswith("\n") else "\n"
        assert body.get_content().replace("\r\n", "\n") == written


SINK_AT_INFO = """
import asyncio, uuid
from townhall.notifications.adapters.smtp import SmtpEmailSender
from townhall.notifications.adapters.smtp_sink import SmtpSink
from townhall.notifications.domain import EmailMessage
from townhall.platform.observability import configure_logging

async def main():
    configure_logging("info")
    sink = SmtpSink()
    await sink.start()
    sender = SmtpEmailSender(sink.url, "noreply@townhall.test")
    for n in range(3):
        await sender.send(EmailMessage(uuid.uuid4(), "ada@example.org", f"Hi {n}", "text"))
    await sender.aclose()
    await sink.stop()

asyncio.run(main())
"""


def test_the_sink_logs_one_line_per_email_at_info() -> None:
    """As `serve` logs: JSON lines on stdout, at the default level (info)."""
    ran = subprocess.run(
        [sys.executable, "-c", SINK_AT_INFO], capture_output=True, text=True, timeout=20
    )
    assert ran.returncode == 0, ran.stderr
    lines = [json.loads(line) for line in ran.stdout.splitlines()]
    assert [(line["event"], line["subject"]) for line in lines] == [
        ("sink received email", f"Hi {n}") for n in range(3)
    ]
