"""The daemon's event loop: while input keeps coming, it is picked up at most every 0.2 ms.

Every event-loop pass that finds input pays the same fixed costs whatever it carries: the
wake-up from ``epoll``, the socket read, the callbacks it schedules, the write-ahead-log write
and the output ``send`` (which wakes the broker). Measured on the 2-core VM, about 16 µs per
loop pass (benchmarks/RESULTS.md, "Latency tail"). At a moderate rate the input trickles
in a message or two per pass, so those costs are paid per message: 56 µs of daemon CPU per
reading at 16k readings/s against 26 µs flat out, a CPU nearly saturated at half the
maximum rate, where every stall then takes long to catch up on.

``CoalescingSelector`` makes a busy loop wait for input at most once per ``interval_s``: after
a poll that returned events, the next poll that would block (nothing else ready to run)
starts no earlier than ``interval_s`` later, so what arrives meanwhile is read in one go.
A poll with callbacks ready (timeout 0) is never delayed, nor is a timer, nor the first
input after a quiet spell; the cost is at most ``interval_s`` of extra latency per message.
"""

from __future__ import annotations

import asyncio
import selectors
import time
from collections.abc import Callable

# 0.2 ms, not 1 ms (measured on the quiet 2-core VM, 2 runs each, benchmarks/RESULTS.md §16):
# at 24k readings/s offered, 1 ms gave p99 36-77 ms, 0.5 ms 12-36 ms, 0.2 ms 3.9-4.6 ms and
# none 6-16 ms (CPU 25.7 / 26-29 / 27-28 / 31 us per reading). 1 ms saved more CPU at 3k/s
# (82 against 140 us per reading) but at half the maximum rate it made the latency tail.
COALESCE_S = 0.0002


class CoalescingSelector(selectors.DefaultSelector):
    def __init__(
        self,
        interval_s: float = COALESCE_S,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._clock = clock
        self._sleep = sleep
        self._next_poll = 0.0  # clock time before which a blocking poll waits first

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None or timeout > 0:
            wait = self._next_poll - self._clock()
            if wait > 0:
                if timeout is not None:
                    wait = min(wait, timeout)
                    timeout -= wait
                self._sleep(wait)
        events = super().select(timeout)
        if events:
            self._next_poll = self._clock() + self.interval_s
        return events


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The daemon's loop: asyncio's selector loop on a ``CoalescingSelector``."""
    return asyncio.SelectorEventLoop(CoalescingSelector())
