"""Looking into zips within limits: members (nested ones too) come out as they unpack; a bomb by
depth, ratio, size or member count raises `ArchiveLimitExceeded`; a corrupt archive is opaque;
an encrypted member or an unknown packing method is reported unreadable, not guessed at."""

from __future__ import annotations

import io
import os
import time
import zipfile

import pytest

from support.clamd import EICAR
from support.zips import MiB, declaring, nested, patched, zeros_bomb, zip_of
from townhall.uploads.archives import ArchiveLimitExceeded, ArchiveLimits, ZipWalk


def walk(archive: bytes, limits: ArchiveLimits | None = None) -> tuple[ZipWalk, dict[str, bytes]]:
    """Every member's bytes, read as a scanner would, chunk by chunk."""
    zip_walk = ZipWalk(io.BytesIO(archive), limits or ArchiveLimits())
    members = {path: b"".join(chunks) for path, chunks in zip_walk}
    return zip_walk, members


def test_members_come_out_with_their_bytes() -> None:
    zip_walk, members = walk(zip_of({"docs/readme.txt": b"hello", "eicar.com": EICAR}))
    assert members == {"docs/readme.txt": b"hello", "eicar.com": EICAR}
    assert zip_walk.members == 2
    assert zip_walk.total_bytes == 5 + len(EICAR)
    assert zip_walk.corrupt == [] and zip_walk.unreadable == []


def test_directories_are_not_members_to_scan() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.mkdir("empty")
        archive.writestr("empty/file.txt", b"x")
    assert walk(buffer.getvalue())[1] == {"empty/file.txt": b"x"}


def test_a_nested_archive_is_scanned_whole_then_walked() -> None:
    inner = zip_of({"eicar.com": EICAR})
    _, members = walk(zip_of({"inner.zip": inner, "a.txt": b"a"}))
    assert members == {"inner.zip": inner, "inner.zip!/eicar.com": EICAR, "a.txt": b"a"}


def test_archives_nested_to_the_depth_limit_are_walked() -> None:
    _, members = walk(nested("eicar.com", EICAR, levels=3), ArchiveLimits(max_depth=3))
    assert members["level2.zip!/level1.zip!/level0.zip!/eicar.com"] == EICAR


def test_an_archive_nested_past_the_depth_limit_is_a_bomb() -> None:
    with pytest.raises(ArchiveLimitExceeded, match="depth"):
        walk(nested("eicar.com", EICAR, levels=4), ArchiveLimits(max_depth=3))


def test_depth_zero_walks_only_the_uploads_own_members() -> None:
    walk(zip_of({"a.txt": b"a"}), ArchiveLimits(max_depth=0))
    with pytest.raises(ArchiveLimitExceeded, match="depth"):
        walk(nested("a.txt", b"a", levels=1), ArchiveLimits(max_depth=0))


def test_a_member_unpacking_past_the_ratio_is_a_bomb_found_early() -> None:
    bomb = zeros_bomb(50 * MiB)
    assert len(bomb) < 100 * 1024
    zip_walk = ZipWalk(io.BytesIO(bomb), ArchiveLimits(max_ratio=100))
    started = time.monotonic()
    with pytest.raises(ArchiveLimitExceeded, match="ratio"):
        for _path, chunks in zip_walk:
            for _ in chunks:
                pass
    assert zip_walk.total_bytes < 10 * MiB  # stopped long before the 50 MiB
    assert time.monotonic() - started < 2


def test_a_small_very_compressible_member_is_no_bomb() -> None:
    _, members = walk(zip_of({"blank.txt": bytes(512 * 1024)}), ArchiveLimits(max_ratio=10))
    assert len(members["blank.txt"]) == 512 * 1024


