"""Acknowledgements sent together (`shared.acks.AckCoalescer`), with deliveries of a fake
channel: which acks go out, covering which deliveries, and when."""

from __future__ import annotations

import asyncio

from aiormq.exceptions import ChannelInvalidStateError

from shared.acks import AckCoalescer


class FakeChannel:
    def __init__(self) -> None:
        self.is_closed = False
        self.sent: list[tuple[int, bool]] = []  # (tag, multiple)

    def acknowledged(self) -> set[int]:
        done: set[int] = set()
        for tag, multiple in self.sent:
            done |= set(range(1, tag + 1)) if multiple else {tag}
        return done


class FakeMessage:
    def __init__(self, channel: FakeChannel, tag: int) -> None:
        self.channel = channel
        self.delivery_tag = tag

    async def ack(self, multiple: bool = False) -> None:
        if self.channel.is_closed:
            raise ConnectionError("channel closed")
        self.channel.sent.append((self.delivery_tag, multiple))


DELAY = 0.01


async def settle() -> None:
    await asyncio.sleep(DELAY * 3)


async def test_deliveries_handled_together_are_acknowledged_with_one_frame():
    acks, channel = AckCoalescer(DELAY), FakeChannel()
    for tag in (1, 2, 3):
        await acks.ack(FakeMessage(channel, tag))
    assert channel.sent == []  # nothing yet: they wait for the others
    await settle()
    assert channel.sent == [(3, True)]
    assert acks.frames == 1


async def test_a_channel_with_many_waiting_is_acknowledged_without_waiting_the_delay():
    """A busy channel would otherwise sit with its prefetch full until the delay is up."""
    acks, channel = AckCoalescer(10.0, most=3), FakeChannel()
    for tag in (1, 2):
        await acks.ack(FakeMessage(channel, tag))
    assert channel.sent == []
    await acks.ack(FakeMessage(channel, 3))
    await asyncio.sleep(0)  # the frame goes from a task of its own
    assert channel.sent == [(3, True)]
    # Held back behind one still being handled, the many waiting send nothing early.
    for tag in (5, 6, 7):
        await acks.ack(FakeMessage(channel, tag))
    await asyncio.sleep(0)
    assert channel.acknowledged() == {1, 2, 3}
    await acks.ack(FakeMessage(channel, 4))
    await asyncio.sleep(0)
    assert channel.acknowledged() == {1, 2, 3, 4, 5, 6, 7}
    assert channel.sent[-1] == (7, True)


async def test_a_delivery_still_being_handled_holds_back_those_after_it():
    acks, channel = AckCoalescer(DELAY, longest=10.0), FakeChannel()
    await acks.ack(FakeMessage(channel, 1))
    await acks.ack(FakeMessage(channel, 3))  # 2 is still being handled
    await settle()
    assert channel.acknowledged() == {1}  # a multiple ack of 3 would have taken 2 with it
    await acks.ack(FakeMessage(channel, 2))
    await settle()
    assert channel.acknowledged() == {1, 2, 3}
    assert channel.sent[-1] == (3, True)


async def test_a_gap_that_lasts_has_the_deliveries_after_it_acknowledged_one_by_one():
    acks, channel = AckCoalescer(DELAY, longest=DELAY * 2), FakeChannel()
    await acks.ack(FakeMessage(channel, 2))  # 1 never settles here (its handler was cancelled)
    await acks.ack(FakeMessage(channel, 3))
    await asyncio.sleep(DELAY * 6)
    assert sorted(channel.sent) == [(2, False), (3, False)]
    await acks.ack(FakeMessage(channel, 4))
    await asyncio.sleep(DELAY * 6)
    assert channel.acknowledged() == {2, 3, 4}
    assert 1 not in channel.acknowledged()


async def test_a_delivery_settled_another_way_holds_nothing_back():
    acks, channel = AckCoalescer(DELAY, longest=10.0), FakeChannel()
    acks.settled(FakeMessage(channel, 1))  # requeued, say
    await acks.ack(FakeMessage(channel, 2))
    await settle()
    assert channel.sent == [(2, True)]


async def test_each_channel_has_its_own_tags_and_a_restored_one_starts_afresh():
    acks = AckCoalescer(DELAY)
    first, second = FakeChannel(), FakeChannel()
    await acks.ack(FakeMessage(first, 1))
    await acks.ack(FakeMessage(second, 1))
    await acks.ack(FakeMessage(second, 2))
    await settle()
    assert first.sent == [(1, True)] and second.sent == [(2, True)]
    first.is_closed = True
    await acks.ack(FakeMessage(first, 2))  # its deliveries come back on the restored channel
    restored = FakeChannel()
    await acks.ack(FakeMessage(restored, 1))
    await settle()
    assert first.sent == [(1, True)] and restored.sent == [(1, True)]


