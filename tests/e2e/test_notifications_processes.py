"""Notifications across real processes: `serve --no-consumers` and two `worker
notifications.email` processes on PostgreSQL + Redis Streams (or RabbitMQ), delivering to a
real SMTP server.
Every request is POSTed twice; one worker is SIGKILLed in the middle of 1,000."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import uuid

import httpx
import pytest

from support.app import PASSWORD
from support.notifications import bus_url
from support.process import installation_with_admin, serving, start_townhall, stop_all
from support.services import require
from support.smtp_receiver import SmtpReceiver

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

TOTAL = int(os.environ.get("TOWNHALL_TEST_STREAM", "1000"))
# Redis Streams by default (the faster run); TOWNHALL_TEST_STREAM_BUS=rabbitmq runs it there.
BUS = os.environ.get("TOWNHALL_TEST_STREAM_BUS", "redis")


def start_worker(env: dict[str, str], log) -> subprocess.Popen:
    return start_townhall("worker", "notifications.email", env=env, log=log)


async def post_all(base: str, admin: str, recipient: str, ids: list[str]) -> None:
    """POST every notification twice with the same Idempotency-Key, 20 at a time."""
    headers = {"Authorization": f"Bearer {admin}"}
    limit = asyncio.Semaphore(20)

    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:

        async def one(n: int) -> None:
            async with limit:
                body = {
                    "recipient": recipient,
                    "channels": ["email"],
                    "subject": f"n{n}",
                    "body": f"message {n}",
                }
                key = {"Idempotency-Key": f"stream-{n}"}
                first = await client.post("/api/v1/notifications", json=body, headers=key)
                again = await client.post("/api/v1/notifications", json=body, headers=key)
                assert first.status_code == again.status_code == 202, first.text
                assert first.json()["id"] == again.json()["id"]
                ids[n] = first.json()["id"]

        await asyncio.gather(*(one(n) for n in range(TOTAL)))


def test_a_stream_of_1000_survives_a_killed_worker_with_every_email_once(postgres_url, tmp_path):
    require("Redis", "127.0.0.1", 6379)
    require("RabbitMQ", "127.0.0.1", 5672)
    with SmtpReceiver() as smtp:
        env = installation_with_admin(
            PASSWORD,
            database_url=postgres_url,
            bus_url=bus_url(BUS, "e"),
            data_dir=str(tmp_path / "var"),
            secret_key="e2e-secret-" + "x" * 32,
            smtp_url=smtp.url,
            provider_rate="5000",
            provider_burst="500",
            notification_claim_seconds="3",
        )
        logs = [open(tmp_path / f"worker{i}.log", "w") for i in range(3)]
        workers = [start_worker(env, logs[0]), start_worker(env, logs[1])]
        try:
            with serving(env, "--no-consumers", log=tmp_path / "serve.log") as base:
                recipient_name = f"r{uuid.uuid4().hex[:8]}"
                registered = httpx.post(
                    base + "/api/v1/auth/register",
                    json={
                        "username": recipient_name,
                        "password": PASSWORD,
                        "email": "stream@example.org",
                    },
                )
                assert registered.status_code == 201
                recipient = registered.json()["id"]
                admin = httpx.post(
                    base + "/api/v1/auth/token", json={"username": "boss", "password": PASSWORD}
                ).json()["access_token"]
                ids: list[str] = [""] * TOTAL

                async def run() -> None:
                    sending = asyncio.create_task(post_all(base, admin, recipient, ids))
                    # Kill one worker once deliveries are flowing, then start a replacement.
                    deadline = time.monotonic() + 60
                    while sum(smtp.receiver.by_notification().values()) < TOTAL // 4:
                        assert time.monotonic() < deadline, "no email is arriving"
                        await asyncio.sleep(0.02)
                    os.kill(workers[0].pid, signal.SIGKILL)
                    workers[0].wait()
                    workers.append(start_worker(env, logs[2]))
                    await sending

                asyncio.run(run())
                deadline = time.monotonic() + 120
                wanted = set(ids)
                while not wanted <= set(smtp.receiver.by_notification()):
                    if time.monotonic() > deadline:
                        lost = sorted(wanted - set(smtp.receiver.by_notification()))
                        states = [
                            httpx.get(
                                f"{base}/api/v1/notifications/{nid}",
                                headers={"Authorization": f"Bearer {admin}"},
                            ).json()["channels"]["email"]
                            for nid in lost[:3]
                        ]
                        raise AssertionError(f"lost {len(lost)} of {TOTAL}: {states}")
                    time.sleep(0.2)
                time.sleep(1)  # let any late duplicate arrive before counting
        finally:
            stop_all(workers)
            for log in logs:
                log.close()
        counts = smtp.receiver.by_notification()
        stream = {nid: counts[nid] for nid in ids}
        assert len(stream) == TOTAL  # every request, once each in the database
        duplicated = {nid: n for nid, n in stream.items() if n > 1}
        # POSTed twice, yet one notification each; a resend can only come from the killed
        # worker's window (accepted by SMTP, SENT not yet recorded), and it carries the same
        # Message-ID, so the receiving side can drop it.
        message_ids = smtp.receiver.message_ids()
        assert len([m for m in message_ids if any(nid in m for nid in ids)]) == TOTAL
        assert len(duplicated) <= 20, duplicated
        print(f"\n{TOTAL} notifications, {len(duplicated)} resent after the SIGKILL")
