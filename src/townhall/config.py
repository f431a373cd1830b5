"""Settings: every `TOWNHALL_*` environment variable, read once by pydantic-settings."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DATABASE_SCHEMES = ("sqlite+aiosqlite", "postgresql+asyncpg")


class ConfigError(Exception):
    """A setting is missing, malformed or points at something unreachable.

    `variable` names the environment variable so the CLI can say which one to fix.
    """

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable}: {message}")
        self.variable = variable
        self.message = message


class Settings(BaseSettings):
    """The effective configuration. Field `x` is read from `TOWNHALL_X`."""

    model_config = SettingsConfigDict(env_prefix="TOWNHALL_", extra="ignore", frozen=True)

    host: str = Field("127.0.0.1", description="Address the HTTP edge listens on.")
    port: int = Field(8000, ge=0, le=65535, description="Port the HTTP edge listens on.")
    data_dir: Path = Field(Path("./var"), description="Where embedded defaults keep their data.")
    database_url: str = Field(
        "sqlite+aiosqlite:///./var/townhall.db",
        description="SQLAlchemy URL: sqlite+aiosqlite:///path or postgresql+asyncpg://...",
    )
    bus_url: str = Field(
        "memory://", description="Message bus: memory://, redis://, amqp://, nats://"
    )
    pubsub_url: str = Field(
        "memory://",
        description=(
            "Ephemeral pub/sub (chat relay, presence): memory://, redis://, nats://; query "
            "options prefix=, buffer=, timeout=, reconnect_wait=."
        ),
    )
    relay_linger: float = Field(
        0.01,
        ge=0,
        le=1,
        description=(
            "Seconds the outbox relay, woken by a commit, waits for more rows before it reads "
            "a batch: fewer, larger publishes under load, that much latency on every hop "
            "(a saga has six; 0 trades relay CPU for latency)."
        ),
    )
    redis_url: str | None = Field(
        None, description="Redis for rate limits and caches; unset keeps them in-process."
    )
    secret_key: SecretStr | None = Field(
        None,
        description="JWT signing secret; unset generates one once under the data directory.",
    )
    access_token_ttl: int = Field(900, gt=0, description="Access token lifetime, seconds.")
    refresh_token_ttl: int = Field(
        30 * 24 * 3600, gt=0, description="Refresh token lifetime, seconds."
    )
    admins: str = Field("", description="Comma-separated usernames that are administrators.")
    cors_origins: str = Field("", description="Comma-separated origins allowed by CORS.")
    max_body_bytes: int = Field(
        1_048_576, gt=0, description="Largest request body accepted (else 413)."
    )
    rate_limits: str = Field(
        "",
        description=(
            "Per route group limits overriding the defaults, e.g. "
            "'auth=10/minute;default=300/minute'."
        ),
    )
    rate_limit_ip: str = Field("1200/minute", description="Limit per client IP, all routes.")
    smtp_url: str | None = Field(
        None,
        description=(
            "SMTP server(s), comma-separated for failover: smtp://user:pw@host:port, "
            "smtp+starttls://..., smtps://...; unset starts the built-in SMTP sink."
        ),
    )
    smtp_from: str = Field("Townhall <noreply@townhall.localhost>", description="Email sender.")
    smtp_sink_port: int = Field(
        0, ge=0, le=65535, description="Port of the built-in SMTP sink (0 picks a free one)."
    )
    sms_url: str | None = Field(
        None,
        description=(
            "Twilio-style SMS gateway(s), comma-separated: https://SID:TOKEN@host; "
            "unset keeps SMS in the built-in sink."
        ),
    )
    sms_from: str = Field("+15005550006", description="SMS sender number.")
    fcm_base_url: str | None = Field(None, description="FCM HTTP v1 base URL (push on Android).")
    fcm_project_id: str = Field("", description="FCM project id.")
    fcm_access_token: SecretStr | None = Field(None, description="FCM OAuth access token.")
    apns_base_url: str | None = Field(None, description="APNs base URL (push on Apple devices).")
    apns_topic: str = Field("", description="APNs topic (the app's bundle id).")
    apns_auth_token: SecretStr | None = Field(None, description="APNs provider token (JWT).")
    templates_dir: Path | None = Field(
        None, description="Directory of notification templates overriding the shipped ones."
    )
    notification_max_attempts: int = Field(
        5, ge=1, le=50, description="Delivery attempts before a notification goes to the DLQ."
    )
    notification_claim_seconds: float = Field(
        60.0,
        gt=0,
        description=(
            "How long a worker owns a delivery it is sending; a redelivered message waits that "
            "long before another worker takes it over."
        ),
    )
    provider_rate: float = Field(
        200.0, gt=0, description="Sends per second allowed to each provider (token bucket)."
    )
    provider_burst: int = Field(50, ge=1, description="Burst size of each provider's bucket.")
    provider_failure_threshold: int = Field(
        3, ge=1, description="Transient failures in a row that put a provider in cool-down."
    )
    provider_cooldown: float = Field(
        30.0, ge=0, description="Seconds a failing provider is skipped before it is tried again."
    )
    inventory_reservation_ttl: float = Field(
        900.0,
        gt=0,
        description=(
            "Seconds a stock reservation holds before it is released, unless the order saga "
            "confirms or releases it first."
        ),
    )
    inventory_expiry_interval: float = Field(
        15.0, gt=0, description="Seconds between two looks for expired stock reservations."
    )
    # Payments and shipping, the saga's participants (issue 21).
    payments_gateway: Literal["simulator", "stripe"] = Field(
        "simulator", description="Payment gateway: the built-in simulator, or stripe."
    )
    stripe_url: str = Field("https://api.stripe.com", description="Stripe API base URL.")
    stripe_secret_key: SecretStr | None = Field(
        None, description="Stripe secret key (needed when the payment gateway is stripe)."
    )
    payments_call_timeout: float = Field(
        10.0,
        gt=0,
        description=(
            "Seconds a capture or refund may wait for the provider; then the attempt is "
            "transient and the bus tries the command again, with the same idempotency key."
        ),
    )
    payments_max_attempts: int = Field(
        5,
        ge=1,
        le=50,
        description=(
            "Attempts at a payment command; a capture still without a final answer at the "
            "last one answers PaymentFailed (provider_unavailable)."
        ),
    )
    shipping_refuse_countries: str = Field(
        "", description="Comma-separated countries (ISO codes) the carrier simulator refuses."
    )
    shipping_refuse_postcodes: str = Field(
        "", description="Comma-separated postcodes the carrier simulator refuses."
    )
    shipping_max_attempts: int = Field(
        5,
        ge=1,
        le=50,
        description=(
            "Attempts at a shipping command; a shipment still without a final answer at the "
            "last one answers ShipmentFailed (carrier_unavailable)."
        ),
    )
    # Orders (issue 21).
    orders_step_timeout: float = Field(
        30.0,
        gt=0,
        description=(
            "Seconds each step of an order's saga (reserve stock, capture the payment, create "
            "the shipment, a compensation) may take before its timeout applies."
        ),
    )
    saga_mode: Literal["orchestration", "choreography"] = Field(
        "orchestration",
        description=(
            "How new orders run their saga: an orchestrator sending commands, or each module "
            "reacting to the previous one's event. Read at start; an order finishes in the "
            "mode it was placed in."
        ),
    )
    orders_choreography_timeout: float = Field(
        120.0,
        gt=0,
        description=(
            "Seconds a choreographed order may stay unfinished before it is listed as stuck "
            "(its deadline in orders_sagas)."
        ),
    )
    orders_snapshot_every: int = Field(
        100, ge=0, description="A snapshot of an order every this many events (0: never)."
    )
    # Chat (issue 22).
    chat_shards: str = Field(
        "",
        description=(
            "Comma-separated database URLs of the chat message stores (rooms are placed on "
            "them by consistent hashing); empty: the main database alone."
        ),
    )
    chat_max_body: int = Field(4000, ge=1, le=100_000, description="Longest message body.")
    chat_send_rate: float = Field(
        20.0, gt=0, description="Sends per user per second a gateway allows, sustained."
    )
    chat_send_burst: int = Field(
        100, ge=1, description="Sends a user may make at once over the sustained rate."
    )
    chat_frame_rate: float = Field(
        50.0, gt=0, description="Frames per socket per second, sustained (burst: 4 s of it)."
    )
    chat_bad_frames: int = Field(
        20, ge=1, description="Bad frames a socket may send in a minute before it is closed."
    )
    chat_rooms_per_socket: int = Field(100, ge=1, description="Rooms one socket may join.")
    chat_members_per_room: int = Field(5000, ge=2, description="Members a room may have.")
    chat_send_queue: int = Field(
        1000,
        ge=1,
        description="Frames waiting to be written to one socket before it is closed as too slow.",
    )
    chat_ping_interval: float = Field(
        20.0, gt=0, description="Seconds between the server's WebSocket ping frames."
    )
    chat_ping_timeout: float = Field(
        20.0, gt=0, description="Seconds a socket may leave a ping unanswered before it closes."
    )
    chat_presence_ttl: float = Field(
        30.0,
        gt=0,
        description=(
            "Seconds a connection stays online without its gateway refreshing it (so a killed "
            "gateway's users go offline within it)."
        ),
    )
    chat_gap_wait: float = Field(
        0.2,
        gt=0,
        description=(
            "Seconds a gateway waits for a message missing from a room's live stream before it "
            "reads it from history."
        ),
    )
    chat_retention_days: float = Field(
        0, ge=0, description="Days of history kept per room (0: all of it)."
    )
    # Feed (issue 23).
    feed_celebrity_threshold: int = Field(
        10_000,
        ge=0,
        description=(
            "Followers past which an author's posts are not fanned out on write but merged into "
            "their followers' feeds on read."
        ),
    )
    feed_timeline_length: int = Field(
        800, ge=10, description="Post ids a cached home timeline keeps (older: read from SQL)."
    )
    feed_backfill: int = Field(
        20, ge=0, description="Recent posts of an author put in a new follower's timeline."
    )
    feed_inactive_days: float = Field(
        30.0,
        gt=0,
        description=(
            "Days without reading their feed after which a user is not fanned out to; their "
            "timeline is rebuilt on their next read."
        ),
    )
    feed_max_text: int = Field(5000, ge=1, le=100_000, description="Longest post or comment.")
    # Uploads (issue 24).
    uploads_max_bytes: int = Field(
        100 * 1024 * 1024, gt=0, description="Largest file an upload may be (else 413)."
    )
    uploads_allowed_types: str = Field(
        "image/png,image/jpeg,image/gif,image/webp,application/pdf,text/plain,application/zip,"
        "application/octet-stream",
        description=(
            "Comma-separated content types an upload may be, as its bytes show them "
            "(`application/octet-stream`: bytes of no recognised type)."
        ),
    )
    uploads_storage: str = Field(
        "",
        description=(
            "Where files are kept: empty for a directory under the data directory, or "
            "`s3://ACCESS:SECRET@HOST:PORT/BUCKET/PREFIX?region=R&secure=true` for an "
            "S3-compatible store."
        ),
    )
    uploads_scanner: str = Field(
        "yara",
        description=(
            "The virus scanner: `yara` (YARA rules through yara-x, in process), or clamd at "
            "`tcp://HOST:PORT` or `unix:///PATH`."
        ),
    )
    uploads_yara_rules: Path | None = Field(
        None, description="A directory of `*.yar` rules replacing the ones shipped."
    )
    uploads_scan_timeout: float = Field(
        120.0, gt=0, description="Seconds one scan may take before it counts as failed."
    )
    uploads_scan_attempts: int = Field(
        5, ge=1, description="Scans of an upload before it is recorded FAILED."
    )
    uploads_archive_depth: int = Field(
        3, ge=0, description="Nested archives looked into (deeper: reported infected)."
    )
    uploads_archive_max_bytes: int = Field(
        1024 * 1024 * 1024,
        gt=0,
        description="Bytes an archive may unpack to in all (more: reported infected).",
    )
    uploads_archive_ratio: int = Field(
        100, ge=1, description="How many times its packed size a member may unpack to."
    )
    uploads_archive_members: int = Field(
        10_000, ge=1, description="Members an archive may hold, nested ones included."
    )
    uploads_rescue_after: float = Field(
        600.0,
        gt=0,
        description=(
            "Seconds an upload may wait for its scan before a scan worker takes it up without "
            "its message (lost with an in-process bus, or dead-lettered)."
        ),
    )
    uploads_tus_expiry_hours: float = Field(
        24.0, gt=0, description="Hours an unfinished resumable upload is kept."
    )
    migrate_on_start: bool = Field(True, description="`serve` applies migrations on start.")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Log level."
    )
    log_format: Literal["json", "console"] = Field("json", description="Log line format.")

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        scheme = value.split("://", 1)[0]
        if scheme not in DATABASE_SCHEMES:
            raise ValueError(
                f"unknown URL scheme {scheme!r}; use one of {', '.join(DATABASE_SCHEMES)}"
            )
        return value

    @cached_property
    def admin_usernames(self) -> frozenset[str]:
        return frozenset(name.strip() for name in self.admins.split(",") if name.strip())

    @cached_property
    def cors_origin_list(self) -> list[str]:
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]

    def masked(self) -> dict[str, object]:
        """The settings by environment variable name, secrets and URL passwords masked."""
        shown: dict[str, object] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = "********" if value.get_secret_value() else ""
            elif isinstance(value, str) and "://" in value:
                value = mask_url(value)
            elif isinstance(value, Path):
                value = str(value)
            shown[f"TOWNHALL_{name.upper()}"] = value
        return shown


def mask_url(url: str) -> str:
    """`scheme://user:secret@host` -> `scheme://user:********@host`."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    userinfo, _, host = rest.rpartition("@")
    if ":" in userinfo:
        user = userinfo.split(":", 1)[0]
        userinfo = f"{user}:********"
    return f"{scheme}://{userinfo}@{host}"


def load_settings() -> Settings:
    """Read the environment once; a bad value becomes a `ConfigError` naming its variable."""
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "?"
        message = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"TOWNHALL_{field.upper()}", message) from None
