"""AWS Signature Version 4 in the `Authorization` header, as AWS documents it for S3
("Signature Calculations for the Authorization Header"): canonical request, string to sign,
a signing key derived per day. Small on purpose: only what `S3Storage` sends is covered.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import quote, unquote

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def canonical_query(raw_query: str) -> str:
    """Every parameter decoded, then encoded as AWS does (unreserved characters kept, all else
    `%XX`, `/` too), sorted; a parameter without `=` has an empty value (`uploads=`)."""
    pairs = []
    for item in raw_query.split("&"):
        if not item:
            continue
        name, _, value = item.partition("=")
        pairs.append((quote(unquote(name), safe="~"), quote(unquote(value), safe="~")))
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


class Signer:
    """Signs requests for one identity, region and service."""

    def __init__(self, access_key: str, secret_key: str, region: str, service: str = "s3"):
        self.access_key, self._secret = access_key, secret_key
        self.region, self.service = region, service
        self._keys: dict[str, bytes] = {}

    def _signing_key(self, day: str) -> bytes:
        key = self._keys.get(day)
        if key is None:
            key = _hmac(("AWS4" + self._secret).encode(), day)
            for part in (self.region, self.service, "aws4_request"):
                key = _hmac(key, part)
            self._keys = {day: key}
        return key

    def sign(
        self,
        method: str,
        host: str,
        path: str,
        query: str,
        headers: Mapping[str, str],
        payload_sha256: str,
        now: datetime | None = None,
    ) -> dict[str, str]:
        """The headers to add to a request (`x-amz-date`, `x-amz-content-sha256`,
        `Authorization`). `path` and `query` as sent (percent-encoded); `headers` are the ones
        to sign besides `host` (e.g. `range`, `x-amz-copy-source`); `payload_sha256` the body's
        hex SHA-256, or `UNSIGNED-PAYLOAD`."""
        moment = (now or datetime.now(UTC)).astimezone(UTC)
        stamp, day = moment.strftime("%Y%m%dT%H%M%SZ"), moment.strftime("%Y%m%d")
        added = {"x-amz-date": stamp, "x-amz-content-sha256": payload_sha256}
        signed = {name.lower(): " ".join(value.split()) for name, value in headers.items()}
        signed.update(added)
        signed["host"] = host
        names = sorted(signed)
        canonical = "\n".join(
            [
                method.upper(),
                quote(unquote(path or "/"), safe="/~"),
                canonical_query(query),
                "".join(f"{name}:{signed[name]}\n" for name in names),
                ";".join(names),
                payload_sha256,
            ]
        )
        scope = f"{day}/{self.region}/{self.service}/aws4_request"
        to_sign = "\n".join(
            [ALGORITHM, stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        signature = hmac.new(self._signing_key(day), to_sign.encode(), hashlib.sha256)
        added["Authorization"] = (
            f"{ALGORITHM} Credential={self.access_key}/{scope}, "
            f"SignedHeaders={';'.join(names)}, Signature={signature.hexdigest()}"
        )
        return added
