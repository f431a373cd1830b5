"""An S3 server of the tests' own: moto's server mode in a child process (so its memory is not
the test's), on a free port, with signature checks on: an IAM user is made while moto still
lets requests through unsigned, and every request after that must be signed with its key
(moto recomputes each signature with botocore and refuses a wrong one). One bucket a test run,
with a unique name, emptied and deleted at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from urllib.parse import quote, urlencode

import httpx
import pytest

from support.process import free_port
from townhall.uploads.adapters.sigv4 import Signer, canonical_query

REGION = "us-east-1"
ALLOW_ALL = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}


def _texts(body: bytes, name: str) -> list[str]:
    return [
        element.text or ""
        for element in ET.fromstring(body).iter()
        if element.tag.rpartition("}")[2] == name
    ]


@dataclass
class S3Server:
    endpoint: str  # http://127.0.0.1:PORT
    bucket: str
    access_key: str
    secret_key: str
    region: str = REGION

    def url(self, prefix: str = "") -> str:
        """The store as `TOWNHALL_UPLOADS_STORAGE` names it."""
        host = self.endpoint.removeprefix("http://")
        return (
            f"s3://{quote(self.access_key, safe='')}:{quote(self.secret_key, safe='')}@{host}"
            f"/{self.bucket}/{prefix}?region={self.region}&secure=false"
        )

    def request(
        self, method: str, path: str, query: str = "", body: bytes = b"", service: str = "s3"
    ) -> httpx.Response:
        """A signed request of our own (path `/bucket/...`), not through `S3Storage`."""
        return _signed(
            Signer(self.access_key, self.secret_key, self.region, service),
            method,
            self.endpoint,
            path,
            query,
            body,
        )

    def multipart_uploads(self, prefix: str) -> list[str]:
        """Keys of the multipart uploads begun and neither completed nor aborted."""
        response = self.request("GET", f"/{self.bucket}", f"prefix={quote(prefix)}&uploads=")
        response.raise_for_status()
        return _texts(response.content, "Key")

    def keys(self, prefix: str = "") -> list[str]:
        response = self.request("GET", f"/{self.bucket}", f"list-type=2&prefix={quote(prefix)}")
        response.raise_for_status()
        return _texts(response.content, "Key")

    def empty_and_delete_bucket(self) -> None:
        for key in self.keys():
            self.request("DELETE", f"/{self.bucket}/{quote(key)}").raise_for_status()
        response = self.request("GET", f"/{self.bucket}", "uploads=")
        keys, ids = _texts(response.content, "Key"), _texts(response.content, "UploadId")
        for key, upload_id in zip(keys, ids, strict=True):
            query = f"uploadId={quote(upload_id, safe='')}"
            self.request("DELETE", f"/{self.bucket}/{quote(key)}", query).raise_for_status()
        self.request("DELETE", f"/{self.bucket}").raise_for_status()


def _signed(
    signer: Signer, method: str, endpoint: str, path: str, query: str, body: bytes
) -> httpx.Response:
    query = canonical_query(query)  # sent as signed (moto signs the query as it came)
    url = f"{endpoint}{path}" + (f"?{query}" if query else "")
    request = httpx.Request(method, url, content=body)
    request.headers.update(
        signer.sign(
            method, request.headers["host"], path, query, {}, hashlib.sha256(body).hexdigest()
        )
    )
    with httpx.Client(timeout=30) as client:
        return client.send(request)


def require_moto() -> None:
    missing = [name for name in ("moto", "flask", "flask_cors") if find_spec(name) is None]
    if missing:  # looked for, not imported: the server runs in its own process
        message = f"moto's server mode is not installed (no {', '.join(missing)})"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI needs it: moto[s3], flask, flask-cors are dev deps)")
        pytest.skip(message)


def _iam_user(endpoint: str) -> tuple[str, str]:
    """An IAM user allowed everything, and its access key. These requests are signed by
    anyone: moto lets the first ones after `reset-auth` through unchecked."""
    anyone = Signer("AKIAANYONE", "anyone", REGION, "iam")
    user = f"townhall-{uuid.uuid4().hex[:8]}"

    def call(action: str, **params: str) -> bytes:
        body = urlencode({"Action": action, "Version": "2010-05-08", **params}).encode()
        request = httpx.Request(
            "POST",
            f"{endpoint}/",
            content=body,
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        request.headers.update(
            anyone.sign("POST", request.headers["host"], "/", "", {}, _sha(body))
        )
        with httpx.Client(timeout=30) as client:
            response = client.send(request)
        response.raise_for_status()
        return response.content

    call("CreateUser", UserName=user)
    call(
        "PutUserPolicy",
        UserName=user,
        PolicyName="everything",
        PolicyDocument=json.dumps(ALLOW_ALL),
    )
    created = call("CreateAccessKey", UserName=user)
    return _texts(created, "AccessKeyId")[0], _texts(created, "SecretAccessKey")[0]


def _sha(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


@contextmanager
def running_moto(directory: Path) -> Iterator[S3Server]:
    """A moto S3 server checking signatures, with a bucket of its own; stopped on exit."""
    require_moto()
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with open(directory / "moto.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"moto did not start: {(directory / 'moto.log').read_text()[-2000:]}"
                    ) from None
                time.sleep(0.05)
        # From here on, the first 3 actions go unchecked (the IAM user's), then all are.
        httpx.post(f"{endpoint}/moto-api/reset-auth", content=b"3").raise_for_status()
        access_key, secret_key = _iam_user(endpoint)
        server = S3Server(endpoint, f"townhall-{uuid.uuid4().hex[:12]}", access_key, secret_key)
        server.request("PUT", f"/{server.bucket}").raise_for_status()
        yield server
        server.empty_and_delete_bucket()
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with running_moto(tmp_path_factory.mktemp("moto")) as server:
        yield server
