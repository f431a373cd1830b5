"""What a user sets and reads for themselves: preferences (opt-outs, quiet hours), push
devices, and the in-app inbox."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import time

from townhall.notifications.domain import (
    DeviceToken,
    NotificationError,
    Preferences,
    PushPlatform,
    QuietHours,
    parse_channels,
)
from townhall.notifications.ports import Devices, Inbox, InboxItem, PreferenceStore, Recipients
from townhall.notifications.service.errors import UnknownRecipient
from townhall.platform import errors
from townhall.platform.clock import Clock


class UserSettings:
    def __init__(
        self,
        preferences: PreferenceStore,
        devices: Devices,
        inbox: Inbox,
        recipients: Recipients,
        clock: Clock,
    ) -> None:
        self._preferences = preferences
        self._devices = devices
        self._inbox = inbox
        self._recipients = recipients
        self._clock = clock

    # --- preferences ------------------------------------------------------------------------

    async def preferences(self, user_id: str) -> Preferences:
        return await self._preferences.get(user_id)

    async def set_preferences(
        self,
        user_id: str,
        opted_out: Sequence[tuple[str, str]],
        quiet_hours: tuple[time, time, str] | None,
    ) -> Preferences:
        prefs = Preferences()
        try:
            for category, channel in opted_out:
                prefs = prefs.opt_out(category, parse_channels([channel])[0])
            if quiet_hours is not None:
                prefs = replace(prefs, quiet_hours=QuietHours(*quiet_hours))
        except NotificationError as exc:
            raise errors.Invalid(str(exc), field="preferences") from None
        await self._preferences.put(user_id, prefs)
        return prefs

    async def time_zone_of(self, user_id: str) -> str:
        """The user's own time zone: where quiet hours are counted unless they name one."""
        recipient = await self._recipients.find(user_id)
        if recipient is None:
            raise UnknownRecipient(f"no user {user_id}", field="user_id")
        return recipient.time_zone

    # --- devices ----------------------------------------------------------------------------

    async def add_device(self, user_id: str, platform: str, token: str) -> DeviceToken:
        device = DeviceToken(PushPlatform(platform), token)
        await self._devices.add(user_id, device, self._clock.now())
        return device

    async def remove_device(self, user_id: str, token: str) -> None:
        if not await self._devices.remove(token, user_id):
            raise errors.NotFound("no such device token for this user")

    async def devices(self, user_id: str) -> tuple[DeviceToken, ...]:
        return await self._devices.of_user(user_id)

    # --- the in-app inbox -------------------------------------------------------------------

    async def inbox(
        self, user_id: str, cursor: str | None, limit: int
    ) -> tuple[list[InboxItem], str | None, int]:
        """A page of the inbox (newest first), the cursor of the next one, and how many items
        are unread in all."""
        items = await self._inbox.page(user_id, cursor, limit + 1)
        unread = await self._inbox.unread(user_id)
        more = len(items) > limit
        items = items[:limit]
        return items, (items[-1].id if more and items else None), unread

    async def unread(self, user_id: str) -> int:
        return await self._inbox.unread(user_id)

    async def mark_read(self, user_id: str, item_id: str | None) -> int:
        marked = await self._inbox.mark_read(user_id, item_id, self._clock.now())
        if marked is None:
            raise errors.NotFound(f"no inbox item {item_id}")
        return marked
