"""The limits for this stack: bare FastAPI handlers on uvicorn, no middleware and no auth.

`/api/v1/me` answers a constant (the limit of FastAPI on uvicorn); `/api/v1/me-db` reads the
same user row through the same SQLAlchemy engine settings as Townhall (the limit for an
endpoint that must read the database), so the edge's own cost can be told apart from the
query's. `BENCH_DATABASE_URL` and `BENCH_USERNAME` say which database and row.
"""

import os

from fastapi import FastAPI
from sqlalchemy import text

from townhall.platform.db import Database

app = FastAPI()
database = Database(os.environ.get("BENCH_DATABASE_URL", "sqlite+aiosqlite:///:memory:"))
USERNAME = os.environ.get("BENCH_USERNAME", "bench")
QUERY = text("SELECT * FROM identity_users WHERE username = :username")

ME = {
    "id": "01a2101f-dcb9-73e0-9708-111404a1300d",
    "username": "bench",
    "email": None,
    "phone": None,
    "display_name": None,
    "time_zone": "UTC",
    "locale": "en",
    "is_admin": False,
    "created_at": "2026-11-25T00:00:00+00:00",
}


@app.get("/api/v1/me")
async def me() -> dict:
    return ME


@app.get("/api/v1/me-db")
async def me_db() -> dict:
    async with database.connect() as conn:
        row = (await conn.execute(QUERY, {"username": USERNAME})).mappings().one()
    return {key: row[key] for key in ME} | {"created_at": str(row["created_at"])}
