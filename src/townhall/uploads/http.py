"""Uploads' HTTP routes: upload (multipart or a raw body), status, the owner's list, the content
of a clean upload (ranges, ETag), and deletion. Resumable uploads (tus) are in `tus.py`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.message import Message
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel
from starlette.requests import ClientDisconnect

from townhall.platform.auth import Principal
from townhall.platform.http import current_user, rate_limit
from townhall.platform.problems import Problem
from townhall.uploads.domain import (
    NotClean,
    RangeNotSatisfiable,
    Upload,
    UploadNotFound,
    content_disposition,
)
from townhall.uploads.multipart import FilePart
from townhall.uploads.service import UploadPage, UploadsService

# --- schemas --------------------------------------------------------------------------------


class UploadOut(BaseModel):
    id: str
    status: str
    filename: str
    content_type: str
    size: int
    sha256: str
    detection: str | None
    created_at: datetime
    scanned_at: datetime | None


class UploadPageOut(BaseModel):
    items: list[UploadOut]
    next_cursor: str | None


def upload_out(upload: Upload) -> UploadOut:
    return UploadOut(
        id=upload.id,
        status=upload.status.value,
        filename=upload.filename,
        content_type=upload.content_type,
        size=upload.size,
        sha256=upload.sha256,
        detection=upload.detection,
        created_at=upload.created_at,
        scanned_at=upload.scanned_at,
    )


def page_out(page: UploadPage) -> UploadPageOut:
    return UploadPageOut(items=[upload_out(u) for u in page.items], next_cursor=page.next_cursor)


# --- dependencies ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)  # FastAPI hashes a dependency: by identity here
class _Installed:
    service: UploadsService

    async def __call__(self, request: Request) -> None:
        request.state.uploads = self


async def _installed(request: Request) -> UploadsService:
    installed: _Installed = request.state.uploads
    return installed.service


Uploads = Annotated[UploadsService, Depends(_installed)]
User = Annotated[Principal, Depends(current_user)]
Limit = Annotated[int, Query(ge=1, le=100)]
Cursor = Annotated[str | None, Query(max_length=200)]


# --- routes ---------------------------------------------------------------------------------


def _declared_size(request: Request) -> int | None:
    value = request.headers.get("content-length")
    return int(value) if value and value.isdigit() else None


async def create_upload(uploads: Uploads, user: User, request: Request) -> JSONResponse:
    """Upload a file: `multipart/form-data` with a `file` part, or the raw bytes with their
    `Content-Type` and `Content-Disposition: attachment; filename=...`. Answers 202 at once,
    `PENDING_SCAN`: the file is served once a scan finds it clean. The type is what the bytes
    are: a declared type they contradict is a 415."""
    content_type = request.headers.get("content-type", "")
    uploads.check_size(_declared_size(request))
    try:
        if content_type.lower().startswith("multipart/"):
            part = FilePart(request.stream().__aiter__(), content_type)
            await part.open()
            upload = await uploads.receive(
                user.user_id, part.filename, part.content_type, part.chunks()
            )
        else:
            filename = _filename(request.headers.get("content-disposition", ""))
            upload = await uploads.receive(
                user.user_id, filename, content_type or None, request.stream()
            )
    except ClientDisconnect:
        # Nothing was kept; nobody is left to read this.
        raise Problem(400, "client-disconnected", "The client went away mid-upload") from None
    return JSONResponse(
        upload_out(upload).model_dump(mode="json"),
        status_code=202,
        headers={"Location": f"/api/v1/uploads/{upload.id}"},
    )


def _filename(disposition: str) -> str | None:
    """The file name of a `Content-Disposition` header: `filename*` (RFC 6266's UTF-8 form)
    when given, else `filename`."""
    header = Message()
    header["content-disposition"] = disposition
    return header.get_filename()


async def read_upload(uploads: Uploads, user: User, upload_id: str) -> UploadOut:
    """An upload's status (`PENDING_SCAN | CLEAN | INFECTED | FAILED`), the detection when
    infected, and its times."""
    return upload_out(await uploads.upload(user.user_id, upload_id))


async def my_uploads(
    uploads: Uploads, user: User, cursor: Cursor = None, limit: Limit = 20
) -> UploadPageOut:
    """All of the caller's uploads, newest first, infected ones included."""
    return page_out(await uploads.mine(user.user_id, cursor, limit))


async def read_content(uploads: Uploads, user: User, upload_id: str, request: Request) -> Response:
    """The bytes of a CLEAN upload (409 with the status otherwise), to its owner and to those
    who can see where it is attached (404 to anyone else). `Range` (one range) answers 206."""
    try:
        content = await uploads.content(user.user_id, upload_id, request.headers.get("range"))
    except NotClean as exc:
        raise Problem(
            409, "not-clean", "Not clean", exc.detail, extra={"upload_status": exc.status.value}
        ) from None
    except RangeNotSatisfiable as exc:
        raise Problem(
            416,
            exc.code,
            exc.title,
            exc.detail,
            headers={"Content-Range": f"bytes */{exc.size}"},
        ) from None
    upload = content.upload
    headers = {
        "ETag": upload.etag,
        "Accept-Ranges": "bytes",
        "Content-Length": str(content.last - content.first + 1),
        "Content-Disposition": content_disposition(upload.filename),
        # The bytes are the user's: never sniffed, never run as a page of ours.
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox; default-src 'none'",
        "Cache-Control": "private, max-age=0, must-revalidate",
    }
    if upload.etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers={"ETag": upload.etag})
    status = 200
    if content.partial:
        status = 206
        headers["Content-Range"] = f"bytes {content.first}-{content.last}/{upload.size}"
    return StreamingResponse(
        content.chunks, status_code=status, media_type=upload.content_type, headers=headers
    )


