"""The roster decisions without servers: who may do what, division lists, the Office's
compilation, the Director's decision and coverage gaps opened and closed by leave."""

import uuid
from datetime import date, timedelta

import pytest

from services.roster.rosters import (
    APPROVED, COMPILED, RETURNED, SUPERSEDED, CompiledRoster, DayState, Delegation, OpenGap,
    approve_roster, check_may_compile, check_may_decide, check_may_submit, closed_gaps, compile_roster,
    coverage_gaps, delegate_approval, return_roster, submit_lists,
)
from shared.commands import DomainError, Forbidden
from shared.contracts import roster as ev
from tests.unit.roster_department import (
    CHIEF, CLERK, DEPUTY_1, DEPUTY_2, DEPUTY_HEAD, DIRECTOR, DIVISIONS, HEAD, HEAD_2, MONDAY, ORG, PLAN_2020,
    S1, full_lists_2020, home, sheet, site,
)

BGD, VP, CNTT, KHTC = DIVISIONS
TUESDAY = MONDAY + timedelta(days=1)
PLANS = [PLAN_2020]
RULES = ev.parse_onsite_rules(PLAN_2020.onsite_rules)
TENANT = "so-test"


def day_list(day, entries):
    return ev.DayList(day=day, entries=tuple(entries))


def submit(division=CNTT, entries=None, day=MONDAY, approved=(), on_leave=None):
    entries = full_lists_2020()[division.division_id] if entries is None else entries
    return submit_lists(uuid.uuid4(), "tp", division, [day_list(day, entries)], ORG, PLANS,
                        frozenset(approved), on_leave or {})


def refused(code, fn, *args, **kw):
    with pytest.raises(DomainError) as err:
        fn(*args, **kw)
    assert err.value.code == code, err.value.message
    assert err.value.message and err.value.message_en
    return err.value


# --- who may do what ---------------------------------------------------------------------------


@pytest.mark.parametrize("actor,division,acting,allowed", [
    (HEAD, CNTT, False, True),
    (DEPUTY_HEAD, CNTT, False, True),
    (S1, CNTT, False, False),
    (S1, CNTT, True, True),          # acting for the head
    (HEAD_2, CNTT, False, False),    # another division's head
    (CHIEF, VP, False, True),
    (CHIEF, CNTT, False, False),
    (DIRECTOR, BGD, False, True),    # the leadership's list: a leader...
    (CHIEF, BGD, False, True),       # ...or the Chief of Office, who keeps their schedule
    (HEAD, BGD, False, False),
    (DIRECTOR, CNTT, False, False),
])
def test_who_may_submit_a_division_list(actor, division, acting, allowed):
    if allowed:
        check_may_submit(actor, division, acting)
    else:
        with pytest.raises(Forbidden):
            check_may_submit(actor, division, acting)


def test_only_the_chief_of_office_or_whoever_acts_for_them_compiles():
    check_may_compile(CHIEF, False)
    check_may_compile(CLERK, True)
    for actor in (DIRECTOR, HEAD, CLERK):
        with pytest.raises(Forbidden):
            check_may_compile(actor, False)


def test_the_director_decides_and_a_deputy_only_within_a_delegation():
    assert check_may_decide(DIRECTOR, [], MONDAY) is None
    delegation = Delegation("pgd1", "gd", MONDAY, MONDAY + timedelta(days=4))
    assert check_may_decide(DEPUTY_1, [delegation], MONDAY + timedelta(days=4)) == "gd"
    for actor, day in ((DEPUTY_1, MONDAY + timedelta(days=5)), (DEPUTY_1, MONDAY - timedelta(days=1)),
                       (DEPUTY_2, MONDAY), (CHIEF, MONDAY)):
        with pytest.raises(Forbidden):
            check_may_decide(actor, [delegation], day)


def test_only_the_director_delegates_and_only_to_a_deputy_for_a_bounded_period():
    event = delegate_approval(DIRECTOR, DEPUTY_1, MONDAY, TUESDAY)
    assert (event.person_id, event.delegated_by) == ("pgd1", "gd")
    with pytest.raises(Forbidden):
        delegate_approval(DEPUTY_1, DEPUTY_2, MONDAY, TUESDAY)
    refused("invalid", delegate_approval, DIRECTOR, CHIEF, MONDAY, TUESDAY)
    refused("invalid", delegate_approval, DIRECTOR, DEPUTY_1, TUESDAY, MONDAY)
    refused("invalid", delegate_approval, DIRECTOR, DEPUTY_1, MONDAY, MONDAY + timedelta(days=400))


