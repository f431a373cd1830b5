"""The tus 1.0.0 protocol (https://tus.io/protocols/resumable-upload) at `/uploads/tus`: core,
creation, termination and expiration, over `ResumableUploads`. Every answer carries
`Tus-Resumable: 1.0.0`; a request without it (but OPTIONS) is a 412. The last PATCH answers
`Townhall-Upload-Id`: the upload made of it, to follow at `/api/v1/uploads/{id}`."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from email.utils import format_datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from starlette.requests import ClientDisconnect

from townhall.platform.auth import Principal
from townhall.platform.errors import DomainError
from townhall.platform.http import current_user, rate_limit
from townhall.platform.problems import Problem, status_of
from townhall.uploads.resumable import OffsetConflict, Progress, ResumableNotFound, ResumableUploads

VERSION = "1.0.0"
EXTENSIONS = "creation,termination,expiration"
OFFSET_TYPE = "application/offset+octet-stream"
BASE = "/api/v1/uploads/tus"


def _problem(status: int, code: str, title: str, detail: str, **headers: str) -> Problem:
    return Problem(status, code, title, detail, headers={"Tus-Resumable": VERSION, **headers})


def _resumable(request: Request) -> None:
    if request.headers.get("tus-resumable") != VERSION:
        raise _problem(
            412,
            "tus-version",
            "Unsupported tus version",
            f"send Tus-Resumable: {VERSION}",
            **{"Tus-Version": VERSION},
        )


def _integer(request: Request, header: str) -> int:
    value = request.headers.get(header)
    if value is None or not value.isdigit():
        raise _problem(400, "bad-request", "Bad request", f"{header} must be a whole number")
    return int(value)


def metadata(header: str | None) -> dict[str, str]:
    """`Upload-Metadata`: comma-separated `key base64value` pairs (a value may be absent)."""
    found: dict[str, str] = {}
    for pair in (header or "").split(","):
        if not pair.strip():
            continue
        key, _, value = pair.strip().partition(" ")
        try:
            found[key] = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise _problem(
                400, "bad-request", "Bad request", f"Upload-Metadata {key}: not base64 UTF-8"
            ) from None
    return found


def _tus_problem(exc: DomainError) -> Problem:
    """A domain refusal (413, 415, 422, ...) as a problem that carries the tus header."""
    return _problem(status_of(exc), exc.code, exc.title, exc.detail)


def _progress_headers(progress: Progress) -> dict[str, str]:
    return {
        "Tus-Resumable": VERSION,
        "Upload-Offset": str(progress.offset),
        "Upload-Length": str(progress.upload.length),
        "Upload-Expires": format_datetime(progress.upload.expires_at, usegmt=True),
        "Cache-Control": "no-store",
    }


@dataclass(frozen=True, eq=False)
class _Installed:
    service: ResumableUploads

    async def __call__(self, request: Request) -> None:
        request.state.resumable = self


async def _installed(request: Request) -> ResumableUploads:
    installed: _Installed = request.state.resumable
    return installed.service


Resumables = Annotated[ResumableUploads, Depends(_installed)]
User = Annotated[Principal, Depends(current_user)]


async def options(resumables: Resumables) -> Response:
    """What this server speaks of tus."""
    return Response(
        status_code=204,
        headers={
            "Tus-Resumable": VERSION,
            "Tus-Version": VERSION,
            "Tus-Extension": EXTENSIONS,
            "Tus-Max-Size": str(resumables.max_bytes),
        },
    )


async def create(resumables: Resumables, user: User, request: Request) -> Response:
    """Create a resumable upload: `Upload-Length` and `Upload-Metadata` (`filename`,
    `filetype`). 201 with its `Location`."""
    _resumable(request)
    if "upload-defer-length" in request.headers:
        raise _problem(400, "bad-request", "Bad request", "Upload-Defer-Length is not supported")
    length = _integer(request, "upload-length")
    meta = metadata(request.headers.get("upload-metadata"))
    try:
        upload = await resumables.create(
            user.user_id,
            length,
            meta.get("filename") or meta.get("name"),
            meta.get("filetype") or meta.get("content_type") or meta.get("type"),
        )
    except DomainError as exc:
        raise _tus_problem(exc) from None
    return Response(
        status_code=201,
        headers={
            "Tus-Resumable": VERSION,
            "Location": f"{BASE}/{upload.id}",
            "Upload-Expires": format_datetime(upload.expires_at, usegmt=True),
        },
    )


async def head(resumables: Resumables, user: User, upload_id: str, request: Request) -> Response:
    """Where the upload stands: `Upload-Offset` (resume from there) and `Upload-Length`."""
    _resumable(request)
    try:
        progress = await resumables.progress(user.user_id, upload_id)
    except ResumableNotFound:
        return Response(status_code=404, headers={"Tus-Resumable": VERSION})
    return Response(status_code=200, headers=_progress_headers(progress))


async def patch(resumables: Resumables, user: User, upload_id: str, request: Request) -> Response:
    """Append the body at `Upload-Offset` (`Content-Type: application/offset+octet-stream`).
    204 with the new offset; the last one names the upload made (`Townhall-Upload-Id`)."""
    _resumable(request)
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != OFFSET_TYPE:
        raise _problem(415, "unsupported-media-type", "Unsupported media type", OFFSET_TYPE)
    offset = _integer(request, "upload-offset")
    declared = request.headers.get("content-length")
    try:
        progress = await resumables.append(
            user.user_id,
            upload_id,
            offset,
            request.stream(),
            int(declared) if declared and declared.isdigit() else None,
        )
    except ResumableNotFound:
        raise _problem(404, "not-found", "Not found", "no such upload") from None
    except OffsetConflict as exc:
        raise _problem(
            409, "conflict", "Conflict", exc.detail, **{"Upload-Offset": str(exc.offset)}
        ) from None
    except ClientDisconnect:
        # What arrived is kept; the client HEADs the offset and resumes.
        return Response(status_code=400, headers={"Tus-Resumable": VERSION})
    except DomainError as exc:
        raise _tus_problem(exc) from None
    headers = _progress_headers(progress)
    if progress.completed is not None:
        headers["Townhall-Upload-Id"] = progress.completed.id
    return Response(status_code=204, headers=headers)


async def terminate(
    resumables: Resumables, user: User, upload_id: str, request: Request
) -> Response:
    """Abandon the upload: its bytes are removed."""
    _resumable(request)
    try:
        await resumables.terminate(user.user_id, upload_id)
    except ResumableNotFound:
        raise _problem(404, "not-found", "Not found", "no such upload") from None
    return Response(status_code=204, headers={"Tus-Resumable": VERSION})


def tus_routers(service: ResumableUploads) -> list[APIRouter]:
    api = APIRouter(tags=["uploads"], dependencies=[Depends(_Installed(service))])
    limited = [rate_limit("default")]
    answers: dict[int | str, dict[str, str]] = {
        409: {"description": "`Upload-Offset` is not where the upload stands"},
        412: {"description": "No `Tus-Resumable: 1.0.0`"},
        413: {"description": "Larger than `TOWNHALL_UPLOADS_MAX_BYTES`, or past the length"},
        415: {"description": "Not `application/offset+octet-stream`, or a type not allowed"},
    }
    api.add_api_route("/uploads/tus", options, methods=["OPTIONS"], status_code=204)
    api.add_api_route(
        "/uploads/tus",
        create,
        methods=["POST"],
        status_code=201,
        dependencies=limited,
        responses=answers,
    )
    api.add_api_route(
        "/uploads/tus/{upload_id}",
        head,
        methods=["HEAD"],
        dependencies=limited,
        responses=answers,
    )
    api.add_api_route(
        "/uploads/tus/{upload_id}",
        patch,
        methods=["PATCH"],
        status_code=204,
        dependencies=limited,
        responses=answers,
    )
    api.add_api_route(
        "/uploads/tus/{upload_id}",
        terminate,
        methods=["DELETE"],
        status_code=204,
        dependencies=limited,
        responses=answers,
    )
    return [api]
