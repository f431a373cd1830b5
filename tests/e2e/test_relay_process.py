"""The outbox relay as its own process: `serve --no-relay` records notifications and publishes
nothing; a `townhall relay` started later publishes what was waiting, and the email goes out."""

from __future__ import annotations

import subprocess
import time

import httpx
import pytest

from support.app import PASSWORD
from support.notifications import bus_url
from support.process import installation_with_admin, serving, start_townhall, stop_all
from support.services import require
from support.smtp_receiver import SmtpReceiver

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


def test_serve_without_its_relay_leaves_the_outbox_to_a_relay_process(postgres_url, tmp_path):
    require("Redis", "127.0.0.1", 6379)
    with SmtpReceiver() as smtp:
        env = installation_with_admin(
            PASSWORD,
            database_url=postgres_url,
            bus_url=bus_url("redis", "relay"),
            data_dir=str(tmp_path / "var"),
            secret_key="e2e-secret-" + "x" * 32,
            smtp_url=smtp.url,
        )
        with open(tmp_path / "processes.log", "w") as log:
            worker = start_townhall("worker", "notifications.email", env=env, log=log)
            relay: subprocess.Popen | None = None
            try:
                with serving(
                    env, "--no-consumers", "--no-relay", log=tmp_path / "serve.log"
                ) as base:
                    admin = httpx.post(
                        base + "/api/v1/auth/token",
                        json={"username": "boss", "password": PASSWORD},
                    ).json()["access_token"]
                    recipient = httpx.post(
                        base + "/api/v1/auth/register",
                        json={
                            "username": "relayed",
                            "password": PASSWORD,
                            "email": "relayed@example.org",
                        },
                    ).json()["id"]
                    accepted = httpx.post(
                        base + "/api/v1/notifications",
                        headers={"Authorization": f"Bearer {admin}"},
                        json={
                            "recipient": recipient,
                            "channels": ["email"],
                            "subject": "relayed",
                            "body": "by the relay process",
                        },
                    )
                    assert accepted.status_code == 202, accepted.text
                    notification_id = accepted.json()["id"]
                    time.sleep(3)  # a relay in serve would have published it by now
                    assert smtp.receiver.by_notification().get(notification_id) is None

                    relay = start_townhall("relay", env=env, log=log)
                    deadline = time.monotonic() + 30
                    while smtp.receiver.by_notification().get(notification_id) is None:
                        assert time.monotonic() < deadline, "the relay process sent nothing"
                        time.sleep(0.1)
                    time.sleep(0.5)
                    assert smtp.receiver.by_notification()[notification_id] == 1
            finally:
                stop_all([worker, relay])
