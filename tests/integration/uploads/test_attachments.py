"""Attachments in chat messages and feed posts, before and after their scans, on SQLite with
everything in process and on PostgreSQL with RabbitMQ: only the author's own uploads, and no
infected one, are attached; readers see a placeholder until the file is clean, then the file;
an upload found infected is never shown; the content is served to those who see where it is
attached (a room's members, any signed-in reader of a post that exists) and to no one else.

The scan group does not run here: each test scans by hand, so "before" and "after" are exact.
The app is served by uvicorn (as in tests/support/chat_app.py): chat needs WebSockets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from support.app import settings_for, uvicorn_serving
from support.chat_app import Socket
from support.uploads import EICAR, NO_LIMITS, PNG, Person, UploadsApp, UploadStack
from support.uploads import stack as stack
from support.uploads import upload_databases as upload_databases
from townhall.bootstrap import assemble

pytestmark = pytest.mark.timeout(90)
MODULES = ["identity", "notifications", "uploads", "chat", "feed"]
WITHIN = 10.0


class Served(UploadsApp):
    """The app on a real server: HTTP through `client`, and chat sockets."""

    def __init__(self, runtime: Any, client: httpx.AsyncClient, port: int) -> None:
        super().__init__(runtime, client)
        self.port = port
        self.sockets: list[Socket] = []

    async def socket(self, who: Person) -> Socket:
        token = who.headers["Authorization"].removeprefix("Bearer ")
        url = f"ws://127.0.0.1:{self.port}/api/v1/chat/ws?token={token}"
        socket = Socket(await connect(url, open_timeout=WITHIN, max_size=None))
        self.sockets.append(socket)
        return socket

    async def scan(self, *upload_ids: str) -> None:
        worker = self.scan_worker()
        for upload_id in upload_ids:
            await worker.scan(upload_id)

    async def post(self, who: Person, text: str, attachments: list[str]) -> httpx.Response:
        body = {"text": text, "attachments": attachments}
        return await self.client.post("/api/v1/posts", json=body, headers=who.headers)

    async def get(self, who: Person, path: str) -> dict[str, Any]:
        answer = await self.client.get(f"/api/v1{path}", headers=who.headers)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())


@asynccontextmanager
async def served(stack: UploadStack, tmp_path: Path) -> AsyncIterator[Served]:
    """identity, notifications, uploads, chat and the feed on `stack`, served by uvicorn in this
    process, with no consumer group running (scans are the test's to make)."""
    settings = settings_for(stack.database_url, tmp_path, bus_url=stack.bus_url, **NO_LIMITS)
    runtime = await assemble(settings, MODULES)
    app = runtime.create_app(consumers=False)
    async with (
        uvicorn_serving(app) as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=WITHIN) as http,
    ):
        made = Served(runtime, http, port)
        try:
            yield made
        finally:
            for socket in made.sockets:
                await socket.close()


def refused_attachments(answer: httpx.Response) -> None:
    assert answer.status_code == 422, answer.text
    assert [e["field"] for e in answer.json()["errors"]] == ["attachments"], answer.text


def clean(upload: dict[str, Any]) -> dict[str, Any]:
    """How a reader is shown a clean upload."""
    return {
        "id": upload["id"],
        "status": "CLEAN",
        "filename": upload["filename"],
        "content_type": upload["content_type"],
        "size": upload["size"],
        "url": f"/api/v1/uploads/{upload['id']}/content",
    }


def pending(upload: dict[str, Any]) -> dict[str, Any]:
    return {"id": upload["id"], "status": "PENDING_SCAN"}


