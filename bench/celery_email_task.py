"""The Celery side of bench/notifications.py: one task that sends one email with smtplib.

Imported only by the benchmark (and by the `celery worker` processes it starts); configured
from environment variables so every run uses its own queue on the shared RabbitMQ.
"""

from __future__ import annotations

import os
import smtplib
import threading
from email.message import EmailMessage

from celery import Celery

app = Celery("townhall_bench", broker=os.environ.get("BENCH_CELERY_BROKER", "memory://"))
_queue = os.environ.get("BENCH_CELERY_QUEUE", "townhall_bench_celery")
app.conf.update(
    task_default_queue=_queue,
    task_default_exchange=_queue,
    task_default_routing_key=_queue,
    task_ignore_result=True,
    # At-least-once like Townhall's consumers: ack after the send, so a killed worker's
    # message goes to another one.
    task_acks_late=True,
    worker_enable_remote_control=False,
    worker_send_task_events=False,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)

_local = threading.local()


def _smtp() -> smtplib.SMTP:
    # One kept-open connection per worker thread, as Townhall keeps a small pool open.
    client: smtplib.SMTP | None = getattr(_local, "client", None)
    if client is None:
        client = smtplib.SMTP("127.0.0.1", int(os.environ["BENCH_SMTP_PORT"]), timeout=10)
        _local.client = client
    return client


@app.task(name="bench.send_email")
def send_email(notification_id: str, to: str, subject: str, body: str) -> None:
    message = EmailMessage()
    message["From"] = "bench@townhall.test"
    message["To"] = to
    message["Subject"] = subject
    message["X-Townhall-Notification"] = notification_id
    message.set_content(body)
    try:
        _smtp().send_message(message)
    except (smtplib.SMTPException, OSError):
        _local.client = None  # a broken connection is dropped; the next send reconnects
        raise
