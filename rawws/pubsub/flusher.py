"""One thread that writes what publishers queued for many clients, so that writes coalesce under load.

A publish on a channel of N members costs N socket writes if the publisher
writes to each member itself, and on loopback or a fast network a write
(``send``: the whole TCP transmit path) costs far more than building the
frame. Here the publisher only queues the message for each member, in memory
and in order, and schedules the member with a :class:`Flusher`; its thread
moves everything a member has queued into one write.

While the thread keeps up, each write carries one message, a few tens of
microseconds after the publish. When it falls behind, members' queues grow
while it writes to others, and its next write to each carries all that
waited: the cost per message falls as the load rises, instead of the backlog
growing without end. The thread never waits for a socket (writes are
``flush_nowait``; what a slow client does not take is left to its
connection's background flush), so a client that does not read delays nobody.

The thread starts with the first scheduled client and ends after
``idle_exit`` seconds with nothing to write: a server costs one extra thread
only while it has traffic.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

__all__ = ["Flusher"]

logger = logging.getLogger("rawws.pubsub")


class Flusher:
    """Calls each scheduled ``write`` callable once, in scheduling order, on its own thread."""

    def __init__(self, name: str = "rawws-pubsub-writer", idle_exit: float = 2.0) -> None:
        self.name = name
        self.idle_exit = idle_exit
        self._due: deque[Callable[[], None]] = deque()
        self._condition = threading.Condition(threading.Lock())
        self._running = False
        self._sleeping = False

    def schedule(self, write: Callable[[], None]) -> None:
        """Have ``write()`` called soon on the writer thread (the caller makes sure it is scheduled once).

        If no thread can be started (the process is at its thread limit),
        ``write()`` runs now, in the caller's thread: late, never lost.
        """
        with self._condition:
            if self._running:
                self._due.append(write)
                if self._sleeping:
                    self._condition.notify()
                return
            try:
                threading.Thread(target=self._run, name=self.name, daemon=True).start()
            except RuntimeError:
                logger.warning("cannot start the writer thread: writing from the publisher's thread")
            else:
                self._running = True
                self._due.append(write)
                return
        write()

    def _run(self) -> None:
        due = self._due
        condition = self._condition
        while True:
            with condition:
                if not due:
                    self._sleeping = True
                    condition.wait(self.idle_exit)
                    self._sleeping = False
                    if not due:
                        self._running = False
                        return
                batch = list(due)
                due.clear()
            for write in batch:
                try:
                    write()
                except Exception:
                    logger.exception("writing queued messages failed")
