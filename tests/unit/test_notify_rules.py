"""Notify's rules as data hold together: every rule names a known event, fields it has, a
template in each locale, and the broker subscription carries exactly the routed events.
Quiet hours, channel choice, backoff and reminder moments, without servers."""

import typing
from datetime import date, datetime, time, timedelta

import pytest
from pydantic import BaseModel

from shared.contracts import event_class
from shared.contracts.notify import Category
from shared.directory import Plan
from shared.localtime import LOCAL_TZ
from shared.topology import NOTIFY_KEYS
from services.notify.domain import WorkCalendar, channels_for, release_at, reminder_due, retry_delay
from services.notify.rules import REMEMBER, RULES, Rule, routed_event_types
from services.notify.templates import LOCALES, catalogue

AUDIENCES_WITH_FIELD = {"person", "people", "superior", "head", "division"}


def _date_like(annotation) -> bool:
    return annotation in (date, datetime) or getattr(annotation, "__name__", "") == "AwareDatetime"


def _has_path(event_type: str, path: str) -> bool:
    """`field.sub` names a field of the event; `@Earlier.field` one of a remembered event this
    event refers to by the id field they share."""
    fields = event_class(event_type).model_fields
    if not path.startswith("@"):
        return path.split(".")[0] in fields
    earlier, _, rest = path[1:].partition(".")
    key = REMEMBER.get(earlier)
    return key in fields and key in event_class(earlier).model_fields and _has_path(earlier, rest)


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
def test_each_rule_names_a_known_event_and_fields_it_has(rule: Rule):
    fields = event_class(rule.event_type).model_fields
    for audience in rule.to:
        kind, _, arg = audience.partition(":")
        assert kind in AUDIENCES_WITH_FIELD | {"role", "leaders", "everyone"}, audience
        if kind in AUDIENCES_WITH_FIELD:
            assert _has_path(rule.event_type, arg), f"{rule.event_type} has no field {arg!r}"
    if rule.at is not None:
        assert _date_like(fields[rule.at].annotation), rule.at
    if rule.unless is not None:
        other = event_class(rule.unless.event_type).model_fields
        assert all(f in fields and f in other for f in rule.unless.match)
    assert rule.category in typing.get_args(Category)


def test_rule_names_are_unique_and_each_has_a_template_pair_in_every_locale():
    names = [r.name for r in RULES]
    assert len(names) == len(set(names))
    for locale in LOCALES:
        kinds = {k for k in catalogue(locale) if not k.startswith("_")}
        assert kinds == set(names), locale
        for name in names:
            assert set(catalogue(locale)[name]) == {"title", "body"}


def test_the_broker_subscription_carries_exactly_the_routed_events():
    routed = {f"{event_class(t).owner}.{t}" for t in routed_event_types(RULES)}
    assert set(NOTIFY_KEYS) == routed and len(NOTIFY_KEYS) == len(routed)


def test_the_issues_events_are_routed():
    wanted = {
        "LeaveRequested", "LeaveApproved", "LeaveRejected", "LeaveCancelled", "RosterSubmitted",
        "RosterCompiled", "RosterApproved", "RosterReturned", "CoverageGapRecorded", "CheckInMissed",
        "DraftSubmitted", "DraftApproved", "DraftReturned", "DraftReadyForSigning", "DocumentSigned",
        "DocumentIssued", "TaskAssigned", "TaskOverdue", "MeetingScheduled", "SecretDocumentSummons",
    }
    assert wanted <= {r.event_type for r in RULES}
    summons = [r for r in RULES if r.event_type == "SecretDocumentSummons"]
    assert summons and all(r.secret and r.urgency == "urgent" for r in summons)
    assert next(r for r in RULES if r.event_type == "CoverageGapRecorded").urgency == "urgent"
    reminder = next(r for r in RULES if r.name == "MeetingJoinReminder")
    assert reminder.at == "join_at" and reminder.before == timedelta(0)


# --- quiet hours ---------------------------------------------------------------------------

