"""Chat's WebSocket protocol in one process, on each stack (SQLite + in-process pub/sub,
PostgreSQL + Redis): authentication, delivery order, acks, idempotent resends, resuming with
`since`, retention, error frames and close codes, typing, removal, mentions."""

from __future__ import annotations

import asyncio
import base64
import os
from datetime import UTC, datetime, timedelta
from typing import Any

from websockets.asyncio.client import connect

from support.chat_app import SECRET, ChatStack, chat_server, chat_stack, database_unreachable
from support.chat_app import stack as stack  # the fixture: each test runs once per stack
from support.notifications import eventually
from townhall.platform.auth import Principal, TokenCodec
from townhall.platform.clock import FrozenClock

ROOMS = "/api/v1/chat/rooms"


async def test_a_socket_without_a_valid_token_is_closed_4401_with_a_reason(
    stack: ChatStack, tmp_path: Any
) -> None:
    async with chat_server(stack, tmp_path) as chat:
        ann = await chat.user("ann")
        hour_ago = FrozenClock(datetime.now(UTC) - timedelta(hours=1))
        expired = TokenCodec(SECRET, hour_ago, access_ttl=60).issue(
            Principal(user_id=ann.id, username=ann.username)
        )
        forged = TokenCodec("another-secret-of-at-least-32-characters", FrozenClock()).issue(
            Principal(user_id=ann.id, username=ann.username)
        )
        ghost = TokenCodec(SECRET, FrozenClock(datetime.now(UTC))).issue(
            Principal(user_id="01900000-0000-7000-8000-000000000000", username="ghost")
        )
        reasons = {}
        for label, url in [
            ("ghost", chat.ws_url(ghost)),
            ("none", chat.ws_url()),
            ("garbage", chat.ws_url("not.a.token")),
            ("forged", chat.ws_url(forged)),
            ("expired", chat.ws_url(expired)),
        ]:
            socket = await chat.connect(url=url)
            code, reason = await socket.closed()
            assert code == 4401, (label, code, reason)
            reasons[label] = reason
        assert "required" in reasons["none"]
        for label in ("garbage", "forged", "expired"):
            assert "invalid or expired" in reasons[label], reasons
        assert "does not exist" in reasons["ghost"]

        # A valid token works as a bearer header, and on the query string.
        async with connect(chat.ws_url(), additional_headers=ann.headers) as raw:
            await raw.send('{"op":"ping"}')
            assert await asyncio.wait_for(raw.recv(), 10) == '{"op":"pong"}'
        query = await chat.connect(ann)
        await query.quiet()


async def test_the_sender_is_acked_before_its_own_copy_and_members_get_messages_in_seq_order(
    stack: ChatStack, tmp_path: Any
) -> None:
    async with chat_server(stack, tmp_path) as chat:
        ann, bob, carol = await chat.users("ann", "bob", "carol")
        room = (await chat.room(ann, "general", bob, carol))["id"]
        sockets = {user.username: await chat.connect(user) for user in (ann, bob, carol)}
        for socket in sockets.values():
            assert (await socket.join(room))["seq"] == 0

        await sockets["ann"].send(
            op="send", room=room, body="hello", client_id="c-1", attachments=[]
        )
        ack = await sockets["ann"].expect("ack", client_id="c-1", seq=1)
        own = await sockets["ann"].expect("message", seq=1, id=ack["id"])
        received = await sockets["bob"].expect("message", seq=1)
        assert received == own
        assert await sockets["carol"].expect("message", seq=1) == own
        assert {k: received[k] for k in ("room", "id", "author", "body", "client_id")} == {
            "room": room,
            "id": ack["id"],
            "author": ann.id,
            "body": "hello",
            "client_id": "c-1",
        }
        assert received["attachments"] == []
        assert datetime.fromisoformat(received["ts"]).tzinfo is not None

        # Two senders at once, without waiting for acks: every member gets 2..21 in order.
        async def burst(name: str) -> None:
            for n in range(10):
                await sockets[name].send(
                    op="send", room=room, body=f"{name} {n}", client_id=f"{name}-{n}"
                )

        await asyncio.gather(burst("ann"), burst("carol"))
        for name, socket in sockets.items():
            seqs: list[int] = []
            acks: list[int] = []
            bodies: list[str] = []
            sender = name != "bob"
            while len(seqs) < 20 or (sender and len(acks) < 10):
                frame = await socket.frame()
                if frame["op"] == "message":
                    seqs.append(frame["seq"])
                    bodies.append(frame["body"])
                elif frame["op"] == "ack":
                    acks.append(frame["seq"])
            assert seqs == list(range(2, 22)), (name, seqs)
            if sender:  # a socket's sends are stored in the order sent
                assert acks == sorted(acks), (name, acks)
                own_bodies = [b for b in bodies if b.startswith(name)]
                assert own_bodies == [f"{name} {n}" for n in range(10)]
        history = (await chat.history(bob, room, limit=100)).json()["items"]
        assert [m["seq"] for m in history] == list(range(21, 0, -1))


