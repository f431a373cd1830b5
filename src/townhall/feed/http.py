"""The feed's HTTP routes: posts, likes, comments, follows and the home timeline."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from townhall.feed.domain import Attachment, Comment, Post, encode_cursor, shown_attachments
from townhall.feed.service import FeedItem, FeedPage, FeedService
from townhall.platform.auth import Principal
from townhall.platform.http import current_user, rate_limit, require_json

# --- schemas --------------------------------------------------------------------------------


UploadId = Annotated[str, Field(min_length=1, max_length=36, pattern=r"^[^\x00]*$")]


class PostIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: Annotated[str, Field(min_length=1)]
    attachments: Annotated[list[UploadId], Field(max_length=10)] = []


class CommentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: Annotated[str, Field(min_length=1)]


class AttachmentOut(BaseModel):
    """A clean file (`status` CLEAN) with its name, type, size and `url`; before its scan
    ended, or when it failed, only `id` and `status` (the others null)."""

    id: str
    status: str
    filename: str | None = None
    content_type: str | None = None
    size: int | None = None
    url: str | None = None


class AuthorOut(BaseModel):
    id: str
    username: str
    display_name: str | None


class PostOut(BaseModel):
    id: str
    author: str
    text: str
    attachments: list[AttachmentOut]
    created_at: datetime
    like_count: int
    comment_count: int


class FeedItemOut(BaseModel):
    id: str
    author: AuthorOut
    text: str
    attachments: list[AttachmentOut]
    created_at: datetime
    like_count: int
    comment_count: int


class FeedPageOut(BaseModel):
    items: list[FeedItemOut]
    next_cursor: str | None


class CommentOut(BaseModel):
    id: str
    post_id: str
    author: str
    text: str
    created_at: datetime


class CommentPageOut(BaseModel):
    items: list[CommentOut]
    next_cursor: str | None


class UserPageOut(BaseModel):
    items: list[AuthorOut]
    next_cursor: str | None


def attachments_out(attachments: Sequence[Attachment]) -> list[AttachmentOut]:
    return [
        AttachmentOut(
            id=a.id,
            status=a.status,
            filename=a.filename,
            content_type=a.content_type,
            size=a.size,
            url=f"/api/v1/uploads/{a.id}/content",
        )
        if a.status == "CLEAN"
        else AttachmentOut(id=a.id, status=a.status)
        for a in attachments
    ]


def post_out(post: Post, shown: Mapping[str, Attachment]) -> PostOut:
    return PostOut(
        id=post.id,
        author=post.author,
        text=post.text,
        attachments=attachments_out(shown_attachments(post, shown)),
        created_at=post.created_at,
        like_count=post.like_count,
        comment_count=post.comment_count,
    )


def item_out(item: FeedItem) -> FeedItemOut:
    post = item.post
    return FeedItemOut(
        id=post.id,
        author=AuthorOut(
            id=post.author, username=item.author_username, display_name=item.author_display_name
        ),
        text=post.text,
        attachments=attachments_out(item.attachments),
        created_at=post.created_at,
        like_count=post.like_count,
        comment_count=post.comment_count,
    )


def page_out(page: FeedPage) -> FeedPageOut:
    return FeedPageOut(items=[item_out(i) for i in page.items], next_cursor=page.next_cursor)


def comment_out(comment: Comment) -> CommentOut:
    return CommentOut(
        id=comment.id,
        post_id=comment.post_id,
        author=comment.author,
        text=comment.text,
        created_at=comment.created_at,
    )


# --- dependencies ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)  # FastAPI hashes a dependency: by identity here
class _Installed:
    service: FeedService

    async def __call__(self, request: Request) -> None:
        request.state.feed = self


async def _installed(request: Request) -> FeedService:
    installed: _Installed = request.state.feed
    return installed.service


Feed = Annotated[FeedService, Depends(_installed)]
User = Annotated[Principal, Depends(current_user)]
Limit = Annotated[int, Query(ge=1, le=100)]
Cursor = Annotated[str | None, Query(max_length=200)]


# --- routes ---------------------------------------------------------------------------------


async def create_post(feed: Feed, user: User, body: PostIn) -> PostOut:
    """A post: in the author's feed at once, in their followers' feeds once fanned out."""
    return await _shown(feed, await feed.create_post(user.user_id, body.text, body.attachments))


async def read_post(feed: Feed, _user: User, post_id: str) -> PostOut:
    return await _shown(feed, await feed.post(post_id))


async def _shown(feed: FeedService, post: Post) -> PostOut:
    """The post with its attachments as they are shown now."""
    return post_out(post, await feed.shown([post]))


async def delete_post(feed: Feed, user: User, post_id: str) -> Response:
    """The author or an administrator deletes a post: it leaves every feed at once."""
    await feed.delete_post(user.user_id, post_id, admin=user.is_admin)
    return Response(status_code=204)


async def like(feed: Feed, user: User, post_id: str) -> PostOut:
    return await _shown(feed, await feed.like(user.user_id, post_id))


async def unlike(feed: Feed, user: User, post_id: str) -> PostOut:
    return await _shown(feed, await feed.unlike(user.user_id, post_id))


async def add_comment(feed: Feed, user: User, post_id: str, body: CommentIn) -> CommentOut:
    return comment_out(await feed.comment(user.user_id, post_id, body.text))


async def list_comments(
    feed: Feed, _user: User, post_id: str, cursor: Cursor = None, limit: Limit = 20
) -> CommentPageOut:
    """Oldest first."""
    found = await feed.comments(post_id, cursor, limit)
    return CommentPageOut(
        items=[comment_out(c) for c in found],
        next_cursor=encode_cursor(found[-1].id) if len(found) == limit else None,
    )


async def follow(feed: Feed, user: User, user_id: str) -> Response:
    await feed.follow(user.user_id, user_id)
    return Response(status_code=204)


async def unfollow(feed: Feed, user: User, user_id: str) -> Response:
    await feed.unfollow(user.user_id, user_id)
    return Response(status_code=204)


async def followers(
    feed: Feed, _user: User, user_id: str, cursor: Cursor = None, limit: Limit = 20
) -> UserPageOut:
    found, next_cursor = await feed.followers(user_id, cursor, limit)
    return await _users(feed, found, next_cursor)


async def following(
    feed: Feed, _user: User, user_id: str, cursor: Cursor = None, limit: Limit = 20
) -> UserPageOut:
    found, next_cursor = await feed.following(user_id, cursor, limit)
    return await _users(feed, found, next_cursor)


async def _users(feed: FeedService, ids: list[str], next_cursor: str | None) -> UserPageOut:
    profiles = await feed.profiles(ids)
    return UserPageOut(
        items=[
            AuthorOut(id=i, username=profiles[i][0], display_name=profiles[i][1])
            for i in ids
            if i in profiles
        ],
        next_cursor=next_cursor,
    )


async def home_feed(
    feed: Feed,
    user: User,
    cursor: Cursor = None,
    limit: Limit = 20,
    mode: Literal["latest", "ranked"] = "latest",
) -> FeedPageOut:
    """The caller's home timeline: their posts and those of whom they follow. `latest`:
    newest first; `ranked`: by relevance (engagement, age, affinity). Pass `next_cursor` back
    as `cursor`: pages never repeat or skip a post while new ones arrive."""
    return page_out(await feed.feed(user.user_id, cursor, limit, mode))


async def user_posts(
    feed: Feed, _user: User, user_id: str, cursor: Cursor = None, limit: Limit = 20
) -> FeedPageOut:
    """An author's own posts, newest first."""
    return page_out(await feed.user_posts(user_id, cursor, limit))