# --- division lists ----------------------------------------------------------------------------


def test_a_division_list_names_everyone_once_with_home_places_trimmed():
    event = submit(entries=[site("s1"), home("tp", "  12 Lê Lợi, TP Thanh Hóa "), home("pp"), home("s2")])
    assert isinstance(event, ev.RosterSubmitted) and event.division_id == "cntt"
    assert event.days[0].entries[1].work_place == "12 Lê Lợi, TP Thanh Hóa"


def test_several_days_in_one_submission():
    entries = full_lists_2020()["cntt"]
    event = submit_lists(uuid.uuid4(), "tp", CNTT, [day_list(TUESDAY, entries), day_list(MONDAY, entries)],
                         ORG, PLANS, frozenset(), {})
    assert [d.day for d in event.days] == [MONDAY, TUESDAY]
    refused("invalid", submit_lists, uuid.uuid4(), "tp", CNTT,
            [day_list(MONDAY, entries), day_list(MONDAY, entries)], ORG, PLANS, frozenset(), {})


def test_everyone_in_the_division_must_be_on_the_list_except_those_on_leave():
    error = refused("member_missing", submit, entries=[site("s1"), home("tp"), home("pp")])
    assert "Lê Văn Hai" in error.message and "05/01/2037" in error.message
    assert error.details["people"] == ["s2"]
    assert submit(entries=[site("s1"), home("tp"), home("pp")], on_leave={MONDAY: frozenset({"s2"})})


@pytest.mark.parametrize("entries,code", [
    ([site("s1"), home("tp"), home("pp"), home("s2"), home("s3")], "not_a_member"),
    ([site("s1"), home("tp"), home("pp"), home("s2"), site("s2")], "listed_twice"),
    ([site("s1"), home("tp"), home("pp"), ev.RosterEntry(person_id="s2", location="home")], "work_place_required"),
    ([site("s1"), home("tp"), home("pp"), ev.RosterEntry(person_id="s2", location="home", work_place="   ")],
     "work_place_required"),
    ([site("s1"), home("tp"), home("pp"),
      ev.RosterEntry(person_id="s2", location="home", work_place="Nhà", duty="covid_duty")], "duty_at_home"),
    ([site("s1", "leader_on_duty"), home("tp"), home("pp"), home("s2")], "duty_not_allowed"),
    ([site("s1", "secret_documents"), home("tp"), home("pp"), home("s2")], "duty_not_allowed"),
])
def test_malformed_lists_are_refused_with_a_code(entries, code):
    refused(code, submit, entries=entries)


def test_duties_fit_the_person():
    assert submit(BGD, [site("gd", "leader_on_duty"), home("pgd1"), home("pgd2")])
    assert submit(VP, [site("vp1", "secret_documents"), home("cvp"), home("vp2")])


@pytest.mark.parametrize("day,code", [
    (date(2037, 1, 10), "not_working_day"),  # Saturday
    (date(2037, 1, 12), "not_working_day"),  # the plan's holiday
    (date(2036, 12, 31), "outside_plan"),
])
def test_only_working_days_of_a_plan(day, code):
    refused(code, submit, day=day)


def test_an_approved_day_cannot_be_resubmitted():
    error = refused("already_approved", submit, approved={MONDAY})
    assert "đã được Giám đốc phê duyệt" in error.message


# --- compilation -------------------------------------------------------------------------------


def compile_(lists_by_day, day_states=None, on_leave=(), start=MONDAY, end=TUESDAY, roster_id=None):
    sheets, submissions = {}, {}
    d = start
    while d <= end:
        lists = lists_by_day.get(d, {})
        sheets[d] = sheet(d, lists, on_leave)
        submissions.update({(d, div): uuid.uuid5(uuid.NAMESPACE_OID, f"{d}{div}") for div in lists})
        d += timedelta(days=1)
    return compile_roster(roster_id or uuid.uuid4(), "cvp", start, end, ORG, PLANS, sheets, submissions,
                          day_states or {}), sheets, submissions


