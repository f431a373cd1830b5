"""Chat's HTTP API in one process, on each stack (SQLite + in-process pub/sub, PostgreSQL +
Redis): rooms, direct rooms, members, history pages, edits and deletes, presence."""

from __future__ import annotations

import asyncio
from typing import Any

from support.chat_app import ChatStack, Socket, chat_server
from support.chat_app import stack as stack  # the fixture: each test runs once per stack

PROBLEM = "application/problem+json"
ROOMS = "/api/v1/chat/rooms"


async def send_messages(socket: Socket, room: str, bodies: list[str]) -> list[dict[str, Any]]:
    """Send each body and wait for its ack (the socket has not joined `room`: acks only)."""
    acks = []
    for number, body in enumerate(bodies):
        await socket.send(op="send", room=room, body=body, client_id=f"{room}-{body}-{number}")
        acks.append(await socket.expect("ack"))
    return acks


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


async def test_a_room_is_made_with_its_creator_as_owner_and_member(
    stack: ChatStack, tmp_path: Any
) -> None:
    async with chat_server(stack, tmp_path) as chat:
        ann, bob = await chat.users("ann", "bob")
        made = await chat.http.post(
            ROOMS, json={"name": "  general  ", "members": [bob.id, bob.id]}, headers=ann.headers
        )
        assert made.status_code == 201, made.text
        room = made.json()
        assert room["owner"] == ann.id
        assert room["name"] == "general"  # trimmed
        assert sorted(room["members"]) == sorted([ann.id, bob.id])  # the creator, once each
        assert room["direct"] is False
        listed = await chat.http.get(ROOMS, headers=bob.headers)
        assert [r["id"] for r in listed.json()["items"]] == [room["id"]]


async def test_a_room_with_an_unknown_member_or_a_bad_name_is_refused(
    stack: ChatStack, tmp_path: Any
) -> None:
    async with chat_server(stack, tmp_path) as chat:
        ann, bob = await chat.users("ann", "bob")
        unknown = await chat.http.post(
            ROOMS,
            json={"name": "r", "members": [bob.id, "01900000-0000-7000-8000-000000000000"]},
            headers=ann.headers,
        )
        assert "01900000-0000-7000-8000-000000000000" in str(problem(unknown, 422))
        for name in ["", "   ", "x" * 101, "nul\x00name"]:
            refused = await chat.http.post(
                ROOMS, json={"name": name, "members": []}, headers=ann.headers
            )
            assert "name" in str(problem(refused, 422)), name
        no_token = await chat.http.post(ROOMS, json={"name": "r", "members": []})
        problem(no_token, 401)
        assert (await chat.http.get(ROOMS, headers=ann.headers)).json()["items"] == []
        assert (await chat.http.get(ROOMS, headers=bob.headers)).json()["items"] == []


async def test_rooms_list_their_last_message_and_unread_falls_after_a_read_frame(
    stack: ChatStack, tmp_path: Any
) -> None:
    async with chat_server(stack, tmp_path) as chat:
        ann, bob = await chat.users("ann", "bob")
        room = (await chat.room(ann, "general", bob))["id"]
        quiet = (await chat.room(ann, "quiet", bob))["id"]
        sender = await chat.connect(ann)
        acks = await send_messages(sender, room, ["one", "two", "three"])

        rooms = await chat.rooms(bob)
        assert rooms[room]["unread"] == 3
        last = rooms[room]["last_message"]
        assert (last["seq"], last["body"], last["id"], last["author"]) == (
            3,
            "three",
            acks[2]["id"],
            ann.id,
        )
        assert rooms[quiet]["last_message"] is None
        assert rooms[quiet]["unread"] == 0

        reader = await chat.connect(bob)
        await reader.send(op="read", room=room, seq=2)
        await reader.quiet()  # frames are handled in order: the read mark is stored
        rooms = await chat.rooms(bob)
        assert rooms[room]["unread"] == 1
        await reader.send(op="read", room=room, seq=3)
        await reader.quiet()
        rooms = await chat.rooms(bob)
        assert rooms[room]["unread"] == 0
        await reader.send(op="read", room=room, seq=1)  # a read mark only moves forward
        await reader.quiet()
        rooms = await chat.rooms(bob)
        assert rooms[room]["unread"] == 0
        await send_messages(sender, room, ["four"])
        rooms = await chat.rooms(bob)
        assert (rooms[room]["unread"], rooms[room]["last_message"]["body"]) == (1, "four")


