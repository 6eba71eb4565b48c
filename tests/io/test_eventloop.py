"""The daemon's event loop reads busy input in batches, never delaying ready work."""

import asyncio
import selectors
import socket
from collections.abc import Iterator

import pytest

from kinestream.io.eventloop import CoalescingSelector, new_event_loop


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 9))
        self.now += seconds


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    left, right = socket.socketpair()
    try:
        yield left, right
    finally:
        left.close()
        right.close()


def _selector(clock: FakeClock, reader: socket.socket) -> CoalescingSelector:
    selector = CoalescingSelector(0.001, clock=clock, sleep=clock.sleep)
    selector.register(reader, selectors.EVENT_READ)
    return selector


def test_the_first_input_after_a_quiet_spell_is_not_delayed(pair):
    clock = FakeClock()
    selector = _selector(clock, pair[0])
    pair[1].send(b"x")
    assert len(selector.select(5.0)) == 1
    assert clock.slept == []


def test_a_blocking_poll_right_after_input_waits_out_the_interval(pair):
    """Input kept coming: the next poll that would block first lets more of it gather."""
    clock = FakeClock()
    selector = _selector(clock, pair[0])
    pair[1].send(b"x")
    selector.select(5.0)
    clock.now += 0.0003  # the pass that handled it
    assert len(selector.select(5.0)) == 1  # not read yet: still there
    assert clock.slept == [0.0007]
    clock.now += 0.002  # a longer pass: the interval is over, no wait
    selector.select(5.0)
    assert clock.slept == [0.0007]


def test_ready_callbacks_and_timers_are_never_delayed_beyond_their_timeout(pair):
    clock = FakeClock()
    selector = _selector(clock, pair[0])
    pair[1].send(b"x")
    selector.select(None)
    selector.select(0)  # callbacks ready: poll at once
    assert clock.slept == []
    selector.select(0.0004)  # a timer due in 0.4 ms: wait no longer than that
    assert clock.slept == [0.0004]


def test_a_poll_that_found_nothing_does_not_delay_the_next(pair):
    clock = FakeClock()
    selector = _selector(clock, pair[0])
    assert selector.select(0) == []
    assert selector.select(0.01) == []
    assert clock.slept == []


def test_the_daemon_loop_runs_coroutines_and_socket_callbacks(pair):
    loop = new_event_loop()
    try:
        received: asyncio.Future[bytes] = loop.create_future()
        loop.add_reader(pair[0], lambda: received.set_result(pair[0].recv(10)))
        loop.call_soon(pair[1].send, b"ping")
        assert loop.run_until_complete(asyncio.wait_for(received, 5.0)) == b"ping"
    finally:
        loop.close()
