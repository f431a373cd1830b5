"""Looking into zip archives within limits: every member's bytes, nested archives included, as
they unpack, so a scanner can read them; a zip bomb stops the walk with `ArchiveLimitExceeded`.

Blocking (it reads files): run it in a thread. Memory stays bounded: members are read in chunks,
and a nested archive is spooled to a temporary file (on disk past `SPOOL_IN_MEMORY`).

What is not trusted: the sizes an archive declares. The bytes each member actually unpacks to
are counted as they come out, and checked against the limits at every chunk. The member count
is checked from the archive's end record before its directory is read, so an archive declaring
millions of members is refused without building them.

What cannot be looked into, decided here:
- A corrupt archive (or one Python's zipfile cannot parse) is treated as opaque bytes: its
  members are not walked (those read before the damage was found were), and the scan of the
  file as a whole stands. It is listed in `ZipWalk.corrupt`.
- An encrypted member, or one packed by a method zipfile cannot unpack (Deflate64, AES), cannot
  be vouched for: it is skipped and listed in `ZipWalk.unreadable` with its reason
  (`encrypted_archive` or `unsupported_archive`). The scan pipeline reports such an upload
  FAILED under that reason unless something in it is infected: it is never served, and never
  called infected on no evidence.
"""

from __future__ import annotations

import struct
import tempfile
import zipfile
import zlib
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import IO