async def test_a_direct_room_is_made_once_and_found_from_both_sides(
    stack: ChatStack, tmp_path: Any
) -> None:
    async with chat_server(stack, tmp_path) as chat:
        ann, bob = await chat.users("ann", "bob")
        first = await chat.http.post(f"/api/v1/chat/direct/{bob.id}", headers=ann.headers)
        assert first.status_code == 201, first.text
        again = await chat.http.post(f"/api/v1/chat/direct/{bob.id}", headers=ann.headers)
        assert again.status_code == 200, again.text
        other_side = await chat.http.post(f"/api/v1/chat/direct/{ann.id}", headers=bob.headers)
        assert other_side.status_code == 200, other_side.text
        room = first.json()
        assert again.json()["id"] == other_side.json()["id"] == room["id"]
        assert room["direct"] is True
        assert sorted(room["members"]) == sorted([ann.id, bob.id])
        # A direct room has no owner's rights: nobody adds a third member.
        carol = await chat.user("carol")
        added = await chat.http.post(
            f"{ROOMS}/{room['id']}/members/{carol.id}", headers=ann.headers
        )
        problem(added, 403)

        problem(await chat.http.post(f"/api/v1/chat/direct/{ann.id}", headers=ann.headers), 422)
        unknown = "01900000-0000-7000-8000-000000000000"
        problem(await chat.http.post(f"/api/v1/chat/direct/{unknown}", headers=ann.headers), 422)


async def test_two_concurrent_direct_calls_make_one_room(stack: ChatStack, tmp_path: Any) -> None:
    async with chat_server(stack, tmp_path) as chat:
        ann, bob = await chat.users("ann", "bob")
        answers = await asyncio.gather(
            chat.http.post(f"/api/v1/chat/direct/{bob.id}", headers=ann.headers),
            chat.http.post(f"/api/v1/chat/direct/{ann.id}", headers=bob.headers),
        )
        assert sorted(a.status_code for a in answers) == [200, 201], [a.text for a in answers]
        assert answers[0].json()["id"] == answers[1].json()["id"]
        listed = (await chat.http.get(ROOMS, headers=ann.headers)).json()["items"]
        assert [r["id"] for r in listed] == [answers[0].json()["id"]]


async def test_only_the_owner_adds_and_removes_members(stack: ChatStack, tmp_path: Any) -> None:
    async with chat_server(stack, tmp_path) as chat:
        ann, bob, carol, dan = await chat.users("ann", "bob", "carol", "dan")
        room = (await chat.room(ann, "general", bob))["id"]

        problem(await chat.http.post(f"{ROOMS}/{room}/members/{dan.id}", headers=bob.headers), 403)
        added = await chat.http.post(f"{ROOMS}/{room}/members/{carol.id}", headers=ann.headers)
        assert added.status_code == 200, added.text
        assert sorted(added.json()["members"]) == sorted([ann.id, bob.id, carol.id])
        again = await chat.http.post(f"{ROOMS}/{room}/members/{carol.id}", headers=ann.headers)
        assert again.status_code == 200, again.text  # adding a member twice: still once
        assert sorted(again.json()["members"]) == sorted([ann.id, bob.id, carol.id])
        problem(
            await chat.http.delete(f"{ROOMS}/{room}/members/{carol.id}", headers=bob.headers), 403
        )
        problem(
            await chat.http.delete(f"{ROOMS}/{room}/members/{ann.id}", headers=ann.headers), 422
        )
        unknown = "01900000-0000-7000-8000-000000000000"
        problem(await chat.http.post(f"{ROOMS}/{room}/members/{unknown}", headers=ann.headers), 422)

        removed = await chat.http.delete(f"{ROOMS}/{room}/members/{carol.id}", headers=ann.headers)
        assert removed.status_code == 204, removed.text
        problem(await chat.history(carol, room), 404)
        left = await chat.http.delete(f"{ROOMS}/{room}/members/{bob.id}", headers=bob.headers)
        assert left.status_code == 204, left.text  # a member may leave
        problem(await chat.history(bob, room), 404)
        assert (await chat.http.get(ROOMS, headers=bob.headers)).json()["items"] == []
        members = (await chat.http.get(ROOMS, headers=ann.headers)).json()["items"][0]["members"]
        assert members == [ann.id]


