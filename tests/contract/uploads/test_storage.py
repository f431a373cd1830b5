"""One contract for every ObjectStorage (a directory; S3 on a real moto server that checks
every request's signature): whole objects and ranges, large objects streamed in bounded memory
(S3: as a multipart upload), a body that fails leaves nothing, idempotent moves, deletion.
Then the directory's partial (tus) uploads: offsets, bytes kept when a client goes away,
one append at a time, expiry.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from support.s3 import S3Server
from support.s3 import s3_server as s3_server  # the fixture
from townhall.uploads.adapters.local import LocalPartialUploads, LocalStorage, UploadLocked
from townhall.uploads.adapters.memory import MemoryStorage
from townhall.uploads.adapters.s3 import S3Storage
from townhall.uploads.ports import Area, ObjectMissing, ObjectStorage

pytestmark = pytest.mark.timeout(30)

MiB = 1024 * 1024
CHUNK = 256 * 1024
PART = 5 * MiB  # S3's smallest part, so that 20 MiB is a multipart upload of 4


class ClientGone(Exception):
    pass


@pytest.fixture(params=["memory", "local", "s3"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ObjectStorage]:
    if request.param == "memory":  # the unit tests' fake keeps the contract too
        store: ObjectStorage = MemoryStorage()
    elif request.param == "local":
        store = LocalStorage(tmp_path / "objects")
    else:
        server: S3Server = request.getfixturevalue("s3_server")
        store = S3Storage(
            server.endpoint,
            server.bucket,
            server.access_key,
            server.secret_key,
            region=server.region,
            prefix=f"test-{uuid.uuid4().hex[:12]}/",  # this test's own objects
            part_size=PART,
        )
    yield store
    await store.close()


def new_key() -> str:
    return str(uuid.uuid4())


async def stream(data: bytes, chunk: int = CHUNK) -> AsyncIterator[bytes]:
    for start in range(0, len(data), chunk):
        yield data[start : start + chunk]


async def random_stream(size: int, digest: hashlib._Hash) -> AsyncIterator[bytes]:
    """`size` random bytes, made as they are asked for (never all in memory)."""
    for _ in range(size // CHUNK):
        chunk = os.urandom(CHUNK)
        digest.update(chunk)
        yield chunk


async def failing(data: bytes, after: int) -> AsyncIterator[bytes]:
    async for chunk in stream(data[:after]):
        yield chunk
    raise ClientGone


async def read(chunks: AsyncIterable[bytes]) -> bytes:
    return b"".join([chunk async for chunk in chunks])


def leftovers(storage: ObjectStorage, request: pytest.FixtureRequest) -> list[str]:
    """What a put that failed may have left behind: temporary files, or S3 objects and
    multipart uploads begun and never completed nor aborted."""
    if isinstance(storage, MemoryStorage):
        return [f"{area}/{key}" for area, key in storage.objects]
    if isinstance(storage, LocalStorage):
        return sorted(path.name for area in Area for path in (storage.root / area).iterdir())
    assert isinstance(storage, S3Storage)
    server: S3Server = request.getfixturevalue("s3_server")
    return server.keys(storage.prefix) + server.multipart_uploads(storage.prefix)


# --- put and get --------------------------------------------------------------------------


async def test_an_object_put_is_read_whole_and_by_ranges(storage: ObjectStorage) -> None:
    data = os.urandom(MiB + 12345)
    key, end = new_key(), len(data) - 1
    assert await storage.put(Area.QUARANTINE, key, stream(data, 100_000)) == len(data)
    assert await storage.size(Area.QUARANTINE, key) == len(data)
    assert await read(storage.get(Area.QUARANTINE, key)) == data
    ranges = {
        "first bytes": (0, 99),
        "first byte": (0, 0),
        "middle": (300_000, 700_001),
        "suffix": (end - 999, None),
        "to the end, given": (5, end),
        "last byte": (end, end),
    }
    for name, (first, last) in ranges.items():
        got = await read(storage.get(Area.QUARANTINE, key, first, last))
        assert got == data[first : None if last is None else last + 1], name


async def test_an_empty_object_is_kept_and_read(storage: ObjectStorage) -> None:
    key = new_key()
    assert await storage.put(Area.QUARANTINE, key, stream(b"")) == 0
    assert await storage.size(Area.QUARANTINE, key) == 0
    assert await read(storage.get(Area.QUARANTINE, key)) == b""
    # How the service asks for all of an object of `size` bytes: 0..size-1.
    assert await read(storage.get(Area.QUARANTINE, key, 0, -1)) == b""
    with pytest.raises(ObjectMissing):
        await read(storage.get(Area.QUARANTINE, new_key(), 0, -1))


async def test_twenty_mib_stream_in_bounded_memory_and_as_parts_on_s3(
    storage: ObjectStorage, request: pytest.FixtureRequest
) -> None:
    if isinstance(storage, MemoryStorage):
        pytest.skip("the fake keeps every object in memory")
    key, sent = new_key(), hashlib.sha256()
    tracemalloc.start()
    try:
        size = await storage.put(Area.QUARANTINE, key, random_stream(20 * MiB, sent))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert size == 20 * MiB
    # Well under the object: S3 holds one 5 MiB part (and a chunk); a directory two 1 MiB
    # batches (one written while the next fills).
    bound = 2 * PART if isinstance(storage, S3Storage) else 4 * MiB
    assert peak < bound, f"peak {peak / MiB:.1f} MiB"
    kept = hashlib.sha256()
    async for chunk in storage.get(Area.QUARANTINE, key):
        kept.update(chunk)
    assert kept.hexdigest() == sent.hexdigest()
    if isinstance(storage, S3Storage):
        server: S3Server = request.getfixturevalue("s3_server")
        head = server.request("HEAD", f"/{server.bucket}/{storage.prefix}quarantine/{key}")
        assert head.headers["etag"].strip('"').endswith("-4")  # a multipart upload of 4 parts


@pytest.mark.parametrize("after", [100_000, 7 * MiB], ids=["in-the-first-part", "past-a-part"])
async def test_a_body_that_fails_midway_leaves_nothing(
    storage: ObjectStorage, request: pytest.FixtureRequest, after: int
) -> None:
    key = new_key()
    with pytest.raises(ClientGone):
        await storage.put(Area.QUARANTINE, key, failing(os.urandom(after), after))
    assert await storage.size(Area.QUARANTINE, key) is None
    assert leftovers(storage, request) == []


async def test_a_put_replaces_an_object_of_the_same_key(storage: ObjectStorage) -> None:
    key = new_key()
    await storage.put(Area.QUARANTINE, key, stream(b"first version"))
    await storage.put(Area.QUARANTINE, key, stream(b"second"))
    assert await read(storage.get(Area.QUARANTINE, key)) == b"second"


async def test_a_missing_object_is_object_missing(storage: ObjectStorage) -> None:
    assert await storage.size(Area.CLEAN, new_key()) is None
    with pytest.raises(ObjectMissing):
        await read(storage.get(Area.CLEAN, new_key()))
    with pytest.raises(ObjectMissing):
        await read(storage.get(Area.CLEAN, new_key(), 10, 20))


async def test_a_key_is_never_a_path(storage: ObjectStorage) -> None:
    if isinstance(storage, MemoryStorage):
        pytest.skip("no paths in memory")
    for key in ["../escape", "a/b", ".partial-x", "", "x" * 300]:
        with pytest.raises(ValueError):
            await storage.put(Area.QUARANTINE, key, stream(b"no"))
        with pytest.raises(ValueError):
            await storage.size(Area.QUARANTINE, key)


# --- move and delete ----------------------------------------------------------------------


async def test_move_to_clean_is_idempotent(storage: ObjectStorage) -> None:
    key, data = new_key(), os.urandom(300_000)
    await storage.put(Area.QUARANTINE, key, stream(data))
    await storage.move(key, Area.QUARANTINE, Area.CLEAN)
    assert await storage.size(Area.QUARANTINE, key) is None
    assert await read(storage.get(Area.CLEAN, key)) == data
    await storage.move(key, Area.QUARANTINE, Area.CLEAN)  # a redelivered scan result
    assert await read(storage.get(Area.CLEAN, key)) == data
    assert await storage.size(Area.QUARANTINE, key) is None


async def test_moving_nothing_is_object_missing(storage: ObjectStorage) -> None:
    with pytest.raises(ObjectMissing):
        await storage.move(new_key(), Area.QUARANTINE, Area.CLEAN)


async def test_delete_removes_the_object_from_every_area(storage: ObjectStorage) -> None:
    moved, stayed = new_key(), new_key()
    await storage.put(Area.QUARANTINE, moved, stream(b"clean bytes"))
    await storage.move(moved, Area.QUARANTINE, Area.CLEAN)
    await storage.put(Area.QUARANTINE, stayed, stream(b"infected bytes"))
    await storage.delete(moved)
    await storage.delete(stayed)
    await storage.delete(new_key())  # nothing there: fine
    for key in (moved, stayed):
        for area in Area:
            assert await storage.size(area, key) is None


# --- S3 specifics -------------------------------------------------------------------------


def test_an_s3_url_names_the_store() -> None:
    store = S3Storage.from_url(
        "s3://AKIA123:se%2Fcr%2Bet@minio.local:9000/uploads/townhall?region=eu-west-1"
        "&secure=false&part_size=16777216"
    )
    assert (store.endpoint, store.bucket, store.prefix) == (
        "http://minio.local:9000",
        "uploads",
        "townhall/",
    )
    assert (store.part_size, store._signer.region, store._signer.access_key) == (
        16 * MiB,
        "eu-west-1",
        "AKIA123",
    )
    assert store._signer._secret == "se/cr+et"
    secure = S3Storage.from_url("s3://a:b@s3.example.com/bucket")
    assert (secure.endpoint, secure.prefix, secure.part_size) == (
        "https://s3.example.com",
        "",
        8 * MiB,
    )
    for wrong in ["http://a:b@host/bucket", "s3://host/bucket", "s3://a:b@host/"]:
        with pytest.raises(ValueError):
            S3Storage.from_url(wrong)


async def test_a_wrong_secret_is_refused_by_the_server(s3_server: S3Server) -> None:
    """The server checks signatures: the suite's passing says ours are right."""
    store = S3Storage(s3_server.endpoint, s3_server.bucket, s3_server.access_key, "wrong")
    try:
        with pytest.raises(Exception, match="SignatureDoesNotMatch"):
            await store.put(Area.QUARANTINE, new_key(), stream(b"x"))
    finally:
        await store.close()


