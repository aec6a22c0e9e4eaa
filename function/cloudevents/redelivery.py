"""The replies given last, by the source and id of the event each answers: a redelivered event
gets the very reply its first delivery got (same id, time and data), in the mode it comes in.

Knative redelivers after a 5xx, 404, 408, 409, 429 or a lost connection, also when the first
delivery was answered but the answer did not arrive. Bounded by entries and by bytes; the oldest
is forgotten first. Only answers are kept: an event refused or shed (503) is worked on again.
"""

from __future__ import annotations

import sys
from collections import OrderedDict

from function.cloudevents.event import CloudEvent, EncodedJson

#: Bytes an entry costs beyond the objects ``sys.getsizeof`` sees: the OrderedDict's slot and link,
#: two tuples, the allocator's rounding (checked with tracemalloc: tests/test_cloudevent_replies.py).
ENTRY_OVERHEAD_BYTES = 288


class RecentReplies:
    """At most ``max_entries`` replies and about ``max_bytes`` bytes of them (0 for either: none)."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.held_bytes = 0
        self._replies: OrderedDict[tuple[str, str], tuple[CloudEvent, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._replies)

    def get(self, source: str, event_id: str) -> CloudEvent | None:
        """The reply given to the event ``(source, event_id)``, if it is still remembered."""
        kept = self._replies.get((source, event_id))
        return None if kept is None else kept[0]

    def keep(self, source: str, event_id: str, reply: CloudEvent) -> CloudEvent:
        """Remember ``reply`` to the event ``(source, event_id)``, and return the reply to give.

        That is the one remembered already if a delivery of the same event was answered meanwhile
        (two deliveries in flight at once get the same answer). A reply larger than ``max_bytes``
        is given but not remembered.
        """
        if not isinstance(reply.data, EncodedJson):
            raise TypeError("a reply is remembered with its data encoded (EncodedJson), whose size is known")
        key = (source, event_id)
        kept = self._replies.get(key)
        if kept is not None:
            return kept[0]
        if not self.max_entries:
            return reply
        # NOTE: orjson's output holds a 4 KiB block whatever its length (tracemalloc, RSS): a copy
        # of the exact size is remembered instead.
        reply = reply._replace(data=EncodedJson(bytes(memoryview(reply.data.json))))
        size = footprint(key, reply)
        if size > self.max_bytes:
            return reply
        while self._replies and (len(self._replies) >= self.max_entries or self.held_bytes + size > self.max_bytes):
            self._forget_oldest()
        self._replies[key] = (reply, size)
        self.held_bytes += size
        return reply

    def _forget_oldest(self) -> None:
        _, (_, size) = self._replies.popitem(last=False)
        self.held_bytes -= size


def footprint(key: tuple[str, str], reply: CloudEvent) -> int:
    """The bytes remembering ``reply`` under ``key`` holds, at most: every object it keeps alive,
    each counted once, but the service's own constants (type, source, media type)."""
    held = {id(value): value for value in (*key, reply.id, reply.subject, reply.time, *reply.extensions.values())}
    return (
        ENTRY_OVERHEAD_BYTES
        + sys.getsizeof(reply)
        + sys.getsizeof(reply.extensions)
        + sys.getsizeof(reply.data)
        + sys.getsizeof(reply.data.json)
        + sum(sys.getsizeof(value) for value in held.values())
    )
