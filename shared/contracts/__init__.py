"""The published language: typed, versioned events and the envelope that carries them.

Every event is a frozen pydantic model registered under a name and a schema version.
Reading an envelope of an older version runs the registered upcasters until it reaches
the current model; an unknown type or version is refused with `UnknownEventError`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

__all__ = [
    "Event",
    "Envelope",
    "UnknownEventError",
    "event",
    "upcaster",
    "decode",
    "event_class",
    "registered_events",
]


class Event(BaseModel):
    """Base of every domain event: immutable, strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_type: ClassVar[str]
    schema_version: ClassVar[int]
    owner: ClassVar[str]


class Envelope(BaseModel):
    """What travels and what is stored: the event's payload plus who, when, where and why."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: uuid.UUID
    event_type: str
    schema_version: int = Field(ge=1)
    source: str  # the owning service, first part of the routing key
    stream_id: str
    stream_version: int = Field(ge=1)
    tenant: str
    occurred_at: AwareDatetime
    actor: str
    correlation_id: uuid.UUID
    causation_id: uuid.UUID | None = None
    trace_context: dict[str, str] = Field(default_factory=dict)
    global_position: int | None = None
    payload: dict[str, Any]

    @property
    def routing_key(self) -> str:
        return f"{self.source}.{self.event_type}"

    @classmethod
    def from_store(cls, values: dict[str, Any]) -> Envelope:
        """The envelope of an event a service's own store holds (every field, as its columns
        give them back), not validated again: it was validated when it was appended, and the
        columns' types keep what the fields need. Not validating it again takes a rebuild's
        Python time from 36.5 to 31 µs an event (docs/benchmark.md, "What changed").
        pydantic's own `model_construct` sets the same attributes but, written in Python,
        costs more than validating; this sets them directly, as long as the result is the one
        it gives (`_FROM_STORE_AS_CONSTRUCTED`), and validates otherwise."""
        if not _FROM_STORE_AS_CONSTRUCTED:
            return cls(**values)
        envelope = _new(cls)
        _set(envelope, "__dict__", values)
        _set(envelope, "__pydantic_fields_set__", set(_ENVELOPE_FIELDS))
        _set(envelope, "__pydantic_extra__", None)
        _set(envelope, "__pydantic_private__", None)
        return envelope


_new, _set = object.__new__, object.__setattr__
_ENVELOPE_FIELDS = frozenset(Envelope.model_fields)


def _from_store_as_constructed() -> bool:
    """Whether `Envelope.from_store`'s instance is, attribute for attribute, the one
    `model_construct` makes of the same values (a later pydantic may keep more)."""
    values = {
        "event_id": uuid.uuid4(), "event_type": "Checked", "schema_version": 1, "source": "check",
        "stream_id": "check-1", "stream_version": 1, "tenant": "check", "occurred_at": datetime.now().astimezone(),
        "actor": "check", "correlation_id": uuid.uuid4(), "causation_id": None, "trace_context": {},
        "global_position": 1, "payload": {"a": 1},
    }
    ours, theirs = Envelope.from_store(dict(values)), Envelope.model_construct(**values)
    try:
        return set(values) == _ENVELOPE_FIELDS and type(ours) is type(theirs) and all(
            type(getattr(ours, slot)) is type(getattr(theirs, slot)) and getattr(ours, slot) == getattr(theirs, slot)
            for slot in BaseModel.__slots__)
    except AttributeError:
        return False


_FROM_STORE_AS_CONSTRUCTED = True  # for the check itself, which builds one that way
_FROM_STORE_AS_CONSTRUCTED = _from_store_as_constructed()


class UnknownEventError(ValueError):
    """An envelope names an event type or schema version this code does not know."""


E = TypeVar("E", bound=type[Event])

_current: dict[str, type[Event]] = {}
_upcasters: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {}


def event(owner: str, name: str, version: int = 1) -> Callable[[E], E]:
    """Register an event class as the current schema of `name`."""

    def register(cls: E) -> E:
        if name in _current and _current[name] is not cls:
            raise RuntimeError(f"event type {name!r} registered twice")
        cls.event_type = name
        cls.schema_version = version
        cls.owner = owner
        _current[name] = cls
        return cls

    return register


def upcaster(name: str, from_version: int) -> Callable[[Callable[[dict], dict]], Callable[[dict], dict]]:
    """Register a function turning the payload of `name` v`from_version` into v`from_version + 1`."""

    def register(fn: Callable[[dict], dict]) -> Callable[[dict], dict]:
        _upcasters[(name, from_version)] = fn
        return fn

    return register


def event_class(name: str) -> type[Event]:
    try:
        return _current[name]
    except KeyError:
        raise UnknownEventError(f"unknown event type {name!r}") from None


def registered_events() -> dict[str, type[Event]]:
    return dict(_current)


def decode(envelope: Envelope) -> Event:
    """The typed event in an envelope, upcast to the current schema version."""
    cls = event_class(envelope.event_type)
    version, payload = envelope.schema_version, dict(envelope.payload)
    if version > cls.schema_version:
        raise UnknownEventError(
            f"{envelope.event_type} v{version} is newer than the known v{cls.schema_version}"
        )
    while version < cls.schema_version:
        step = _upcasters.get((envelope.event_type, version))
        if step is None:
            raise UnknownEventError(f"no upcaster for {envelope.event_type} v{version}")
        payload = step(payload)
        version += 1
    return cls.model_validate(payload)


def now_utc() -> datetime:
    from datetime import UTC

    return datetime.now(UTC)


# Importing the contract modules registers every event type.
from shared.contracts import leave as leave  # noqa: E402
from shared.contracts import roster as roster  # noqa: E402
from shared.contracts import notify as notify  # noqa: E402
from shared.contracts import documents as documents  # noqa: E402
from shared.contracts import reporting as reporting  # noqa: E402