async def test_a_resend_with_the_same_client_id_is_stored_and_delivered_once(
    stack: ChatStack, tmp_path: Any
) -> None:
    async with chat_server(stack, tmp_path) as chat:
        ann, bob = await chat.users("ann", "bob")
        room = (await chat.room(ann, "general", bob))["id"]
        receiver = await chat.connect(bob)
        await receiver.join(room)
        sender = await chat.connect(ann)

        await sender.send(op="send", room=room, body="once", client_id="same")
        first = await sender.expect("ack", client_id="same")
        await sender.send(op="send", room=room, body="once", client_id="same")
        again = await sender.expect("ack", client_id="same")
        assert (again["id"], again["seq"]) == (first["id"], first["seq"])
        # After a reconnect, from another socket: still the first id and seq.
        await sender.close()
        resender = await chat.connect(ann)
        await resender.send(op="send", room=room, body="once", client_id="same")
        third = await resender.expect("ack", client_id="same")
        assert (third["id"], third["seq"]) == (first["id"], first["seq"])
        await resender.send(op="send", room=room, body="next", client_id="other")
        await resender.expect("ack", client_id="other", seq=first["seq"] + 1)

        assert (await receiver.expect("message"))["id"] == first["id"]
        assert (await receiver.expect("message"))["body"] == "next"  # not "once" again
        history = (await chat.history(bob, room)).json()["items"]
        assert [(m["seq"], m["body"]) for m in history] == [(2, "next"), (1, "once")]


async def test_join_with_since_replays_what_was_missed_then_goes_live(
    stack: ChatStack, tmp_path: Any
) -> None:
    async with chat_server(stack, tmp_path) as chat:
        ann, bob = await chat.users("ann", "bob")
        room = (await chat.room(ann, "general", bob))["id"]
        sender = await chat.connect(ann)
        for n in range(1, 4):
            await sender.send(op="send", room=room, body=f"m{n}", client_id=f"m{n}")
            await sender.expect("ack", seq=n)

        resumed = await chat.connect(bob)
        joined = await resumed.join(room, since=1)
        assert (joined["seq"], joined["recovered"], joined["replayed"]) == (3, True, 2)
        replay = [await resumed.expect("message"), await resumed.expect("message")]
        assert [(m["seq"], m["body"]) for m in replay] == [(2, "m2"), (3, "m3")]
        await sender.send(op="send", room=room, body="m4", client_id="m4")
        await resumed.expect("message", seq=4, body="m4")

        up_to_date = await chat.connect(bob)
        joined = await up_to_date.join(room, since=4)
        assert (joined["seq"], joined["recovered"], joined["replayed"]) == (4, True, 0)
        plain = await chat.connect(bob)
        joined = await plain.join(room)
        assert joined["seq"] == 4
        assert "recovered" not in joined  # no `since`, no replay
        await plain.quiet()


