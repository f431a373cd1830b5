"""Uploads through the HTTP API, as their owners and others see them, on SQLite with everything
in process and on PostgreSQL with RabbitMQ: a 202 at once, the scan's result, the owner told
once, the content of a clean file only (ranges, ETag, a safe name), and every refusal: too
large, empty, a lying type, someone else's upload, bad cursors."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from support.s3 import s3_server as s3_server
from support.smtp_receiver import SmtpReceiver
from support.uploads import EICAR, PNG, UploadsApp, uploads_app
from support.uploads import stack as stack
from support.uploads import upload_databases as upload_databases
from townhall.uploads.workers import SCAN_GROUP

pytestmark = pytest.mark.timeout(90)
# What does not depend on the database or the bus runs on the embedded defaults only (the SQL
# store's own statements run on PostgreSQL in the tests of both stacks).
EMBEDDED = pytest.mark.parametrize("stack", ["sqlite+memory"], indirect=True)


def stored_files(tmp_path: Path) -> list[Path]:
    """Every file the local storage holds, in both areas (partial files included)."""
    root = tmp_path / "uploads"
    return [p for area in ("quarantine", "clean") for p in (root / area).glob("*") if p.is_file()]


async def test_an_upload_is_accepted_at_once_scanned_clean_and_served(stack, tmp_path):
    async with uploads_app(stack, tmp_path) as app:
        owner = await app.user()
        answer = await app.send(owner, PNG, "../holiday photo.png", "image/png")
        assert answer.status_code == 202, answer.text
        made = answer.json()
        assert answer.headers["location"] == f"/api/v1/uploads/{made['id']}"
        assert made["status"] in ("PENDING_SCAN", "CLEAN")  # in process, the scan is quick
        assert made["filename"] == "holiday photo.png"
        assert made["content_type"] == "image/png"
        assert made["size"] == len(PNG)
        assert made["sha256"] == hashlib.sha256(PNG).hexdigest()

        done = await app.scanned(owner, made["id"])
        assert done["status"] == "CLEAN" and done["detection"] is None
        assert done["scanned_at"] >= done["created_at"]

        got = await app.content(owner, made["id"])
        assert got.status_code == 200
        assert got.content == PNG
        assert got.headers["content-type"] == "image/png"
        assert got.headers["etag"] == f'"{made["sha256"]}"'
        assert got.headers["accept-ranges"] == "bytes"
        assert got.headers["x-content-type-options"] == "nosniff"
        assert got.headers["content-disposition"].startswith(
            'attachment; filename="holiday photo.png"'
        )
        # The owner is told once, in-app, naming the file.
        told = await app.told(owner, 1)
        assert told[0]["subject"] == "Your file holiday photo.png is ready"


@EMBEDDED
async def test_an_owner_with_an_address_is_told_by_email_too(stack, tmp_path):
    with SmtpReceiver() as smtp:
        async with uploads_app(stack, tmp_path, smtp_url=smtp.url) as app:
            owner = await app.user(email="owner@example.org")
            made = await app.upload(owner, EICAR, "report.txt")
            await app.scanned(owner, made["id"])
            [notice] = await app.told(owner, 1)
            deadline = asyncio.get_running_loop().time() + 10
            while not (mails := [m for m in smtp.receiver.messages if b"report.txt" in m]):
                assert asyncio.get_running_loop().time() < deadline, "no email"
                await asyncio.sleep(0.05)
            [mail] = mails  # and the welcome
            assert b"owner@example.org" in mail
            assert b"report.txt" in mail and b"EICAR" in mail
            assert notice["subject"].encode() in mail


@EMBEDDED
async def test_ranges_and_revalidation(stack, tmp_path):
    async with uploads_app(stack, tmp_path) as app:
        owner = await app.user()
        data = bytes(range(256)) * 40  # 10,240 bytes, served as octet-stream
        made = await app.upload(owner, data, "data.bin")
        await app.scanned(owner, made["id"])

        part = await app.content(owner, made["id"], range="bytes=100-199")
        assert part.status_code == 206
        assert part.content == data[100:200]
        assert part.headers["content-range"] == f"bytes 100-199/{len(data)}"
        assert part.headers["content-length"] == "100"
        tail = await app.content(owner, made["id"], range="bytes=-16")
        assert (tail.status_code, tail.content) == (206, data[-16:])
        beyond = await app.content(owner, made["id"], range=f"bytes={len(data)}-")
        assert beyond.status_code == 416
        assert beyond.headers["content-range"] == f"bytes */{len(data)}"
        assert beyond.headers["content-type"] == "application/problem+json"

        etag = part.headers["etag"]
        same = await app.content(owner, made["id"], **{"if-none-match": etag})
        assert (same.status_code, same.content) == (304, b"")


@EMBEDDED
async def test_a_raw_body_upload_takes_its_name_from_content_disposition(stack, tmp_path):
    async with uploads_app(stack, tmp_path) as app:
        owner = await app.user()
        answer = await app.client.post(
            "/api/v1/uploads",
            content=b"%PDF-1.7\n% a tiny document\n",
            headers={
                **owner.headers,
                "content-type": "application/pdf",
                "content-disposition": "attachment; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf",
            },
        )
        assert answer.status_code == 202, answer.text
        assert answer.json()["filename"] == "résumé.pdf"
        assert answer.json()["content_type"] == "application/pdf"
        await app.scanned(owner, answer.json()["id"])
        got = await app.content(owner, answer.json()["id"])
        assert "filename*=UTF-8''r%C3%A9sum%C3%A9.pdf" in got.headers["content-disposition"]


async def test_the_eicar_file_is_infected_never_served_and_the_owner_is_told(stack, tmp_path):
    async with uploads_app(stack, tmp_path) as app:
        owner = await app.user()
        made = await app.upload(owner, EICAR, "eicar.com.txt", content_type="text/plain")
        done = await app.scanned(owner, made["id"])
        assert done["status"] == "INFECTED"
        assert "EICAR" in done["detection"]

        refused = await app.content(owner, made["id"])
        assert refused.status_code == 409
        assert refused.json()["upload_status"] == "INFECTED"
        told = await app.told(owner, 1)
        assert told[0]["subject"] == "Your file eicar.com.txt was blocked"
        assert done["detection"] in told[0]["body"]
        # The infected file stays in quarantine, never in the clean area.
        assert [p.parent.name for p in stored_files(tmp_path)] == ["quarantine"]
        # It is listed with its status.
        mine = await app.client.get("/api/v1/me/uploads", headers=owner.headers)
        assert [(i["id"], i["status"]) for i in mine.json()["items"]] == [(made["id"], "INFECTED")]


class Gate:
    """Holds every scan until opened: the scan group runs, its results wait."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.open = asyncio.Event()

    async def verdict(self, chunks, content_type):
        await self.open.wait()
        return await self.inner.verdict(chunks, content_type)