def test_compiling_lists_every_division_the_missing_lists_and_each_violation():
    monday = full_lists_2020()
    monday["cntt"] = tuple(home(e.person_id) for e in monday["cntt"])
    tuesday = {k: v for k, v in full_lists_2020().items() if k != "khtc"}
    event, _, _ = compile_({MONDAY: monday, TUESDAY: tuesday})
    assert event.days == (MONDAY, TUESDAY)
    assert len(event.lists) == 7
    assert [(m.day, m.division_id) for m in event.missing] == [(TUESDAY, "khtc")]
    assert [(v.day, v.division_id, v.rule) for v in event.violations] == [
        (MONDAY, "cntt", "min_staff_per_division_on_site")]
    cntt_monday = next(x for x in event.lists if x.day == MONDAY and x.division_id == "cntt")
    assert cntt_monday.on_site == () and set(cntt_monday.at_home) == {"s1", "tp", "pp", "s2"}


def test_compiling_skips_non_working_days_and_shows_who_is_on_leave():
    event, _, _ = compile_({d: full_lists_2020() for d in (MONDAY, MONDAY + timedelta(days=7))},
                           start=MONDAY + timedelta(days=4), end=MONDAY + timedelta(days=7), on_leave={"s2"})
    assert event.days == (date(2037, 1, 9),)  # Friday; the weekend and the 12/01 holiday are not counted
    assert len(event.missing) == 4
    event, _, _ = compile_({MONDAY: full_lists_2020()}, end=MONDAY, on_leave={"s2"})
    cntt = next(x for x in event.lists if x.division_id == "cntt")
    assert cntt.on_leave == ("s2",) and "s2" not in cntt.at_home


def test_a_division_whose_members_are_all_on_leave_needs_no_list():
    lists = {k: v for k, v in full_lists_2020().items() if k != "khtc"}
    event, _, _ = compile_({MONDAY: lists}, end=MONDAY, on_leave={"tp2", "s3"})
    assert event.missing == ()


def test_recompiling_supersedes_a_pending_roster_and_approved_days_are_closed():
    old = uuid.uuid4()
    event, _, _ = compile_({MONDAY: full_lists_2020()}, {MONDAY: DayState(old, COMPILED)})
    assert event.supersedes == (old,)
    event, _, _ = compile_({MONDAY: full_lists_2020()}, {MONDAY: DayState(old, RETURNED)})
    assert event.supersedes == ()
    refused("already_approved", compile_, {}, {TUESDAY: DayState(old, APPROVED)})
    refused("invalid", compile_, {}, start=TUESDAY, end=MONDAY)
    refused("invalid", compile_, {}, start=MONDAY, end=MONDAY + timedelta(days=40))
    refused("no_working_days", compile_, {}, start=date(2037, 1, 10), end=date(2037, 1, 12))


# --- the Director's decision ----------------------------------------------------------------------


def compiled(event, status=COMPILED):
    return CompiledRoster(event.roster_id, status, event.days,
                          {(x.day, x.division_id): x.submission_id for x in event.lists}, event.missing)


def approve(roster, sheets, submissions, reason=None):
    return approve_roster(roster, "gd", None, reason, ORG, PLANS, sheets, submissions)


def test_a_clean_roster_is_approved_without_override():
    event, sheets, submissions = compile_({MONDAY: full_lists_2020(), TUESDAY: full_lists_2020()})
    approved = approve(compiled(event), sheets, submissions, reason="  ")
    assert approved.overridden == () and approved.override_reason is None


def test_violations_need_an_explicit_override_with_a_reason():
    lists = full_lists_2020()
    lists["bgd"] = (home("gd"), home("pgd1"), home("pgd2"))
    event, sheets, submissions = compile_({MONDAY: lists}, end=MONDAY)
    error = refused("violations_need_override", approve, compiled(event), sheets, submissions)
    assert "05/01/2037" in error.message and error.details["violations"][0]["rule"] == "min_leaders_on_site"
    approved = approve(compiled(event), sheets, submissions, reason="Lãnh đạo họp trực tuyến với tỉnh")
    assert [v.rule for v in approved.overridden] == ["min_leaders_on_site"]
    assert approved.override_reason == "Lãnh đạo họp trực tuyến với tỉnh"


def test_leave_since_compilation_is_weighed_at_approval():
    event, sheets, submissions = compile_({MONDAY: full_lists_2020()}, end=MONDAY)
    with_leave = {MONDAY: sheets[MONDAY].with_leave("s3")}
    refused("violations_need_override", approve, compiled(event), with_leave, submissions)