def routers(service: FeedService) -> list[APIRouter]:
    api = APIRouter(
        tags=["feed"],
        dependencies=[Depends(_Installed(service)), rate_limit("default"), require_json],
    )
    api.add_api_route("/posts", create_post, methods=["POST"], status_code=201)
    api.add_api_route("/posts/{post_id}", read_post, methods=["GET"])
    api.add_api_route("/posts/{post_id}", delete_post, methods=["DELETE"], status_code=204)
    api.add_api_route("/posts/{post_id}/likes", like, methods=["POST"])
    api.add_api_route("/posts/{post_id}/likes", unlike, methods=["DELETE"])
    api.add_api_route("/posts/{post_id}/comments", add_comment, methods=["POST"], status_code=201)
    api.add_api_route("/posts/{post_id}/comments", list_comments, methods=["GET"])
    api.add_api_route("/users/{user_id}/follow", follow, methods=["PUT"], status_code=204)
    api.add_api_route("/users/{user_id}/follow", unfollow, methods=["DELETE"], status_code=204)
    api.add_api_route("/users/{user_id}/followers", followers, methods=["GET"])
    api.add_api_route("/users/{user_id}/following", following, methods=["GET"])
    api.add_api_route("/users/{user_id}/posts", user_posts, methods=["GET"])
    api.add_api_route("/feed", home_feed, methods=["GET"])
    return [api]