async def test_a_non_member_gets_404_for_everything_about_the_room(
    stack: ChatStack, tmp_path: Any
) -> None:
    async with chat_server(stack, tmp_path) as chat:
        ann, bob, eve = await chat.users("ann", "bob", "eve")
        room = (await chat.room(ann, "general", bob))["id"]
        sender = await chat.connect(ann)
        message = (await send_messages(sender, room, ["hello"]))[0]["id"]
        missing = "01900000-0000-7000-8000-000000000000"
        for target in (room, missing):  # a room that exists looks like one that does not
            for method, path, body in [
                ("GET", f"{ROOMS}/{target}/messages", None),
                ("GET", f"{ROOMS}/{target}/presence", None),
                ("POST", f"{ROOMS}/{target}/members/{eve.id}", None),
                ("DELETE", f"{ROOMS}/{target}/members/{bob.id}", None),
                ("DELETE", f"{ROOMS}/{target}/members/{eve.id}", None),
                ("PATCH", f"{ROOMS}/{target}/messages/{message}", {"body": "mine now"}),
                ("DELETE", f"{ROOMS}/{target}/messages/{message}", None),
            ]:
                answer = await chat.http.request(method, path, json=body, headers=eve.headers)
                problem(answer, 404)
        history = (await chat.history(ann, room)).json()["items"]
        assert [(m["body"], m["deleted"]) for m in history] == [("hello", False)]


async def test_history_pages_newest_first_and_stay_stable_while_messages_arrive(
    stack: ChatStack, tmp_path: Any
) -> None:
    async with chat_server(stack, tmp_path) as chat:
        ann, bob = await chat.users("ann", "bob")
        room = (await chat.room(ann, "general", bob))["id"]
        sender = await chat.connect(ann)
        await send_messages(sender, room, [f"m{n}" for n in range(1, 6)])

        first = await chat.history(bob, room, limit=2)
        assert first.status_code == 200, first.text
        assert [m["seq"] for m in first.json()["items"]] == [5, 4]
        assert [m["body"] for m in first.json()["items"]] == ["m5", "m4"]
        cursor = first.json()["next_before"]
        assert cursor == 4

        await send_messages(sender, room, ["m6", "m7"])  # new messages while paging back

        second = (await chat.history(bob, room, before=cursor, limit=2)).json()
        assert [m["seq"] for m in second["items"]] == [3, 2]
        third = (await chat.history(bob, room, before=second["next_before"], limit=2)).json()
        assert [m["seq"] for m in third["items"]] == [1]
        assert third["next_before"] is None
        newest = (await chat.history(bob, room)).json()
        assert [m["seq"] for m in newest["items"]] == [7, 6, 5, 4, 3, 2, 1]
        assert newest["next_before"] is None
        for bad in ({"limit": 0}, {"limit": 101}, {"before": 0}, {"before": "x"}):
            problem(await chat.history(bob, room, **bad), 422)


async def test_only_the_author_edits_or_deletes_and_members_are_told(
    stack: ChatStack, tmp_path: Any
) -> None:
    async with chat_server(stack, tmp_path) as chat:
        ann, bob = await chat.users("ann", "bob")
        room = (await chat.room(ann, "general", bob))["id"]
        sender = await chat.connect(ann)
        first, second = await send_messages(sender, room, ["first", "second"])
        watcher = await chat.connect(bob)
        await watcher.join(room)
        path = f"{ROOMS}/{room}/messages"

        problem(
            await chat.http.patch(f"{path}/{first['id']}", json={"body": "x"}, headers=bob.headers),
            403,
        )
        problem(await chat.http.delete(f"{path}/{first['id']}", headers=bob.headers), 403)
        unknown = "01900000-0000-7000-8000-000000000000"
        problem(
            await chat.http.patch(f"{path}/{unknown}", json={"body": "x"}, headers=ann.headers), 404
        )

        edited = await chat.http.patch(
            f"{path}/{first['id']}", json={"body": "first, edited"}, headers=ann.headers
        )
        assert edited.status_code == 200, edited.text
        assert edited.json()["body"] == "first, edited"
        assert edited.json()["seq"] == 1
        assert edited.json()["edited_at"] is not None
        frame = await watcher.expect("edited", room=room, id=first["id"], seq=1)
        assert frame["body"] == "first, edited"
        assert frame["edited_at"]

        for body in ["", "   ", "x" * 4001, "nul\x00"]:
            refused = await chat.http.patch(
                f"{path}/{first['id']}", json={"body": body}, headers=ann.headers
            )
            problem(refused, 422)

        deleted = await chat.http.delete(f"{path}/{second['id']}", headers=ann.headers)
        assert deleted.status_code == 204, deleted.text
        await watcher.expect("deleted", room=room, id=second["id"], seq=2)
        again = await chat.http.delete(f"{path}/{second['id']}", headers=ann.headers)
        assert again.status_code == 204, again.text  # deleting is idempotent
        problem(
            await chat.http.patch(
                f"{path}/{second['id']}", json={"body": "back"}, headers=ann.headers
            ),
            404,
        )

        history = (await chat.history(bob, room)).json()["items"]
        assert [(m["seq"], m["body"], m["deleted"]) for m in history] == [
            (2, "", True),  # the tombstone keeps its seq
            (1, "first, edited", False),
        ]
        # The tombstone is what a resuming client replays too.
        resumed = await chat.connect(bob)
        joined = await resumed.join(room, since=0)
        assert (joined["recovered"], joined["replayed"]) == (True, 2)
        replay = [await resumed.expect("message"), await resumed.expect("message")]
        assert [(m["seq"], m["body"], m.get("deleted", False)) for m in replay] == [
            (1, "first, edited", False),
            (2, "", True),
        ]