async def test_since_past_the_last_seq_is_not_recovered(stack: ChatStack, tmp_path: Any) -> None:
    async with chat_server(stack, tmp_path) as chat:
        ann, bob = await chat.users("ann", "bob")
        room = (await chat.room(ann, "general", bob))["id"]
        sender = await chat.connect(ann)
        await sender.send(op="send", room=room, body="only", client_id="only")
        await sender.expect("ack", seq=1)

        resumed = await chat.connect(bob)
        joined = await resumed.join(room, since=10)  # e.g. a client of a wiped server
        assert (joined["seq"], joined["recovered"], joined["replayed"]) == (1, False, 0)
        await resumed.quiet()  # and no message was replayed


async def test_since_older_than_retention_is_not_recovered(stack: ChatStack, tmp_path: Any) -> None:
    # One second of history kept (TOWNHALL_CHAT_RETENTION_DAYS as a fraction of a day):
    # pruning runs every second, each room keeps its last message.
    async with chat_server(stack, tmp_path, chat_retention_days=1 / 86400) as chat:
        ann, bob = await chat.users("ann", "bob")
        room = (await chat.room(ann, "general", bob))["id"]
        sender = await chat.connect(ann)
        for n in range(1, 4):
            await sender.send(op="send", room=room, body=f"m{n}", client_id=f"m{n}")
            await sender.expect("ack", seq=n)

        async def pruned() -> bool:
            items = (await chat.history(bob, room)).json()["items"]
            return [m["seq"] for m in items] == [3]

        await eventually(pruned, within=15)

        resumed = await chat.connect(bob)
        joined = await resumed.join(room, since=0)
        assert (joined["seq"], joined["recovered"], joined["replayed"]) == (3, False, 0)
        await resumed.quiet()
        kept = await chat.connect(bob)
        joined = await kept.join(room, since=2)  # right before what is kept: recoverable
        assert (joined["recovered"], joined["replayed"]) == (True, 1)
        await kept.expect("message", seq=3, body="m3")
        # The room's seq goes on after pruning.
        await sender.send(op="send", room=room, body="m4", client_id="m4")
        await sender.expect("ack", seq=4)


