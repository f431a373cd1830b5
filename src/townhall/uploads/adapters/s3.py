"""Objects in an S3-compatible store, over the plain S3 REST API (httpx, our own SigV4 signing,
path-style addressing): a large object goes up as a multipart upload, one part in memory at a
time, and is aborted if its body fails, so nothing is left half-written.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import xml.etree.ElementTree as ET
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Mapping, Sequence
from urllib.parse import parse_qs, quote, unquote, urlsplit

import httpx

from townhall.platform.observability import get_logger
from townhall.uploads.adapters.sigv4 import EMPTY_SHA256, Signer, canonical_query
from townhall.uploads.ports import Area, ObjectMissing

MiB = 1024 * 1024
MIN_PART_SIZE = 5 * MiB  # S3's smallest part but the last
READ_CHUNK = 256 * 1024
log = get_logger("townhall.uploads")
KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,199}")


class S3Error(Exception):
    """The store refused a request (its status and S3 error code)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"S3 {status} {code}: {message}")
        self.status, self.code = status, code


def _check_key(key: str) -> str:
    if not KEY.fullmatch(key):
        raise ValueError(f"not an object key: {key!r}")
    return key


def _text(root: ET.Element, name: str) -> str:
    """The text of the first element named `name`, whatever its namespace."""
    for element in root.iter():
        if element.tag.rpartition("}")[2] == name:
            return element.text or ""
    return ""


def _error(response: httpx.Response, body: bytes) -> S3Error:
    code, message = "", body[:200].decode(errors="replace")
    try:
        root = ET.fromstring(body)
        code, message = _text(root, "Code"), _text(root, "Message")
    except ET.ParseError:
        pass
    return S3Error(response.status_code, code or response.reason_phrase, message)


async def _parts(
    chunks: AsyncIterable[bytes], part_size: int
) -> AsyncGenerator[tuple[list[bytes], bool]]:
    """`chunks` regrouped into parts of at least `part_size` bytes, each with whether it is the
    last (only the last may be smaller; it is empty when there was nothing at all). A part is
    given once the next chunk has arrived, so it holds one part and one chunk at most."""
    part: list[bytes] = []
    size = 0
    async for chunk in chunks:
        if not chunk:
            continue
        if size >= part_size:
            yield part, False
            part, size = [], 0
        part.append(chunk)
        size += len(chunk)
    yield part, True


async def _body(part: Sequence[bytes]) -> AsyncIterator[bytes]:
    for chunk in part:
        yield chunk


