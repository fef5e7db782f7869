"""Local time of the department: Asia/Ho_Chi_Minh, dates shown dd/mm/yyyy."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

LOCAL_TZ = ZoneInfo("Asia/Ho_Chi_Minh")


def local_now() -> datetime:
    return datetime.now(LOCAL_TZ)


def local_today() -> date:
    return local_now().date()


def vn_date(d: date) -> str:
    return d.strftime("%d/%m/%Y")