async def test_bad_frames_get_error_frames_and_the_socket_stays_open(
    stack: ChatStack, tmp_path: Any
) -> None:
    async with chat_server(stack, tmp_path, chat_max_body=20) as chat:
        ann, bob, eve = await chat.users("ann", "bob", "eve")
        room = (await chat.room(ann, "general", bob))["id"]
        socket = await chat.connect(eve)

        await socket.send_text("not json")
        assert (await socket.expect("error"))["code"] == "bad_frame"
        await socket.send_text("[1, 2]")
        assert (await socket.expect("error"))["code"] == "bad_frame"
        await socket.send(op="shout", ref="r1")
        error = await socket.expect("error", code="unknown_op", ref="r1")
        assert "shout" in error["message"]
        await socket.send(room=room, ref="r2")
        await socket.expect("error", code="missing_field", ref="r2")
        await socket.send(op="join", ref="r3")
        error = await socket.expect("error", code="missing_field", ref="r3")
        assert "room" in error["message"]
        await socket.send(op="send", room=room, client_id="c1")
        await socket.expect("error", code="missing_field", ref="c1")
        await socket.send(op="join", room=room, since=-1, ref="r4")
        error = await socket.expect("error", code="invalid", ref="r4")
        assert "since" in error["message"]
        await socket.send(op="join", room=room, ref="r5")
        await socket.expect("error", code="not_a_member", ref="r5")
        await socket.send(op="send", room=room, body="let me in", client_id="c2")
        await socket.expect("error", code="not_a_member", ref="c2")
        await socket.send(op="typing", room=room, ref="r6")
        await socket.expect("error", code="not_a_member", ref="r6")
        await socket.send(op="read", room=room, seq=1, ref="r7")
        await socket.expect("error", code="not_a_member", ref="r7")
        await socket.quiet()  # still open

        member = await chat.connect(ann)
        await member.send(op="read", room=room, ref="r8")
        await member.expect("error", code="missing_field", ref="r8")
        await member.send(op="read", room=room, seq="3", ref="r9")
        await member.expect("error", code="invalid", ref="r9")
        # Values no column holds are refused before any query (the socket used to die).
        await member.send(op="read", room=room, seq=2**64, ref="big")
        await member.expect("error", code="invalid", ref="big")
        await member.send(op="join", room="a\x00b", ref="nul-room")
        await member.expect("error", code="invalid", ref="nul-room")
        await member.send(op="read", room="a\x00b", seq=1, ref="nul-read")
        await member.expect("error", code="invalid", ref="nul-read")
        await member.send(op="send", room=room, body="x", client_id="a\x00")
        await member.expect("error", code="invalid")
        await member.send(op="send", room=room, body=42, client_id="n1")
        await member.expect("error", code="invalid", ref="n1")
        await member.send(op="send", room=room, body="   ", client_id="blank")
        await member.expect("error", code="invalid", ref="blank")
        await member.send(op="send", room=room, body="nul\x00", client_id="nul")
        await member.expect("error", code="invalid", ref="nul")
        await member.send(op="send", room=room, body="no id")
        await member.expect("error", code="missing_field")
        await member.send(op="send", room=room, body="x", client_id="c" * 101)
        await member.expect("error", code="invalid")
        await member.send(op="send", room=room, body="x", client_id="a1", attachments="file")
        await member.expect("error", code="invalid", ref="a1")
        eleven = [f"f{n}" for n in range(11)]
        await member.send(op="send", room=room, body="x", client_id="a2", attachments=eleven)
        await member.expect("error", code="invalid", ref="a2")
        await member.send(op="send", room=room, body="x" * 21, client_id="long")
        await member.expect("error", code="body_too_long", ref="long")
        await member.send(op="send", room=room, body="x" * 20, client_id="fits")
        await member.expect("ack", client_id="fits", seq=1)  # nothing stored before it
        assert [m["seq"] for m in (await chat.history(ann, room)).json()["items"]] == [1]


async def test_a_flood_of_bad_frames_closes_the_socket_4400(
    stack: ChatStack, tmp_path: Any
) -> None:
    async with chat_server(stack, tmp_path, chat_bad_frames=3) as chat:
        ann = await chat.user("ann")
        socket = await chat.connect(ann)
        for _ in range(3):
            await socket.send_text("nope")
            await socket.expect("error", code="bad_frame")
        await socket.quiet()  # three are tolerated
        await socket.send_text("nope")
        code, reason = await socket.closed()
        assert code == 4400, (code, reason)
        assert reason


async def test_sends_over_the_rate_close_the_socket_4429(stack: ChatStack, tmp_path: Any) -> None:
    async with chat_server(stack, tmp_path, chat_send_rate=0.01, chat_send_burst=3) as chat:
        ann, bob = await chat.users("ann", "bob")
        room = (await chat.room(ann, "general", bob))["id"]
        socket = await chat.connect(ann)
        for n in range(3):
            await socket.send(op="send", room=room, body=f"m{n}", client_id=f"m{n}")
            await socket.expect("ack", seq=n + 1)
        await socket.send(op="send", room=room, body="one too many", client_id="m3")
        code, reason = await socket.closed()
        assert code == 4429, (code, reason)
        history = (await chat.history(ann, room)).json()["items"]
        assert [m["body"] for m in history] == ["m2", "m1", "m0"]


async def test_the_send_rate_is_per_user_across_their_sockets(
    stack: ChatStack, tmp_path: Any
) -> None:
    async with chat_server(stack, tmp_path, chat_send_rate=0.01, chat_send_burst=3) as chat:
        ann, bob = await chat.users("ann", "bob")
        room = (await chat.room(ann, "general", bob))["id"]
        phone, laptop, other = (
            await chat.connect(ann),
            await chat.connect(ann),
            await chat.connect(bob),
        )
        for n in range(2):
            await phone.send(op="send", room=room, body=f"p{n}", client_id=f"p{n}")
            await phone.expect("ack")
        await laptop.send(op="send", room=room, body="l0", client_id="l0")
        await laptop.expect("ack")
        await laptop.send(op="send", room=room, body="l1", client_id="l1")  # ann's fourth
        code, _ = await laptop.closed()
        assert code == 4429
        await other.send(op="send", room=room, body="bob's own budget", client_id="b0")
        await other.expect("ack", client_id="b0")