def test_bytes_unpacked_in_all_past_the_limit_are_a_bomb() -> None:
    archive = zip_of(
        {"a.bin": os.urandom(600 * 1024), "b.bin": os.urandom(600 * 1024)},
        compression=zipfile.ZIP_STORED,
    )
    walk(archive, ArchiveLimits(max_total_bytes=2 * MiB))
    with pytest.raises(ArchiveLimitExceeded, match="total_bytes"):
        walk(archive, ArchiveLimits(max_total_bytes=1 * MiB))


def test_nested_bytes_count_towards_the_total() -> None:
    inner = zip_of({"a.bin": os.urandom(400 * 1024)}, compression=zipfile.ZIP_STORED)
    # The inner zip's bytes (400 KiB) and then its member's (400 KiB) again.
    with pytest.raises(ArchiveLimitExceeded, match="total_bytes"):
        walk(zip_of({"inner.zip": inner}), ArchiveLimits(max_total_bytes=700 * 1024))


def test_more_members_than_the_limit_is_a_bomb_before_any_is_read() -> None:
    archive = zip_of({f"{i}.txt": b"x" for i in range(11)})
    walk(archive, ArchiveLimits(max_members=11))
    zip_walk = ZipWalk(io.BytesIO(archive), ArchiveLimits(max_members=10))
    with pytest.raises(ArchiveLimitExceeded, match="members"):
        next(iter(zip_walk))
    assert zip_walk.total_bytes == 0


def test_members_of_nested_archives_count_towards_the_limit() -> None:
    inner = zip_of({f"{i}.txt": b"x" for i in range(6)})
    archive = zip_of({"inner.zip": inner, **{f"{i}.txt": b"y" for i in range(4)}})
    walk(archive, ArchiveLimits(max_members=11))  # 5 + 6
    with pytest.raises(ArchiveLimitExceeded, match="members"):
        walk(archive, ArchiveLimits(max_members=10))


def test_a_declared_member_count_past_the_limit_is_refused_unread() -> None:
    archive = declaring(zip_of({"a.txt": b"a"}), 60_000)
    with pytest.raises(ArchiveLimitExceeded, match="members"):
        walk(archive)


def test_a_corrupt_archive_is_opaque() -> None:
    zip_walk, members = walk(b"PK\x03\x04" + os.urandom(4096))
    assert members == {}
    assert zip_walk.corrupt == ["/"]


def test_a_truncated_archive_is_opaque() -> None:
    archive = zip_of({"a.bin": os.urandom(64 * 1024)})
    zip_walk, members = walk(archive[: len(archive) // 2])
    assert members == {} and zip_walk.corrupt == ["/"]


def test_an_archive_damaged_inside_a_member_stops_there() -> None:
    archive = bytearray(zip_of({"a.txt": b"a", "b.bin": os.urandom(300 * 1024), "c.txt": b"c"}))
    at = archive.find(b"b.bin") + 5 + 1000  # inside b.bin's packed data
    archive[at] ^= 0xFF
    zip_walk, members = walk(bytes(archive))
    assert members["a.txt"] == b"a"
    assert "c.txt" not in members
    assert zip_walk.corrupt == ["/"]


def test_a_corrupt_nested_archive_is_opaque_and_its_siblings_are_walked() -> None:
    broken = b"PK\x03\x04" + os.urandom(100)
    zip_walk, members = walk(zip_of({"inner.zip": broken, "z.txt": b"z"}))
    assert members == {"inner.zip": broken, "z.txt": b"z"}
    assert zip_walk.corrupt == ["inner.zip!/"]


def test_an_encrypted_member_is_unreadable_and_skipped() -> None:
    archive = patched(zip_of({"secret.txt": b"s"}), flag_bits=0x1)
    zip_walk, members = walk(archive)
    assert members == {}
    assert zip_walk.unreadable == [("secret.txt", "encrypted_archive")]


def test_a_member_packed_by_an_unknown_method_is_unreadable() -> None:
    archive = patched(zip_of({"big.bin": b"d" * 100}), method=9)  # Deflate64
    zip_walk, members = walk(archive)
    assert members == {}
    assert zip_walk.unreadable == [("big.bin", "unsupported_archive")]