def _sha256(part: Sequence[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in part:
        digest.update(chunk)
    return digest.hexdigest()


class S3Storage:
    """`endpoint` is `http(s)://host:port`; objects are at `endpoint/bucket/{prefix}{area}/{key}`
    (`prefix` taken as given, e.g. `townhall/`).

    An object of at most `part_size` bytes is one `PUT`; a larger one a multipart upload of
    parts of `part_size` (the part being sent is the only one in memory; S3 wants at least
    5 MiB but for the last). Every body is signed with its real SHA-256 (not
    `UNSIGNED-PAYLOAD`): the part is in memory anyway, hashing it costs a thread's few
    milliseconds, and the store then refuses a body damaged on the way.

    A move is a server-side copy, then a delete: no bytes come back through us. S3 copies at
    most 5 GiB in one `CopyObject`, so objects are limited to that (uploads are far smaller).
    Requests are not retried here: the scan worker's message and the client's upload are.
    """

    def __init__(
        self,
        endpoint: str,
        bucket: str,
        access_key: str,
        secret_key: str,
        region: str = "us-east-1",
        prefix: str = "",
        part_size: int = 8 * MiB,
        timeout: float = 60.0,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes (S3's minimum)")
        self.endpoint, self.bucket, self.prefix = endpoint.rstrip("/"), bucket, prefix
        self.part_size = part_size
        self._signer = Signer(access_key, secret_key, region)
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=10.0))

    @classmethod
    def from_url(cls, url: str) -> S3Storage:
        """Build it from one setting:
        `s3://ACCESS:SECRET@HOST[:PORT]/BUCKET[/PREFIX]?region=R&secure=true&part_size=N`.

        ACCESS and SECRET are percent-decoded (write a `/` or `+` of a secret as `%2F`, `%2B`).
        PREFIX, when given, gets a trailing `/` (`/bucket/townhall` keeps objects under
        `townhall/`). `region` defaults to `us-east-1`; `secure=false` speaks plain HTTP (a
        local MinIO or moto), else HTTPS; `part_size` in bytes (default 8 MiB, at least 5 MiB).
        """
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.hostname:
            raise ValueError("an S3 URL reads s3://ACCESS:SECRET@HOST:PORT/BUCKET/PREFIX")
        bucket, _, prefix = parts.path.lstrip("/").partition("/")
        if not bucket or parts.username is None or parts.password is None:
            raise ValueError("an S3 URL names its credentials and bucket")
        query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
        secure = query.get("secure", "true").lower() not in ("false", "0", "no")
        netloc = parts.netloc.rpartition("@")[2]
        prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        return cls(
            endpoint=f"{'https' if secure else 'http'}://{netloc}",
            bucket=bucket,
            access_key=unquote(parts.username),
            secret_key=unquote(parts.password),
            region=query.get("region", "us-east-1"),
            prefix=prefix,
            part_size=int(query.get("part_size", 8 * MiB)),
        )

    # --- requests ---------------------------------------------------------------------------

    def _object(self, area: Area, key: str) -> str:
        return f"{self.prefix}{area.value}/{_check_key(key)}"

    def _request(
        self,
        method: str,
        name: str,
        query: str = "",
        headers: Mapping[str, str] | None = None,
        body: Sequence[bytes] | bytes = b"",
        payload_sha256: str = EMPTY_SHA256,
    ) -> httpx.Request:
        """A signed request for object `name` of the bucket (the bucket itself when empty)."""
        path = f"/{self.bucket}/{quote(name)}" if name else f"/{self.bucket}"
        # Sent as signed: some servers (moto, with botocore) sign the query as it came.
        query = canonical_query(query)
        url = f"{self.endpoint}{path}" + (f"?{query}" if query else "")
        headers = dict(headers or {})
        if isinstance(body, bytes):
            content: bytes | AsyncIterator[bytes] = body
        else:
            content = _body(body)
            headers["content-length"] = str(sum(len(chunk) for chunk in body))
        request = self._client.build_request(method, url, headers=headers, content=content)
        signed = {k: v for k, v in headers.items() if k.lower() != "content-length"}
        request.headers.update(
            self._signer.sign(method, request.headers["host"], path, query, signed, payload_sha256)
        )
        return request

    async def _send(self, request: httpx.Request, ok: Sequence[int] = (200,)) -> httpx.Response:
        response = await self._client.send(request)
        if response.status_code not in ok:
            raise _error(response, response.content)
        return response

    # --- the port ---------------------------------------------------------------------------

    async def put(self, area: Area, key: str, chunks: AsyncIterable[bytes]) -> int:
        name = self._object(area, key)
        parts = _parts(chunks, self.part_size)
        try:
            part, last = await anext(parts)
            if last:
                await self._send_part(name, "", part)
                return sum(len(chunk) for chunk in part)
            created = await self._send(
                self._request("POST", name, "uploads", {"content-type": "application/octet-stream"})
            )
            marker = f"uploadId={quote(_text(ET.fromstring(created.content), 'UploadId'), safe='')}"
            try:
                etags: list[str] = []
                size = 0
                while True:
                    query = f"partNumber={len(etags) + 1}&{marker}"
                    etags.append(await self._send_part(name, query, part))
                    size += sum(len(chunk) for chunk in part)
                    if last:
                        break
                    part = []  # let this part go before the next one is read
                    part, last = await anext(parts)  # not empty: a chunk followed the last
                await self._complete(name, marker, etags)
                return size
            except BaseException:
                # Shielded: a cancelled request (the client gone) is cancelled again at every
                # await, and the abort must still reach the store.
                await asyncio.shield(self._abort(name, marker))
                raise
        finally:
            await parts.aclose()

    async def _send_part(self, name: str, query: str, part: list[bytes]) -> str:
        digest = await asyncio.to_thread(_sha256, part)
        headers = {} if query else {"content-type": "application/octet-stream"}
        response = await self._send(self._request("PUT", name, query, headers, part, digest))
        return str(response.headers.get("etag", ""))

    async def _complete(self, name: str, marker: str, etags: Sequence[str]) -> None:
        listing = "".join(
            f"<Part><PartNumber>{number}</PartNumber><ETag>{etag}</ETag></Part>"
            for number, etag in enumerate(etags, start=1)
        )
        body = f"<CompleteMultipartUpload>{listing}</CompleteMultipartUpload>".encode()
        request = self._request("POST", name, marker, {}, body, hashlib.sha256(body).hexdigest())
        response = await self._send(request)
        if b"<Error>" in response.content:  # S3 may answer 200 and fail in the body
            raise _error(response, response.content)

    async def _abort(self, name: str, marker: str) -> None:
        """Abort a multipart upload (its parts are dropped); a failure to is swallowed, since
        the failure that led here matters more (a bucket lifecycle rule reaps what is left)."""
        try:
            await self._send(self._request("DELETE", name, marker), ok=(204, 200, 404))
        except Exception:
            log.warning("s3 multipart upload not aborted", object=name, exc_info=True)

    async def get(
        self, area: Area, key: str, first: int = 0, last: int | None = None
    ) -> AsyncIterator[bytes]:
        if last is not None and last < first:  # an empty range (of an empty object)
            if await self.size(area, key) is None:
                raise ObjectMissing(f"{area}/{key}")
            return
        headers = {}
        if first or last is not None:  # no Range for the whole object: `0-` of 0 bytes is 416
            headers["range"] = f"bytes={first}-{'' if last is None else last}"
        request = self._request("GET", self._object(area, key), headers=headers)
        response = await self._client.send(request, stream=True)
        try:
            if response.status_code == 404:
                raise ObjectMissing(f"{area}/{key}")
            if response.status_code not in (200, 206):
                raise _error(response, await response.aread())
            async for chunk in response.aiter_bytes(READ_CHUNK):
                yield chunk
        finally:
            await response.aclose()

    async def move(self, key: str, source: Area, target: Area) -> None:
        source_name, target_name = self._object(source, key), self._object(target, key)
        copy_source = quote(f"/{self.bucket}/{source_name}")
        request = self._request("PUT", target_name, headers={"x-amz-copy-source": copy_source})
        response = await self._client.send(request)
        if response.status_code == 404:
            if await self.size(target, key) is None:
                raise ObjectMissing(f"{source}/{key}")
            return  # moved already
        if response.status_code != 200 or b"<Error>" in response.content:
            raise _error(response, response.content)
        await self._send(self._request("DELETE", source_name), ok=(204, 200, 404))

    async def delete(self, key: str) -> None:
        for area in Area:
            await self._send(self._request("DELETE", self._object(area, key)), ok=(204, 200, 404))

    async def size(self, area: Area, key: str) -> int | None:
        response = await self._client.send(self._request("HEAD", self._object(area, key)))
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise S3Error(response.status_code, response.reason_phrase, "HEAD")
        return int(response.headers["content-length"])

    async def close(self) -> None:
        await self._client.aclose()
