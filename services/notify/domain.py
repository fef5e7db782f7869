"""Notify's decisions, pure: quiet hours, channel choice, retry backoff, a reminder's moment."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from shared.contracts.notify import Channel
from shared.contracts.roster import DEFAULT_SESSIONS
from shared.directory import Plan
from shared.localtime import LOCAL_TZ
from services.notify.rules import ALL_CHANNELS, MANDATORY, ROLE_DEFAULTS, Rule

Session = tuple[time, time]
DEFAULT_DAY: tuple[Session, ...] = tuple((s.starts, s.ends) for s in DEFAULT_SESSIONS)


@dataclass(frozen=True)
class WorkCalendar:
    """Working sessions in local time (Asia/Ho_Chi_Minh): those of the plan covering a day on
    its working days, else the 2021 plan's 07:00-11:30 and 13:30-17:00, Monday to Friday."""

    plans: tuple[Plan, ...] = ()

    def sessions_on(self, day: date) -> tuple[Session, ...]:
        plan = next((p for p in reversed(self.plans) if p.covers(day)), None)
        if plan is None:
            return DEFAULT_DAY if day.weekday() < 5 else ()
        if not plan.is_working_day(day):
            return ()
        return tuple((s.starts, s.ends) for s in plan.sessions)

    def in_session(self, moment: datetime) -> bool:
        local = moment.astimezone(LOCAL_TZ)
        return any(s <= local.time() < e for s, e in self.sessions_on(local.date()))

    def next_session_start(self, moment: datetime) -> datetime:
        """`moment` itself when inside a session, else the start of the next one."""
        local = moment.astimezone(LOCAL_TZ)
        for offset in range(0, 60):
            day = local.date() + timedelta(days=offset)
            for starts, ends in self.sessions_on(day):
                start = datetime.combine(day, starts, LOCAL_TZ)
                end = datetime.combine(day, ends, LOCAL_TZ)
                if local < end:
                    return moment if local >= start else start
        return moment  # no session within 60 days: do not hold a message for ever

    def first_session_start(self, day: date) -> datetime:
        sessions = self.sessions_on(day) or DEFAULT_DAY
        return datetime.combine(day, sessions[0][0], LOCAL_TZ)


def release_at(rule: Rule, channel: Channel, now: datetime, calendar: WorkCalendar) -> datetime:
    """When a delivery may go out. The web feed shows everything at once (nobody is pinged by
    it); bots and email hold normal notifications until the next working session."""
    if channel == "web" or rule.urgency != "normal":
        return now
    return calendar.next_session_start(now)


def channels_for(
    roles: Iterable[str], category: str, chosen: tuple[Channel, ...] | None
) -> tuple[Channel, ...]:
    """The person's choice, else the union of their roles' defaults; web always, mandatory
    channels (summons) always."""
    if chosen is not None:
        wanted = set(chosen)
    else:
        wanted = set()
        for role in [*roles, "*"]:
            defaults = ROLE_DEFAULTS.get(role)
            if defaults is None or (role == "*" and wanted):
                continue
            wanted.update(defaults.get(category, defaults.get("*", ())))
    wanted |= {"web", *MANDATORY.get(category, ())}
    return tuple(c for c in ALL_CHANNELS if c in wanted)


def retry_delay(attempts: int, base_seconds: float, max_seconds: float) -> timedelta:
    """Exponential backoff after the `attempts`-th failure: base, 2 base, 4 base, ... capped."""
    return timedelta(seconds=min(max_seconds, base_seconds * 2 ** max(attempts - 1, 0)))


def reminder_due(rule: Rule, value: date | datetime, calendar: WorkCalendar) -> datetime:
    """The moment a reminder fires: a datetime less the lead time, or a day's first session."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=LOCAL_TZ)
    else:
        moment = calendar.first_session_start(value)
    return moment - rule.before