async def test_flush_sends_what_waits_and_acknowledges_at_once_afterwards():
    acks, channel = AckCoalescer(10.0), FakeChannel()
    await acks.ack(FakeMessage(channel, 1))
    await acks.ack(FakeMessage(channel, 2))
    await acks.ack(FakeMessage(channel, 4))  # 3 still being handled: 4 goes alone
    await acks.flush()
    assert channel.acknowledged() == {1, 2, 4}
    assert (2, True) in channel.sent and (4, False) in channel.sent
    await acks.ack(FakeMessage(channel, 3))
    assert channel.sent[-1] == (3, False)


async def test_no_delay_acknowledges_each_at_once():
    acks, channel = AckCoalescer(0), FakeChannel()
    await acks.ack(FakeMessage(channel, 1))
    assert channel.sent == [(1, False)]


async def test_an_ack_whose_channel_closed_is_let_go():
    acks, channel = AckCoalescer(DELAY), FakeChannel()
    await acks.ack(FakeMessage(channel, 1))
    channel.is_closed = True
    await settle()  # the closed channel is forgotten; its delivery comes back anyway
    assert channel.sent == []
    await acks.flush()


class BrokerChannel(FakeChannel):
    """A channel as RabbitMQ keeps it: an acknowledgement whose tag is not outstanding (acked
    already, by a `multiple` too, or rejected) is a channel error that closes it; the write of
    each frame lets other tasks run, as aiormq's does."""

    def __init__(self, delivered: int) -> None:
        super().__init__()
        self.outstanding = set(range(1, delivered + 1))
        self.errors: list[str] = []

    def settle(self, tag: int, multiple: bool) -> None:
        if tag not in self.outstanding:
            self.errors.append(f"unknown delivery tag {tag}")
            self.is_closed = True
            return
        self.outstanding -= {t for t in self.outstanding if t <= tag} if multiple else {tag}
        self.sent.append((tag, multiple))


class BrokerMessage(FakeMessage):
    """`channel` raises once the channel is closed, as aio-pika's incoming message does."""

    def __init__(self, channel: BrokerChannel, tag: int) -> None:
        self._channel, self.delivery_tag = channel, tag

    @property
    def channel(self) -> BrokerChannel:
        if self._channel.is_closed:
            raise ChannelInvalidStateError
        return self._channel

    async def ack(self, multiple: bool = False) -> None:
        channel = self.channel
        await asyncio.sleep(0)
        channel.settle(self.delivery_tag, multiple)

    async def nack(self, requeue: bool = True) -> None:
        channel = self.channel
        await asyncio.sleep(0)
        channel.settle(self.delivery_tag, False)


async def test_acknowledgements_leave_in_the_order_they_were_decided():
    """A burst acknowledged 32 at a time decides several sends at once; one of them acking a
    second channel first must not let a later `multiple` overtake an earlier one (the earlier
    one's tag is then no longer outstanding: RabbitMQ closes the channel)."""
    acks = AckCoalescer(10.0, most=32)
    commands, events = BrokerChannel(1), BrokerChannel(96)
    await acks.ack(BrokerMessage(commands, 1))
    for tag in range(1, 97):
        await acks.ack(BrokerMessage(events, tag))
    await asyncio.sleep(DELAY)
    assert events.errors == [] and commands.errors == []
    assert events.sent == [(32, True), (64, True), (96, True)]
    await acks.flush()
    assert commands.sent == [(1, True)]


async def test_a_delivery_settled_another_way_while_waiting_is_never_acknowledged():
    """Handed over, then rejected (its batch failed after all): acknowledging it afterwards
    would be an unknown delivery tag."""
    acks = AckCoalescer(DELAY, longest=DELAY * 2)
    channel = BrokerChannel(3)
    second = BrokerMessage(channel, 2)
    await acks.ack(second)
    await acks.ack(BrokerMessage(channel, 3))
    acks.settled(second)
    await second.nack()
    await asyncio.sleep(DELAY * 6)  # 1 never settles here: 3 goes alone after `longest`
    assert channel.errors == []
    assert channel.sent == [(2, False), (3, False)]  # the nack, then 3 alone


async def test_acknowledging_on_a_closed_channel_is_let_go():
    """aio-pika's message raises on its `channel` once it is closed: nothing to send then (the
    deliveries come back on the restored channel), and nothing raised to the handler."""
    acks = AckCoalescer(DELAY)
    channel = BrokerChannel(2)
    first, second = BrokerMessage(channel, 1), BrokerMessage(channel, 2)
    await acks.ack(first)
    channel.is_closed = True
    await acks.ack(second)
    acks.settled(second)
    assert acks.owns(second) is False
    await settle()
    await acks.flush()
    assert channel.sent == []
