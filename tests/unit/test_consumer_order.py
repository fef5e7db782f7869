"""The event consumer's reorder buffer: FastStream hands deliveries over in no guaranteed
order, and the consumer must apply them in delivery-tag order all the same."""

from __future__ import annotations

import asyncio
import random

from shared import consumer as consumer_module
from shared.acks import AckCoalescer
from shared.consumer import EventConsumer
from shared.projection import Projection
from shared.topology import Subscription


class FakeChannel:
    pass


class FakeMessage:
    def __init__(self, channel: FakeChannel, tag: int) -> None:
        self.channel, self.delivery_tag = channel, tag
        self.redelivered = False
        self.processed = False


def recording_consumer() -> tuple[EventConsumer, list[list[tuple[int, int]]]]:
    consumer = EventConsumer(
        "unit", Subscription("probe", "feed", ("roster.*",)), Projection("p", ("p",), source="feed"),
        pool_provider=None, dead_letters=None, prefetch=50,
    )
    batches: list[list[tuple[int, int]]] = []

    async def record(arrivals) -> None:
        batches.append([(id(a.message.channel), a.message.delivery_tag) for a in arrivals])

    consumer._handle_batch = record
    return consumer, batches


async def hand_over(consumer: EventConsumer, messages: list[FakeMessage]) -> None:
    """Each message's handler as its own task, started in the given order."""
    await asyncio.gather(*(consumer._arrive(m) for m in messages))


async def test_deliveries_handed_over_out_of_order_are_applied_in_tag_order():
    consumer, batches = recording_consumer()
    channel = FakeChannel()
    messages = [FakeMessage(channel, tag) for tag in range(1, 201)]
    shuffled = messages[:]
    random.Random(7).shuffle(shuffled)
    await hand_over(consumer, shuffled)
    await consumer.stop()
    applied = [tag for batch in batches for _, tag in batch]
    assert applied == list(range(1, 201))
    assert max(len(b) for b in batches) <= 50


async def test_a_restored_channel_starts_its_tags_again():
    consumer, batches = recording_consumer()
    first, second = FakeChannel(), FakeChannel()
    await hand_over(consumer, [FakeMessage(first, t) for t in (2, 1, 3)])
    await hand_over(consumer, [FakeMessage(second, t) for t in (1, 3, 2)])
    await consumer.stop()
    applied = [(ch, tag) for batch in batches for ch, tag in batch]
    assert applied == [(id(first), 1), (id(first), 2), (id(first), 3),
                       (id(second), 1), (id(second), 2), (id(second), 3)]


async def test_a_delivery_that_never_comes_holds_the_others_only_briefly(monkeypatch):
    monkeypatch.setattr(consumer_module, "GAP_SECONDS", 0.2)
    consumer, batches = recording_consumer()
    channel = FakeChannel()
    handlers = asyncio.gather(*(consumer._arrive(FakeMessage(channel, t)) for t in (1, 3, 4)))
    await asyncio.wait_for(handlers, 5)  # tag 2 never arrives: 3 and 4 go on after the gap
    await consumer.stop()
    assert [tag for batch in batches for _, tag in batch] == [1, 3, 4]


async def test_deliveries_after_a_gap_flow_without_waiting_for_another(monkeypatch):
    monkeypatch.setattr(consumer_module, "GAP_SECONDS", 0.5)
    consumer, batches = recording_consumer()
    channel = FakeChannel()
    await asyncio.wait_for(hand_over(consumer, [FakeMessage(channel, t) for t in (1, 3, 4)]), 5)
    # Tag 2 was given up for lost: the channel goes on at 5, which waits for nothing.
    await asyncio.wait_for(hand_over(consumer, [FakeMessage(channel, t) for t in (6, 5)]), 0.3)
    # Tag 2 turning up after all is applied at once (after its successors, as it came).
    await asyncio.wait_for(hand_over(consumer, [FakeMessage(channel, 2)]), 0.3)
    await consumer.stop()
    assert [tag for batch in batches for _, tag in batch] == [1, 3, 4, 5, 6, 2]



class SettlingMessage(FakeMessage):
    def __init__(self, channel: FakeChannel, tag: int) -> None:
        super().__init__(channel, tag)
        self.rejected = False

    async def ack(self, multiple: bool = False) -> None:
        self.processed = True

    async def nack(self, requeue: bool = True) -> None:
        self.rejected = True


async def test_a_failed_batch_gives_back_only_what_was_not_handed_to_the_acknowledgements():
    """Its first message applied and handed over (a `multiple` ack may cover it any moment),
    the batch fails: the second goes back to the queue, the first is not rejected."""
    consumer = EventConsumer(
        "unit", Subscription("probe", "feed", ("roster.*",)), Projection("p", ("p",), source="feed"),
        pool_provider=None, dead_letters=None, prefetch=50, acks=AckCoalescer(10.0),
    )
    channel = FakeChannel()
    applied, failing = SettlingMessage(channel, 1), SettlingMessage(channel, 2)

    async def apply_the_first_then_fail(arrivals) -> None:
        await consumer._acks.ack(arrivals[0].message)
        raise RuntimeError("the dead-letter exchange is gone")

    consumer._handle_batch = apply_the_first_then_fail
    await asyncio.wait_for(hand_over(consumer, [applied, failing]), 5)
    assert (applied.rejected, failing.rejected) == (False, True)
    await consumer._acks.flush()
    await consumer.stop()
    assert applied.processed and not failing.processed
