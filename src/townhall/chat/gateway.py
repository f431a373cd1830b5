"""The WebSocket gateway: this process's sockets, the rooms they joined, and the relay.

Stateless across processes: what a socket needs from elsewhere comes through the pub/sub port
(a room's channel is subscribed while a local socket has joined it) or from the stores. Each
room's live stream goes through a `Sequencer`, so sockets get a room's messages in seq order;
a seq that does not come within `gap_wait` is read from history. Each socket has a bounded
send queue written by its own task; one that overflows is closed (4508), so a slow client
costs at most its queue.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

from townhall.chat import protocol
from townhall.chat.domain import Appended, Attachment, ChatMessage, Sequencer, TokenBucket
from townhall.chat.protocol import BadFrame, Relayed
from townhall.chat.service import ChatService, channel
from townhall.platform.errors import DomainError
from townhall.platform.ids import new_id_str
from townhall.platform.pubsub import Message, PubSub, Subscription

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GatewayLimits:
    send_rate: float = 20.0
    send_burst: int = 100
    frame_rate: float = 50.0
    bad_frames: int = 20  # a minute
    rooms_per_socket: int = 100
    send_queue: int = 1000
    gap_wait: float = 0.2


Send = Callable[[str], Awaitable[None]]
Close = Callable[[int, str], Awaitable[None]]


@dataclass
class Cursor:
    """Where one socket is in one room: the last seq it was given; while it joins, the live
    messages that came meanwhile (`pending`), given after its replay."""

    delivered: int = 0
    pending: list[tuple[int, str]] | None = field(default_factory=list)


class Connection:
    """One socket. `send`/`close` are the socket's own (the ASGI WebSocket's)."""

    def __init__(self, gateway: Gateway, user: str, send: Send, close: Close) -> None:
        self.id = new_id_str()
        self.user = user
        self.gateway = gateway
        self.rooms: dict[str, Cursor] = {}
        self._send = send
        self._close = close
        self._queue: deque[str] = deque()
        self._wake = asyncio.Event()
        self._closed = False
        self.close_code: int | None = None
        self._closing: asyncio.Task[None] | None = None
        self.presence: asyncio.Task[None] | None = None  # recording it as online
        limits = gateway.limits
        self.frames = TokenBucket(limits.frame_rate, limits.frame_rate * 4)
        self.bad: deque[float] = deque()
        # Frames read but not acted on yet: the socket's reader never waits on what a frame
        # does (a send waits on the store), so the server keeps reading (and sees the
        # client's pongs) while this socket's frames are handled one by one, in order.
        self.inbox: deque[str] = deque()
        self._inbox_wake = asyncio.Event()
        self.finished = asyncio.Event()  # shut, or the client went away
        self._drained = asyncio.Event()  # the send queue emptied
        self.writer = asyncio.create_task(self._write(), name=f"chat.socket.{self.id}")
        self.processor = asyncio.create_task(self._process(), name=f"chat.frames.{self.id}")

    def push(self, text: str) -> None:
        if self._closed:
            return
        if len(self._queue) >= self.gateway.limits.send_queue:
            self.shut(protocol.TOO_SLOW, "too slow: the send queue overflowed")
            return
        self._queue.append(text)
        self._wake.set()

    def take(self, text: str) -> None:
        """A frame the socket read: queued for `_process` (or the socket closed when it sends
        faster than its frame rate)."""
        if self._closed:
            return
        if not self.frames.take(self.gateway.clock()):
            self.shut(protocol.RATE_LIMITED, "too many frames")
            return
        self.inbox.append(text)
        self._inbox_wake.set()

    async def _process(self) -> None:
        inbox = self.inbox
        while not self._closed:
            await self._inbox_wake.wait()
            self._inbox_wake.clear()
            while inbox and not self._closed:
                try:
                    await self.gateway.receive(self, inbox.popleft())
                except asyncio.CancelledError:
                    raise
                except Exception:  # a bug: the socket goes, the gateway stays
                    log.exception("chat: a frame of socket %s failed", self.id)
                    self.shut(1011, "internal error")

    def ended(self) -> None:
        """The client went away (its reader saw the disconnect)."""
        self.finished.set()

    def shut(self, code: int, reason: str) -> None:
        """Close the socket (from any task): what is queued is dropped."""
        if self._closed:
            return
        self._closed, self.close_code = True, code
        self._queue.clear()
        self.inbox.clear()
        self._wake.set()
        self._inbox_wake.set()
        self._drained.set()
        self.finished.set()
        self._closing = asyncio.get_running_loop().create_task(self._shut(code, reason))

    async def wait_closed(self) -> None:
        """Until the close frame of `shut` went out (or the socket was found gone). The socket's
        handler awaits it before it returns: a handler that returns first has the server drop
        the connection, and the client never sees its close code (4400, 4429, 4508)."""
        if self._closing is not None:
            await asyncio.shield(self._closing)

    async def _shut(self, code: int, reason: str) -> None:
        self.writer.cancel()
        if asyncio.current_task() is not self.processor:
            self.processor.cancel()
        try:
            await self._close(code, reason)  # the socket's own close gives up in time
        except Exception:  # already gone
            pass

    @property
    def closed(self) -> bool:
        return self._closed

    async def room_for(self, frames: int) -> None:
        """Wait until the send queue is at most half full with `frames` more (or the socket
        closed)."""
        most = max(1, self.gateway.limits.send_queue // 2)
        while not self._closed and self._queue and len(self._queue) + frames > most:
            self._drained.clear()
            await self._drained.wait()

    async def _write(self) -> None:
        queue = self._queue
        try:
            while not self._closed:
                await self._wake.wait()
                self._wake.clear()
                while queue:
                    await self._send(queue.popleft())
                self._drained.set()
        except asyncio.CancelledError:
            raise
        except Exception:  # the socket went away; the reader sees it too
            self._closed = True


class RoomFeed:
    """A room this gateway relays: its subscription, its live stream in seq order, and the
    local sockets that joined it."""

    def __init__(self, gateway: Gateway, room: str) -> None:
        self.gateway = gateway
        self.room = room
        self.sequencer = Sequencer()
        self.sockets: dict[Connection, Cursor] = {}
        self.subscription: Subscription | None = None
        self.gap_task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        self.subscription = await self.gateway.pubsub.subscribe(channel(self.room), self.on_relay)
        self.deliver(self.sequencer.skip_to(await self.gateway.service.last_seq(self.room)))

    async def close(self) -> None:
        if self.gap_task is not None:
            self.gap_task.cancel()
        if self.subscription is not None:
            await self.subscription.unsubscribe()

    async def on_relay(self, message: Message) -> None:
        relayed = protocol.parse_relay(message.data)
        if relayed.kind == protocol.MESSAGE:
            delivered = self.sequencer.offer(relayed.seq, relayed)
            self.deliver(delivered)
            if message.dropped_before or self.sequencer.missing():
                self.watch_gap()
        elif relayed.kind == protocol.REMOVED:
            for socket in [s for s in self.sockets if s.user == relayed.user]:
                socket.push(relayed.text)
                self.gateway.leave(socket, self.room)
        else:
            skip = relayed.user if relayed.kind == protocol.TYPING else None
            for socket in self.sockets:
                if socket.user != skip:
                    socket.push(relayed.text)

    def deliver(self, delivered: list[Any]) -> None:
        for relayed in delivered:
            for socket, cursor in self.sockets.items():
                if cursor.pending is not None:
                    cursor.pending.append((relayed.seq, relayed.text))
                elif relayed.seq > cursor.delivered:
                    cursor.delivered = relayed.seq
                    socket.push(relayed.text)

    def watch_gap(self) -> None:
        if self.gap_task is None or self.gap_task.done():
            self.gap_task = asyncio.create_task(self._fill_gap())

    async def _fill_gap(self) -> None:
        await asyncio.sleep(self.gateway.limits.gap_wait)
        while (missing := self.sequencer.missing()) is not None:
            first, last = missing
            try:
                found = await self.gateway.service.missing(self.room, first, last)
            except Exception as exc:
                log.warning(
                    "chat: filling seqs %s..%s of %s failed: %s", first, last, self.room, exc
                )
                await asyncio.sleep(1)
                continue
            shown = await self._shown(found)
            self.deliver(self.sequencer.fill([(m.seq, _relayed(m, shown)) for m in found], missing))

    async def catch_up(self) -> None:
        """After the relay was down: read what the room stored since its stream's last seq."""
        last = await self.gateway.service.last_seq(self.room)
        expected = self.sequencer.next_seq
        if expected is None or last < expected:
            return
        found = await self.gateway.service.missing(self.room, expected, last)
        shown = await self._shown(found)
        filled = [(m.seq, _relayed(m, shown)) for m in found]
        self.deliver(self.sequencer.fill(filled, (expected, last)))

    async def _shown(self, found: list[ChatMessage]) -> Mapping[str, Attachment]:
        """The attachments of messages read from history, as shown now; when uploads does not
        answer, the messages go out without them rather than not at all."""
        try:
            return await self.gateway.service.shown(found)
        except Exception as exc:
            log.warning("chat: the attachments of %s were not read: %s", self.room, exc)
            return {}


