"""One shared timer thread for every connection's deadlines.

Keepalive pings, ping timeouts, close timeouts and open timeouts are all
"call this later, unless cancelled". A thread per timer would cost a thread
per connection; instead one daemon thread sleeps on a heap of deadlines.
Callbacks run on that thread, so they must be quick and must never block
(rawws's own only queue bytes and shut sockets down).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

__all__ = ["Timer", "call_later", "Deadline"]

logger = logging.getLogger("rawws.timers")

_MAX_SLEEP = 1.0
"""The thread wakes at least this often, so scheduling a timer further out than
that never has to wake it: with thousands of connections each arming close
and keepalive timers, those wakeups would otherwise dominate."""


class Timer:
    """A scheduled call; :meth:`cancel` stops it if it has not run yet."""

    __slots__ = ("deadline", "callback", "cancelled")

    def __init__(self, deadline: float, callback: Callable[[], object]) -> None:
        self.deadline = deadline
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        self.callback = _nothing  # let go of what the callback holds now, not when its deadline comes


def _nothing() -> None:
    pass


class _Scheduler:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Timer]] = []
        self._counter = itertools.count()
        self._cond = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._next_wakeup = 0.0  # when the thread will look at the heap again

    def call_later(self, delay: float, callback: Callable[[], object]) -> Timer:
        timer = Timer(time.monotonic() + delay, callback)
        with self._cond:
            heapq.heappush(self._heap, (timer.deadline, next(self._counter), timer))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="rawws-timers", daemon=True)
                self._thread.start()
            elif timer.deadline < self._next_wakeup:
                self._cond.notify()  # it sleeps past this deadline: wake it (rare, see _MAX_SLEEP)
        return timer

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    while self._heap and self._heap[0][2].cancelled:
                        heapq.heappop(self._heap)
                    now = time.monotonic()
                    if self._heap and self._heap[0][0] <= now:
                        timer = heapq.heappop(self._heap)[2]
                        break
                    delay = _MAX_SLEEP if not self._heap else min(_MAX_SLEEP, self._heap[0][0] - now)
                    self._next_wakeup = now + delay
                    self._cond.wait(delay)
                    self._next_wakeup = 0.0
            try:
                timer.callback()
            except Exception:
                logger.exception("timer callback %r failed", timer.callback)


_scheduler = _Scheduler()


def call_later(delay: float, callback: Callable[[], object]) -> Timer:
    """Run ``callback`` on the shared timer thread after ``delay`` seconds."""
    return _scheduler.call_later(delay, callback)


class Deadline:
    """A point in time to wait until, or none (wait for ever): one place for the clock arithmetic."""

    __slots__ = ("at",)

    def __init__(self, timeout: float | None) -> None:
        self.at = None if timeout is None else time.monotonic() + timeout

    def remaining(self) -> float | None:
        """Seconds left (may be negative once passed), or None for no deadline."""
        return None if self.at is None else self.at - time.monotonic()

    def expired(self) -> bool:
        return self.at is not None and self.at <= time.monotonic()

    def poll_ms(self) -> int | None:
        """What ``select.poll().poll()`` takes: milliseconds left, rounded up, at least 1; None for ever."""
        if self.at is None:
            return None
        return max(1, int((self.at - time.monotonic()) * 1000 + 0.999))