PLAN = Plan("kh", "Kế hoạch", date(2037, 1, 5), date(2037, 2, 27), frozenset({date(2037, 1, 12)}))
CALENDAR = WorkCalendar((PLAN,))


def local(day: int, hour: int, minute: int = 0, month: int = 1) -> datetime:
    return datetime(2037, month, day, hour, minute, tzinfo=LOCAL_TZ)


@pytest.mark.parametrize("moment, released", [
    (local(6, 9), local(6, 9)),            # Tuesday morning session: at once
    (local(6, 6, 59), local(6, 7)),        # before the day starts
    (local(6, 11, 30), local(6, 13, 30)),  # lunch
    (local(6, 17), local(7, 7)),           # evening
    (local(9, 17, 30), local(13, 7)),      # Friday evening -> Tuesday: Monday 12/01 is a holiday
    (local(10, 10), local(13, 7)),         # Saturday
    (local(27, 18, month=2), local(2, 7, month=3)),  # after the plan: the default sessions, Mon-Fri
])
def test_normal_notifications_wait_for_the_next_working_session(moment, released):
    rule = Rule("LeaveRequested", "leave", ())
    assert release_at(rule, "email", moment, CALENDAR) == released
    assert release_at(rule, "bot", moment, CALENDAR) == released
    assert release_at(rule, "web", moment, CALENDAR) == moment  # the web feed pings nobody


def test_urgent_and_timed_notifications_ignore_quiet_hours():
    saturday = local(10, 22)
    for urgency in ("urgent", "timed"):
        rule = Rule("SecretDocumentSummons", "summons", (), urgency=urgency)
        assert release_at(rule, "email", saturday, CALENDAR) == saturday


def test_a_plans_own_sessions_count():
    from shared.contracts.roster import WorkingSession

    early = Plan("kh2", "Ca sớm", date(2037, 3, 2), None, frozenset(),
                 (WorkingSession(starts=time(6, 30), ends=time(12, 0)),))
    calendar = WorkCalendar((early,))
    assert calendar.next_session_start(local(2, 6, 0, month=3)) == local(2, 6, 30, month=3)
    assert calendar.next_session_start(local(2, 12, 30, month=3)) == local(3, 6, 30, month=3)
    assert not calendar.in_session(local(2, 13, 45, month=3))


# --- channels, backoff, reminders ----------------------------------------------------------

def test_channels_default_per_role_and_follow_the_persons_choice():
    assert channels_for({"staff"}, "leave", None) == ("web", "bot", "email")
    assert channels_for({"staff"}, "presence", None) == ("web", "bot")
    assert channels_for({"director"}, "leave", None) == ("web", "email")
    assert channels_for({"director"}, "meetings", None) == ("web", "bot", "email")
    assert channels_for({"staff"}, "tasks", ("email",)) == ("web", "email")  # web always
    assert channels_for({"staff"}, "tasks", ()) == ("web",)
    assert channels_for({"staff"}, "summons", ()) == ("web", "bot", "email")  # cannot be muted


def test_retry_backoff_doubles_up_to_a_cap():
    assert [retry_delay(n, 30, 600).total_seconds() for n in range(1, 7)] == [30, 60, 120, 240, 480, 600]


def test_reminder_moments():
    rule = Rule("MeetingScheduled", "meetings", (), at="join_at", before=timedelta(minutes=5))
    assert reminder_due(rule, local(6, 8, 45), CALENDAR) == local(6, 8, 40)
    assert reminder_due(rule, date(2037, 1, 6), CALENDAR) == local(6, 6, 55)  # a day: its first session
    late = Rule("CheckInMissed", "presence", (), at="deadline", before=timedelta(minutes=-15))
    assert reminder_due(late, local(6, 7, 30), CALENDAR) == local(6, 7, 45)


def test_sample_models_are_buildable_for_every_routed_event():
    from tests.unit.test_notify_templates import sample_event

    for event_type in routed_event_types(RULES):
        assert isinstance(sample_event(event_type), BaseModel)