async def test_typing_reaches_the_other_members_but_not_the_typer(
    stack: ChatStack, tmp_path: Any
) -> None:
    async with chat_server(stack, tmp_path) as chat:
        ann, bob, carol = await chat.users("ann", "bob", "carol")
        room = (await chat.room(ann, "general", bob, carol))["id"]
        sockets = [await chat.connect(user) for user in (ann, bob, carol)]
        for socket in sockets:
            await socket.join(room)
        typer, *others = sockets
        await typer.send(op="typing", room=room)
        for other in others:
            await other.expect("typing", room=room, user=ann.id)
        await typer.quiet()  # the others have it; the typer's own socket got nothing
        typed = [f for f in typer.seen if f.get("op") == "typing"]
        assert typed == []
        history = (await chat.history(ann, room)).json()["items"]
        assert history == []  # not stored


async def test_a_removed_member_gets_left_and_no_more_messages(
    stack: ChatStack, tmp_path: Any
) -> None:
    async with chat_server(stack, tmp_path) as chat:
        ann, bob = await chat.users("ann", "bob")
        room = (await chat.room(ann, "general", bob))["id"]
        owner = await chat.connect(ann)
        await owner.join(room)
        member = await chat.connect(bob)
        await member.join(room)

        removed = await chat.http.delete(f"{ROOMS}/{room}/members/{bob.id}", headers=ann.headers)
        assert removed.status_code == 204, removed.text
        await member.expect("left", room=room)

        await owner.send(op="send", room=room, body="after", client_id="after")
        await owner.expect("ack", client_id="after")
        await owner.expect("message", body="after")  # fanned out to the room's sockets
        await member.quiet()  # ...and not to bob's
        assert [f for f in member.seen if f.get("op") == "message"] == []
        await member.send(op="send", room=room, body="still here?", client_id="b1")
        await member.expect("error", code="not_a_member", ref="b1")
        await member.send(op="join", room=room, since=0, ref="j")
        await member.expect("error", code="not_a_member", ref="j")


async def test_a_left_room_sends_nothing_more(stack: ChatStack, tmp_path: Any) -> None:
    async with chat_server(stack, tmp_path) as chat:
        ann, bob = await chat.users("ann", "bob")
        room = (await chat.room(ann, "general", bob))["id"]
        owner = await chat.connect(ann)
        await owner.join(room)
        member = await chat.connect(bob)
        await member.join(room)
        await member.send(op="leave", room=room)
        await member.expect("left", room=room)
        await owner.send(op="send", room=room, body="after", client_id="after")
        await owner.expect("ack")
        await owner.expect("message", body="after")
        await member.quiet()
        assert [f for f in member.seen if f.get("op") == "message"] == []


async def test_a_mention_is_put_in_the_outbox_with_whether_the_member_was_online(
    stack: ChatStack, tmp_path: Any
) -> None:
    async with chat_server(stack, tmp_path) as chat:
        ann, bob, carol, _dan = await chat.users("ann", "bob", "carol", "dan")
        room = (await chat.room(ann, "general", bob, carol))["id"]
        online = await chat.connect(bob)
        await chat.wait_for_presence(ann, room, bob, "online")
        assert (await chat.presence(ann, room))[carol.id] == "offline"

        sender = await chat.connect(ann)
        body = "hi @bob and @Carol, @bob again; not @ann, not @dan, not @nobody"
        await sender.send(op="send", room=room, body=body, client_id="m1")
        ack = await sender.expect("ack", client_id="m1")
        await sender.quiet()  # the send's work, mentions included, is done before the pong

        mentions = [e["payload"] for e in await chat.outbox("chat.UserMentioned")]
        by_user = {m["mentioned_id"]: m for m in mentions}
        assert set(by_user) == {bob.id, carol.id}  # members only, never the author
        assert len(mentions) == 2  # once per message and member
        assert by_user[bob.id]["online"] is True
        assert by_user[carol.id]["online"] is False
        for mention in mentions:
            assert mention["message_id"] == ack["id"]
            assert mention["seq"] == ack["seq"]
            assert mention["room_id"] == room
            assert mention["room_name"] == "general"
            assert mention["author_id"] == ann.id
            assert mention["author_username"] == "ann"
            assert mention["excerpt"] == body
        await online.quiet()