async def delete_upload(uploads: Uploads, user: User, upload_id: str) -> Response:
    """The owner deletes an upload; where it was attached, it is shown no more."""
    await uploads.delete(user.user_id, upload_id)
    return Response(status_code=204)


# The body of `POST /uploads`, read as a stream by the route rather than parsed by FastAPI.
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary"},
                "description": "Any type: send it as `Content-Type`, and the file name in "
                "`Content-Disposition: attachment; filename=...`",
            },
        },
    }
}
UPLOAD_ERRORS: dict[int | str, dict[str, str]] = {
    413: {"description": "The file is larger than `TOWNHALL_UPLOADS_MAX_BYTES`"},
    415: {"description": "The bytes are of a type not allowed, or not the type declared"},
    422: {"description": "An empty file, or a form without a `file` part"},
}
CONTENT_ERRORS: dict[int | str, dict[str, str]] = {
    409: {"description": "The upload is not CLEAN (`upload_status` says what it is)"},
    416: {"description": "The range starts past the end of the content"},
}


def routers(service: UploadsService) -> list[APIRouter]:
    # No `require_json`: these routes take files.
    api = APIRouter(
        tags=["uploads"], dependencies=[Depends(_Installed(service)), rate_limit("default")]
    )
    api.add_api_route(
        "/uploads",
        create_upload,
        methods=["POST"],
        status_code=202,
        response_model=UploadOut,
        responses=UPLOAD_ERRORS,
        openapi_extra=UPLOAD_BODY,
    )
    api.add_api_route("/uploads/{upload_id}", read_upload, methods=["GET"])
    api.add_api_route(
        "/uploads/{upload_id}/content",
        read_content,
        methods=["GET"],
        response_class=StreamingResponse,
        responses={
            **CONTENT_ERRORS,
            200: {"description": "The bytes", "content": {"application/octet-stream": {}}},
            206: {"description": "The bytes of the range asked for"},
            304: {"description": "Not modified (`If-None-Match` names the ETag)"},
        },
    )
    api.add_api_route("/uploads/{upload_id}", delete_upload, methods=["DELETE"], status_code=204)
    api.add_api_route("/me/uploads", my_uploads, methods=["GET"])
    return [api]


__all__ = ["UploadNotFound", "routers"]
