"""`townhall serve` on the embedded defaults (SQLite + the in-process bus) SIGKILLed again and
again under a stream of notifications: nothing accepted is lost, nothing is sent twice by one
process. A resend can only come from the no-double-send window (the SMTP server took the
email, then the process died before `SENT` was committed), so its copies straddle a kill."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import time
import uuid

import httpx
import pytest

from support.app import PASSWORD
from support.process import free_port, installation_with_admin, start_townhall
from support.smtp_receiver import NOTIFICATION, SmtpReceiver

pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]

# Twelve kills put every window of the cycle (accept, relay, send, record) under a SIGKILL in
# practice; TOWNHALL_TEST_KILLS raises it for a longer soak.
KILLS = int(os.environ.get("TOWNHALL_TEST_KILLS", "12"))
POSTERS = 4


async def start_serve(env: dict[str, str], base: str, log) -> subprocess.Popen:
    process = start_townhall("serve", env=env, log=log)
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient(base_url=base, timeout=1) as http:
        while True:
            assert process.poll() is None, f"serve exited with {process.returncode}"
            try:
                if (await http.get("/readyz")).status_code == 200:
                    return process
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "serve did not come up"
            await asyncio.sleep(0.05)


def test_sigkilled_serve_on_embedded_defaults_delivers_every_accepted_notification(tmp_path):
    database = tmp_path / "townhall.db"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with SmtpReceiver() as smtp:
        env = installation_with_admin(
            PASSWORD,
            database_url=f"sqlite+aiosqlite:///{database}",
            data_dir=str(tmp_path / "var"),
            secret_key="crash-secret-" + "x" * 32,
            smtp_url=smtp.url,
            host="127.0.0.1",
            port=str(port),
            provider_rate="5000",
            provider_burst="500",
            # A delivery claimed by a killed process is taken over once its claim ends.
            notification_claim_seconds="1",
        )
        accepted: dict[str, str] = {}  # idempotency key -> notification id
        kill_marks: list[int] = []  # emails received when each kill had happened
        log = open(tmp_path / "serve.log", "w")

        async def run() -> subprocess.Popen:
            process = await start_serve(env, base, log)
            async with httpx.AsyncClient(base_url=base, timeout=10) as http:
                name = f"r{uuid.uuid4().hex[:8]}"
                registered = await http.post(
                    "/api/v1/auth/register",
                    json={"username": name, "password": PASSWORD, "email": "crash@example.org"},
                )
                assert registered.status_code == 201, registered.text
                recipient = registered.json()["id"]
                token = await http.post(
                    "/api/v1/auth/token", json={"username": "boss", "password": PASSWORD}
                )
                admin = {"Authorization": f"Bearer {token.json()['access_token']}"}
            stop = asyncio.Event()

            async def post(worker: int) -> None:
                """POST one notification after another; a request that got no answer (the
                server died) is sent again with its Idempotency-Key until it is accepted."""
                async with httpx.AsyncClient(base_url=base, headers=admin, timeout=5) as http:
                    n = 0
                    while not stop.is_set():
                        key = f"crash-{worker}-{n}"
                        body = {
                            "recipient": recipient,
                            "channels": ["email", "in_app"],
                            "subject": key,
                            "body": f"message {key}",
                        }
                        try:
                            answer = await http.post(
                                "/api/v1/notifications", json=body, headers={"Idempotency-Key": key}
                            )
                        except httpx.TransportError:
                            await asyncio.sleep(0.05)
                            continue
                        assert answer.status_code == 202, answer.text
                        accepted[key] = answer.json()["id"]
                        n += 1

            posters = [asyncio.create_task(post(worker)) for worker in range(POSTERS)]
            try:
                for _ in range(KILLS):
                    await asyncio.sleep(random.uniform(0.1, 0.6))  # a random instant under load
                    process.send_signal(signal.SIGKILL)
                    process.wait()
                    kill_marks.append(len(smtp.receiver.messages))
                    print(f"kill {len(kill_marks)}: {len(accepted)} accepted", flush=True)
                    process = await start_serve(env, base, log)
                await asyncio.sleep(0.5)
            finally:
                stop.set()
                await asyncio.gather(*posters, return_exceptions=True)
            for poster in posters:
                poster.result()  # a poster's failed assertion fails the test
            return process

        process = None
        try:
            process = asyncio.run(run())
            wanted = set(accepted.values())
            query = (
                "SELECT notification_id, channel FROM notifications_deliveries "
                "WHERE status = 'SENT'"
            )
            deadline = time.monotonic() + 60
            while True:
                with sqlite3.connect(database) as db:
                    sent = set(db.execute(query).fetchall())
                missing = {
                    (nid, channel)
                    for nid in wanted
                    for channel in ("email", "in_app")
                    if (nid, channel) not in sent
                }
                emailed = set(smtp.receiver.by_notification())
                if not missing and wanted <= emailed:
                    break
                assert time.monotonic() < deadline, (
                    f"{len(missing)} deliveries of {len(wanted)} notifications not SENT, "
                    f"{len(wanted - emailed)} emails not received: {sorted(missing)[:5]}"
                )
                time.sleep(0.2)
            time.sleep(1)  # a late resend, if any, is counted too
        finally:
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=20)
            log.close()

        with sqlite3.connect(database) as db:
            # (the recipient's welcome notification is in the inbox too)
            query = "SELECT id FROM notifications_inbox WHERE subject LIKE 'crash-%'"
            inbox = [row[0] for row in db.execute(query)]
        assert set(inbox) == wanted and len(inbox) == len(wanted), "in-app: each once"

        # Email: every copy of one notification carries its one Message-ID, and two copies
        # were never sent by the same process: the first was taken by the SMTP server before
        # a kill, the next after it.
        copies: dict[str, list[int]] = {}
        for index, message in enumerate(smtp.receiver.messages):
            found = NOTIFICATION.search(message)
            if found:
                copies.setdefault(found.group(1).decode(), []).append(index)
        assert len(smtp.receiver.message_ids()) == len(copies)

        def lifetime(index: int) -> int:
            return sum(1 for mark in kill_marks if mark <= index)

        resent = {nid: at for nid, at in copies.items() if len(at) > 1}
        for nid, at in resent.items():
            lifetimes = [lifetime(index) for index in at]
            assert len(set(lifetimes)) == len(lifetimes), f"{nid} sent twice by one process"
        print(
            f"\n{KILLS} SIGKILLs, {len(wanted)} notifications accepted, all SENT; "
            f"{len(resent)} emails resent across a kill"
        )
