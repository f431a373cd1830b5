"""`ApnsPushSender`: push to Apple devices through APNs over HTTP/2 with httpx, token auth.

`base_url` defaults to Apple's production host and is a setting so a local HTTP/2 server can
stand in. `auth_token` is the provider token (an ES256 JWT signed with the team's key) or a
coroutine function returning a current one; APNs wants it refreshed at most hourly. A 410
means the device token is no longer valid: permanent, and remove it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import quote

import httpx

from townhall.notifications.adapters.http_outcomes import retry_after, transport_failure
from townhall.notifications.domain import (
    Delivered,
    Permanent,
    PushMessage,
    SendOutcome,
    Transient,
)
from townhall.platform.clock import Clock, SystemClock

APNS_URL = "https://api.push.apple.com"
TokenSource = str | Callable[[], Awaitable[str]]


class ApnsPushSender:
    def __init__(
        self,
        topic: str,
        auth_token: TokenSource,
        *,
        base_url: str = APNS_URL,
        timeout: float = 10.0,
        clock: Clock | None = None,
        name: str = "apns",
    ) -> None:
        self.name = name
        self._base = base_url.rstrip("/")
        self._topic = topic
        self._auth_token = auth_token
        self._clock = clock or SystemClock()
        # APNs speaks HTTP/2 only: no HTTP/1.1 fallback (h2c by prior knowledge on http://).
        self._client = httpx.AsyncClient(http1=False, http2=True, timeout=timeout)

    async def _token(self) -> str:
        if isinstance(self._auth_token, str):
            return self._auth_token
        return await self._auth_token()

    async def send(self, message: PushMessage) -> SendOutcome:
        payload = {
            "aps": {"alert": {"title": message.title, "body": message.body}},
            "notification_id": str(message.notification_id),
            **message.data,
        }
        url = f"{self._base}/3/device/{quote(message.device.token, safe='')}"
        try:
            headers = {
                "authorization": f"bearer {await self._token()}",
                "apns-topic": self._topic,
                "apns-push-type": "alert",
                "apns-priority": "10",
                # the notification id, so APNs' own logs name our delivery
                "apns-id": str(message.notification_id),
            }
            response = await self._client.post(url, json=payload, headers=headers)
        except httpx.TransportError as exc:
            return transport_failure(exc)
        return self._classify(response)

    def _classify(self, response: httpx.Response) -> SendOutcome:
        if response.status_code == 200:
            return Delivered(provider_id=response.headers.get("apns-id", ""), answer="200")
        try:
            reason = str(response.json().get("reason", ""))
        except (ValueError, AttributeError):
            reason = ""
        answer = f"{response.status_code} {reason}".strip()
        if response.status_code == 410:
            return Permanent(answer, token_dead=True)
        if (
            response.status_code in (429, 500, 503)
            # a stale provider token: the next attempt signs a fresh one
            or (response.status_code == 403 and reason == "ExpiredProviderToken")
        ):
            return Transient(answer, retry_after=retry_after(response, self._clock.now()))
        return Permanent(answer)

    async def aclose(self) -> None:
        await self._client.aclose()
