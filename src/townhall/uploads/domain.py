"""Uploads' domain: an upload's life (PENDING_SCAN, then CLEAN, INFECTED or FAILED, once), the
content type decided by the bytes, a safe file name and `Content-Disposition`, byte ranges, and
a scanner's verdict. Pure: no I/O.
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
import unicodedata
import uuid
from collections.abc import Collection
from dataclasses import dataclass, replace
from datetime import datetime
from urllib.parse import quote

from townhall.platform.errors import (
    Conflict,
    DomainError,
    Invalid,
    NotFound,
    TooLarge,
    UnsupportedMediaType,
)


class Status(enum.StrEnum):
    PENDING_SCAN = "PENDING_SCAN"
    CLEAN = "CLEAN"
    INFECTED = "INFECTED"
    FAILED = "FAILED"


TERMINAL = frozenset({Status.CLEAN, Status.INFECTED, Status.FAILED})


class UploadNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("no such upload")


class NotClean(Conflict):
    """The content is asked for before (or without) a clean scan."""

    def __init__(self, status: Status) -> None:
        super().__init__(f"the upload is {status.value}; only a CLEAN upload is served")
        self.status = status


class UploadTooLarge(TooLarge):
    pass


class UnsupportedType(UnsupportedMediaType):
    pass


class InvalidUpload(Invalid):
    pass


class NotAttachable(Invalid):
    """An attachment names an upload the author does not own, or one that is infected or gone:
    told the same way, so nobody learns of another user's upload."""

    def __init__(self, upload_id: str) -> None:
        super().__init__(f"no upload of yours with id {upload_id}", field="attachments")


@dataclass(frozen=True)
class Verdict:
    """What a scan found. `detection` names the signature (INFECTED) or the reason (FAILED)."""

    status: Status
    detection: str | None = None

    @classmethod
    def clean(cls) -> Verdict:
        return cls(Status.CLEAN)

    @classmethod
    def infected(cls, detection: str) -> Verdict:
        return cls(Status.INFECTED, detection)

    @classmethod
    def failed(cls, reason: str) -> Verdict:
        return cls(Status.FAILED, reason)


class ScanError(Exception):
    """A scan that could not finish (the scanner down, timed out, or broken): retried, then the
    upload is FAILED, never CLEAN."""


@dataclass(frozen=True)
class Upload:
    id: str
    owner: str
    filename: str
    content_type: str
    size: int
    sha256: str
    status: Status
    created_at: datetime
    scanned_at: datetime | None = None
    detection: str | None = None
    scan_attempts: int = 0

    def scanned(self, verdict: Verdict, at: datetime) -> Upload:
        """The first verdict stands: a scan redelivered after the result was committed changes
        nothing (the caller checks `status` and publishes nothing)."""
        if self.status in TERMINAL:
            return self
        if verdict.status not in TERMINAL:
            raise ValueError(f"a scan ends CLEAN, INFECTED or FAILED, not {verdict.status}")
        return replace(self, status=verdict.status, detection=verdict.detection, scanned_at=at)

    @property
    def etag(self) -> str:
        return f'"{self.sha256}"'


# Content types by their first bytes. Only what a browser or a viewer would treat as the type.
_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"GIF87a", 0, "image/gif"),
    (b"GIF89a", 0, "image/gif"),
    (b"%PDF-", 0, "application/pdf"),
    (b"PK\x03\x04", 0, "application/zip"),
    (b"PK\x05\x06", 0, "application/zip"),  # an empty archive
)
SNIFF_BYTES = 512
OCTET_STREAM = "application/octet-stream"
DEFAULT_ALLOWED = (
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "application/pdf",
    "text/plain",
    "application/zip",
    OCTET_STREAM,
)
# Types a client may declare for the same bytes.
_ALIASES = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "application/x-zip-compressed": "application/zip",
    "application/x-zip": "application/zip",
    "application/x-pdf": "application/pdf",
}


def sniff(head: bytes) -> str:
    """The type the first bytes show (up to `SNIFF_BYTES`): an image, PDF or zip by its magic
    number; text when they are UTF-8 with no control characters but whitespace; else
    `application/octet-stream`."""
    for magic, offset, kind in _SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head and _is_text(head):
        return "text/plain"
    return OCTET_STREAM


