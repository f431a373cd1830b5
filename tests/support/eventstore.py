"""Helpers shared by the event store tests."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from townhall.platform.eventstore import NewEvent


def events(*types: str, **data: Any) -> list[NewEvent]:
    return [NewEvent(type=name, data=dict(data)) for name in types]


async def reject_events_of_type_boom(db) -> None:
    """A trigger that makes the database itself refuse one row in the middle of an append."""
    async with db.transaction() as conn:
        if db.is_sqlite:
            await conn.execute(
                text(
                    "CREATE TRIGGER boom BEFORE INSERT ON eventstore_events "
                    "WHEN NEW.type = 'Boom' BEGIN SELECT RAISE(ABORT, 'boom'); END"
                )
            )
        else:
            await conn.execute(
                text(
                    "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                    "IF NEW.type = 'Boom' THEN RAISE EXCEPTION 'boom'; END IF; "
                    "RETURN NEW; END $$"
                )
            )
            await conn.execute(
                text(
                    "CREATE TRIGGER boom BEFORE INSERT ON eventstore_events "
                    "FOR EACH ROW EXECUTE FUNCTION boom()"
                )
            )