async def test_nothing_is_served_until_the_clean_result_is_committed(stack, tmp_path):
    """Consistency first (C/C): while its scan has not committed, an upload is kept and its
    content refused (409, PENDING_SCAN); once the result commits, it is served."""
    async with uploads_app(stack, tmp_path) as app:
        worker = app.scan_worker()
        worker.inspector = gate = Gate(worker.inspector)
        owner = await app.user()
        made = await app.upload(owner, PNG, "wait.png")
        for _ in range(3):
            refused = await app.content(owner, made["id"])
            assert refused.status_code == 409
            assert refused.json()["upload_status"] == "PENDING_SCAN"
            await asyncio.sleep(0.1)
        status = await app.status(owner, made["id"])
        assert status.json()["status"] == "PENDING_SCAN"

        gate.open.set()
        assert (await app.scanned(owner, made["id"]))["status"] == "CLEAN"
        assert (await app.content(owner, made["id"])).content == PNG


@EMBEDDED
async def test_refused_uploads_leave_nothing_behind(stack, tmp_path):
    async with uploads_app(stack, tmp_path, uploads_max_bytes=64 * 1024) as app:
        owner = await app.user()
        # Declared too large: refused before a byte is read.
        declared = await app.send(owner, b"x" * (64 * 1024 + 1), "big.txt", "text/plain")
        assert declared.status_code == 413, declared.text
        assert declared.headers["content-type"] == "application/problem+json"

        # Too large without a length (chunked): refused on the way.
        async def chunks():
            for _ in range(40):
                yield b"y" * 4096

        streamed = await app.client.post(
            "/api/v1/uploads",
            content=chunks(),
            headers={**owner.headers, "content-type": "text/plain"},
        )
        assert streamed.status_code == 413, streamed.text

        # A declared type the bytes contradict.
        lying = await app.send(owner, b"%PDF-1.4 not really a picture", "x.png", "image/png")
        assert lying.status_code == 415, lying.text
        assert "application/pdf, not the declared image/png" in lying.json()["detail"]

        # An empty file.
        empty = await app.send(owner, b"", "empty.txt", "text/plain")
        assert empty.status_code == 422, empty.text
        assert empty.json()["errors"][0]["field"] == "file"

        # A form without a file part.
        no_file = await app.client.post(
            "/api/v1/uploads",
            data={"note": "hi"},
            files={"other": ("a", b"a")},
            headers=owner.headers,
        )
        assert no_file.status_code == 422, no_file.text

        assert stored_files(tmp_path) == []
        mine = await app.client.get("/api/v1/me/uploads", headers=owner.headers)
        assert mine.json() == {"items": [], "next_cursor": None}


async def test_other_users_see_nothing_of_an_upload(stack, tmp_path):
    async with uploads_app(stack, tmp_path) as app:
        owner, other = await app.user(), await app.user()
        made = await app.upload(owner, PNG, "mine.png")
        await app.scanned(owner, made["id"])
        for answer in (
            await app.status(other, made["id"]),
            await app.content(other, made["id"]),
            await app.client.delete(f"/api/v1/uploads/{made['id']}", headers=other.headers),
        ):
            assert answer.status_code == 404, answer.text
        listed = await app.client.get("/api/v1/me/uploads", headers=other.headers)
        assert listed.json()["items"] == []
        unsigned = await app.client.get(f"/api/v1/uploads/{made['id']}")
        assert unsigned.status_code == 401
        # The owner still has it.
        assert (await app.content(owner, made["id"])).status_code == 200


