"""The Celery side of bench/orders.py: the order saga's three steps as Celery tasks, chained,
with `link_error` compensations.

`canvas(order_id)` is what a Python team would write: `chain(reserve_stock, capture_payment,
create_shipment)`, each step carrying as its error callback the compensations of the steps
before it (last first) and then the order's failure, linked one after the other. Each step is
one PostgreSQL transaction, as each of Townhall's participants commits its own row:
- `reserve_stock`: a reservation row and one conditional update of the stock (never below
  zero); `OutOfStock` otherwise;
- `capture_payment`: a payment row (the card decides, as the payments simulator's test cards
  do: `4000000000000002` is declined);
- `create_shipment`: a shipment row, and the order CONFIRMED with its finish time.
Compensations (`release_stock`, `refund_payment`) are idempotent, as every step is (a
redelivered task finds its row and changes nothing). Imported by the benchmark and by the
`celery worker` it starts; configured from environment variables so every run has its own
queue and database.
"""

from __future__ import annotations

import os
import threading
import uuid

import psycopg
from celery import Celery, chain
from celery.canvas import Signature

app = Celery("townhall_bench_saga", broker=os.environ.get("BENCH_CELERY_BROKER", "memory://"))
_queue = os.environ.get("BENCH_CELERY_QUEUE", "townhall_bench_saga")
app.conf.update(
    task_default_queue=_queue,
    task_default_exchange=_queue,
    task_default_routing_key=_queue,
    task_ignore_result=True,
    # At-least-once like Townhall's consumers: ack once the step's transaction committed.
    task_acks_late=True,
    worker_enable_remote_control=False,
    worker_send_task_events=False,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)

DECLINED_CARD = "4000000000000002"

SCHEMA = """
CREATE TABLE stock (sku text PRIMARY KEY, on_hand integer NOT NULL, reserved integer NOT NULL,
                    CHECK (reserved >= 0 AND reserved <= on_hand));
CREATE SEQUENCE finish_seq;
CREATE TABLE orders (
    id uuid PRIMARY KEY, sku text NOT NULL, quantity integer NOT NULL,
    amount_cents integer NOT NULL, card text NOT NULL, status text NOT NULL, reason text,
    placed_at timestamptz NOT NULL, finished_at timestamptz, finish_seq bigint);
CREATE INDEX orders_finish_seq ON orders (finish_seq);
CREATE TABLE reservations (order_id uuid PRIMARY KEY, sku text NOT NULL,
                           quantity integer NOT NULL, released boolean NOT NULL DEFAULT false,
                           created_at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE TABLE payments (order_id uuid PRIMARY KEY, payment_id text NOT NULL,
                       amount_cents integer NOT NULL, refunded boolean NOT NULL DEFAULT false,
                       created_at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE TABLE shipments (order_id uuid PRIMARY KEY, shipment_id text NOT NULL,
                        created_at timestamptz NOT NULL DEFAULT clock_timestamp());
"""

_local = threading.local()


class OutOfStock(Exception):
    pass


class PaymentDeclined(Exception):
    pass


def _db() -> psycopg.Connection:
    # One connection per worker process (or thread), opened after the fork.
    conn: psycopg.Connection | None = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = psycopg.connect(os.environ["BENCH_CELERY_DATABASE"], autocommit=True)
        _local.conn = conn
    return conn


@app.task(name="bench.reserve_stock")
def reserve_stock(order_id: str) -> None:
    with _db().transaction() as tx:
        conn = tx.connection
        row = conn.execute(
            "INSERT INTO reservations (order_id, sku, quantity)"
            " SELECT id, sku, quantity FROM orders WHERE id = %s"
            " ON CONFLICT (order_id) DO NOTHING RETURNING sku, quantity",
            (order_id,),
        ).fetchone()
        if row is None:
            return  # a redelivery: reserved already
        taken = conn.execute(
            "UPDATE stock SET reserved = reserved + %s WHERE sku = %s AND on_hand - reserved >= %s",
            (row[1], row[0], row[1]),
        )
        if taken.rowcount != 1:
            raise OutOfStock(row[0])  # rolls the reservation row back too


@app.task(name="bench.capture_payment")
def capture_payment(order_id: str) -> None:
    with _db().transaction() as tx:
        conn = tx.connection
        order = conn.execute(
            "SELECT amount_cents, card FROM orders WHERE id = %s", (order_id,)
        ).fetchone()
        assert order is not None, order_id
        if order[1] == DECLINED_CARD:
            raise PaymentDeclined(order_id)
        conn.execute(
            "INSERT INTO payments (order_id, payment_id, amount_cents) VALUES (%s, %s, %s)"
            " ON CONFLICT (order_id) DO NOTHING",
            (order_id, f"pi_sim_{uuid.uuid4().hex}", order[0]),
        )


@app.task(name="bench.create_shipment")
def create_shipment(order_id: str) -> None:
    with _db().transaction() as tx:
        conn = tx.connection
        conn.execute(
            "INSERT INTO shipments (order_id, shipment_id) VALUES (%s, %s)"
            " ON CONFLICT (order_id) DO NOTHING",
            (order_id, f"shp_sim_{uuid.uuid4().hex}"),
        )
        _finish(conn, order_id, "CONFIRMED", None)


@app.task(name="bench.release_stock")
def release_stock(order_id: str) -> None:
    with _db().transaction() as tx:
        conn = tx.connection
        row = conn.execute(
            "UPDATE reservations SET released = true WHERE order_id = %s AND NOT released"
            " RETURNING sku, quantity",
            (order_id,),
        ).fetchone()
        if row is not None:
            conn.execute(
                "UPDATE stock SET reserved = reserved - %s WHERE sku = %s", (row[1], row[0])
            )


@app.task(name="bench.refund_payment")
def refund_payment(order_id: str) -> None:
    with _db().transaction() as tx:
        tx.connection.execute(
            "UPDATE payments SET refunded = true WHERE order_id = %s", (order_id,)
        )


@app.task(name="bench.fail_order")
def fail_order(order_id: str, reason: str) -> None:
    with _db().transaction() as tx:
        _finish(tx.connection, order_id, "FAILED", reason)


def _finish(conn: psycopg.Connection, order_id: str, status: str, reason: str | None) -> None:
    conn.execute(
        "UPDATE orders SET status = %s, reason = %s, finished_at = clock_timestamp(),"
        " finish_seq = nextval('finish_seq') WHERE id = %s AND status = 'PENDING'",
        (status, reason, order_id),
    )


def _compensations(order_id: str, reason: str, *undo: Signature) -> Signature:
    """`undo` (last step's compensation first) run one after the other, then the order fails."""
    first = fail_order.si(order_id, reason)
    for step in reversed(undo):
        step.link(first)
        first = step
    return first


def canvas(order_id: str) -> Signature:
    """The saga as a Celery canvas: a chain whose every step has its compensations as its
    error callback."""
    return chain(
        reserve_stock.si(order_id).on_error(_compensations(order_id, "out_of_stock")),
        capture_payment.si(order_id).on_error(
            _compensations(order_id, "payment_declined", release_stock.si(order_id))
        ),
        create_shipment.si(order_id).on_error(
            _compensations(
                order_id, "shipping_failed", refund_payment.si(order_id), release_stock.si(order_id)
            )
        ),
    )
