"""Thread creation with a small stack, for the one thread each connection gets."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

__all__ = ["start_thread", "CONNECTION_STACK_SIZE"]

CONNECTION_STACK_SIZE = 512 * 1024
"""Stack reserved for connection threads. CPython's default (8 MiB on Linux) is
address space, not memory, but 10,000 of them add up; 512 KiB leaves room
for deep handlers."""

_stack_lock = threading.Lock()


def start_thread(target: Callable[..., Any], *args: Any, name: str | None = None) -> threading.Thread:
    """Start a daemon thread running ``target(*args)`` with :data:`CONNECTION_STACK_SIZE`."""
    thread = threading.Thread(target=target, args=args, name=name, daemon=True)
    with _stack_lock:
        previous = threading.stack_size(CONNECTION_STACK_SIZE)
        try:
            thread.start()
        finally:
            threading.stack_size(previous)
    return thread
