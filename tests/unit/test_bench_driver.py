"""The benchmark's driver bounds the commands in flight in a closed loop only: an open loop
(the paced rounds) sends each command at its time, however many are still unanswered, so a
backlog after a hiccup reaches the services at once instead of a few at a time."""

import asyncio

from bench.driver import Driver
from shared.auth import DevIdentityProvider
from shared.commands import Reply


class HeldReplies:
    """A client whose replies wait until the test lets them go."""

    def __init__(self) -> None:
        self.sent = 0
        self.answer = asyncio.Event()

    async def send(self, service, command_type, payload, *, tenant, token, command_id, timeout):
        self.sent += 1
        await self.answer.wait()
        return Reply(ok=True, command_id=command_id, result={})


async def _sent_while_unanswered(bounded: bool) -> int:
    driver = Driver("test", DevIdentityProvider.generate(), clients=2)
    driver.client = HeldReplies()
    sends = [asyncio.create_task(driver.send("roster", "DeclareHealth", {}, tenant="t", person="p",
                                             bounded=bounded)) for _ in range(5)]
    for _ in range(10):
        await asyncio.sleep(0)
    sent = driver.client.sent
    driver.client.answer.set()
    replies = await asyncio.gather(*sends)
    assert all(reply.ok for reply, _ in replies)
    assert len(driver.sent) == 5
    return sent


async def test_a_closed_loop_keeps_at_most_its_clients_in_flight():
    assert await _sent_while_unanswered(bounded=True) == 2


async def test_an_open_loop_sends_every_command_at_its_time_however_many_are_unanswered():
    assert await _sent_while_unanswered(bounded=False) == 5
