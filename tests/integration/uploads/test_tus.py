"""Resumable uploads over tus 1.0 with a real tus client (tuspy), against a served townhall
over a real socket (tuspy speaks HTTP through `requests`): a file uploaded in chunks is
scanned and served; an upload interrupted after some chunks resumes where it stopped from a
new client; bytes sent before a connection dropped are kept; and the protocol's refusals
(wrong offset, no version, too large, empty, a lying type, someone else's upload, after
termination and after expiry)."""

from __future__ import annotations

import base64
import io
import os
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from tusclient import client as tus

from support.app import PASSWORD
from support.process import STREAM_LIMITS, serving, townhall_env
from support.services import create_database, database_name, drop_database, require

pytestmark = pytest.mark.timeout(120)

MiB = 1024 * 1024
TUS = {"Tus-Resumable": "1.0.0"}


@dataclass
class Served:
    base: str
    http: httpx.Client
    data_dir: Path

    def user(self) -> dict[str, str]:
        body = {"username": f"u{uuid.uuid4().hex[:8]}", "password": PASSWORD}
        assert self.http.post("/api/v1/auth/register", json=body).status_code == 201
        token = self.http.post("/api/v1/auth/token", json=body).json()["access_token"]
        return {"Authorization": f"Bearer {token}"}

    def client(self, auth: dict[str, str]) -> tus.TusClient:
        return tus.TusClient(f"{self.base}/api/v1/uploads/tus", headers=auth)

    def scanned(self, auth: dict[str, str], upload_id: str) -> dict:
        deadline = time.monotonic() + 20
        while True:
            found = self.http.get(f"/api/v1/uploads/{upload_id}", headers=auth).json()
            if found["status"] != "PENDING_SCAN":
                return found
            assert time.monotonic() < deadline, "never scanned"
            time.sleep(0.05)

    def partials(self) -> list[Path]:
        return [p for p in (self.data_dir / "uploads" / "partial").glob("*") if p.is_file()]


def served(tmp_path: Path, database_url: str, **settings: str) -> Iterator[Served]:
    data_dir = tmp_path / "var"
    env = townhall_env(
        database_url=database_url,
        data_dir=str(data_dir),
        log_level="warning",
        uploads_max_bytes=str(8 * MiB),
        **STREAM_LIMITS,
        **settings,
    )
    with serving(env, log=tmp_path / "serve.log") as base, httpx.Client(base_url=base) as http:
        yield Served(base, http, data_dir)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    directory = tmp_path_factory.mktemp("tus")
    yield from served(directory, f"sqlite+aiosqlite:///{directory / 'townhall.db'}")


