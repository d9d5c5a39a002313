"""channels_redis's layer, with ``group_send_many``: many group sends in two round trips.

Every job event is pushed to two groups (its job's and its batch's). ``group_send`` makes two
Redis round trips per group with no member and four with members (drop expired members, read
them, drop expired messages, add the message), and on this asyncio client each round trip
costs a worker about 0.2 ms of CPU. ``group_send_many`` sends a list of (group, message) in
order with one pipeline that reads the members of every group, then one script per Redis
server that drops expired messages and adds every message (decision 0026).

What a receiver gets is what ``group_send`` would give it, in the same order: the same
serialized message per channel key (with ``__asgi_channel__``), the same capacity check and
expiry, and scores that increase with each message, so a channel that is in several of the
groups receives the messages in the order they were given.
"""

from __future__ import annotations

import collections
import logging
import time

from channels_redis.core import RedisChannelLayer

logger = logging.getLogger("image2model.core")

# KEYS: a channel key per message (repeats allowed). ARGV: the n messages, their n capacities,
# their n scores, then the score before which messages have expired, then the key expiry.
_SEND_MANY_LUA = """
local n = #KEYS
local expired_before = ARGV[3 * n + 1]
local expiry = ARGV[3 * n + 2]
local over_capacity = 0
for i = 1, n do
    redis.call('ZREMRANGEBYSCORE', KEYS[i], 0, expired_before)
    if redis.call('ZCOUNT', KEYS[i], '-inf', '+inf') < tonumber(ARGV[n + i]) then
        redis.call('ZADD', KEYS[i], ARGV[2 * n + i], ARGV[i])
        redis.call('EXPIRE', KEYS[i], expiry)
    else
        over_capacity = over_capacity + 1
    end
end
return over_capacity
"""


class BatchingRedisChannelLayer(RedisChannelLayer):
    """``RedisChannelLayer`` that can send many group messages at once."""

    _last_score = 0.0

    async def group_send_many(self, sends: list[tuple[str, dict]]) -> None:
        if not sends:
            return
        now = time.time()
        members = await self._groups_members([group for group, _ in sends], int(now))
        # Per Redis server: (channel key, serialized message, capacity), in the given order.
        batches: dict[int, list[tuple[str, bytes, int]]] = collections.defaultdict(list)
        for (_group, message), channels in zip(sends, members, strict=True):
            by_server, messages, capacities = self._map_channel_keys_to_connection(
                channels, message
            )
            for index, channel_keys in by_server.items():
                batches[index].extend((key, messages[key], capacities[key]) for key in channel_keys)
        for index, entries in batches.items():
            keys = [key for key, _, _ in entries]
            # Increasing scores keep the order, within this call and after the last one.
            start = max(now, self._last_score + 1e-6)
            scores = [start + n * 1e-6 for n in range(len(entries))]
            self._last_score = scores[-1]
            over = await self.connection(index).eval(
                _SEND_MANY_LUA,
                len(keys),
                *keys,
                *[message for _, message, _ in entries],
                *[capacity for _, _, capacity in entries],
                *scores,
                int(now) - int(self.expiry),
                self.expiry,
            )
            if over:
                logger.info("%s of %s channel messages over capacity", over, len(entries))

    async def _groups_members(self, groups: list[str], now: int) -> list[list[str]]:
        """The channels of each group (expired memberships dropped first), one pipeline per
        Redis server."""
        by_server: dict[int, list[int]] = collections.defaultdict(list)
        for position, group in enumerate(groups):
            assert self.require_valid_group_name(group), "Group name not valid"
            by_server[self.consistent_hash(group)].append(position)
        members: list[list[str]] = [[] for _ in groups]
        for index, positions in by_server.items():
            pipe = self.connection(index).pipeline(transaction=False)
            for position in positions:
                key = self._group_key(groups[position])
                pipe.zremrangebyscore(key, min=0, max=now - self.group_expiry)
                pipe.zrange(key, 0, -1)
            results = await pipe.execute()
            for n, position in enumerate(positions):
                members[position] = [name.decode("utf8") for name in results[2 * n + 1]]
        return members
