"""The published language: envelopes round-trip, unknown or too-new events are refused,
old schema versions are upcast, events are immutable and strict."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

import pytest
from pydantic import ValidationError

from shared.contracts import (
    Envelope,
    Event,
    UnknownEventError,
    decode,
    event,
    event_class,
    registered_events,
)
import shared.contracts as shared_contracts
from shared.contracts import leave as lv
from shared.contracts import roster as ro


def envelope_of(e: Event | None = None, **overrides) -> Envelope:
    """An envelope as the event store writes it (values chosen to be distinguishable)."""
    e = e or ro.PersonAdded(
        person_id="nv-an", full_name="Nguyễn Văn An", email="an@example.vn",
        division_id="vp", roles=("staff",),
    )
    fields = dict(
        event_id=uuid.uuid4(),
        event_type=e.event_type,
        schema_version=e.schema_version,
        source=e.owner,
        stream_id="directory-so-tttt-thanhhoa",
        stream_version=7,
        tenant="so-tttt-thanhhoa",
        occurred_at=datetime(2025, 3, 4, 5, 6, 7, 123456, tzinfo=UTC),
        actor="it-admin",
        correlation_id=uuid.uuid4(),
        causation_id=uuid.uuid4(),
        trace_context={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
        global_position=42,
        payload=e.model_dump(mode="json"),
    )
    fields.update(overrides)
    return Envelope(**fields)


def leave_requested_v1_payload() -> dict:
    """LeaveRequested as schema v1 wrote it: whole days only, no `half_day`, no `days`."""
    return {
        "application_id": str(uuid.uuid4()),
        "person_id": "nv-an",
        "division_id": "vp",
        "start_date": "2025-03-03",
        "end_date": "2025-03-05",
        "working_dates": ["2025-03-03", "2025-03-04", "2025-03-05"],
        "reason": "Việc gia đình",
    }


# --- envelope round trip ----------------------------------------------------------------


def test_envelope_round_trips_through_json_unchanged():
    original = envelope_of()
    wire = original.model_dump_json()
    back = Envelope.model_validate_json(wire)
    assert back == original
    assert back.model_dump() == original.model_dump()
    # The Vietnamese text survives byte-for-byte and the typed event comes back equal.
    assert decode(back) == decode(original)
    assert decode(back).full_name == "Nguyễn Văn An"
    assert back.routing_key == "roster.PersonAdded"


def test_envelope_without_position_round_trips_as_the_relay_sends_it():
    original = envelope_of()
    wire = original.model_dump_json(exclude={"global_position"})
    back = Envelope.model_validate_json(wire)
    assert back.global_position is None
    assert back == original.model_copy(update={"global_position": None})


def test_an_envelope_from_the_store_is_the_one_validation_gives():
    validated = envelope_of()
    assert shared_contracts._FROM_STORE_AS_CONSTRUCTED  # this pydantic: not validated again
    stored = Envelope.from_store(validated.model_dump())
    assert type(stored) is Envelope
    assert stored == validated
    assert stored.model_dump_json() == validated.model_dump_json()
    assert stored.model_fields_set == validated.model_fields_set
    assert decode(stored) == decode(validated)
    with pytest.raises(ValidationError):  # as frozen as any envelope
        stored.tenant = "other"
    # copied as the relay and the replays copy envelopes, the original unchanged
    assert stored.model_copy(update={"global_position": None}) == validated.model_copy(update={"global_position": None})
    assert stored == validated and stored.global_position == 42


def test_an_envelope_from_the_store_is_validated_when_pydantic_builds_it_otherwise(monkeypatch):
    monkeypatch.setattr(shared_contracts, "_FROM_STORE_AS_CONSTRUCTED", False)
    validated = envelope_of()
    assert Envelope.from_store(validated.model_dump()) == validated
    with pytest.raises(ValidationError):
        Envelope.from_store({**validated.model_dump(), "stream_version": 0})


def test_decode_gives_the_typed_event_of_the_envelope():
    e = ro.DivisionCreated(division_id="khtc", name="Phòng Kế hoạch - Tài chính", kind="division")
    decoded = decode(envelope_of(e))
    assert type(decoded) is ro.DivisionCreated
    assert decoded == e


@pytest.mark.parametrize(
    "bad",
    [
        {"occurred_at": datetime(2025, 3, 4, 5, 6, 7)},  # naive time: ambiguous
        {"stream_version": 0},
        {"schema_version": 0},
        {"event_id": "not-a-uuid"},
    ],
)
def test_envelope_refuses_invalid_fields(bad):
    with pytest.raises(ValidationError):
        envelope_of(**bad)


def test_envelope_refuses_unknown_fields_on_the_wire():
    wire = envelope_of().model_dump(mode="json")
    wire["surprise"] = 1
    with pytest.raises(ValidationError):
        Envelope.model_validate(wire)


# --- unknown types and versions ---------------------------------------------------------


def test_unknown_event_type_is_refused():
    env = envelope_of(event_type="PersonTeleported", payload={"person_id": "nv-an"})
    with pytest.raises(UnknownEventError, match="PersonTeleported"):
        decode(env)
    with pytest.raises(UnknownEventError):
        event_class("PersonTeleported")


def test_a_newer_schema_version_than_known_is_refused():
    e = ro.PersonRemoved(person_id="nv-an")
    env = envelope_of(e, schema_version=e.schema_version + 1)
    with pytest.raises(UnknownEventError, match="newer"):
        decode(env)


def test_an_old_version_without_upcaster_is_refused(monkeypatch):
    # A type whose current schema is v3 but that has no v1 -> v2 step: registered only for
    # this test (monkeypatch restores the registry), so no other test sees it.
    import shared.contracts as contracts

    class Probe(Event):
        value: int

    Probe.event_type, Probe.schema_version, Probe.owner = "ContractsProbe", 3, "test"
    monkeypatch.setitem(contracts._current, "ContractsProbe", Probe)
    monkeypatch.setitem(contracts._upcasters, ("ContractsProbe", 2), lambda p: p)
    env = envelope_of(event_type="ContractsProbe", schema_version=1, payload={"value": 1})
    with pytest.raises(UnknownEventError, match="no upcaster"):
        decode(env)
    # With the missing step present, the same envelope reads fine.
    monkeypatch.setitem(contracts._upcasters, ("ContractsProbe", 1), lambda p: {**p, "value": 2})
    assert decode(env) == Probe(value=2)


def test_an_unknown_event_is_an_error_a_caller_can_catch_as_value_error():
    # The consumer sorts "bad message" failures by catching ValueError among others.
    assert issubclass(UnknownEventError, ValueError)


def test_registering_a_second_class_under_a_known_name_is_refused():
    with pytest.raises(RuntimeError, match="registered twice"):

        @event("roster", "PersonAdded")
        class Impostor(Event):
            person_id: str


def test_every_contract_event_is_registered_with_its_owner():
    events = registered_events()
    assert events["PersonAdded"] is ro.PersonAdded
    assert events["LeaveRequested"] is lv.LeaveRequested
    assert ro.PersonAdded.owner == "roster" and lv.LeaveRequested.owner == "leave"
    assert lv.LeaveRequested.schema_version == 2


# --- upcasting --------------------------------------------------------------------------


def test_leave_requested_v1_is_upcast_to_v2():
    payload = leave_requested_v1_payload()
    env = envelope_of(
        lv.LeaveRequested(
            application_id=uuid.uuid4(), person_id="x", division_id="y",
            start_date=date(2025, 1, 1), end_date=date(2025, 1, 1),
            working_dates=(date(2025, 1, 1),), days=1, reason="r",
        ),
        schema_version=1,
        payload=payload,
        source="leave",
        stream_id=lv.ledger_stream("so-tttt-thanhhoa", "nv-an"),
    )
    decoded = decode(env)
    assert isinstance(decoded, lv.LeaveRequested)
    assert decoded.days == 3.0  # v1 meant whole days: one per working date
    assert decoded.half_day is None
    assert decoded.working_dates == (date(2025, 3, 3), date(2025, 3, 4), date(2025, 3, 5))
    assert str(decoded.application_id) == payload["application_id"]
    assert decoded.reason == "Việc gia đình"
    # The stored envelope is untouched: upcasting happens on read only.
    assert env.schema_version == 1 and "days" not in env.payload


def test_leave_requested_v2_is_read_as_is():
    e = lv.LeaveRequested(
        application_id=uuid.uuid4(), person_id="nv-an", division_id="vp",
        start_date=date(2025, 3, 3), end_date=date(2025, 3, 3), half_day="morning",
        working_dates=(date(2025, 3, 3),), days=0.5, reason="Khám bệnh",
    )
    decoded = decode(envelope_of(e, source="leave"))
    assert decoded == e and decoded.days == 0.5 and decoded.half_day == "morning"


def test_an_upcast_payload_is_still_validated():
    payload = leave_requested_v1_payload()
    payload["working_dates"] = []  # v2 requires at least one working date (and days > 0)
    env = envelope_of(
        lv.LeaveEntitlementSet(person_id="nv-an", days_per_year=12),
        event_type="LeaveRequested", schema_version=1, payload=payload, source="leave",
    )
    with pytest.raises(ValidationError):
        decode(env)


# --- immutability and strictness ---------------------------------------------------------


def test_events_are_frozen():
    e = ro.PersonMoved(person_id="nv-an", division_id="vp")
    with pytest.raises(ValidationError):
        e.division_id = "khtc"  # type: ignore[misc]
    assert e.division_id == "vp"


def test_envelopes_are_frozen():
    env = envelope_of()
    with pytest.raises(ValidationError):
        env.stream_version = 8  # type: ignore[misc]
    assert env.stream_version == 7


def test_events_forbid_extra_fields():
    with pytest.raises(ValidationError, match="extra"):
        ro.PersonMoved(person_id="nv-an", division_id="vp", salary=1)


def test_decoding_a_payload_with_an_extra_field_is_refused():
    e = ro.PersonRemoved(person_id="nv-an")
    env = envelope_of(e, payload={**e.model_dump(mode="json"), "note": "không rõ"})
    with pytest.raises(ValidationError):
        decode(env)


def test_events_validate_their_fields():
    with pytest.raises(ValidationError):
        ro.PersonAdded(
            person_id="nv-an", full_name="An", email="a@x", division_id="vp",
            roles=("emperor",),
        )
    with pytest.raises(ValidationError):
        lv.LeaveEntitlementSet(person_id="nv-an", days_per_year=61)
