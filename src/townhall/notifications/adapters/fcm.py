"""`FcmPushSender`: push to Android and web devices through the FCM HTTP v1 API with httpx.

`base_url` defaults to Google's and is a setting so a local server can stand in for it. The
OAuth access token comes from `access_token` (a string, or a coroutine function that returns
a fresh one). FCM's `UNREGISTERED` means the token is dead: permanent, and remove it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

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

FCM_URL = "https://fcm.googleapis.com"
TokenSource = str | Callable[[], Awaitable[str]]


def fcm_error_code(body: dict[str, Any]) -> str | None:
    """The FCM error code (`UNREGISTERED`, `QUOTA_EXCEEDED`...) in an error answer, if any."""
    error = body.get("error")
    if not isinstance(error, dict):
        return None
    for detail in error.get("details") or []:
        if isinstance(detail, dict) and detail.get("errorCode"):
            return str(detail["errorCode"])
    status = error.get("status")
    return str(status) if status else None


class FcmPushSender:
    def __init__(
        self,
        project_id: str,
        access_token: TokenSource,
        *,
        base_url: str = FCM_URL,
        timeout: float = 10.0,
        clock: Clock | None = None,
        name: str = "fcm",
    ) -> None:
        self.name = name
        self._endpoint = f"{base_url.rstrip('/')}/v1/projects/{project_id}/messages:send"
        self._access_token = access_token
        self._clock = clock or SystemClock()
        self._client = httpx.AsyncClient(timeout=timeout)

    async def _token(self) -> str:
        if isinstance(self._access_token, str):
            return self._access_token
        return await self._access_token()

    async def send(self, message: PushMessage) -> SendOutcome:
        payload = {
            "message": {
                "token": message.device.token,
                "notification": {"title": message.title, "body": message.body},
                "data": {"notification_id": str(message.notification_id), **message.data},
            }
        }
        try:
            headers = {"Authorization": f"Bearer {await self._token()}"}
            response = await self._client.post(self._endpoint, json=payload, headers=headers)
        except httpx.TransportError as exc:
            return transport_failure(exc)
        return self._classify(response)

    def _classify(self, response: httpx.Response) -> SendOutcome:
        try:
            body = response.json()
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        if response.is_success:
            provider_id = str(body.get("name", ""))
            return Delivered(provider_id=provider_id, answer=str(response.status_code))
        code = fcm_error_code(body)
        answer = f"{response.status_code} {code or ''}".strip()
        if code == "UNREGISTERED":
            return Permanent(answer, token_dead=True)
        if response.status_code in (408, 429) or response.status_code >= 500:
            return Transient(answer, retry_after=retry_after(response, self._clock.now()))
        return Permanent(answer)

    async def aclose(self) -> None:
        await self._client.aclose()
