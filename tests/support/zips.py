"""Zip archives for the scanning tests, built in memory: plain, nested, a bomb, and archives
whose headers claim what zipfile cannot write (encryption, another packing method)."""

from __future__ import annotations

import io
import struct
import zipfile

MiB = 1024 * 1024


def zip_of(members: dict[str, bytes], *, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def nested(name: str, data: bytes, levels: int) -> bytes:
    """A zip holding `name`, inside `levels` more zips (`levels` archives nested in the
    returned one); each archive's single member is `level<n>.zip`."""
    archive = zip_of({name: data})
    for level in range(levels):
        archive = zip_of({f"level{level}.zip": archive})
    return archive


def zeros_bomb(size: int = 50 * MiB) -> bytes:
    """One member of `size` zero bytes, deflated (about a thousandth of its size), written a
    MiB at a time."""
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open("zeros.bin", "w", force_zip64=True) as member,
    ):
        block = bytes(MiB)
        for _ in range(size // MiB):
            member.write(block)
    return buffer.getvalue()


def patched(archive: bytes, *, flag_bits: int = 0, method: int | None = None) -> bytes:
    """`archive` with every member's general-purpose flags OR-ed with `flag_bits` (1: encrypted)
    and, when given, its packing `method`, in both its local and central headers."""
    data = bytearray(archive)
    for signature, flags_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.find(signature)
        while at >= 0:
            (flags,) = struct.unpack_from("<H", data, at + flags_at)
            struct.pack_into("<H", data, at + flags_at, flags | flag_bits)
            if method is not None:
                struct.pack_into("<H", data, at + flags_at + 2, method)
            at = data.find(signature, at + 4)
    return bytes(data)


def declaring(archive: bytes, members: int) -> bytes:
    """`archive` whose end record claims `members` entries (at most 65534)."""
    data = bytearray(archive)
    at = data.rfind(b"PK\x05\x06")
    struct.pack_into("<HH", data, at + 8, members, members)
    return bytes(data)