def shown(attachments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Attachments as HTTP shows them, without the fields a placeholder has null."""
    return [{k: v for k, v in a.items() if v is not None} for a in attachments]


async def test_a_posts_attachments_are_the_authors_shown_as_their_scans_allow(
    stack: UploadStack, tmp_path: Path
) -> None:
    async with served(stack, tmp_path) as app:
        ann, bob = await app.user("ann"), await app.user("bob")
        photo = await app.upload(ann, PNG, "photo.png")
        late = await app.upload(ann, EICAR, "late.txt")  # infected, found after it is attached
        infected = await app.upload(ann, EICAR, "eicar.txt")
        bobs = await app.upload(bob, PNG, "bobs.png")
        await app.scan(infected["id"])

        # Someone else's upload, an infected one, or none at all: a 422 naming attachments.
        for ids in ([bobs["id"]], [infected["id"]], [photo["id"], "no-such-upload"]):
            refused_attachments(await app.post(ann, "look", ids))
        nul = await app.post(ann, "look", ["a\x00"])  # what the database cannot store
        assert nul.status_code == 422, nul.text
        assert (await app.get(ann, f"/users/{ann.id}/posts"))["items"] == []

        made = await app.post(ann, "look", [photo["id"], late["id"], photo["id"]])
        assert made.status_code == 201, made.text
        post_id = made.json()["id"]
        before = [pending(photo), pending(late)]
        assert shown(made.json()["attachments"]) == before
        assert shown((await app.get(bob, f"/posts/{post_id}"))["attachments"]) == before
        assert (await app.content(bob, photo["id"])).status_code == 409  # not clean yet

        await app.scan(photo["id"], late["id"])
        after = [clean(photo)]  # the infected one is not shown at all
        assert (await app.get(bob, f"/posts/{post_id}"))["attachments"] == after
        (item,) = (await app.get(bob, f"/users/{ann.id}/posts"))["items"]
        assert item["attachments"] == after
        (item,) = (await app.get(ann, "/feed"))["items"]
        assert item["attachments"] == after
        got = await app.content(bob, photo["id"])  # any signed-in reader of the post
        assert got.status_code == 200 and got.content == PNG
        assert (await app.content(bob, late["id"])).status_code == 404

        deleted = await app.client.delete(f"/api/v1/posts/{post_id}", headers=ann.headers)
        assert deleted.status_code == 204
        assert (await app.content(bob, photo["id"])).status_code == 404
        assert (await app.content(ann, photo["id"])).status_code == 200  # the owner's still


async def test_a_messages_attachments_are_the_authors_shown_to_the_rooms_members(
    stack: UploadStack, tmp_path: Path
) -> None:
    async with served(stack, tmp_path) as app:
        ann, bob, eve = await app.user("ann"), await app.user("bob"), await app.user("eve")
        photo = await app.upload(ann, PNG, "photo.png")
        late = await app.upload(ann, EICAR, "late.txt")
        infected = await app.upload(ann, EICAR, "eicar.txt")
        bobs = await app.upload(bob, PNG, "bobs.png")
        await app.scan(infected["id"])
        made = await app.client.post(
            "/api/v1/chat/rooms", json={"name": "r", "members": [bob.id]}, headers=ann.headers
        )
        assert made.status_code == 201, made.text
        room = made.json()["id"]
        reader, sender = await app.socket(bob), await app.socket(ann)
        await reader.join(room)

        for n, ids in enumerate(([bobs["id"]], [infected["id"]], [photo["id"], "nope"])):
            await sender.send(op="send", room=room, body="x", client_id=f"no{n}", attachments=ids)
            await sender.expect("error", code="not_attachable", field="attachments", ref=f"no{n}")

        await sender.send(op="send", room=room, body="x", client_id="nul", attachments=["a\x00"])
        await sender.expect("error", code="invalid", ref="nul")

        ids = [photo["id"], late["id"]]
        await sender.send(op="send", room=room, body="look", client_id="ok", attachments=ids)
        await sender.expect("ack", client_id="ok", seq=1)  # nothing stored before it
        live = await reader.expect("message", body="look")
        assert live["attachments"] == [pending(photo), pending(late)]  # as at the send
        assert (await app.content(bob, photo["id"])).status_code == 409

        await app.scan(photo["id"], late["id"])
        # Its resend (an ack lost) is acked again, though `late` could not be attached now.
        await sender.send(op="send", room=room, body="look", client_id="ok", attachments=ids)
        await sender.expect("ack", client_id="ok", seq=1)
        (message,) = (await app.get(bob, f"/chat/rooms/{room}/messages"))["items"]
        assert message["attachments"] == [clean(photo)]  # the infected one is not shown
        resumed = await app.socket(bob)
        await resumed.send(op="join", room=room, since=0)
        await resumed.expect("joined", room=room, replayed=1)
        replayed = await resumed.expect("message", body="look")
        assert replayed["attachments"] == [clean(photo)]

        got = await app.content(bob, photo["id"])  # a member of the room
        assert got.status_code == 200 and got.content == PNG
        assert (await app.content(eve, photo["id"])).status_code == 404  # not a member
        assert (await app.content(bob, late["id"])).status_code == 404