def test_a_list_changed_after_compilation_must_be_compiled_again():
    event, sheets, submissions = compile_({MONDAY: full_lists_2020()}, end=MONDAY)
    resubmitted = {**submissions, (MONDAY, "cntt"): uuid.uuid4()}
    error = refused("stale", approve, compiled(event), sheets, resubmitted)
    assert error.details == {"day": "2037-01-05", "division_id": "cntt"}


def test_missing_lists_are_returned_not_approved():
    lists = {k: v for k, v in full_lists_2020().items() if k != "khtc"}
    event, sheets, submissions = compile_({MONDAY: lists}, end=MONDAY)
    error = refused("lists_missing", approve, compiled(event), sheets, submissions, reason="Cứ duyệt")
    assert "Phòng Kế hoạch - Tài chính (05/01/2037)" in error.message


@pytest.mark.parametrize("status", [APPROVED, RETURNED, SUPERSEDED])
def test_only_a_pending_roster_is_decided(status):
    event, sheets, submissions = compile_({MONDAY: full_lists_2020()}, end=MONDAY)
    refused("invalid_state", approve, compiled(event, status), sheets, submissions)
    refused("invalid_state", return_roster, compiled(event, status), "gd", "Sai")
    assert return_roster(compiled(event), "gd", "Bổ sung người trực").reason == "Bổ sung người trực"


# --- coverage gaps ------------------------------------------------------------------------------


def gaps(lists, person, on_leave=(), application=None):
    return coverage_gaps(TENANT, uuid.UUID(int=1), RULES, ORG, sheet(MONDAY, lists, on_leave), person,
                         application or uuid.UUID(int=2))


def test_leave_of_the_only_person_on_site_opens_a_gap_naming_day_division_and_rule():
    [gap] = gaps(full_lists_2020(), "s3")
    assert (gap.day, gap.division_id, gap.rule, gap.person_id) == (
        MONDAY, "khtc", "min_staff_per_division_on_site", "s3")
    assert gap.message.startswith("Cao Văn Ba nghỉ phép. Ngày 05/01/2037, Phòng Kế hoạch - Tài chính: 0 cán bộ")
    assert gap.gap_id == gaps(full_lists_2020(), "s3")[0].gap_id  # deterministic
    [leader_gap] = gaps(full_lists_2020(), "gd")
    assert (leader_gap.division_id, leader_gap.rule) == ("bgd", "min_leaders_on_site")


def test_leave_that_breaks_nothing_or_breaches_already_overridden_opens_no_gap():
    assert gaps(full_lists_2020(), "s2") == []          # a home worker
    assert gaps(full_lists_2020(), "s3", on_leave={"s3"}) == []  # already off the list
    lists = full_lists_2020()
    lists["khtc"] = (home("s3"), home("tp2"))           # approved with the breach overridden
    assert gaps(lists, "tp2") == []
    lists = full_lists_2020()
    lists["cntt"] = (site("s1"), site("s2"), home("tp"), home("pp"))
    assert gaps(lists, "s1") == []                      # someone else is still on site


def test_cancelled_leave_closes_the_gaps_whose_rule_holds_again():
    lists = full_lists_2020()
    open_gap = OpenGap(uuid.uuid4(), uuid.UUID(int=1), MONDAY, "khtc", "min_staff_per_division_on_site")
    back = sheet(MONDAY, lists, on_leave={"s3"})
    [closed] = closed_gaps([open_gap], RULES, ORG, back, "s3", uuid.UUID(int=2))
    assert closed.gap_id == open_gap.gap_id
    # Two on site required; vp2's leave opened the gap, the chief's leave keeps it open.
    two = ev.parse_onsite_rules([{"rule": "min_staff_per_division_on_site", "count": 2}])
    lists["vp"] = (site("cvp"), site("vp2"), home("vp1"))
    vp_gap = OpenGap(uuid.uuid4(), uuid.UUID(int=1), MONDAY, "vp", "min_staff_per_division_on_site")
    still_away = sheet(MONDAY, lists, on_leave={"cvp", "vp2"})
    assert closed_gaps([vp_gap], two, ORG, still_away, "vp2", uuid.UUID(int=2)) == []
    assert closed_gaps([vp_gap], two, ORG, still_away.without_leave("cvp"), "vp2", uuid.UUID(int=2))
