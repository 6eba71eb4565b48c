"""Publishing recorded messages again: pacing, time rebasing, and waiting for every PUBACK.

Independent of the MQTT library: `replay_messages` takes a `publish(topic, payload)` coroutine
that returns once the broker acknowledged the message (QoS 1), so it can be tested with a fake
and driven by the MQTT adapter in `kinestream replay`.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass

Message = tuple[float, str, bytes]  # (receive time t, topic, payload), as io/logs.py reads them
Publish = Callable[[str, bytes], Awaitable[None]]

DEFAULT_WINDOW = 100  # publishes awaiting their PUBACK at once


def merge_by_time(sources: Iterable[Iterable[Message]]) -> Iterator[Message]:
    """One stream from several time-ordered inputs, so several vehicles replay side by side."""
    return heapq.merge(*sources, key=lambda message: message[0])


def _timestamp_of(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        from kinestream.io.payloads import parse_timestamp

        try:
            return parse_timestamp(value)
        except ValueError:
            return None
    return None


def _json_or_none(payload: bytes) -> object:
    try:
        return json.loads(payload)
    except (ValueError, RecursionError):
        return None


def first_event_ts(t: float, payload: bytes) -> float:
    """Event time of a message's first reading; its receive time t when it carries none."""
    value = _json_or_none(payload)
    elements = value if isinstance(value, list) else [value]
    for element in elements:
        if isinstance(element, dict):
            ts = _timestamp_of(element.get("ts"))
            if ts is not None:
                return ts
    return t


def rebase_payload(payload: bytes, shift_s: float) -> bytes:
    """The payload with every reading's `ts` moved by shift_s (written as epoch seconds).

    Anything that is not a speed object or array of them (a bare number has no ts; broken
    JSON is the daemon's to dead-letter) goes out unchanged: a replay never drops a message.
    """
    value = _json_or_none(payload)
    if isinstance(value, dict):
        return _dumps(_shift(value, shift_s)) if "ts" in value else payload
    if isinstance(value, list) and any(isinstance(e, dict) and "ts" in e for e in value):
        return _dumps([_shift(e, shift_s) if isinstance(e, dict) else e for e in value])
    return payload


def _shift(element: dict[str, object], shift_s: float) -> dict[str, object]:
    ts = _timestamp_of(element.get("ts"))
    return element if ts is None else {**element, "ts": ts + shift_s}


def _dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


@dataclass(slots=True)
class ReplayCounts:
    """Progress of a replay: messages handed to the client and messages acknowledged."""

    sent: int = 0
    acknowledged: int = 0


async def replay_messages(
    messages: Iterable[Message],
    publish: Publish,
    *,
    speed: float | None = 1.0,
    rebase_time: bool = False,
    window: int = DEFAULT_WINDOW,
    on_progress: Callable[[ReplayCounts], None] | None = None,
    wall_clock: Callable[[], float] = time.time,
    monotonic: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> ReplayCounts:
    """Publish every message, paced by its recorded t divided by speed (None: as fast as the
    broker acknowledges), and return once every publish is acknowledged.

    With rebase_time, all event times shift by one offset so that the first reading is now.
    A failed publish cancels the rest and propagates: the caller reports it and exits 1.
    """
    if speed is not None and not speed > 0:
        raise ValueError(f"speed must be a positive number, got {speed}")
    counts = ReplayCounts()
    in_flight = asyncio.Semaphore(window)
    pending: set[asyncio.Task[None]] = set()
    start: tuple[float, float] | None = None  # (loop time, recorded t) of the first message
    shift_s = 0.0
    failures: list[BaseException] = []

    async def send(topic: str, payload: bytes) -> None:
        try:
            await publish(topic, payload)
        except Exception as error:
            failures.append(error)
            return
        finally:
            in_flight.release()
        counts.acknowledged += 1
        if on_progress:
            on_progress(counts)

    try:
        for t, topic, payload in messages:
            if start is None:
                start = (monotonic(), t)
                if rebase_time:
                    shift_s = wall_clock() - first_event_ts(t, payload)
            elif speed is not None:
                due = start[0] + (t - start[1]) / speed
                if due > monotonic():
                    await sleep(due - monotonic())
            await in_flight.acquire()
            if failures:
                in_flight.release()
                raise failures[0]
            out = rebase_payload(payload, shift_s) if rebase_time else payload
            task = asyncio.create_task(send(topic, out))
            pending.add(task)
            task.add_done_callback(pending.discard)
            counts.sent += 1
        if pending:
            await asyncio.gather(*pending)
        if failures:
            raise failures[0]
    finally:
        for task in pending:
            task.cancel()
    return counts
