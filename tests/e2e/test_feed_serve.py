"""The feed on embedded defaults (SQLite, in-process bus and timelines), in a real `townhall
serve` process over a real socket: post, follow, read, page, delete, as a client does."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from support.app import PASSWORD
from support.process import STREAM_LIMITS, serving, townhall_env

pytestmark = pytest.mark.timeout(120)


def eventually(check: Callable[[], Any], within: float = 15.0) -> Any:
    """Poll `check` until it returns a truthy value; fail with its last value on timeout."""
    deadline = time.monotonic() + within
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {within}s; last value: {last!r}")
        time.sleep(0.05)


def sign_up(http: httpx.Client, username: str) -> tuple[str, dict[str, str]]:
    body = {"username": username, "password": PASSWORD}
    created = http.post("/api/v1/auth/register", json=body)
    assert created.status_code == 201, created.text
    tokens = http.post("/api/v1/auth/token", json=body)
    assert tokens.status_code == 200, tokens.text
    return created.json()["id"], {"Authorization": f"Bearer {tokens.json()['access_token']}"}


def scroll(http: httpx.Client, headers: dict[str, str], limit: int) -> list[str]:
    ids: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        page = http.get("/api/v1/feed", params=params, headers=headers)
        assert page.status_code == 200, page.text
        ids += [item["id"] for item in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return ids


def test_post_follow_read_page_delete_on_a_served_townhall(tmp_path):
    env = townhall_env(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'townhall.db'}",
        data_dir=str(tmp_path / "var"),
        log_level="warning",
        **STREAM_LIMITS,
    )
    with serving(env, log=tmp_path / "serve.log") as base, httpx.Client(base_url=base) as http:
        alice_id, alice = sign_up(http, "alice")
        bob_id, bob = sign_up(http, "bob")
        assert scroll(http, bob, 20) == []  # bob reads: he is fanned out to from now on

        followed = http.put(f"/api/v1/users/{alice_id}/follow", headers=bob)
        assert followed.status_code == 204, followed.text
        made = []
        for n in range(7):
            answer = http.post("/api/v1/posts", json={"text": f"post {n}"}, headers=alice)
            assert answer.status_code == 201, answer.text
            assert answer.json()["author"] == alice_id
            made.append(answer.json()["id"])
        own = http.post("/api/v1/posts", json={"text": "bob's own"}, headers=bob).json()["id"]
        expected = [own, *reversed(made)]

        # Fan-out is eventual; then bob's feed is alice's posts and his, newest first.
        eventually(lambda: scroll(http, bob, 20) == expected)
        first = http.get("/api/v1/feed", params={"limit": 3}, headers=bob).json()
        assert [item["id"] for item in first["items"]] == expected[:3]
        assert first["items"][1]["author"] == {
            "id": alice_id,
            "username": "alice",
            "display_name": None,
        }
        assert scroll(http, bob, 3) == expected
        assert scroll(http, alice, 2) == list(reversed(made))

        # A delete leaves both feeds at once.
        deleted = http.delete(f"/api/v1/posts/{made[3]}", headers=alice)
        assert deleted.status_code == 204, deleted.text
        expected.remove(made[3])
        assert scroll(http, bob, 3) == expected
        assert http.get(f"/api/v1/posts/{made[3]}", headers=bob).status_code == 404
        assert http.delete(f"/api/v1/posts/{made[4]}", headers=bob).status_code == 403

        # An unfollow takes alice's posts out of bob's feed.
        assert http.delete(f"/api/v1/users/{alice_id}/follow", headers=bob).status_code == 204
        eventually(lambda: scroll(http, bob, 20) == [own])
        followers = http.get(f"/api/v1/users/{alice_id}/followers", headers=alice).json()
        assert followers == {"items": [], "next_cursor": None}
        assert bob_id not in {item["id"] for item in followers["items"]}