async def test_a_join_while_messages_arrive_misses_none_and_repeats_none(
    stack: ChatStack, tmp_path: Any
) -> None:
    async with chat_server(stack, tmp_path) as chat:
        ann, bob = await chat.users("ann", "bob")
        room = (await chat.room(ann, "general", bob))["id"]
        sender = await chat.connect(ann)
        for n in range(1, 6):
            await sender.send(op="send", room=room, body=f"m{n}", client_id=f"m{n}")
        watcher = await chat.connect(bob)  # joins while the sends are being stored

        async def more() -> None:
            for n in range(6, 41):
                await sender.send(op="send", room=room, body=f"m{n}", client_id=f"m{n}")

        sending = asyncio.create_task(more())
        joined = await watcher.join(room, since=0)
        await sending
        assert joined["recovered"] is True
        seqs = [(await watcher.expect("message"))["seq"] for _ in range(40)]
        assert seqs == list(range(1, 41))
        await watcher.quiet()  # and nothing twice after the 40th
        acks = [(await sender.expect("ack"))["seq"] for _ in range(40)]
        assert acks == list(range(1, 41))


async def test_a_user_with_two_sockets_gets_each_message_on_both(
    stack: ChatStack, tmp_path: Any
) -> None:
    async with chat_server(stack, tmp_path) as chat:
        ann, bob = await chat.users("ann", "bob")
        room = (await chat.room(ann, "general", bob))["id"]
        phone, laptop = await chat.connect(bob), await chat.connect(bob)
        await phone.join(room)
        await laptop.join(room)
        await phone.send(op="send", room=room, body="from the phone", client_id="p1")
        ack = await phone.expect("ack", client_id="p1")
        for socket in (phone, laptop):
            await socket.expect("message", id=ack["id"], body="from the phone")


async def test_a_socket_joins_at_most_its_room_limit(stack: ChatStack, tmp_path: Any) -> None:
    async with chat_server(stack, tmp_path, chat_rooms_per_socket=1) as chat:
        ann = await chat.user("ann")
        first = (await chat.room(ann, "first"))["id"]
        second = (await chat.room(ann, "second"))["id"]
        socket = await chat.connect(ann)
        await socket.join(first)
        await socket.send(op="join", room=second, ref="j2")
        await socket.expect("error", code="too_many_rooms", ref="j2")
        await socket.join(first)  # joining a room it is in again is no new room
        await socket.send(op="leave", room=first)
        await socket.expect("left", room=first)
        await socket.join(second)


async def test_frames_over_the_frame_rate_close_the_socket_4429(
    stack: ChatStack, tmp_path: Any
) -> None:
    # One frame a second, a burst of four seconds' worth: a fifth at once is over it.
    async with chat_server(stack, tmp_path, chat_frame_rate=1) as chat:
        ann = await chat.user("ann")
        socket = await chat.connect(ann)
        for _ in range(5):
            await socket.send(op="ping")
        code, reason = await socket.closed()
        assert code == 4429, (code, reason)
        assert "frames" in reason
        assert len(socket.seen) <= 4  # a pong for each frame within the burst, at most