def _is_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the end of the sniffed bytes is still text.
        if exc.start < len(head) - 3:
            return False
        text = head[: exc.start].decode("utf-8")
    return all(ch in "\t\n\r\f" or unicodedata.category(ch) != "Cc" for ch in text)


def normalise_type(declared: str | None) -> str | None:
    """The media type a header declares, lower case without parameters; None for none."""
    if not declared:
        return None
    kind = declared.split(";", 1)[0].strip().lower()
    return _ALIASES.get(kind, kind) or None


def decide_type(declared: str | None, head: bytes, allowed: Collection[str]) -> str:
    """The upload's content type: what the bytes are. A declared specific type the bytes
    contradict is refused (415); `application/octet-stream` (or nothing) declares nothing.
    A sniffed type outside `allowed` is refused (415)."""
    sniffed = sniff(head)
    kind = normalise_type(declared)
    if kind is not None and kind != OCTET_STREAM and kind != sniffed:
        # Text declared as a text subtype the sniffer cannot tell apart (text/csv, text/markdown)
        # is text.
        if not (sniffed == "text/plain" and kind.startswith("text/")):
            raise UnsupportedType(f"the body is {sniffed}, not the declared {kind}")
    if sniffed not in allowed:
        raise UnsupportedType(f"{sniffed} is not an allowed upload type")
    return sniffed


_UNSAFE = re.compile(r'[\x00-\x1f\x7f"\\/:*?<>|]+')
MAX_FILENAME = 255


def safe_filename(name: str | None) -> str:
    """A file name with no directory, no control or shell-special characters, no leading dots,
    at most 255 characters; `upload` when nothing is left."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = unicodedata.normalize("NFC", base)
    base = _UNSAFE.sub("_", base).strip(" .")
    if len(base) > MAX_FILENAME:
        _stem, dot, ext = base.rpartition(".")
        keep = ext if dot and len(ext) <= 16 else ""
        base = base[: MAX_FILENAME - len(keep) - 1] + ("." + keep if keep else "")
    return base or "upload"


def content_disposition(filename: str, disposition: str = "attachment") -> str:
    """RFC 6266: an ASCII fallback and the UTF-8 name (RFC 5987)."""
    ascii_name = filename.encode("ascii", "replace").decode("ascii").replace("?", "_")
    return f"{disposition}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"


class RangeNotSatisfiable(DomainError):
    code = "range-not-satisfiable"
    title = "Range not satisfiable"

    def __init__(self, size: int) -> None:
        super().__init__(f"the range is outside the {size} bytes of the content")
        self.size = size


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """One byte range of `bytes=A-B`, `bytes=A-` or `bytes=-N` as (first, last) inclusive;
    None to send it all (no header, a unit other than bytes, several ranges, or a malformed
    one, as RFC 9110 allows); `RangeNotSatisfiable` when it starts past the end."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_text, dash, last_text = spec.strip().partition("-")
    if not dash:
        return None
    try:
        if first_text == "":
            length = int(last_text)
            if length <= 0:
                raise RangeNotSatisfiable(size)
            return max(0, size - length), size - 1
        first = int(first_text)
        last = int(last_text) if last_text else size - 1
    except ValueError:
        return None
    if first >= size:
        raise RangeNotSatisfiable(size)
    if last < first:
        return None
    return first, min(last, size - 1)


class InvalidCursor(Invalid):
    def __init__(self) -> None:
        super().__init__(
            "the cursor is malformed; pass back a next_cursor as it was", field="cursor"
        )


def encode_cursor(upload_id: str) -> str:
    """Opaque: base64url of the position (the last upload id shown)."""
    return base64.urlsafe_b64encode(uuid.UUID(upload_id).bytes).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        upload_id = str(uuid.UUID(bytes=raw))
    except (ValueError, binascii.Error):
        raise InvalidCursor() from None
    if encode_cursor(upload_id) != cursor:  # only exactly what encode_cursor made
        raise InvalidCursor()
    return upload_id
