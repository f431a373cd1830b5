"""A validly signed access token whose user does not exist is a 401 on every authenticated
route: a user deleted after the token was issued, or a token from another installation that
shares the signing secret."""

import pytest
import sqlalchemy as sa

from support.app import bearer, register_and_sign_in, running_app, settings_for
from townhall.platform.auth import Principal
from townhall.platform.ids import new_id_str

PROBLEM = "application/problem+json"
SHARED_SECRET = "a-secret-two-installations-share-" + "x" * 16

CALLS = [
    ("GET", "/api/v1/me", None),
    ("PATCH", "/api/v1/me", {"display_name": "Ghost"}),
    ("GET", "/api/v1/me/inbox", None),
    ("GET", "/api/v1/me/inbox/unread-count", None),
    ("POST", "/api/v1/me/inbox/read-all", None),
    ("GET", "/api/v1/me/notification-preferences", None),
    ("PUT", "/api/v1/me/notification-preferences", {"opted_out": []}),
    ("GET", "/api/v1/me/devices", None),
    ("POST", "/api/v1/me/devices", {"platform": "fcm", "token": "device-token-1"}),
]


def assert_refused(answer):
    assert answer.status_code == 401, (answer.request.url, answer.status_code, answer.text)
    assert answer.headers["content-type"] == PROBLEM
    assert answer.json()["detail"] == "The token's user does not exist"
    assert answer.headers["www-authenticate"].startswith("Bearer")


@pytest.fixture
async def installation(database_url, tmp_path):
    settings = settings_for(database_url, tmp_path, secret_key=SHARED_SECRET)
    async with running_app(settings) as (client, runtime):
        yield client, runtime


async def test_a_signed_token_for_a_user_id_that_was_never_registered_is_401(installation):
    client, runtime = installation
    ghost = runtime.platform.tokens.issue(Principal(new_id_str(), "ghost"))
    for method, path, body in CALLS:
        answer = await client.request(
            method, path, json=body, headers={"Authorization": f"Bearer {ghost}"}
        )
        assert_refused(answer)


async def test_a_token_from_another_installation_with_the_same_secret_is_401(
    installation, postgres_url, tmp_path
):
    client, _ = installation
    elsewhere = settings_for(postgres_url, tmp_path / "other", secret_key=SHARED_SECRET)
    async with running_app(elsewhere) as (other_client, _):
        tokens = await register_and_sign_in(other_client, "visitor")
        assert (await other_client.get("/api/v1/me", headers=bearer(tokens))).status_code == 200
    for method, path, body in CALLS:
        assert_refused(await client.request(method, path, json=body, headers=bearer(tokens)))


async def test_the_token_of_a_user_deleted_before_its_next_request_is_401(installation):
    client, runtime = installation
    tokens = await register_and_sign_in(client, "leaver")
    async with runtime.platform.database.transaction() as conn:
        await conn.execute(sa.text("DELETE FROM identity_refresh_tokens"))
        await conn.execute(sa.text("DELETE FROM identity_users WHERE username = 'leaver'"))
    assert_refused(await client.get("/api/v1/me", headers=bearer(tokens)))


async def test_the_token_of_an_existing_user_still_works_on_every_call(installation):
    client, _ = installation
    tokens = await register_and_sign_in(client, "present")
    for method, path, body in CALLS:
        answer = await client.request(method, path, json=body, headers=bearer(tokens))
        assert answer.status_code < 300, (path, answer.text)
