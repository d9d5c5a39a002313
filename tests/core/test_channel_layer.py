"""group_send_many on the real Redis channel layer gives receivers what group_send gives them."""

from __future__ import annotations

import asyncio
import time

import pytest
from django.conf import settings

from apps.core import channel_layer
from apps.core.channel_layer import BatchingRedisChannelLayer


async def _drain(layer, channel: str, count: int) -> list[dict]:
    return [await asyncio.wait_for(layer.receive(channel), timeout=5) for _ in range(count)]


@pytest.fixture
def layer():
    """A layer of the settings' class and configuration, of this test's own (its Redis
    connections belong to the test's event loop)."""
    config = settings.CHANNEL_LAYERS["default"]
    assert config["BACKEND"] == "apps.core.channel_layer.BatchingRedisChannelLayer"
    return BatchingRedisChannelLayer(**config["CONFIG"])


def run_on(layer, scenario):
    """Run ``scenario()`` on a fresh loop, with the layer's keys flushed before and after."""

    async def flushed():
        await layer.flush()
        try:
            return await scenario()
        finally:
            await layer.flush()

    return asyncio.run(flushed())


def test_messages_arrive_in_order_on_channels_in_several_groups(layer, monkeypatch):
    # The clock stands still, so the second call's order can only come from the scores
    # continuing after the first call's.
    now = time.time()
    monkeypatch.setattr(channel_layer.time, "time", lambda: now)

    async def scenario():
        both = await layer.new_channel()  # a stream that follows a job and its batch
        batch_only = await layer.new_channel()
        await layer.group_add("job-1", both)
        await layer.group_add("batch-1", both)
        await layer.group_add("batch-1", batch_only)
        sends = []
        for n in range(5):
            sends += [("job-1", {"type": "event", "n": n}), ("batch-1", {"type": "event", "n": n})]
        sends.append(("nobody-listens", {"type": "event", "n": 99}))
        await layer.group_send_many(sends[:4])
        await layer.group_send_many(sends[4:])  # a second call keeps after the first
        return await _drain(layer, both, 10), await _drain(layer, batch_only, 5)

    both, batch_only = run_on(layer, scenario)
    assert [m["n"] for m in both] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert [m["n"] for m in batch_only] == [0, 1, 2, 3, 4]
    assert all(m["type"] == "event" for m in both + batch_only)


def test_the_same_as_group_send_for_each(layer):
    async def received(send) -> list[dict]:
        channel = await layer.new_channel()
        other = await layer.new_channel()
        await layer.group_add("g-a", channel)
        await layer.group_add("g-b", channel)
        await layer.group_add("g-b", other)
        await send([("g-a", {"type": "x", "v": 1}), ("g-b", {"type": "x", "v": 2})])
        messages = await _drain(layer, channel, 2) + await _drain(layer, other, 1)
        await layer.group_discard("g-a", channel)
        await layer.group_discard("g-b", channel)
        await layer.group_discard("g-b", other)
        return messages

    async def one_by_one(sends):
        for group, message in sends:
            await layer.group_send(group, message)

    assert run_on(layer, lambda: received(layer.group_send_many)) == run_on(
        layer, lambda: received(one_by_one)
    )


def test_a_full_channel_drops_the_message_as_group_send_does(layer):
    async def scenario():
        channel = await layer.new_channel()
        await layer.group_add("full", channel)
        capacity = layer.get_capacity(channel)
        await layer.group_send_many([("full", {"type": "x", "n": n}) for n in range(capacity + 3)])
        kept = await _drain(layer, channel, capacity)
        try:
            await asyncio.wait_for(layer.receive(channel), timeout=0.5)
        except TimeoutError:
            return kept, None
        return kept, "an extra message arrived"

    kept, extra = run_on(layer, scenario)
    assert [m["n"] for m in kept] == list(range(len(kept)))
    assert extra is None


def test_expired_group_members_get_nothing(layer):
    async def scenario():
        gone = await layer.new_channel()
        await layer.group_add("aging", gone)
        # As if it joined longer ago than group_expiry: group_send would drop it too.
        connection = layer.connection(layer.consistent_hash("aging"))
        await connection.zadd(layer._group_key("aging"), {gone: 1})
        await layer.group_send_many([("aging", {"type": "x"})])
        try:
            await asyncio.wait_for(layer.receive(gone), timeout=0.5)
        except TimeoutError:
            received = False
        else:
            received = True
        return received, await connection.zcard(layer._group_key("aging"))

    assert run_on(layer, scenario) == (False, 0)
