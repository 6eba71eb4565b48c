"""`kinestream run` with instruments for latency work (used by latency_probe.py).

Records every cyclic-GC collection (generation, duration, thread), every event-loop callback
that ran longer than PROBE_SLOW_S (wall and CPU time, the task's coroutine), and how many
times the loop polled for I/O; writes them as JSON to PROBE_OUT when the daemon exits.
"""

from __future__ import annotations

import asyncio
import atexit
import gc
import json
import os
import selectors
import sys
import threading
import time
from typing import Any

OUT = os.environ["PROBE_OUT"]
SLOW_S = float(os.environ.get("PROBE_SLOW_S", "0.002"))
events: dict[str, Any] = {"gc": [], "slow": [], "polls": 0, "callbacks": 0}
_gc_started = [0.0, 0.0]


def _on_gc(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _gc_started[:] = [time.perf_counter(), time.monotonic()]
        return
    duration = time.perf_counter() - _gc_started[0]
    thread = threading.current_thread().name
    events["gc"].append((_gc_started[1], info["generation"], duration, thread))


_run_handle = asyncio.events.Handle._run


def _timed_run(self: asyncio.Handle) -> None:
    events["callbacks"] += 1
    started, cpu = time.perf_counter(), time.thread_time()
    _run_handle(self)
    wall = time.perf_counter() - started
    if wall > SLOW_S:
        owner = getattr(self._callback, "__self__", None)  # a task's step: name its coroutine
        name = owner.get_coro().__qualname__ if isinstance(owner, asyncio.Task) else repr(self)
        events["slow"].append((time.monotonic() - wall, wall, time.thread_time() - cpu, name))


_select = selectors.EpollSelector.select


def _counted_select(self: selectors.EpollSelector, timeout: float | None = None) -> list:
    events["polls"] += 1
    return _select(self, timeout)


def _dump() -> None:
    with open(OUT, "w") as out:
        json.dump(events, out)


gc.callbacks.append(_on_gc)
asyncio.events.Handle._run = _timed_run
selectors.EpollSelector.select = _counted_select
atexit.register(_dump)

from kinestream.cli import main  # noqa: E402 (after the instruments are in place)

raise SystemExit(main(sys.argv[1:]))
