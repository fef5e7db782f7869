"""Who is told about which event, as data: one `Rule` per (event, kind of notification).

Adding an event means one rule here and one template pair (title, body) in each locale's
file under `templates/`; the routing key goes into `shared.topology.NOTIFY_KEYS`.

Audiences are small strings, resolved against the directory when the rule fires:

| audience | who |
| --- | --- |
| `person:<field>` | the person named by a payload field (the applicant, the assignee, the one summoned) |
| `people:<field>` | the people listed in a payload field (`invitee_ids`, or `assignments.person_id`) |
| `superior:<field>` | who decides on that person's requests: their division head or acting head; a head's: the leaders; a Deputy Director's: the Director |
| `head:<field>` | the head (and acting head) of the division named by a payload field |
| `division:<field>` | everyone in the division named by a payload field |
| `role:<role>` | everyone holding a role (`director`, `chief_of_office`, ...) |
| `leaders` | the Director and the Deputy Directors |
| `everyone` | every active person of the department |

A field may also be read from an earlier event this one refers to: `@DraftSubmitted.author_id`
is the author of the draft whose `document_id` this event carries. Notify remembers the latest
event of each type in `REMEMBER`, keyed by the field named there.

Urgency: `normal` notifications wait for the next working session on the bot and email
channels (quiet hours); `urgent` ones (summons, coverage gaps) go out at once; `timed` ones
are reminders whose moment is their point. A `secret` rule's text is rendered from the
recipient's name alone: no payload field can reach it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from shared.contracts.notify import Category, Channel

Urgency = Literal["normal", "urgent", "timed"]


@dataclass(frozen=True)
class Unless:
    """Calls off a pending reminder when this event arrives with the same values in `match`."""

    event_type: str
    match: tuple[str, ...]


@dataclass(frozen=True)
class Rule:
    event_type: str
    category: Category
    to: tuple[str, ...]
    urgency: Urgency = "normal"
    secret: bool = False
    # The notification's kind (its templates' key); defaults to the event type.
    kind: str = ""
    # A reminder: fires at the moment in this payload field (a datetime, or a date meaning the
    # first working session of that day), less `before`; persisted, so it survives restarts.
    at: str | None = None
    before: timedelta = timedelta(0)
    unless: Unless | None = None
    # Per-recipient values for the template, computed by routing (see Notifier.personal).
    personal: str | None = None

    @property
    def name(self) -> str:
        return self.kind or self.event_type

    @property
    def is_reminder(self) -> bool:
        return self.at is not None


RULES: tuple[Rule, ...] = (
    # Leave (000 §II.1): the head confirms; the approval goes to the Director and the Office.
    Rule("LeaveRequested", "leave", ("superior:person_id",)),
    Rule("LeaveApproved", "leave", ("person:person_id", "role:director", "role:chief_of_office")),
    Rule("LeaveRejected", "leave", ("person:person_id",)),
    Rule("LeaveCancelled", "leave", ("superior:person_id",)),
    # Rosters (000 §II.1): divisions submit, the Office compiles, the Director approves or returns.
    Rule("RosterSubmitted", "roster", ("role:chief_of_office",)),
    Rule("RosterCompiled", "roster", ("role:director",)),
    # Everyone on the approved days, each told their own days.
    Rule("RosterApproved", "roster",
         ("people:@RosterCompiled.lists.on_site", "people:@RosterCompiled.lists.at_home"),
         personal="roster_assignment"),
    Rule("RosterReturned", "roster", ("role:chief_of_office",)),
    Rule("CoverageGapRecorded", "roster", ("head:division_id", "role:chief_of_office"), urgency="urgent"),
    Rule("CoverageGapClosed", "roster", ("head:division_id", "role:chief_of_office")),
    # Missing check-ins (001 §II.2.1): the person at once, the head 15 minutes after the
    # deadline unless the person has checked in by then.
    Rule("CheckInMissed", "presence", ("person:person_id",), urgency="timed"),
    Rule("CheckInMissed", "presence", ("head:division_id",), urgency="timed",
         kind="CheckInStillMissing", at="deadline", before=timedelta(minutes=-15),
         unless=Unless("CheckedIn", ("person_id", "day", "session"))),
    # Outgoing documents (000 §II.2.3, 001 §II.2.3): head, format checker, leaders, the Office.
    Rule("DraftSubmitted", "documents", ("superior:author_id",)),
    Rule("DraftApproved", "documents", ("person:@DraftSubmitted.author_id", "role:format_checker")),
    Rule("DraftReturned", "documents", ("person:@DraftSubmitted.author_id",)),
    Rule("DraftReadyForSigning", "documents", ("leaders",)),
    Rule("DocumentSigned", "documents", ("role:chief_of_office",)),
    Rule("DocumentIssued", "documents",
         ("person:@DraftSubmitted.author_id", "person:signer_id", "role:chief_of_office")),
    # Secret documents (000 §II.2.7): the head is informed, the person called in; no content.
    Rule("SecretDocumentSummons", "summons", ("person:division_head_id", "person:person_id"),
         urgency="urgent", secret=True),
    # Work tracking (000 §II.2.5).
    Rule("TaskAssigned", "tasks", ("person:assignee_id",)),
    Rule("TaskOverdue", "tasks", ("person:assignee_id", "head:division_id")),
    # Meetings (000 §II.2.4): the invitation, and the reminder at the join time (15 minutes
    # before the start), called off when the meeting is cancelled.
    Rule("MeetingScheduled", "meetings", ("person:chair_id", "people:invitees")),
    Rule("MeetingScheduled", "meetings", ("person:chair_id", "people:invitees"), urgency="timed",
         kind="MeetingJoinReminder", at="join_at",
         unless=Unless("MeetingCancelled", ("meeting_id",))),
    Rule("MeetingCancelled", "meetings",
         ("person:@MeetingScheduled.chair_id", "people:@MeetingScheduled.invitees")),
    # Reporting (000 §III.4, 001 §III.2): the Office's daily report goes to the Director.
    Rule("ReportPublished", "reports", ("role:director", "role:chief_of_office")),
)

# Earlier events that later ones refer to by id: event type -> the id field they share.
REMEMBER: dict[str, str] = {
    "RosterCompiled": "roster_id",
    "DraftSubmitted": "document_id",
    "MeetingScheduled": "meeting_id",
}

ALL_CHANNELS: tuple[Channel, ...] = ("web", "bot", "email")

# Channels per role and kind of notification, unless the person chose otherwise. "*" is any
# role or any kind; a person with several roles gets the union. Leaders are told by email
# and on the web rather than by chat pings; presence pings do not need an email.
ROLE_DEFAULTS: dict[str, dict[str, tuple[Channel, ...]]] = {
    "*": {"*": ALL_CHANNELS, "presence": ("web", "bot")},
    "director": {"*": ("web", "email"), "meetings": ALL_CHANNELS},
    "deputy_director": {"*": ("web", "email"), "meetings": ALL_CHANNELS},
}

# Kinds nobody can turn channels off for.
MANDATORY: dict[str, tuple[Channel, ...]] = {"summons": ALL_CHANNELS}


def rules_for(rules: tuple[Rule, ...], event_type: str) -> tuple[Rule, ...]:
    return tuple(r for r in rules if r.event_type == event_type)


def rule_named(rules: tuple[Rule, ...], name: str) -> Rule | None:
    return next((r for r in rules if r.name == name), None)


def routed_event_types(rules: tuple[Rule, ...]) -> tuple[str, ...]:
    """Every event type notify consumes: those rules fire on and those calling reminders off."""
    types = [r.event_type for r in rules] + [r.unless.event_type for r in rules if r.unless]
    return tuple(dict.fromkeys(types))