CHUNK = 256 * 1024
SPOOL_IN_MEMORY = 1024 * 1024
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
# What reading a broken archive raises (lzma's and bz2's errors on bad data are OSError and
# ValueError; a bad CRC or header is BadZipFile).
BROKEN = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError)
UNPACKABLE = frozenset(
    {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
)


@dataclass(frozen=True)
class ArchiveLimits:
    """`max_depth`: archives nested inside the upload that are looked into (0: only the upload's
    own members). `max_members`: members in all, nested ones included. `max_total_bytes`: bytes
    all members unpack to. `max_ratio`: how many times its packed size a member may unpack to,
    checked once it has unpacked past `ratio_floor` (small, very compressible files are
    common)."""

    max_depth: int = 3
    max_members: int = 10_000
    max_total_bytes: int = 1024 * 1024 * 1024
    max_ratio: int = 100
    ratio_floor: int = 1024 * 1024


class ArchiveLimitExceeded(Exception):
    """The archive is past a limit: a zip bomb, or too big to look into."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def is_zip(head: bytes) -> bool:
    return head[:4] in ZIP_MAGIC


class ZipWalk:
    """Iterate to get `(member_path, chunks)` for every file member of the zip in `file`
    (seekable), nested archives' members after the archive itself, their paths joined by `!/`
    (`outer.zip` member `a.zip` holding `x.txt` is `a.zip!/x.txt`). Read each member's chunks
    before asking for the next member (what is left unread is read then, as it must be counted
    and a nested archive spooled). `ArchiveLimitExceeded` may be raised by either iterator."""

    def __init__(self, file: IO[bytes], limits: ArchiveLimits) -> None:
        self._file = file
        self.limits = limits
        self.members = 0
        self.total_bytes = 0
        self.corrupt: list[str] = []
        self.unreadable: list[tuple[str, str]] = []

    def __iter__(self) -> Generator[tuple[str, Iterator[bytes]], None, None]:
        return self._walk(self._file, "", 0)

    def _walk(
        self, file: IO[bytes], prefix: str, depth: int
    ) -> Generator[tuple[str, Iterator[bytes]], None, None]:
        if depth > self.limits.max_depth:
            raise ArchiveLimitExceeded(
                f"depth: an archive nested {depth} deep (limit {self.limits.max_depth})"
            )
        declared = _declared_members(file)
        if declared is None:
            self.corrupt.append(prefix or "/")
            return
        if self.members + declared > self.limits.max_members:
            raise ArchiveLimitExceeded(f"members: more than {self.limits.max_members}")
        try:
            archive = zipfile.ZipFile(file)
        except BROKEN:
            self.corrupt.append(prefix or "/")
            return
        with archive:
            infos = archive.infolist()
            if self.members + len(infos) > self.limits.max_members:
                raise ArchiveLimitExceeded(f"members: more than {self.limits.max_members}")
            self.members += len(infos)
            for info in infos:
                if info.is_dir() and info.compress_size == 0:
                    continue  # a directory (one holding data is read like a file)
                path = prefix + info.filename
                if info.flag_bits & 0x1:
                    self.unreadable.append((path, "encrypted_archive"))
                    continue
                if info.compress_type not in UNPACKABLE:
                    self.unreadable.append((path, "unsupported_archive"))
                    continue
                with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as spool:
                    member = _Member(self, archive, info, spool)
                    yield path, iter(member)
                    member.drain()
                    if member.damaged:
                        self.corrupt.append(prefix or "/")
                        return
                    if member.nested:
                        spool.seek(0)
                        yield from self._walk(spool, path + "!/", depth + 1)


class _Member:
    """One member's bytes, counted against the limits as they unpack; when they start like a
    zip, also copied to `spool` to be walked in turn."""

    def __init__(
        self, walk: ZipWalk, archive: zipfile.ZipFile, info: zipfile.ZipInfo, spool: IO[bytes]
    ) -> None:
        self._walk, self._archive, self._info, self._spool = walk, archive, info, spool
        self._chunks = self._read()
        self.nested = False
        # The archive broke while this member was read: its chunks end there.
        self.damaged = False

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks

    def drain(self) -> None:
        for _ in self._chunks:
            pass

    def _read(self) -> Iterator[bytes]:
        limits, walk = self._walk.limits, self._walk
        allowed = max(self._info.compress_size, 1) * limits.max_ratio
        produced = 0
        try:
            stream = self._archive.open(self._info)
        except BROKEN:
            self.damaged = True
            return
        with stream:
            while True:
                try:
                    chunk = stream.read(CHUNK)
                except BROKEN:
                    self.damaged = True
                    return
                if not chunk:
                    return
                if produced == 0 and is_zip(chunk):
                    self.nested = True
                produced += len(chunk)
                walk.total_bytes += len(chunk)
                if walk.total_bytes > limits.max_total_bytes:
                    raise ArchiveLimitExceeded(
                        f"total_bytes: unpacks to more than {limits.max_total_bytes}"
                    )
                if produced > limits.ratio_floor and produced > allowed:
                    raise ArchiveLimitExceeded(
                        f"ratio: {self._info.filename} unpacks to more than "
                        f"{limits.max_ratio} times its packed size"
                    )
                if self.nested:
                    self._spool.write(chunk)
                yield chunk


def _declared_members(file: IO[bytes]) -> int | None:
    """How many members the end record says the archive holds (ZIP64 included); None when
    there is no end record (not a zip, or a corrupt one)."""
    file.seek(0, 2)
    size = file.tell()
    tail_size = min(size, 22 + 65535)  # the end record, then a comment of up to 64 KiB
    file.seek(size - tail_size)
    tail = file.read(tail_size)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        return None
    entries = struct.unpack_from("<H", tail, at + 10)[0]
    if entries != 0xFFFF:
        return int(entries)
    # ZIP64: its locator (20 bytes) sits just before the end record and points to the
    # ZIP64 end record, which holds the real count.
    locator = at - 20
    if locator < 0 or tail[locator : locator + 4] != b"PK\x06\x07":
        return int(entries)
    (record_at,) = struct.unpack_from("<Q", tail, locator + 8)
    if record_at + 56 > size:
        return None
    file.seek(record_at)
    record = file.read(56)
    if record[:4] != b"PK\x06\x06":
        return None
    return int(struct.unpack_from("<Q", record, 32)[0])
