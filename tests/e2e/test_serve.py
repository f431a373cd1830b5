"""`townhall serve` as a real process over a real socket, on SQLite and on PostgreSQL."""

import json
import subprocess

import httpx
import pytest

from support.app import PASSWORD
from support.process import run_cli, serving, townhall_env
from support.readme import trying_it_commands

PROBLEM = "application/problem+json"


@pytest.fixture
def env(database_url, tmp_path):
    return townhall_env(
        database_url=database_url,
        data_dir=str(tmp_path / "var"),
        admins="root",
        max_body_bytes="4096",
        rate_limits="auth=30/minute",
    )


def test_a_user_goes_through_register_token_me_refresh_logout(env, tmp_path):
    with serving(env, log=tmp_path / "serve.log") as base, httpx.Client(base_url=base) as http:
        assert http.get("/readyz").json()["checks"] == {
            "database": "ok",
            "bus": "ok",
            "pubsub": "ok",
        }
        created = http.post(
            "/api/v1/auth/register",
            json={"username": "alice", "password": PASSWORD, "email": "a@example.org"},
        )
        assert created.status_code == 201
        tokens = http.post(
            "/api/v1/auth/token", json={"username": "alice", "password": PASSWORD}
        ).json()
        auth = {"Authorization": f"Bearer {tokens['access_token']}"}
        me = http.get("/api/v1/me", headers=auth)
        assert me.json()["username"] == "alice"
        assert me.headers["x-request-id"]
        rotated = http.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert rotated.status_code == 200
        fresh = rotated.json()["refresh_token"]
        assert http.post("/api/v1/auth/logout", json={"refresh_token": fresh}).status_code == 204
        assert http.post("/api/v1/auth/refresh", json={"refresh_token": fresh}).status_code == 401
        assert http.get("/openapi.json").json()["paths"]["/api/v1/me"]
        assert http.get("/docs").status_code == 200
        assert "townhall_http_requests_total" in http.get("/metrics").text

        # Every error of the edge, over the wire.
        def problem(answer, status):
            assert answer.status_code == status, answer.text
            assert answer.headers["content-type"] == PROBLEM
            assert answer.json()["status"] == status
            return answer.json()

        problem(http.get("/api/v1/me"), 401)
        problem(http.get("/api/v1/me", headers={"Authorization": "Bearer x.y.z"}), 401)
        problem(http.get("/api/v1/missing"), 404)
        problem(http.put("/api/v1/auth/token"), 405)
        problem(
            http.post("/api/v1/auth/register", json={"username": "b" * 3, "password": "p" * 5000}),
            413,
        )
        problem(
            http.post("/api/v1/auth/token", content="x", headers={"content-type": "text/csv"}), 415
        )
        problem(
            http.post(
                "/api/v1/auth/token", content="{", headers={"content-type": "application/json"}
            ),
            422,
        )
        body = problem(
            http.post("/api/v1/auth/register", json={"username": "UPPER", "password": PASSWORD}),
            422,
        )
        assert body["errors"][0]["field"] == "username"
        problem(
            http.post("/api/v1/auth/register", json={"username": "alice", "password": PASSWORD}),
            409,
        )
        statuses = [
            http.post(
                "/api/v1/auth/token", json={"username": "x", "password": "y" * 10}
            ).status_code
            for _ in range(30)
        ]
        assert statuses[-1] == 429
        limited = http.post("/api/v1/auth/token", json={"username": "x", "password": "y" * 10})
        problem(limited, 429)
        assert int(limited.headers["retry-after"]) >= 1


def test_a_second_start_reuses_the_data(env, tmp_path):
    with serving(env, log=tmp_path / "first.log") as base:
        httpx.post(
            base + "/api/v1/auth/register", json={"username": "kept", "password": PASSWORD}
        ).raise_for_status()
    with serving(env, log=tmp_path / "second.log") as base:
        answer = httpx.post(
            base + "/api/v1/auth/token", json={"username": "kept", "password": PASSWORD}
        )
        assert answer.status_code == 200
        token = answer.json()["access_token"]
    # The signing secret generated on first start was kept under the data directory.
    assert (tmp_path / "var" / "secret_key").exists()
    with serving(env, log=tmp_path / "third.log") as base:
        me = httpx.get(base + "/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200


def test_create_admin_then_sign_in_as_administrator(env, tmp_path):
    made = run_cli("users", "create-admin", "boss", "--password", PASSWORD, env=env)
    assert made.returncode == 0, made.stderr
    assert "boss" in made.stdout
    with serving(env, log=tmp_path / "serve.log") as base:
        tokens = httpx.post(
            base + "/api/v1/auth/token", json={"username": "boss", "password": PASSWORD}
        ).json()
        me = httpx.get(
            base + "/api/v1/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
        )
        assert me.json()["is_admin"] is True


def test_create_admin_on_a_signed_in_user_takes_effect_with_the_next_token(env, tmp_path):
    """Administrator rights travel in the access token, as the command says when it runs."""
    with serving(env, log=tmp_path / "serve.log") as base, httpx.Client(base_url=base) as http:
        http.post(
            "/api/v1/auth/register", json={"username": "carol", "password": PASSWORD}
        ).raise_for_status()
        tokens = http.post(
            "/api/v1/auth/token", json={"username": "carol", "password": PASSWORD}
        ).json()
        made = run_cli("users", "create-admin", "carol", env=env)
        assert made.returncode == 0, made.stderr
        assert "carol" in made.stdout
        assert "keep their old rights until they expire" in made.stdout
        assert "sign in again or refresh" in made.stdout

        def dead_letters(access_token: str) -> int:
            return http.get(
                "/api/v1/admin/dlq",
                params={"topic": "t", "group": "g"},
                headers={"Authorization": f"Bearer {access_token}"},
            ).status_code

        assert dead_letters(tokens["access_token"]) == 403  # the token held before
        refreshed = http.post(
            "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
        assert dead_letters(refreshed.json()["access_token"]) == 200
        signed_in = http.post(
            "/api/v1/auth/token", json={"username": "carol", "password": PASSWORD}
        ).json()
        assert dead_letters(signed_in["access_token"]) == 200


def test_the_readme_trying_it_commands_work_against_serve(tmp_path):
    env = townhall_env(data_dir=str(tmp_path), database_url=f"sqlite+aiosqlite:///{tmp_path}/t.db")
    with serving(env, log=tmp_path / "serve.log") as base:
        host_port = base.removeprefix("http://")
        script = "\n".join(trying_it_commands()).replace("localhost:8000", host_port)
        ran = subprocess.run(
            ["sh", "-eu", "-c", script], capture_output=True, text=True, timeout=60, check=False
        )
    assert ran.returncode == 0, ran.stderr
    # The two answers curl printed, one after the other: the new user, then /me.
    decoder, text, answers = json.JSONDecoder(), ran.stdout.strip(), []
    while text:
        answer, end = decoder.raw_decode(text)
        answers.append(answer)
        text = text[end:].lstrip()
    registered, me = answers
    assert registered["username"] == me["username"] == "alice"
    assert me["id"] == registered["id"]
