"""The roster service's notion of now (the department's local time); tests replace `now`."""

from __future__ import annotations

from datetime import datetime

from shared.localtime import local_now


def now() -> datetime:
    return local_now()
