"""Schema migrations: Alembic, one branch per component, applied together to `heads`.

Each component (a platform piece or a module) owns a `migrations/` folder of revisions whose
first revision carries a branch label of the component's name and `down_revision = None`.
Its tables carry the component's name as a prefix, so no two components share a table.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

from townhall.platform.db import Database

ENV_DIR = Path(__file__).parent / "alembic"

# Migrations of the shared kernel, applied whatever modules a process runs.
PLATFORM_MIGRATIONS: list[Path] = [
    Path(__file__).parent / "eventstore" / "migrations",
    Path(__file__).parent / "messaging" / "migrations",  # outbox_messages, outbox_inbox
]


def _config(locations: Iterable[Path]) -> Config:
    config = Config()
    config.set_main_option("script_location", str(ENV_DIR))
    paths = [str(path) for path in locations]
    config.set_main_option("version_path_separator", "os")
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", os.pathsep.join(paths))
    return config


async def migrate(database: Database, locations: Iterable[Path]) -> None:
    """Apply every pending revision in `locations` (and the platform's)."""
    config = _config([*PLATFORM_MIGRATIONS, *locations])

    def upgrade(connection: Connection) -> None:
        config.attributes["connection"] = connection
        command.upgrade(config, "heads")

    async with database.transaction() as conn:
        if database.is_postgresql:
            # Two processes starting at once must not both apply the same revision.
            await conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7275727371)")
        await conn.run_sync(upgrade)
