"""`TwilioSmsSender`: SMS through a Twilio-style HTTP gateway with httpx.

The URL is the gateway's base with the account SID and auth token as user info
(`https://AC123:token@api.twilio.com`); each message is a form POST of `To`, `From`, `Body` to
`{base}/2010-04-01/Accounts/{sid}/Messages.json` with basic auth.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import httpx

from townhall.notifications.adapters.http_outcomes import retry_after, transport_failure
from townhall.notifications.domain import (
    Delivered,
    Permanent,
    SendOutcome,
    SmsMessage,
    Transient,
)
from townhall.platform.clock import Clock, SystemClock

# Twilio error codes that say the number itself is wrong or unreachable for SMS.
INVALID_NUMBER_CODES = frozenset({21211, 21214, 21217, 21401, 21407, 21408, 21610, 21612, 21614})


def split_gateway_url(url: str) -> tuple[str, str, str]:
    """`https://SID:TOKEN@host/prefix` -> (`https://host/prefix`, SID, TOKEN)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("the SMS URL must be http(s)://SID:TOKEN@host")
    if not parts.username or not parts.password:
        raise ValueError("the SMS URL must carry the account SID and token as user info")
    netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
    base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    return base, unquote(parts.username), unquote(parts.password)


class TwilioSmsSender:
    def __init__(
        self,
        url: str,
        sender: str,
        *,
        timeout: float = 10.0,
        clock: Clock | None = None,
        name: str = "twilio",
    ) -> None:
        self.name = name
        base, self._sid, token = split_gateway_url(url)
        self._endpoint = f"{base}/2010-04-01/Accounts/{quote(self._sid)}/Messages.json"
        self._from = sender
        self._clock = clock or SystemClock()
        self._client = httpx.AsyncClient(auth=(self._sid, token), timeout=timeout)

    async def send(self, message: SmsMessage) -> SendOutcome:
        form = {"To": message.to, "From": self._from, "Body": message.body}
        try:
            response = await self._client.post(self._endpoint, data=form)
        except httpx.TransportError as exc:
            return transport_failure(exc)
        return self._classify(response)

    def _classify(self, response: httpx.Response) -> SendOutcome:
        body = _json(response)
        if response.is_success:
            provider_id = str(body.get("sid", ""))
            return Delivered(provider_id=provider_id, answer=str(response.status_code))
        answer = f"{response.status_code} {body.get('code', '')} {body.get('message', '')}".strip()
        if response.status_code in (408, 429) or response.status_code >= 500:
            return Transient(answer, retry_after=retry_after(response, self._clock.now()))
        if body.get("code") in INVALID_NUMBER_CODES:
            return Permanent(f"invalid number: {answer}")
        return Permanent(answer)

    async def aclose(self) -> None:
        await self._client.aclose()


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