def meta(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


def test_a_file_sent_in_chunks_by_a_tus_client_is_scanned_and_served(server: Served):
    auth = server.user()
    data = os.urandom(3 * MiB)
    uploader = server.client(auth).uploader(
        file_stream=io.BytesIO(data), chunk_size=MiB, metadata={"filename": "big.bin"}
    )
    uploader.upload()
    assert uploader.offset == len(data)
    done = uploader.request.response_headers  # the last PATCH's answer
    upload_id = (
        done["townhall-upload-id"] if "townhall-upload-id" in done else done["Townhall-Upload-Id"]
    )
    found = server.scanned(auth, upload_id)
    assert (found["status"], found["filename"], found["size"]) == ("CLEAN", "big.bin", len(data))
    content = server.http.get(f"/api/v1/uploads/{upload_id}/content", headers=auth)
    assert content.content == data
    # The partial is gone, and so is its resumable upload.
    assert server.partials() == []
    assert server.http.head(uploader.url, headers={**auth, **TUS}).status_code == 404


def test_an_interrupted_upload_resumes_where_it_stopped(server: Served):
    auth = server.user()
    data = os.urandom(4 * MiB)
    first = server.client(auth).uploader(
        file_stream=io.BytesIO(data), chunk_size=MiB, metadata={"filename": "resumed.bin"}
    )
    first.upload_chunk()
    first.upload_chunk()  # then the client is gone
    assert first.offset == 2 * MiB

    # A new client (say, after a restart of the app) asks where the upload stands.
    again = server.client(auth).uploader(
        file_stream=io.BytesIO(data), chunk_size=MiB, url=first.url
    )
    assert again.get_offset() == 2 * MiB
    again.offset = again.get_offset()
    again.upload()
    headers = {k.lower(): v for k, v in again.request.response_headers.items()}
    found = server.scanned(auth, headers["townhall-upload-id"])
    assert found["status"] == "CLEAN" and found["size"] == len(data)
    got = server.http.get(f"/api/v1/uploads/{found['id']}/content", headers=auth)
    assert got.content == data


def create(server: Served, auth: dict[str, str], length: int, **metadata: str) -> httpx.Response:
    headers = {**auth, **TUS, "Upload-Length": str(length)}
    if metadata:
        headers["Upload-Metadata"] = meta(**metadata)
    return server.http.post("/api/v1/uploads/tus", headers=headers)


def patch(
    server: Served, auth: dict[str, str], url: str, offset: int, body: bytes
) -> httpx.Response:
    headers = {
        **auth,
        **TUS,
        "Upload-Offset": str(offset),
        "Content-Type": "application/offset+octet-stream",
    }
    return server.http.patch(url, content=body, headers=headers)


def test_bytes_sent_before_a_connection_dropped_are_kept(server: Served):
    auth = server.user()
    made = create(server, auth, 2 * MiB, filename="dropped.bin")
    url = made.headers["location"]
    host, port = server.base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as raw:
        raw.sendall(
            (
                f"PATCH {url} HTTP/1.1\r\nHost: {host}\r\n"
                f"Authorization: {auth['Authorization']}\r\nTus-Resumable: 1.0.0\r\n"
                "Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\n"
                f"Content-Length: {2 * MiB}\r\n\r\n"
            ).encode()
        )
        raw.sendall(b"\x01" * (MiB // 2))
        time.sleep(0.3)
    deadline = time.monotonic() + 10
    while True:
        offset = int(server.http.head(url, headers={**auth, **TUS}).headers["upload-offset"])
        if offset > 0:
            break
        assert time.monotonic() < deadline, "nothing was kept"
        time.sleep(0.05)
    assert 0 < offset <= MiB // 2
    rest = patch(server, auth, url, offset, b"\x01" * (2 * MiB - offset))
    assert rest.status_code == 204, rest.text
    assert rest.headers["upload-offset"] == str(2 * MiB)


def test_the_protocols_refusals(server: Served):
    auth, other = server.user(), server.user()
    options = server.http.options("/api/v1/uploads/tus")
    assert options.status_code == 204
    assert options.headers["tus-version"] == "1.0.0"
    assert options.headers["tus-max-size"] == str(8 * MiB)
    assert "creation" in options.headers["tus-extension"]

    no_version = server.http.post("/api/v1/uploads/tus", headers={**auth, "Upload-Length": "10"})
    assert (no_version.status_code, no_version.headers["tus-version"]) == (412, "1.0.0")
    for length, status in ((8 * MiB + 1, 413), (0, 422)):
        refused = create(server, auth, length)
        assert refused.status_code == status
        assert refused.headers["tus-resumable"] == "1.0.0"
    bad_length = server.http.post(
        "/api/v1/uploads/tus", headers={**auth, **TUS, "Upload-Length": "lots"}
    )
    assert bad_length.status_code == 400
    assert server.http.post("/api/v1/uploads/tus", headers=TUS).status_code == 401

    made = create(server, auth, 1000, filename="a.txt")
    assert made.status_code == 201 and made.headers["tus-resumable"] == "1.0.0"
    url = made.headers["location"]
    wrong = patch(server, auth, url, 10, b"x" * 10)
    assert (wrong.status_code, wrong.headers["upload-offset"]) == (409, "0")
    as_json = server.http.patch(url, content=b"x", headers={**auth, **TUS, "Upload-Offset": "0"})
    assert as_json.status_code == 415
    assert server.http.head(url, headers={**other, **TUS}).status_code == 404
    assert patch(server, other, url, 0, b"x").status_code == 404
    assert server.http.delete(url, headers={**other, **TUS}).status_code == 404
    # A body past the length: refused, with or without a Content-Length, and nothing of the
    # refused chunk kept (the upload is not complete, nor made).
    assert patch(server, auth, url, 0, b"y" * 1001).status_code == 413
    assert patch(server, auth, url, 0, b"y" * 600).status_code == 204

    def past_the_length():
        yield b"z" * 300
        yield b"z" * 300

    unsized = server.http.patch(
        url,
        content=past_the_length(),
        headers={
            **auth,
            **TUS,
            "Upload-Offset": "600",
            "Content-Type": "application/offset+octet-stream",
        },
    )
    assert unsized.status_code == 413
    assert unsized.headers["tus-resumable"] == "1.0.0"
    head = server.http.head(url, headers={**auth, **TUS})
    assert int(head.headers["upload-offset"]) < 1000

    gone = server.http.delete(url, headers={**auth, **TUS})
    assert gone.status_code == 204
    assert server.http.head(url, headers={**auth, **TUS}).status_code == 404

    # A type the first bytes contradict: refused, and the upload removed.
    lying = create(server, auth, 2000, filename="x.png", filetype="image/png")
    refused = patch(server, auth, lying.headers["location"], 0, b"%PDF-1.7\n" + b"x" * 1991)
    assert refused.status_code == 415, refused.text
    head = server.http.head(lying.headers["location"], headers={**auth, **TUS})
    assert head.status_code == 404


def test_abandoned_uploads_expire(tmp_path):
    # 0.0005 h: 1.8 s; the sweep runs every twentieth of it.
    for server in served(
        tmp_path, f"sqlite+aiosqlite:///{tmp_path / 't.db'}", uploads_tus_expiry_hours="0.0005"
    ):
        auth = server.user()
        made = create(server, auth, 1000)
        url = made.headers["location"]
        assert "GMT" in made.headers["upload-expires"]
        assert patch(server, auth, url, 0, b"a" * 100).status_code == 204
        assert len(server.partials()) == 1
        deadline = time.monotonic() + 15
        while server.partials():
            assert time.monotonic() < deadline, "never swept"
            time.sleep(0.1)
        assert server.http.head(url, headers={**auth, **TUS}).status_code == 404


def test_a_tus_upload_on_postgresql(tmp_path):
    require("PostgreSQL", "127.0.0.1", 5432)
    import asyncio

    name = database_name("tus")
    url = asyncio.run(create_database(name))
    try:
        for server in served(tmp_path, url):
            auth = server.user()
            data = os.urandom(MiB + 7)
            uploader = server.client(auth).uploader(
                file_stream=io.BytesIO(data), chunk_size=MiB // 2, metadata={"filename": "pg.bin"}
            )
            uploader.upload()
            headers = {k.lower(): v for k, v in uploader.request.response_headers.items()}
            assert server.scanned(auth, headers["townhall-upload-id"])["status"] == "CLEAN"
    finally:
        asyncio.run(drop_database(name))
