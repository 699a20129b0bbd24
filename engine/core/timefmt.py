"""One time format for people (PRODUCT.md §5): the account's (the policy's) timezone with its
abbreviation, ``2026-01-14 08:45:42 CST``; the time alone, still zoned (``08:45:42 CST``), where the
date is obvious. JSON keeps ISO-8601 UTC; this is only for what a person reads."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

FULL = "%Y-%m-%d %H:%M:%S %Z"
TIME = "%H:%M:%S %Z"


def human_time(instant: dt.datetime, zone: dt.tzinfo | str | None, *, today: dt.datetime | None = None) -> str:
    """``2026-01-14 08:45:42 CST``; with ``today`` (an instant), the date is left out when it is
    that instant's date in ``zone``. ``zone`` None is the machine's own timezone."""
    if isinstance(zone, str):
        zone = ZoneInfo(zone)
    local = instant.astimezone(zone)
    if today is not None and today.astimezone(zone).date() == local.date():
        return local.strftime(TIME)
    return local.strftime(FULL)
