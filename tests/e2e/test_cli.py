"""The CLI's answers to bad configuration: one line naming the variable, a non-zero exit."""

import json
import socket
import subprocess
import sys

import httpx
import pytest

from support.process import run_cli, stop_all, townhall_env
from support.services import REDIS_URL, RUN_ID, require


def one_line_error(result, *needles):
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("port", "eighty"),
        ("database_url", "mysql://localhost/townhall"),
        ("log_level", "loud"),
        ("access_token_ttl", "-5"),
    ],
)
def test_a_bad_setting_is_one_line_naming_the_variable(tmp_path, variable, value):
    env = townhall_env(data_dir=str(tmp_path), **{variable: value})
    one_line_error(run_cli("config", env=env), f"TOWNHALL_{variable.upper()}")


def test_an_unreachable_database_is_one_line_naming_the_variable(tmp_path):
    env = townhall_env(
        data_dir=str(tmp_path), database_url="postgresql+asyncpg://nobody@127.0.0.1:1/none"
    )
    one_line_error(run_cli("migrate", env=env), "TOWNHALL_DATABASE_URL", "cannot reach")


def test_an_unreachable_redis_is_one_line_naming_the_variable(tmp_path):
    env = townhall_env(
        data_dir=str(tmp_path),
        database_url=f"sqlite+aiosqlite:///{tmp_path}/t.db",
        redis_url="redis://127.0.0.1:1/0",
    )
    one_line_error(run_cli("serve", env=env), "TOWNHALL_REDIS_URL")


def test_an_unknown_module_is_refused(tmp_path):
    env = townhall_env(data_dir=str(tmp_path), database_url=f"sqlite+aiosqlite:///{tmp_path}/t.db")
    one_line_error(run_cli("serve", "--modules", "identity,nope", env=env), "nope")


def test_serve_on_a_port_in_use_is_one_line_naming_it_and_never_says_up(tmp_path):
    env = townhall_env(data_dir=str(tmp_path), database_url=f"sqlite+aiosqlite:///{tmp_path}/t.db")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", env={**env, "TOWNHALL_PORT": str(port)})
    assert result.returncode == 2
    one_line_error(result, f"127.0.0.1:{port}", "in use", "TOWNHALL_PORT")
    assert "up at" not in result.stderr
    assert result.stdout == ""  # no log lines of a server that never started
    assert not (tmp_path / "t.db").exists()  # nothing started before the port was checked


def test_serve_says_up_at_the_address_it_listens_on(tmp_path):
    env = townhall_env(
        data_dir=str(tmp_path), database_url=f"sqlite+aiosqlite:///{tmp_path}/t.db", port="0"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "townhall", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        first = process.stderr.readline()
        assert first.startswith("Townhall is up at http://127.0.0.1:"), first
        base = first.split()[-1]
        assert not base.endswith(":0")  # the port the system picked, not the one asked for
        # Said only once the socket listens: the address answers straight away.
        assert httpx.get(base + "/healthz", timeout=10).status_code == 200
    finally:
        stop_all([process])
        assert process.stderr is not None
        process.stderr.close()


def test_create_admin_help_says_when_the_rights_take_effect(tmp_path):
    shown = run_cli("users", "create-admin", "--help", env=townhall_env(data_dir=str(tmp_path)))
    assert shown.returncode == 0, shown.stderr
    text = " ".join(shown.stdout.split())
    assert "a token NAME already holds keeps its old rights until it expires" in text


def test_config_prints_settings_with_secrets_masked(tmp_path):
    env = townhall_env(
        data_dir=str(tmp_path),
        secret_key="s" * 40,
        database_url="postgresql+asyncpg://app:hunter2@db.internal/townhall",
    )
    result = run_cli("config", env=env)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["TOWNHALL_SECRET_KEY"] == "********"
    assert "hunter2" not in result.stdout
    assert (
        shown["TOWNHALL_DATABASE_URL"] == "postgresql+asyncpg://app:********@db.internal/townhall"
    )


def test_migrate_is_idempotent(tmp_path):
    env = townhall_env(data_dir=str(tmp_path), database_url=f"sqlite+aiosqlite:///{tmp_path}/t.db")
    assert run_cli("migrate", env=env).returncode == 0
    again = run_cli("migrate", env=env)
    assert again.returncode == 0, again.stderr


def test_projections_status_and_an_unknown_rebuild(tmp_path):
    env = townhall_env(data_dir=str(tmp_path), database_url=f"sqlite+aiosqlite:///{tmp_path}/t.db")
    status = run_cli("projections", "status", env=env)
    assert status.returncode == 0, status.stderr
    assert status.stdout.split()[:4] == ["projection", "checkpoint", "head", "lag"]
    unknown = run_cli("projections", "rebuild", "nope", env=env)
    assert unknown.returncode == 2
    assert "nope" in unknown.stderr


@pytest.mark.parametrize("command", [["list"], ["replay"]])
def test_dlq_on_the_in_process_bus_says_it_cannot_read_the_servers_memory(tmp_path, command):
    # Its dead letters live in the memory of `townhall serve`: reading this process's own
    # would answer "0 dead letter(s)" whatever the server holds.
    env = townhall_env(data_dir=str(tmp_path), bus_url="memory://")
    result = run_cli("dlq", *command, "notifications.email", "--group", "x", env=env)
    assert result.returncode == 2
    assert "dead letter(s)" not in result.stdout
    one_line_error(result, "in-process", "GET /api/v1/admin/dlq", "TOWNHALL_BUS_URL")


def test_dlq_list_on_a_broker_reads_the_brokers_dead_letters(tmp_path):
    require("Redis", "127.0.0.1", 6379)
    env = townhall_env(data_dir=str(tmp_path), bus_url=f"{REDIS_URL}?prefix=cli{RUN_ID}")
    result = run_cli("dlq", "list", "notifications.email", "--group", "x", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("0 dead letter(s)")


@pytest.mark.parametrize(
    "command",
    [("worker", "notifications.email"), ("relay",), ("serve", "--no-consumers")],
    ids=["worker", "relay", "serve-no-consumers"],
)
def test_a_process_meant_to_share_a_broker_refuses_the_in_process_bus(tmp_path, command):
    """On memory:// a relay or a worker in a process of its own would lose or never see the
    messages: the relay publishes into its own memory, where no group reads them."""
    env = townhall_env(
        data_dir=str(tmp_path),
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'townhall.db'}",
        bus_url="memory://",
        port="0",
    )
    result = run_cli(*command, env=env, timeout=30)
    assert result.returncode == 2
    one_line_error(result, "TOWNHALL_BUS_URL", "memory://", command[0])
    assert not (tmp_path / "townhall.db").exists(), "refused before touching the database"
