"""The leave rules, without servers."""

import uuid
from datetime import date

import pytest

from services.leave.domain import (
    LeaveLedger, approval_content, check_may_decide, working_dates,
)
from shared import signatures
from shared.commands import DomainError, Forbidden
from shared.contracts import leave as ev
from shared.directory import Person, Plan

PLAN = Plan("p", "Kế hoạch", date(2036, 12, 1), date(2037, 1, 31), frozenset({date(2037, 1, 1)}))


def person(pid, division="cntt", *roles):
    return Person(pid, pid, f"{pid}@x", division, frozenset(roles or ("staff",)), "vi", True)


STAFF, OTHER = person("s1"), person("s2")
HEAD = person("h1", "cntt", "division_head")
DEPUTY = person("d1", "cntt", "deputy_division_head")
OTHER_HEAD = person("h2", "khtc", "division_head")
CHIEF = person("c1", "vp", "chief_of_office", "division_head")
DIRECTOR = person("gd", "bgd", "director")
DEPUTY_DIRECTOR = person("pgd", "bgd", "deputy_director")


def ask(ledger, start, end, half=None, who=STAFF, plans=(PLAN,)):
    return ledger.request(uuid.uuid4(), who, start, end, half, "Việc riêng", list(plans))


def test_working_dates_skip_weekends_and_holidays_and_report_uncovered_days():
    days, uncovered = working_dates(date(2036, 12, 31), date(2037, 1, 5), [PLAN])
    assert days == [date(2036, 12, 31), date(2037, 1, 2), date(2037, 1, 5)]
    assert uncovered == []
    _, uncovered = working_dates(date(2037, 1, 30), date(2037, 2, 2), [PLAN])
    assert uncovered == [date(2037, 2, 1), date(2037, 2, 2)]


def test_open_ended_plan_covers_every_later_day():
    open_plan = Plan("o", "", date(2037, 1, 1), None, frozenset())
    assert open_plan.covers(date(2099, 1, 1)) and not open_plan.covers(date(2036, 12, 31))


@pytest.mark.parametrize(
    "start,end,half,code",
    [
        (date(2037, 1, 6), date(2037, 1, 5), None, "invalid"),
        (date(2037, 1, 5), date(2037, 1, 6), "morning", "invalid"),
        (date(2037, 1, 3), date(2037, 1, 4), None, "no_working_days"),
        (date(2037, 1, 30), date(2037, 2, 3), None, "outside_plan"),
    ],
)
def test_invalid_requests_are_refused_with_a_code(start, end, half, code):
    with pytest.raises(DomainError) as err:
        ask(LeaveLedger("s1"), start, end, half)
    assert err.value.code == code and err.value.message


def test_overlap_with_own_active_leave_is_refused_but_not_with_cancelled_or_rejected():
    ledger = LeaveLedger("s1")
    first = ask(ledger, date(2037, 1, 5), date(2037, 1, 7))[0]
    ledger.apply(first)
    with pytest.raises(DomainError) as err:
        ask(ledger, date(2037, 1, 7), date(2037, 1, 8))
    assert err.value.code == "overlap" and "07/01/2037" in err.value.message
    ledger.apply(ledger.cancel(first.application_id, "s1", "", date(2037, 1, 1))[0])
    assert ask(ledger, date(2037, 1, 7), date(2037, 1, 8))


def test_half_day_counts_half_and_entitlement_is_checked_per_year_with_figures():
    ledger = LeaveLedger("s1")
    ledger.apply(ledger.set_entitlement(3)[0])
    half = ask(ledger, date(2037, 1, 5), date(2037, 1, 5), "morning")[0]
    assert half.days == 0.5
    ledger.apply(half)
    # 31/12/2036 counts against 2036, 02/01 and 05/01... against 2037.
    spanning = ask(ledger, date(2036, 12, 31), date(2037, 1, 2))[0]
    assert spanning.days == 2.0
    ledger.apply(spanning)
    assert ledger.balance(2036).pending == 1.0 and ledger.balance(2037).pending == 1.5
    with pytest.raises(DomainError) as err:
        ask(ledger, date(2037, 1, 6), date(2037, 1, 8))
    assert err.value.code == "entitlement_exceeded"
    assert err.value.details == {"year": 2037, "entitlement": 3.0, "used": 0.0, "pending": 1.5,
                                 "left": 1.5, "requested": 3.0}


