"""The client's messages of several commands, with the broker replaced by a recorder: a command
sent alone goes at once; commands sent while `window` messages are under way wait for one to
be answered and go together; a timed-out sender frees its place, and so does a message under
way for longer than the hold; a failed publish tells every sender of the message."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import pytest

from shared.client import CommandClient
from shared.commands import COMMANDS_HEADER, MAX_BATCH, Reply


@dataclass
class Published:
    body: bytes
    headers: dict
    correlation_id: str


@dataclass
class Incoming:
    body: bytes
    correlation_id: str


class Recorder:
    def __init__(self, client: CommandClient, fail: Exception | None = None) -> None:
        self.published: list[Published] = []
        self.fail = fail
        client._publish = self.publish

    async def publish(self, queue: str, body: bytes, headers: dict, correlation_id: str, timeout: float) -> None:
        if self.fail is not None:
            raise self.fail
        self.published.append(Published(body, headers, correlation_id))


def client_with(window: int, hold_seconds: float = 60.0) -> CommandClient:
    return CommandClient("amqp://unused", "ns", window=window, hold_seconds=hold_seconds)


def commands_of(message: Published) -> list[dict]:
    if COMMANDS_HEADER not in message.headers:
        return [json.loads(message.body)]
    return [item["command"] for item in json.loads(message.body)]


async def answer(client: CommandClient, message: Published) -> None:
    """Reply to a message as the service does: one reply, or their replies in order."""
    replies = [Reply(ok=True, command_id=c["command_id"], result=c["payload"]["n"]) for c in commands_of(message)]
    body = (replies[0].model_dump_json() if COMMANDS_HEADER not in message.headers
            else "[" + ",".join(r.model_dump_json() for r in replies) + "]")
    await client._on_reply(Incoming(body.encode(), message.correlation_id))


async def until(condition, steps: int = 100) -> None:
    for _ in range(steps):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("never came true")


def send(client: CommandClient, n: int, timeout: float = 5.0):
    return asyncio.ensure_future(client.send("roster", "DeclareHealth", {"n": n}, tenant="t", token="x",
                                             timeout=timeout))


async def test_commands_sent_while_the_window_is_full_wait_and_go_together():
    client = client_with(window=1)
    broker = Recorder(client)
    first = send(client, 0)
    await until(lambda: len(broker.published) == 1)
    later = [send(client, n) for n in range(1, 5)]
    await asyncio.sleep(0.01)
    assert len(broker.published) == 1  # the window is full: they wait
    assert COMMANDS_HEADER not in broker.published[0].headers  # alone, as a command of its own
    await answer(client, broker.published[0])
    assert (await first).result == 0
    await until(lambda: len(broker.published) == 2)
    together = broker.published[1]
    assert together.headers[COMMANDS_HEADER] == 4
    assert [c["payload"]["n"] for c in commands_of(together)] == [1, 2, 3, 4]
    # Each command carries its own trace context beside it.
    assert all(set(item) == {"headers", "command"} for item in json.loads(together.body))
    await answer(client, together)
    assert [(await r).result for r in later] == [1, 2, 3, 4]
    assert client._waiting == {} and client._under_way["roster"] == 0


async def test_commands_sent_in_one_step_of_the_event_loop_go_together_at_once():
    client = client_with(window=2)
    broker = Recorder(client)
    sent = [send(client, n) for n in range(3)]
    await until(lambda: len(broker.published) == 1)
    assert broker.published[0].headers[COMMANDS_HEADER] == 3
    await answer(client, broker.published[0])
    assert [(await r).result for r in sent] == [0, 1, 2]


async def test_a_full_message_goes_at_once_whatever_the_window():
    client = client_with(window=1)
    broker = Recorder(client)
    blocking = send(client, -1)
    await until(lambda: len(broker.published) == 1)
    sent = [send(client, n) for n in range(MAX_BATCH + 3)]
    await until(lambda: len(broker.published) == 2)  # the window is full, but so is the message
    assert len(commands_of(broker.published[1])) == MAX_BATCH
    await answer(client, broker.published[0])
    await answer(client, broker.published[1])
    assert (await blocking).result == -1
    await until(lambda: len(broker.published) == 3)  # the rest, once there is room again
    assert len(commands_of(broker.published[2])) == 3
    await answer(client, broker.published[2])
    assert [(await r).result for r in sent] == list(range(MAX_BATCH + 3))


async def test_a_sender_that_gave_up_frees_its_place_in_the_window():
    client = client_with(window=1)
    broker = Recorder(client)
    lost = send(client, 0, timeout=0.05)  # its reply never comes
    await until(lambda: len(broker.published) == 1)
    waiting = send(client, 1)
    with pytest.raises(TimeoutError):
        await lost
    await until(lambda: len(broker.published) == 2)
    await answer(client, broker.published[1])
    assert (await waiting).result == 1
    assert client._waiting == {}


async def test_a_message_under_way_too_long_no_longer_holds_the_others_back():
    """A slow query holds its service's window only for the hold: the commands behind it go
    then, and its answer, coming later, does not free the window a second time."""
    client = client_with(window=1, hold_seconds=0.05)
    broker = Recorder(client)
    slow = send(client, 0)
    await until(lambda: len(broker.published) == 1)
    behind = [send(client, n) for n in (1, 2)]
    await asyncio.sleep(0.01)
    assert len(broker.published) == 1
    await asyncio.sleep(0.1)
    assert len(broker.published) == 2 and broker.published[1].headers[COMMANDS_HEADER] == 2
    await asyncio.sleep(0.1)  # both held past their hold
    await answer(client, broker.published[0])
    await answer(client, broker.published[1])
    assert (await slow).result == 0 and [(await r).result for r in behind] == [1, 2]
    assert client._under_way["roster"] == 0 and client._holding == {}  # each freed it once
    # And the window holds as before: the next command goes, the one after it waits.
    await one_goes_the_next_waits(client, broker, 3)


async def test_one_message_under_way_is_the_default_window():
    client = CommandClient("amqp://unused", "ns")
    await one_goes_the_next_waits(client, Recorder(client), 0)


async def one_goes_the_next_waits(client: CommandClient, broker: Recorder, n: int) -> None:
    """Command `n` goes at once; `n + 1`, sent while it is unanswered, waits for its answer."""
    already = len(broker.published)
    first = send(client, n)
    await until(lambda: len(broker.published) == already + 1)
    second = send(client, n + 1)
    await asyncio.sleep(0.01)
    assert len(broker.published) == already + 1
    await answer(client, broker.published[already])
    await until(lambda: len(broker.published) == already + 2)
    await answer(client, broker.published[already + 1])
    assert [(await first).result, (await second).result] == [n, n + 1]


async def test_a_publish_that_fails_tells_every_sender_of_the_message():
    client = client_with(window=1)
    Recorder(client, fail=ConnectionError("broker gone"))
    sent = [send(client, n) for n in range(3)]
    for reply in sent:
        with pytest.raises(ConnectionError):
            await reply


async def test_without_a_window_each_command_goes_alone():
    client = client_with(window=0)
    broker = Recorder(client)
    sent = [send(client, n) for n in range(3)]
    await until(lambda: len(broker.published) == 3)
    assert all(COMMANDS_HEADER not in m.headers for m in broker.published)
    for message in broker.published:
        await answer(client, message)
    assert [(await r).result for r in sent] == [0, 1, 2]
