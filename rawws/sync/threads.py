"""Threads for connections: stacks sized for the recursion limit, no per-thread bookkeeping objects.

A connection's thread is started with ``_thread.start_new_thread`` rather
than ``threading.Thread``: the ``Thread`` object, its ``Event`` and locks cost
about 1.5 KiB per connection, which matters at 10,000 idle connections, and
rawws never needs to join one thread in particular (the server counts its
running handlers instead, see :class:`ThreadCounter`).
"""

from __future__ import annotations

import _thread
import sys
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["start_thread", "ThreadCounter", "connection_stack_size"]

MIN_STACK_SIZE = 4 * 2**20
"""The least stack reserved for a connection thread (4 MiB).

A handler must be able to recurse to ``sys.getrecursionlimit()`` and get
``RecursionError``, never a crash. How much C stack that takes depends on the
interpreter (measured with ``tests/test_stack_depth.py``'s probes, default
limit 1,000): Python-to-Python calls take about 450 bytes a level on 3.10 and
none from 3.11 on, but calls through C slots (``__getattr__``, ``__eq__``,
``json``'s scanner) take up to about 730 bytes a level on 3.11, and on 3.13
``json.loads``, ``repr`` and ``==`` of nested data recurse to a fixed C limit
that needs about 1.75 MiB. Stack is address space: only the pages a thread
touches become resident, so an idle connection's thread costs the same
whatever is reserved (see ``benchmarks/RESULTS.md``)."""

STACK_PER_LEVEL = 1024
"""Stack reserved per level of ``sys.getrecursionlimit()`` on top of :data:`STACK_BASE`."""

STACK_BASE = 2 * 2**20
"""Stack for the C recursion that does not count toward the recursion limit (3.12+)."""

_stack_lock = threading.Lock()


def connection_stack_size() -> int:
    """The stack to reserve for a connection thread, from the recursion limit in force now.

    ``max(4 MiB, recursion limit × 1 KiB + 2 MiB)``, rounded up to 64 KiB: an
    application that raises the limit gets deeper stacks with it.
    """
    wanted = max(MIN_STACK_SIZE, sys.getrecursionlimit() * STACK_PER_LEVEL + STACK_BASE)
    return -(-wanted // 65536) * 65536


def start_thread(target: Callable[..., Any], *args: Any) -> None:
    """Run ``target(*args)`` in a new thread with :func:`connection_stack_size` of stack.

    ``target`` must catch its own exceptions.
    """
    size = connection_stack_size()
    with _stack_lock:
        previous = threading.stack_size(size)
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