# --- partial (tus) uploads on a directory --------------------------------------------------


@pytest.fixture
def partials(tmp_path: Path) -> LocalPartialUploads:
    return LocalPartialUploads(tmp_path / "partial")


async def test_appends_at_the_length_grow_the_upload(partials: LocalPartialUploads) -> None:
    key, data = new_key(), os.urandom(700_000)
    assert await partials.length(key) is None
    await partials.create(key)
    assert await partials.length(key) == 0
    assert await partials.append(key, 0, stream(data[:300_000])) == 300_000
    assert await partials.append(key, 300_000, stream(data[300_000:])) == 700_000
    assert await read(partials.read(key)) == data


async def test_an_append_at_another_offset_is_refused(partials: LocalPartialUploads) -> None:
    key = new_key()
    await partials.create(key)
    await partials.append(key, 0, stream(b"12345"))
    for offset in (0, 4, 6):
        with pytest.raises(ValueError):
            await partials.append(key, offset, stream(b"x"))
    assert await read(partials.read(key)) == b"12345"


async def test_an_append_to_an_unknown_upload_is_object_missing(
    partials: LocalPartialUploads,
) -> None:
    with pytest.raises(ObjectMissing):
        await partials.append(new_key(), 0, stream(b"x"))
    with pytest.raises(ObjectMissing):
        await read(partials.read(new_key()))