async def test_presence_is_online_while_a_socket_is_open(stack: ChatStack, tmp_path: Any) -> None:
    async with chat_server(stack, tmp_path) as chat:
        ann, bob = await chat.users("ann", "bob")
        room = (await chat.room(ann, "general", bob))["id"]
        assert await chat.presence(ann, room) == {ann.id: "offline", bob.id: "offline"}

        watcher = await chat.connect(ann)
        await watcher.join(room)
        first = await chat.connect(bob)
        await chat.wait_for_presence(ann, room, bob, "online")
        await watcher.until("presence", room=room, user=bob.id, status="online")
        second = await chat.connect(bob)  # a second socket: still one user online
        await second.quiet()

        await first.close()
        await second.quiet()  # the second socket keeps bob online
        assert (await chat.presence(ann, room))[bob.id] == "online"
        await second.close()
        await chat.wait_for_presence(ann, room, bob, "offline")
        await watcher.until("presence", room=room, user=bob.id, status="offline")
        assert (await chat.presence(bob, room))[ann.id] == "online"


async def test_a_room_holds_at_most_its_member_limit(stack: ChatStack, tmp_path: Any) -> None:
    async with chat_server(stack, tmp_path, chat_members_per_room=3) as chat:
        ann, bob, carol, dan = await chat.users("ann", "bob", "carol", "dan")
        too_many = await chat.http.post(
            ROOMS, json={"name": "big", "members": [bob.id, carol.id, dan.id]}, headers=ann.headers
        )
        problem(too_many, 409)
        room = (await chat.room(ann, "small", bob, carol))["id"]
        problem(await chat.http.post(f"{ROOMS}/{room}/members/{dan.id}", headers=ann.headers), 409)
        assert len((await chat.rooms(ann))[room]["members"]) == 3


async def test_rooms_are_listed_newest_first_and_an_added_member_reads_and_joins(
    stack: ChatStack, tmp_path: Any
) -> None:
    async with chat_server(stack, tmp_path) as chat:
        ann, bob = await chat.users("ann", "bob")
        older = (await chat.room(ann, "older"))["id"]
        newer = (await chat.room(ann, "newer"))["id"]
        listed = (await chat.http.get(ROOMS, headers=ann.headers)).json()["items"]
        assert [r["id"] for r in listed] == [newer, older]
        assert [r["members"] for r in listed] == [[ann.id], [ann.id]]

        sender = await chat.connect(ann)
        await send_messages(sender, older, ["before bob"])
        problem(await chat.history(bob, older), 404)
        added = await chat.http.post(f"{ROOMS}/{older}/members/{bob.id}", headers=ann.headers)
        assert added.status_code == 200, added.text
        # History from before they joined is theirs to read, and the socket joins.
        assert [m["body"] for m in (await chat.history(bob, older)).json()["items"]] == [
            "before bob"
        ]
        socket = await chat.connect(bob)
        assert (await socket.join(older))["seq"] == 1
        await send_messages(sender, older, ["welcome"])
        await socket.expect("message", seq=2, body="welcome")
