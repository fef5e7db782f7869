"""Presence without servers: sessions in local time, check-ins from the registered place,
health declarations, and missed check-ins recorded once per session."""

from datetime import date, datetime, timedelta

import pytest

from services.roster.presence import (
    PresenceDay, check_home_worker, detection_days, due_windows, same_place, session_windows, window_at,
)
from shared.commands import DomainError
from shared.contracts import roster as ev
from shared.localtime import LOCAL_TZ

DAY = date(2021, 9, 6)
WINDOWS = session_windows(DAY, ev.DEFAULT_SESSIONS, 30)
PLACE = "Số 5 Lê Hoàn, P. Điện Biên, TP Thanh Hóa"


def at(hh: int, mm: int = 0, day: date = DAY) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, tzinfo=LOCAL_TZ)


def test_default_sessions_are_local_morning_and_afternoon_with_the_grace_as_deadline():
    assert [(w.label, w.deadline) for w in WINDOWS] == [("07:00-11:30", at(7, 30)), ("13:30-17:00", at(14, 0))]
    assert WINDOWS[0].starts.utcoffset() == timedelta(hours=7)


@pytest.mark.parametrize("moment,session", [
    (at(6, 45), 0), (at(6, 44), None), (at(11, 30), 0), (at(12, 0), None), (at(13, 20), 1), (at(17, 1), None),
])
def test_the_session_under_way(moment, session):
    window = window_at(WINDOWS, moment)
    assert (window.index if window else None) == session


def test_check_in_records_the_session_the_place_and_lateness():
    day = PresenceDay("s1", DAY)
    [on_time] = day.check_in("cntt", at(7, 5), WINDOWS, None, PLACE)
    assert (on_time.session, on_time.place, on_time.at_registered_place, on_time.late) == (0, PLACE, True, False)
    [late] = day.check_in("cntt", at(14, 1), WINDOWS, "  số 5 lê hoàn,  p. điện biên, tp thanh hóa ", PLACE)
    assert (late.session, late.at_registered_place, late.late) == (1, True, True)


def test_another_place_is_recorded_as_such_and_a_second_check_in_adds_nothing():
    day = PresenceDay("s1", DAY)
    [elsewhere] = day.check_in("cntt", at(7, 5), WINDOWS, "Quán cà phê Phố Cổ", PLACE)
    assert elsewhere.at_registered_place is False
    day = PresenceDay.from_events("s1", DAY, [elsewhere])
    assert day.check_in("cntt", at(9, 0), WINDOWS, None, PLACE) == []


def test_no_check_in_outside_working_sessions():
    with pytest.raises(DomainError) as err:
        PresenceDay("s1", DAY).check_in("cntt", at(12, 15), WINDOWS, None, PLACE)
    assert err.value.code == "outside_session" and "07:00-11:30, 13:30-17:00" in err.value.message


@pytest.mark.parametrize("entry,on_leave,code", [
    (None, False, "not_on_roster"),
    (ev.RosterEntry(person_id="s1", location="on_site"), False, "not_home_worker"),
    (ev.RosterEntry(person_id="s1", location="home", work_place=PLACE), True, "on_leave"),
])
def test_only_home_workers_not_on_leave_check_in(entry, on_leave, code):
    with pytest.raises(DomainError) as err:
        check_home_worker("Nguyễn Văn Một", DAY, entry, on_leave)
    assert err.value.code == code and "06/09/2021" in err.value.message
    home = ev.RosterEntry(person_id="s1", location="home", work_place=PLACE)
    assert check_home_worker("Nguyễn Văn Một", DAY, home, False) == home


def test_a_miss_is_recorded_once_per_session_and_never_after_a_check_in():
    morning, afternoon = WINDOWS
    day = PresenceDay("s1", DAY)
    [missed] = day.record_missed("cntt", morning)
    assert (missed.session, missed.deadline) == (0, at(7, 30))
    day = PresenceDay.from_events("s1", DAY, [missed])
    assert day.record_missed("cntt", morning) == []
    # A late check-in after the miss is still taken (and marked late).
    [late] = day.check_in("cntt", at(8, 0), WINDOWS, None, PLACE)
    assert late.late
    checked = PresenceDay.from_events("s1", DAY, [*day.check_in("cntt", at(13, 40), WINDOWS, None, PLACE)])
    assert checked.record_missed("cntt", afternoon) == []


def test_deadlines_due_follow_the_plans_grace():
    assert due_windows(WINDOWS, at(7, 29)) == []
    assert [w.index for w in due_windows(WINDOWS, at(7, 30))] == [0]
    assert [w.index for w in due_windows(session_windows(DAY, ev.DEFAULT_SESSIONS, 0), at(13, 30))] == [0, 1]


def test_detection_catches_up_from_where_it_got_to_but_not_forever():
    now = at(8, 0, date(2021, 9, 8))
    assert detection_days(now, None) == [date(2021, 9, 8)]
    assert detection_days(now, at(17, 0, date(2021, 9, 6))) == [date(2021, 9, 6), date(2021, 9, 7), date(2021, 9, 8)]
    assert len(detection_days(now, at(17, 0, date(2021, 7, 1)))) == 8
    assert detection_days(now, now + timedelta(days=3)) == [date(2021, 9, 8)]  # a clock set back


def test_health_declaration_of_the_day():
    [declared] = PresenceDay("s1", DAY).declare_health("symptoms", " Ho nhẹ ")
    assert (declared.status, declared.note, declared.day) == ("symptoms", "Ho nhẹ", DAY)
    assert PresenceDay.from_events("s1", DAY, [declared]).health == declared


def test_places_compare_without_case_or_spacing():
    assert same_place("Nhà  riêng", "nhà riêng") and not same_place("Nhà riêng", "Cơ quan")