async def test_bytes_received_before_the_client_went_away_are_kept(
    partials: LocalPartialUploads,
) -> None:
    key, data = new_key(), os.urandom(3 * MiB + 100)
    await partials.create(key)
    cut = 2 * MiB + 12345  # past a write batch and within one
    with pytest.raises(ClientGone):
        await partials.append(key, 0, failing(data, cut))
    assert await partials.length(key) == cut
    assert await partials.append(key, cut, stream(data[cut:])) == len(data)  # resumed
    assert await read(partials.read(key)) == data


async def test_one_append_at_a_time(partials: LocalPartialUploads) -> None:
    key, started, go_on = new_key(), asyncio.Event(), asyncio.Event()
    await partials.create(key)

    async def slow() -> AsyncIterator[bytes]:
        yield b"abc"
        started.set()
        await go_on.wait()
        yield b"def"

    first = asyncio.create_task(partials.append(key, 0, slow()))
    await started.wait()
    with pytest.raises(UploadLocked):
        await partials.append(key, 0, stream(b"xyz"))
    go_on.set()
    assert await first == 6
    assert await read(partials.read(key)) == b"abcdef"


async def test_uploads_left_alone_expire(partials: LocalPartialUploads) -> None:
    old, recent = new_key(), new_key()
    for key in (old, recent):
        await partials.create(key)
    two_days_ago = time.time() - 2 * 86400
    os.utime(partials.root / old, (two_days_ago, two_days_ago))
    assert await partials.expired(datetime.now(UTC) - timedelta(days=1)) == [old]
    await partials.delete(old)
    assert await partials.length(old) is None
    assert await partials.expired(datetime.now(UTC) + timedelta(seconds=1)) == [recent]