async def test_a_resume_as_long_as_the_send_queue_is_answered_not_closed(
    stack: ChatStack, tmp_path: Any
) -> None:
    async with chat_server(stack, tmp_path, chat_send_queue=20) as chat:
        ann, bob = await chat.users("ann", "bob")
        room = (await chat.room(ann, "general", bob))["id"]
        sender = await chat.connect(ann)
        for n in range(1, 21):
            await sender.send(op="send", room=room, body=f"m{n}", client_id=f"m{n}")
        for n in range(1, 21):
            await sender.expect("ack", seq=n)

        resumed = await chat.connect(bob)
        await resumed.send(op="join", room=room, since=0)
        try:
            joined = await resumed.expect("joined", room=room, seq=20)
        except Exception:
            code, reason = await resumed.closed()
            raise AssertionError(f"closed {code} {reason!r} instead of answering") from None
        if joined["recovered"]:  # the whole replay, in order...
            seqs = [(await resumed.expect("message"))["seq"] for _ in range(joined["replayed"])]
            assert seqs == list(range(1, 21))
        else:  # ...or none, and the client reads history over HTTP
            assert joined["replayed"] == 0
        await resumed.quiet()


async def test_two_racing_sends_with_one_client_id_store_one_message(
    stack: ChatStack, tmp_path: Any
) -> None:
    async with chat_server(stack, tmp_path) as chat:
        ann, bob = await chat.users("ann", "bob")
        room = (await chat.room(ann, "general", bob))["id"]
        receiver = await chat.connect(bob)
        await receiver.join(room)
        first, second = await chat.connect(ann), await chat.connect(ann)
        for n in range(5):  # a few rounds: the race goes either way
            frame = {"op": "send", "room": room, "body": f"r{n}", "client_id": f"race-{n}"}
            await asyncio.gather(first.send(**frame), second.send(**frame))
            acks = [await first.expect("ack"), await second.expect("ack")]
            assert acks[0] == acks[1], acks
            assert acks[0]["seq"] == n + 1
        seqs = [(await receiver.expect("message"))["seq"] for _ in range(5)]
        assert seqs == [1, 2, 3, 4, 5]
        await receiver.quiet()  # each once
        history = (await chat.history(ann, room)).json()["items"]
        assert [m["body"] for m in history] == ["r4", "r3", "r2", "r1", "r0"]


async def test_attachments_that_are_no_uploads_of_the_author_refuse_the_send(
    stack: ChatStack, tmp_path: Any
) -> None:
    """Attachments are uploads of the author's, shown as their scans allow: that is
    tests/integration/uploads/test_attachments.py; here, ids that name none are refused."""
    async with chat_server(stack, tmp_path) as chat:
        ann, bob = await chat.users("ann", "bob")
        room = (await chat.room(ann, "general", bob))["id"]
        receiver = await chat.connect(bob)
        await receiver.join(room)
        sender = await chat.connect(ann)
        await sender.send(
            op="send", room=room, body="see", client_id="att", attachments=["up-1", "up-2"]
        )
        await sender.expect("error", code="not_attachable", field="attachments", ref="att")
        await sender.send(op="send", room=room, body="plain", client_id="plain", attachments=[])
        await sender.expect("ack", client_id="plain", seq=1)  # nothing stored before it
        frame = await receiver.expect("message", body="plain")
        assert frame["attachments"] == []
        stored = (await chat.history(bob, room)).json()["items"]
        assert [(m["body"], m["attachments"]) for m in stored] == [("plain", [])]