def _relayed(message: ChatMessage, shown: Mapping[str, Attachment]) -> Relayed:
    return protocol.parse_relay(protocol.relay_message(message, shown))


class Gateway:
    def __init__(
        self,
        service: ChatService,
        pubsub: PubSub,
        *,
        limits: GatewayLimits = GatewayLimits(),
        presence_every: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service = service
        self.pubsub = pubsub
        self.limits = limits
        self.presence_every = presence_every
        self.clock = clock
        self.connections: set[Connection] = set()
        self.feeds: dict[str, RoomFeed] = {}
        self._opening: dict[str, asyncio.Future[RoomFeed]] = {}
        self._sends: dict[str, TokenBucket] = {}  # per user, shared by their sockets here
        self._tasks: list[asyncio.Task[None]] = []
        self._running: set[asyncio.Task[None]] = set()  # presence updates in flight

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._presence_loop(), name="chat.presence"),
            asyncio.create_task(self._relay_watch(), name="chat.relay-watch"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for connection in list(self.connections):
            connection.shut(protocol.GOING_AWAY, "the gateway is shutting down")
        for feed in list(self.feeds.values()):
            await feed.close()
        self.feeds.clear()
        if self._running:
            await asyncio.wait(list(self._running), timeout=5)

    # Sockets -----------------------------------------------------------------------------

    async def open(self, user: str, send: Send, close: Close) -> Connection:
        connection = Connection(self, user, send, close)
        self.connections.add(connection)
        # Presence is A/L: the socket never waits on it (a slow or down Redis included).
        connection.presence = self._background(self._came(connection))
        return connection

    async def closed(self, connection: Connection) -> None:
        self.connections.discard(connection)
        connection.shut(1000, "closed")
        for room in list(connection.rooms):
            self.leave(connection, room)
        if not any(c.user == connection.user for c in self.connections):
            self._sends.pop(connection.user, None)
        self._background(self._went(connection))

    async def _came(self, connection: Connection) -> None:
        try:
            await self.service.connected(connection.user, connection.id)
        except Exception as exc:
            log.warning("chat: presence of %s not recorded: %s", connection.user, exc)

    async def _went(self, connection: Connection) -> None:
        if connection.presence is not None:
            await connection.presence  # recorded before it is forgotten
        try:
            await self.service.disconnected(connection.user, connection.id)
        except Exception as exc:  # it lapses after the TTL instead
            log.warning("chat: presence of %s not ended: %s", connection.user, exc)

    def _background(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return task

    async def receive(self, connection: Connection, text: str) -> None:
        """One frame from a socket (in its order): act on it, or answer an `error` (or close
        the socket when bad frames flood)."""
        now = self.clock()
        try:
            frame = protocol.parse_frame(text)
            await self._act(connection, frame)
        except BadFrame as bad:
            self._refuse(connection, bad.code, bad.message, bad.ref, now)
        except DomainError as refused:
            code = getattr(refused, "frame_code", "invalid")
            self._refuse(connection, code, refused.detail, _ref(text), now, refused.field)
        except Exception:
            # A store or the relay did not answer (a send says so itself, see `_act`): the
            # client is told and may send the frame again. Raised on, it would end the
            # socket with a normal closure (1000), which a client need not reconnect after.
            log.exception("chat: a frame of %s failed", connection.user)
            connection.push(
                protocol.error_frame(
                    "unavailable", "the server could not do it now; send it again", _ref(text)
                )
            )

    def _refuse(
        self,
        connection: Connection,
        code: str,
        message: str,
        ref: Any,
        now: float,
        field: str | None = None,
    ) -> None:
        connection.push(protocol.error_frame(code, message, ref, field))
        bad = connection.bad
        bad.append(now)
        while bad and bad[0] < now - 60:
            bad.popleft()
        if len(bad) > self.limits.bad_frames:
            connection.shut(protocol.BAD_FRAMES, "too many bad frames")

    async def _act(self, connection: Connection, frame: protocol.ClientFrame) -> None:
        op = frame.op
        if op == "ping":
            connection.push('{"op":"pong"}')
        elif op == "send":
            room = frame.room()
            body = frame.fields.get("body")
            if not isinstance(body, str):
                raise BadFrame(
                    "missing_field" if body is None else "invalid",
                    "send needs a 'body' string",
                    frame.ref,
                )
            client_id = frame.text("client_id", max_length=100)
            attachments = frame.ids("attachments")
            bucket = self._sends.setdefault(
                connection.user, TokenBucket(self.limits.send_rate, self.limits.send_burst)
            )
            if not bucket.take(self.clock()):
                connection.shut(protocol.RATE_LIMITED, "too many sends")
                return

            def ack(appended: Appended) -> None:
                message = appended.message
                connection.push(
                    protocol.dumps(
                        {"op": "ack", "client_id": client_id, "id": message.id, "seq": message.seq}
                    )
                )

            try:
                await self.service.send(
                    connection.user, room, body, client_id, attachments, stored=ack
                )
            except DomainError:
                raise
            except Exception as exc:
                log.warning("chat: send to %s failed: %s", room, exc)
                raise BadFrame(
                    "unavailable", "the message was not stored; send it again", client_id
                ) from None
        elif op == "join":
            room = frame.room()
            since = frame.seq("since", required=False)
            await self.join(connection, room, since, ref=frame.ref)
        elif op == "leave":
            room = frame.room()
            self.leave(connection, room)
            connection.push(protocol.dumps({"op": "left", "room": room}))
        elif op == "typing":
            room = frame.room()
            if room not in connection.rooms:
                raise BadFrame("not_a_member", "join the room first", frame.ref)
            await self.service.typing(connection.user, room)
        elif op == "read":
            room = frame.room()
            seq = frame.seq("seq", required=True)
            assert seq is not None
            if room not in connection.rooms:
                await self.service.room(connection.user, room)  # not a member: refused
            await self.service.read(connection.user, room, seq)

    async def join(
        self, connection: Connection, room: str, since: int | None, *, ref: Any = None
    ) -> None:
        if room not in connection.rooms and len(connection.rooms) >= self.limits.rooms_per_socket:
            raise BadFrame(
                "too_many_rooms",
                f"a socket joins at most {self.limits.rooms_per_socket} rooms",
                room if ref is None else ref,  # the frame's own `ref` is what is echoed
            )
        await self.service.room(connection.user, room)  # refuses a non-member
        feed = await self._feed(room)
        cursor = Cursor()
        connection.rooms[room] = cursor
        feed.sockets[connection] = cursor  # live messages wait in `pending` meanwhile
        try:
            joined = await self.service.join(connection.user, room, since)
        except BaseException:
            self.leave(connection, room)
            raise
        frame: dict[str, Any] = {"op": "joined", "room": room, "seq": joined.last_seq}
        if joined.recovered is not None:
            frame["recovered"] = joined.recovered
            frame["replayed"] = len(joined.replay)
        connection.push(protocol.dumps(frame))
        for message in joined.replay:
            # With backpressure: a long resume waits for the client to read, instead of
            # overflowing its send queue (live messages wait in the cursor meanwhile).
            await connection.room_for(1)
            connection.push(protocol.dumps(protocol.message_frame(message, joined.shown)))
        cursor.delivered = joined.last_seq
        pending, cursor.pending = cursor.pending or [], None
        for seq, text in sorted(pending):
            if seq > cursor.delivered:
                cursor.delivered = seq
                connection.push(text)

    def leave(self, connection: Connection, room: str) -> None:
        connection.rooms.pop(room, None)
        feed = self.feeds.get(room)
        if feed is None:
            return
        feed.sockets.pop(connection, None)
        if not feed.sockets:
            del self.feeds[room]
            asyncio.get_running_loop().create_task(feed.close())

    async def _feed(self, room: str) -> RoomFeed:
        feed = self.feeds.get(room)
        if feed is not None:
            return feed
        opening = self._opening.get(room)
        if opening is not None:
            return await asyncio.shield(opening)
        future: asyncio.Future[RoomFeed] = asyncio.get_running_loop().create_future()
        self._opening[room] = future
        try:
            feed = RoomFeed(self, room)
            await feed.open()
            self.feeds[room] = feed
            future.set_result(feed)
            return feed
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: a waiter re-raises it
            raise
        finally:
            del self._opening[room]

    # Background --------------------------------------------------------------------------

    async def _presence_loop(self) -> None:
        while True:
            await asyncio.sleep(self.presence_every)
            try:
                live = [(c.user, c.id) for c in self.connections]
                if live:
                    await self.service.refresh(live)
                await self.service.sweep()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("chat: presence refresh failed: %s", exc)

    async def _relay_watch(self) -> None:
        """Once the relay answers again after failing, every room this gateway relays reads
        what was stored meanwhile (what was published then was lost)."""
        healthy = True
        while True:
            await asyncio.sleep(1.0)
            try:
                await self.pubsub.ping()
            except asyncio.CancelledError:
                raise
            except Exception:
                healthy = False
                continue
            if not healthy:
                healthy = True
                for feed in list(self.feeds.values()):
                    try:
                        await feed.catch_up()
                    except Exception as exc:
                        log.warning("chat: catching up %s failed: %s", feed.room, exc)


def _ref(text: str) -> Any:
    try:
        frame = json.loads(text)
        return frame.get("ref", frame.get("client_id")) if isinstance(frame, dict) else None
    except ValueError:
        return None
