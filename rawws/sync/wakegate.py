"""How many handler threads the reactor may have awake at once.

When the reactor has read a whole message for a handler that sleeps in
``recv()``, waking that thread makes it one more contender for the interpreter
lock, and every contender makes each hand-off of the lock slower for all the
others, the reactor included: with thousands of connections waking at once,
that convoy, not the work, is what takes the time. So wakes go through a
:class:`WakeGate`: at most ``limit`` woken handlers run at a time, and a
handler's turn ends when it comes back to wait for its next message.

A handler that blocks on something else (a database, a sleep) holds nobody
up for long: its turn ends anyway ``lease`` seconds after it started to run
(not after it was woken: queueing for the interpreter lock is not blocking
elsewhere), and each turn that ran out raises the limit by one, since a
handler blocked in a system call does not compete for the lock. Turns that
end on time bring it back down, one by one, to where it started. So handlers
that block get the parallelism of threads, and handlers that compute get the
lock without a crowd.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

__all__ = ["WakeGate", "Turn", "NEVER_STARTED"]

NEVER_STARTED = 50  # leases after which a turn whose handler never started is ended anyway


class Turn:
    """One woken handler's turn; :meth:`WakeGate.end` it when the handler is back."""

    __slots__ = ("deadline", "over", "woken")

    def __init__(self, woken: float) -> None:
        self.woken = woken
        self.deadline: float | None = None  # set when the handler starts to run: its lease runs from then
        self.over = False


# A wake callback takes its turn and says whether it woke anyone (False: the turn ends at once).
Wake = Callable[[Turn], bool]


class WakeGate:
    """Hands out turns to run: ``limit`` at a time, each for at most ``lease`` seconds of running."""

    def __init__(self, limit: int, lease: float, ceiling: int = 4096, poke: Callable[[], None] | None = None) -> None:
        self.floor = limit
        self.ceiling = ceiling
        self.limit = limit
        self.lease = lease
        self._lock = threading.Lock()
        self._running = 0
        self._started: deque[Turn] = deque()  # turns whose handler runs, by deadline; some over
        self._given: deque[Turn] = deque()  # every turn, by when it was given; some over
        self._waiting: deque[Wake] = deque()
        self.given = 0  # turns handed out so far (statistics)
        # Called, outside the lock, when a wake is held back or end_soon() frees a turn that a held-back
        # wake needs: whoever expires turns and pumps (the reactor's loop) must look again.
        self._poke = poke or _nothing

    @property
    def running(self) -> int:
        return self._running

    def wake(self, wake: Wake) -> None:
        """Call ``wake`` now if a turn is free, else when one is."""
        with self._lock:
            self._waiting.append(wake)
        if self._pump():
            self._poke()  # held back: the reactor's loop must know when to expire turns

    def start(self, turn: Turn) -> None:
        """The woken handler runs (it has the interpreter lock): its lease starts now.

        A handler still queueing for the lock is not blocked elsewhere, so
        its turn does not run out while it waits; letting another handler
        run then would only lengthen the queue.
        """
        with self._lock:
            if turn.over or turn.deadline is not None:
                return
            turn.deadline = time.monotonic() + self.lease
            self._started.append(turn)

    def end(self, turn: Turn) -> None:
        """The handler of ``turn`` is back (or gone): its turn goes to the next one waiting."""
        with self._lock:
            if turn.over:
                return
            turn.over = True
            self._running -= 1
            if self.limit > self.floor:
                self.limit -= 1
        self._pump()

    def end_soon(self, turn: Turn) -> None:
        """Like :meth:`end`, but the next wake waits for the reactor's next look (within a lease).

        For a caller that holds its connection's lock, which a wake takes.
        """
        with self._lock:
            if not turn.over:
                turn.over = True
                self._running -= 1
            held_back = bool(self._waiting)
        if held_back:
            self._poke()

    def next_deadline(self) -> float | None:
        """When :meth:`expire` has work to do next, if a wake is held back."""
        with self._lock:
            now = time.monotonic()
            self._settle_locked(now)
            if not self._waiting:
                return None
            if self._running < self.limit:
                return now  # a turn is free (end_soon): pump at once
            if self._started:
                return min(self._started[0].deadline, now + self.lease)  # type: ignore[type-var]
            return now + self.lease  # the woken handlers have not started yet: look again soon

    def expire(self) -> None:
        """End every turn past its lease, so the wakes held back go ahead."""
        self._pump()

    def _settle_locked(self, now: float) -> None:
        """Forget turns that are over; end the ones past their lease, each raising the limit by one.

        A turn whose handler never started (it should, once woken) ends after
        :data:`NEVER_STARTED` leases, so a lost wake-up cannot hold a turn for ever.
        """
        started = self._started
        while started and (started[0].over or started[0].deadline <= now):  # type: ignore[operator]
            self._run_out_locked(started.popleft())
        given = self._given
        oldest = now - NEVER_STARTED * self.lease
        while given and (given[0].over or given[0].woken <= oldest):
            self._run_out_locked(given.popleft())

    def _run_out_locked(self, turn: Turn) -> None:
        if not turn.over:
            turn.over = True
            self._running -= 1
            if self.limit < self.ceiling:
                self.limit += 1

    def _pump(self) -> bool:
        """Hand out free turns; True if wakes are still held back."""
        while True:
            with self._lock:
                self._settle_locked(time.monotonic())
                held_back = bool(self._waiting) and self._running >= self.limit
                if not self._waiting or held_back:
                    break
                wake = self._waiting.popleft()
                turn = Turn(time.monotonic())
                self._running += 1
                self.given += 1
                self._given.append(turn)
            if not wake(turn):
                with self._lock:  # nobody was waiting after all: the turn is over at once
                    if not turn.over:
                        turn.over = True
                        self._running -= 1
        return held_back


def _nothing() -> None:
    pass
