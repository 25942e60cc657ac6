"""Threads for connections: small stacks, no per-thread bookkeeping objects.

A connection's thread is started with ``_thread.start_new_thread`` rather
than ``threading.Thread``: the ``Thread`` object, its ``Event`` and locks cost
about 1.5 KiB per connection, which matters at 10,000 idle connections, and
rawws never needs to join one thread in particular (the server counts its
running handlers instead, see :class:`ThreadCounter`).
"""

from __future__ import annotations

import _thread
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["start_thread", "ThreadCounter", "CONNECTION_STACK_SIZE"]

CONNECTION_STACK_SIZE = 512 * 1024
"""Stack reserved for connection threads. CPython's default (8 MiB on Linux) is
address space, not memory, but 10,000 of them add up; 512 KiB leaves room
for deep handlers."""

_stack_lock = threading.Lock()


def start_thread(target: Callable[..., Any], *args: Any) -> None:
    """Run ``target(*args)`` in a new thread with :data:`CONNECTION_STACK_SIZE`.

    ``target`` must catch its own exceptions.
    """
    with _stack_lock:
        previous = threading.stack_size(CONNECTION_STACK_SIZE)
        try:
            _thread.start_new_thread(target, args)
        finally:
            threading.stack_size(previous)


class ThreadCounter:
    """How many threads are running a piece of work, and a way to wait until none are."""

    def __init__(self) -> None:
        self._count = 0
        self._cond = threading.Condition(threading.Lock())

    def __enter__(self) -> ThreadCounter:
        with self._cond:
            self._count += 1
        return self

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._count -= 1
            self._cond.notify_all()

    @property
    def count(self) -> int:
        return self._count

    def wait_idle(self, timeout: float | None = None, leave: int = 0) -> bool:
        """Block until at most ``leave`` threads remain (True) or ``timeout`` passes (False)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._count <= leave, timeout)