@EMBEDDED
async def test_the_owner_deletes_an_upload_and_its_bytes(stack, tmp_path):
    async with uploads_app(stack, tmp_path) as app:
        owner = await app.user()
        made = await app.upload(owner, PNG, "gone.png")
        await app.scanned(owner, made["id"])
        assert len(stored_files(tmp_path)) == 1
        deleted = await app.client.delete(f"/api/v1/uploads/{made['id']}", headers=owner.headers)
        assert deleted.status_code == 204
        assert (await app.status(owner, made["id"])).status_code == 404
        assert (await app.content(owner, made["id"])).status_code == 404
        again = await app.client.delete(f"/api/v1/uploads/{made['id']}", headers=owner.headers)
        assert again.status_code == 404
        assert stored_files(tmp_path) == []


async def test_the_owners_uploads_page_newest_first(stack, tmp_path):
    async with uploads_app(stack, tmp_path, without=[SCAN_GROUP]) as app:
        owner = await app.user()
        made = [
            (await app.upload(owner, f"note {i}\n".encode(), f"{i}.txt"))["id"] for i in range(5)
        ]
        seen, cursor = [], None
        while True:
            params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = await app.client.get("/api/v1/me/uploads", params=params, headers=owner.headers)
            assert page.status_code == 200, page.text
            seen += [i["id"] for i in page.json()["items"]]
            cursor = page.json()["next_cursor"]
            if cursor is None:
                break
        assert seen == list(reversed(made))
        for bad in ({"cursor": "nope"}, {"limit": 0}, {"limit": 101}):
            refused = await app.client.get("/api/v1/me/uploads", params=bad, headers=owner.headers)
            assert refused.status_code == 422, refused.text


@EMBEDDED
async def test_a_redelivered_upload_event_scans_and_notifies_once(stack, tmp_path):
    """At least once: the scan of an upload scanned already changes nothing and tells nobody
    again."""
    async with uploads_app(stack, tmp_path) as app:
        owner = await app.user()
        made = await app.upload(owner, EICAR, "twice.txt")
        await app.scanned(owner, made["id"])
        worker = app.scan_worker()
        assert await worker.scan(made["id"]) is not None
        assert await worker.scan("00000000-0000-7000-8000-000000000000") is None
        await app.told(owner, 1)
        assert len(await app.inbox(owner)) == 1


__all__ = ["UploadsApp"]


@EMBEDDED
async def test_an_upload_whose_message_was_lost_is_scanned_by_the_sweep(stack, tmp_path):
    """On the in-process bus a crash loses what the bus held: the sweep scans what has waited
    past `uploads_rescue_after`, and the owner is told once."""
    async with uploads_app(stack, tmp_path, without=[SCAN_GROUP]) as app:
        owner = await app.user()
        made = await app.upload(owner, EICAR, "lost.txt")  # nobody consumes its message
        worker = app.scan_worker()
        assert await worker.rescue(timedelta(hours=1)) == 0  # not stale yet
        # At least this one (the database is shared with other tests, whose uploads count too).
        assert await worker.rescue(timedelta(0)) >= 1
        assert (await app.scanned(owner, made["id"]))["status"] == "INFECTED"
        assert await worker.rescue(timedelta(0)) == 0
        assert len(await app.told(owner, 1)) == 1


async def test_on_s3_storage_a_file_is_kept_scanned_moved_and_served(stack, tmp_path, s3_server):
    """The same path with the files on an S3-compatible store (moto, checking signatures):
    quarantine, then the clean area, ranges from it; an infected file never leaves
    quarantine; a deleted one is gone from the bucket."""
    prefix = f"t{uuid.uuid4().hex[:8]}/"
    async with uploads_app(stack, tmp_path, uploads_storage=s3_server.url(prefix)) as app:
        owner = await app.user()
        data = bytes(range(256)) * 4096  # 1 MiB
        made = await app.upload(owner, data, "big.bin")
        assert (await app.scanned(owner, made["id"]))["status"] == "CLEAN"
        part = await app.content(owner, made["id"], range="bytes=1000-1999")
        assert (part.status_code, part.content) == (206, data[1000:2000])
        assert (await app.content(owner, made["id"])).content == data
        bad = await app.upload(owner, EICAR, "bad.txt")
        assert (await app.scanned(owner, bad["id"]))["status"] == "INFECTED"
        assert sorted(s3_server.keys(prefix)) == [
            f"{prefix}clean/{made['id']}",
            f"{prefix}quarantine/{bad['id']}",
        ]
        for upload_id in (made["id"], bad["id"]):
            gone = await app.client.delete(f"/api/v1/uploads/{upload_id}", headers=owner.headers)
            assert gone.status_code == 204
        assert s3_server.keys(prefix) == []
