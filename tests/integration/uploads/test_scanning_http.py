"""What the scan finds, through the HTTP API on the embedded defaults (yara-x) and with clamd
(a clamd of the test's own, with the EICAR signature the test writes): a zip holding EICAR, a
zip bomb (ratio and depth), and a scanner that is down: retried, then FAILED, never CLEAN, and
the owner told so once."""

from __future__ import annotations

import pytest

from support.clamd import clamd as clamd
from support.process import free_port
from support.uploads import EICAR, PNG, uploads_app
from support.uploads import stack as stack
from support.uploads import upload_databases as upload_databases
from support.zips import nested, zeros_bomb, zip_of

pytestmark = pytest.mark.timeout(90)
EMBEDDED = pytest.mark.parametrize("stack", ["sqlite+memory"], indirect=True)


@pytest.fixture(params=["yara", "clamd"])
def scanner(request: pytest.FixtureRequest) -> str:
    if request.param == "yara":
        return "yara"
    return str(request.getfixturevalue("clamd").tcp)


@EMBEDDED
async def test_what_each_scanner_finds(stack, tmp_path, scanner):
    async with uploads_app(stack, tmp_path, uploads_scanner=scanner) as app:
        owner = await app.user()
        cases = {
            "clean.png": (PNG, "CLEAN"),
            "eicar.txt": (EICAR, "INFECTED"),
            "inside.zip": (zip_of({"docs/readme.txt": b"hello\n", "eicar.com": EICAR}), "INFECTED"),
            "clean.zip": (zip_of({"a.txt": b"a" * 1000, "b.png": PNG}), "CLEAN"),
            "deep.zip": (nested("x.txt", b"x", levels=5), "INFECTED"),
            "bomb.zip": (zeros_bomb(), "INFECTED"),
        }
        made = {name: await app.upload(owner, data, name) for name, (data, _) in cases.items()}
        for name, (_, expected) in cases.items():
            done = await app.scanned(owner, made[name]["id"])
            assert done["status"] == expected, (name, done)
        bomb = await app.scanned(owner, made["bomb.zip"]["id"])
        deep = await app.scanned(owner, made["deep.zip"]["id"])
        assert (bomb["detection"], deep["detection"]) == ("archive_limits", "archive_limits")
        inside = await app.scanned(owner, made["inside.zip"]["id"])
        assert "eicar" in inside["detection"].lower()


@EMBEDDED
async def test_a_scanner_that_is_down_is_retried_then_failed_never_clean(stack, tmp_path):
    down = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    async with uploads_app(stack, tmp_path, uploads_scanner=down, uploads_scan_attempts=3) as app:
        owner = await app.user()
        made = await app.upload(owner, PNG, "unlucky.png")
        done = await app.scanned(owner, made["id"])
        assert done["status"] == "FAILED"
        assert done["detection"]  # the reason
        refused = await app.content(owner, made["id"])
        assert (refused.status_code, refused.json()["upload_status"]) == (409, "FAILED")
        [notice] = await app.told(owner, 1)
        assert notice["subject"] == "Your file unlucky.png could not be scanned"
        async with worker_db(app) as attempts:
            assert await attempts(made["id"]) == 3


def worker_db(app):
    """The upload's counted scan attempts, read from its table."""
    from contextlib import asynccontextmanager

    import sqlalchemy as sa

    from townhall.uploads.adapters.tables import uploads

    @asynccontextmanager
    async def reading():
        database = app.runtime.platform.database

        async def attempts(upload_id: str) -> int:
            async with database.connect() as conn:
                return int(
                    await conn.scalar(
                        sa.select(uploads.c.scan_attempts).where(uploads.c.id == upload_id)
                    )
                )

        yield attempts

    return reading()
