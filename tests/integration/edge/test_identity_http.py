"""Identity through the whole edge, on SQLite and PostgreSQL."""

import asyncio

import pytest

from support.app import PASSWORD, bearer, register_and_sign_in, running_app, settings_for

PROBLEM = "application/problem+json"


@pytest.fixture
async def client(database_url, tmp_path):
    async with running_app(settings_for(database_url, tmp_path, admins="root")) as (client, _):
        yield client


async def test_register_token_me_refresh_logout(client):
    created = await client.post(
        "/api/v1/auth/register",
        json={
            "username": "alice",
            "password": PASSWORD,
            "email": "alice@example.org",
            "phone": "+14155552671",
        },
    )
    assert created.status_code == 201
    assert created.json()["username"] == "alice"
    assert created.json()["phone"] == "+14155552671"
    assert "password" not in created.text

    tokens = (
        await client.post("/api/v1/auth/token", json={"username": "alice", "password": PASSWORD})
    ).json()
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == 900

    me = await client.get("/api/v1/me", headers=bearer(tokens))
    assert me.status_code == 200
    assert me.json()["email"] == "alice@example.org"

    patched = await client.patch(
        "/api/v1/me",
        headers=bearer(tokens),
        json={"display_name": "Alice", "time_zone": "Europe/Paris", "locale": "fr"},
    )
    assert patched.status_code == 200
    assert (patched.json()["display_name"], patched.json()["time_zone"]) == (
        "Alice",
        "Europe/Paris",
    )

    rotated = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert rotated.status_code == 200
    assert rotated.json()["refresh_token"] != tokens["refresh_token"]
    assert (await client.get("/api/v1/me", headers=bearer(rotated.json()))).status_code == 200

    out = await client.post(
        "/api/v1/auth/logout", json={"refresh_token": rotated.json()["refresh_token"]}
    )
    assert out.status_code == 204
    again = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": rotated.json()["refresh_token"]}
    )
    assert again.status_code == 401


async def test_a_reused_refresh_token_revokes_its_whole_family(client):
    tokens = await register_and_sign_in(client, "bob")
    first = tokens["refresh_token"]
    second = (await client.post("/api/v1/auth/refresh", json={"refresh_token": first})).json()
    # The old token comes back (stolen copy): refused, and the newer one dies with it.
    reused = await client.post("/api/v1/auth/refresh", json={"refresh_token": first})
    assert reused.status_code == 401
    assert reused.json()["type"].endswith("bad-refresh-token")
    after = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]}
    )
    assert after.status_code == 401


async def test_concurrent_refreshes_of_one_token_succeed_at_most_once(client):
    tokens = await register_and_sign_in(client, "carol")
    answers = await asyncio.gather(
        *[
            client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
            for _ in range(4)
        ]
    )
    # One wins; the others present a token already used, which revokes the family (401).
    assert sorted(a.status_code for a in answers) == [200, 401, 401, 401]


async def test_taken_username_is_409_problem(client):
    await register_and_sign_in(client, "dave")
    again = await client.post(
        "/api/v1/auth/register", json={"username": "dave", "password": PASSWORD}
    )
    assert again.status_code == 409
    assert again.headers["content-type"] == PROBLEM
    body = again.json()
    assert body["type"] == "urn:townhall:problem:username-taken"
    assert body["status"] == 409
    assert body["errors"][0]["field"] == "username"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"username": "Bad Name", "password": PASSWORD}, "username"),
        ({"username": "ok_name", "password": "short"}, "password"),
        ({"username": "ok_name", "password": PASSWORD, "email": "nope"}, "email"),
        ({"username": "ok_name", "password": PASSWORD, "phone": "0612345678"}, "phone"),
        ({"username": "ok_name", "password": PASSWORD, "phone": "+1555"}, "phone"),
        ({"password": PASSWORD}, "username"),
    ],
)
async def test_bad_registration_fields_are_422_naming_the_field(client, payload, field):
    answer = await client.post("/api/v1/auth/register", json=payload)
    assert answer.status_code == 422
    assert answer.headers["content-type"] == PROBLEM
    assert field in [error["field"] for error in answer.json()["errors"]]


async def test_wrong_credentials_are_the_same_401_whether_or_not_the_user_exists(client):
    await register_and_sign_in(client, "erin")
    wrong_password = await client.post(
        "/api/v1/auth/token", json={"username": "erin", "password": "not the password"}
    )
    no_user = await client.post(
        "/api/v1/auth/token", json={"username": "nobody", "password": "not the password"}
    )
    assert wrong_password.status_code == no_user.status_code == 401
    strip = lambda body: {k: v for k, v in body.items() if k != "request_id"}  # noqa: E731
    assert strip(wrong_password.json()) == strip(no_user.json())


async def test_admins_from_settings_are_administrators(client):
    tokens = await register_and_sign_in(client, "root")
    assert (await client.get("/api/v1/me", headers=bearer(tokens))).json()["is_admin"] is True
    other = await register_and_sign_in(client, "frank")
    assert (await client.get("/api/v1/me", headers=bearer(other))).json()["is_admin"] is False
