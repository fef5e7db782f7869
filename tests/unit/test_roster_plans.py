"""Plans and the holiday calendar as the directory aggregate decides them, without servers."""

from datetime import date, time

import pytest
from pydantic import ValidationError

from services.roster.commands import ActivatePlan, AmendPlan
from services.roster.domain import DepartmentDirectory
from shared.commands import DomainError, NotFound
from shared.contracts import roster as ev
from shared.directory import Plan


def with_plan(**fields) -> DepartmentDirectory:
    directory = DepartmentDirectory()
    plan = ActivatePlan(plan_id="kh", title="Kế hoạch", effective_from=date(2037, 1, 1), **fields)
    for e in directory.activate_plan(ev.PlanActivated(**plan.model_dump())):
        directory.apply(e)
    return directory


def test_a_plan_defaults_to_the_2021_working_hours_and_may_be_open_ended():
    plan = with_plan().plans["kh"]
    assert [(s.starts, s.ends) for s in plan.sessions] == [(time(7), time(11, 30)), (time(13, 30), time(17))]
    assert plan.effective_until is None and plan.check_in_grace_minutes == 30


def test_on_site_rules_are_checked_when_the_plan_is_activated_and_stored_as_data():
    plan = with_plan(onsite_rules=[{"rule": "min_leaders_on_site", "count": 1}]).plans["kh"]
    assert plan.onsite_rules == ({"rule": "min_leaders_on_site", "count": 1},)
    with pytest.raises(ValidationError):
        ActivatePlan(plan_id="kh", title="x", effective_from=date(2037, 1, 1), onsite_rules=[{"rule": "nap"}])


def test_sessions_must_be_in_order_and_not_overlap():
    overlapping = ({"starts": "07:00", "ends": "12:00"}, {"starts": "11:00", "ends": "17:00"})
    with pytest.raises(DomainError):
        with_plan(sessions=overlapping)
    with pytest.raises(DomainError):
        with_plan(sessions=({"starts": "12:00", "ends": "07:00"},))


def test_each_amendment_is_one_event_that_changes_only_what_it_names():
    directory = with_plan()
    rules_2021 = ({"rule": "only_designated_on_site"}, {"rule": "min_on_duty", "duty": "leader_on_duty"})
    amend = AmendPlan(plan_id="kh", onsite_rules=rules_2021, check_in_grace_minutes=15, reason="Giãn cách")
    [event] = directory.amend_plan(ev.PlanAmended(**amend.model_dump()))
    assert isinstance(event, ev.PlanAmended) and event.sessions is None
    directory.apply(event)
    plan = directory.plans["kh"]
    assert plan.check_in_grace_minutes == 15 and plan.onsite_rules[0]["rule"] == "only_designated_on_site"
    assert plan.title == "Kế hoạch"
    with pytest.raises(DomainError) as err:
        directory.amend_plan(ev.PlanAmended(plan_id="kh", check_in_grace_minutes=15))
    assert err.value.code == "no_change"
    with pytest.raises(NotFound):
        directory.amend_plan(ev.PlanAmended(plan_id="khac", title="x"))


def test_the_department_holiday_calendar():
    directory = DepartmentDirectory()
    [added] = directory.add_holiday(date(2037, 9, 2), "Quốc khánh")
    directory.apply(added)
    with pytest.raises(DomainError):
        directory.add_holiday(date(2037, 9, 2), "Quốc khánh")
    [removed] = directory.remove_holiday(date(2037, 9, 2))
    directory.apply(removed)
    with pytest.raises(NotFound) as err:
        directory.remove_holiday(date(2037, 9, 2))
    assert "02/09/2037" in err.value.message


def test_working_days_are_weekdays_in_the_period_minus_holidays():
    plan = Plan("kh", "", date(2021, 9, 6), date(2021, 9, 8), frozenset({date(2021, 9, 7)}))
    assert [plan.is_working_day(date(2021, 9, d)) for d in (5, 6, 7, 8, 9)] == [False, True, False, True, False]
