"""A real SMTP server for tests whose DATA replies are scripted (aiosmtpd on this loop)."""

from __future__ import annotations

import asyncio
import ssl

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


class ScriptedServer:
    """An SMTP server answering DATA with the scripted replies in turn (then 250); a message
    to an address in `replies_to` takes that address's scripted replies first."""

    def __init__(
        self,
        *replies: str,
        auth: tuple[str, str] | None = None,
        starttls: ssl.SSLContext | None = None,
        implicit_tls: ssl.SSLContext | None = None,
        idle_timeout: float = 300,
    ) -> None:
        self.idle_timeout = idle_timeout
        self.replies = list(replies)
        self.replies_to: dict[str, list[str]] = {}
        self.starttls = starttls
        self.implicit_tls = implicit_tls
        self.tls_sessions = 0
        self.received: list[bytes] = []
        self.auth = auth
        self.logins: list[str] = []
        self.connections = 0
        self._server: asyncio.Server | None = None

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        scripted = next(
            (self.replies_to[a] for a in envelope.rcpt_tos if self.replies_to.get(a)), None
        )
        if scripted is None and self.replies:
            scripted = self.replies
        reply = scripted.pop(0) if scripted else "250 2.0.0 Ok: queued"
        if reply.startswith("250"):
            self.received.append(envelope.content)
            if server.transport is not None and server.transport.get_extra_info("sslcontext"):
                self.tls_sessions += 1
        return reply

    def _authenticate(self, server, session, envelope, mechanism, data) -> AuthResult:
        assert isinstance(data, LoginPassword)
        user, password = data.login.decode(), data.password.decode()
        ok = self.auth == (user, password)
        if ok:
            self.logins.append(user)
        return AuthResult(success=ok, handled=False)

    def _protocol(self) -> SMTP:
        self.connections += 1
        return SMTP(
            self,
            authenticator=self._authenticate if self.auth else None,
            auth_require_tls=False,
            tls_context=self.starttls,
            require_starttls=self.starttls is not None,
            timeout=self.idle_timeout,
        )

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol, "127.0.0.1", 0, ssl=self.implicit_tls
        )
        return self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