def test_decisions_only_once_and_cancel_only_by_applicant():
    ledger = LeaveLedger("s1")
    requested = ask(ledger, date(2037, 1, 12), date(2037, 1, 12))[0]
    ledger.apply(requested)
    ledger.apply(ledger.reject(requested.application_id, "h1", "Thiếu người")[0])
    with pytest.raises(DomainError) as err:
        ledger.approve(requested.application_id, "h1", "x", "sig", "k")
    assert err.value.code == "invalid_state" and "bị từ chối" in err.value.message
    with pytest.raises(Forbidden):
        ledger.cancel(requested.application_id, "h1", "", date(2037, 1, 1))


def test_approved_leave_in_the_past_cannot_be_cancelled():
    ledger = LeaveLedger("s1")
    requested = ask(ledger, date(2037, 1, 12), date(2037, 1, 12))[0]
    ledger.apply(requested)
    ledger.apply(ledger.approve(requested.application_id, "h1", "x", "sig", "k")[0])
    with pytest.raises(DomainError):
        ledger.cancel(requested.application_id, "s1", "", date(2037, 1, 13))
    assert ledger.cancel(requested.application_id, "s1", "", date(2037, 1, 12))


@pytest.mark.parametrize(
    "approver,applicant,acting,allowed",
    [
        (HEAD, STAFF, False, True),
        (DEPUTY, STAFF, False, False),
        (DEPUTY, STAFF, True, True),
        (OTHER_HEAD, STAFF, False, False),
        (OTHER, STAFF, False, False),
        (HEAD, HEAD, False, False),
        (DEPUTY, HEAD, True, False),
        (DEPUTY_DIRECTOR, HEAD, False, True),
        (DIRECTOR, CHIEF, False, True),
        (HEAD, CHIEF, False, False),
        (DIRECTOR, DEPUTY_DIRECTOR, False, True),
        (DEPUTY_DIRECTOR, DEPUTY_DIRECTOR, False, False),
        (DEPUTY_DIRECTOR, DIRECTOR, False, False),
    ],
)
def test_who_may_decide(approver, applicant, acting, allowed):
    if allowed:
        check_may_decide(approver, applicant, acting)
    else:
        with pytest.raises(Forbidden):
            check_may_decide(approver, applicant, acting)


def test_signature_covers_the_application_as_filed():
    requested = ask(LeaveLedger("s1"), date(2037, 1, 5), date(2037, 1, 6))[0]
    key = signatures.development_signing_key("t", "h1")
    content = approval_content("t", requested)
    sig = signatures.sign(key, content)
    assert signatures.verify(signatures.public_key_b64(key), content, sig)
    altered = approval_content("t", requested.model_copy(update={"reason": "Khác"}))
    assert not signatures.verify(signatures.public_key_b64(key), altered, sig)
    other_key = signatures.development_signing_key("t", "h2")
    assert not signatures.verify(signatures.public_key_b64(other_key), content, sig)


def test_ledger_is_rebuilt_from_upcast_v1_events():
    from datetime import UTC, datetime

    from shared.contracts import Envelope, decode

    app_id = uuid.uuid4()
    v1 = Envelope(
        event_id=uuid.uuid4(), event_type="LeaveRequested", schema_version=1, source="leave",
        stream_id="leave-t-s1", stream_version=1, tenant="t", occurred_at=datetime.now(UTC),
        actor="s1", correlation_id=uuid.uuid4(),
        payload={"application_id": str(app_id), "person_id": "s1", "division_id": "cntt",
                 "start_date": "2037-01-05", "end_date": "2037-01-06",
                 "working_dates": ["2037-01-05", "2037-01-06"], "reason": "Nghỉ"},
    )
    ledger = LeaveLedger.from_events("s1", [decode(v1)])
    assert isinstance(decode(v1), ev.LeaveRequested)
    assert ledger.balance(2037).pending == 2.0
