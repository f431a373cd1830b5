"""The limit for this stack: a bare FastAPI handler on uvicorn, no middleware, no auth, no I/O."""

from fastapi import FastAPI

app = FastAPI()

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