async def _silent_client(port: int, token: str) -> tuple[int, str]:
    """A WebSocket client that reads but never answers the server's pings (a phone that
    went into a tunnel): (close code, reason) of the close frame it is sent."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET /api/v1/chat/ws?token={token} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert answer.startswith(b"HTTP/1.1 101"), answer
        while True:
            head = await asyncio.wait_for(reader.readexactly(2), 10)
            opcode, length = head[0] & 0x0F, head[1] & 0x7F
            if length == 126:
                length = int.from_bytes(await reader.readexactly(2), "big")
            elif length == 127:
                length = int.from_bytes(await reader.readexactly(8), "big")
            payload = await reader.readexactly(length)
            if opcode == 0x8:  # close
                return int.from_bytes(payload[:2], "big"), payload[2:].decode()
    finally:
        writer.close()


async def test_a_socket_that_leaves_pings_unanswered_is_closed_1011_and_goes_offline(
    stack: ChatStack, tmp_path: Any
) -> None:
    # The well-behaved client gets 2 s to answer, so a loaded machine does not close it too.
    settings = {"chat_ping_interval": 0.5, "chat_ping_timeout": 2.0}
    async with chat_server(stack, tmp_path, **settings) as chat:
        ann, bob = await chat.users("ann", "bob")
        room = (await chat.room(ann, "general", bob))["id"]
        watcher = await chat.connect(ann)  # answers pings: stays open
        await watcher.join(room)
        code, reason = await _silent_client(chat.port, bob.token)
        assert code == 1011, (code, reason)
        await watcher.until("presence", room=room, user=bob.id, status="online")
        await watcher.until("presence", room=room, user=bob.id, status="offline")
        await chat.wait_for_presence(ann, room, bob, "offline")
        await watcher.quiet()  # the socket that answers pings is still open


async def test_sockets_joining_one_room_at_once_all_get_its_messages(
    stack: ChatStack, tmp_path: Any
) -> None:
    async with chat_server(stack, tmp_path) as chat:
        ann, bob = await chat.users("ann", "bob")
        room = (await chat.room(ann, "general", bob))["id"]
        sender = await chat.connect(ann)
        sockets = [await chat.connect(bob) for _ in range(6)]
        await asyncio.gather(*(socket.join(room) for socket in sockets))
        await sender.send(op="send", room=room, body="all of you", client_id="m1")
        await sender.expect("ack", seq=1)
        for socket in sockets:
            await socket.expect("message", seq=1, body="all of you")


async def test_leaving_and_joining_again_keeps_the_room_live(
    stack: ChatStack, tmp_path: Any
) -> None:
    async with chat_server(stack, tmp_path) as chat:
        ann, bob = await chat.users("ann", "bob")
        room = (await chat.room(ann, "general", bob))["id"]
        sender = await chat.connect(ann)
        socket = await chat.connect(bob)
        for n in range(1, 6):  # the last socket leaving drops the room's feed; a join makes one
            await socket.join(room)
            await socket.send(op="leave", room=room)
            await socket.expect("left", room=room)
            await socket.join(room)
            await sender.send(op="send", room=room, body=f"m{n}", client_id=f"m{n}")
            await sender.expect("ack", seq=n)
            await socket.expect("message", seq=n)
            await socket.send(op="leave", room=room)
            await socket.expect("left", room=room)


async def test_a_frame_the_database_cannot_serve_is_answered_unavailable_not_a_closed_socket(
    tmp_path: Any,
) -> None:
    # PostgreSQL only: its database can be made unreachable while the server runs.
    async with (
        chat_stack("postgresql+redis", tmp_path) as stack,
        chat_server(stack, tmp_path) as chat,
    ):
        ann, bob = await chat.users("ann", "bob")
        room = (await chat.room(ann, "general", bob))["id"]
        socket = await chat.connect(bob)
        await socket.quiet()
        async with database_unreachable(stack):
            await socket.send(op="join", room=room, ref="j1")
            await socket.expect("error", code="unavailable", ref="j1")
            await socket.send(op="read", room=room, seq=1, ref="r1")
            await socket.expect("error", code="unavailable", ref="r1")
            await socket.send(op="send", room=room, body="hello?", client_id="c1")
            await socket.expect("error", code="unavailable", ref="c1")
            await socket.quiet()  # still open
        joined = await socket.join(room)  # the database is back: the same frames work
        assert joined["seq"] == 0
        await socket.send(op="send", room=room, body="hello?", client_id="c1")
        await socket.expect("ack", client_id="c1", seq=1)
