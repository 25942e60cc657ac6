"""``MessageBroker``: in-process publish/subscribe, with a backend for more than one process.

The class from the classic exercise — ``subscribe(channel, callback)``,
``publish(channel, message)`` returning the number of subscribers notified,
``unsubscribe(channel, callback)`` — plus what a real one needs. The rules:

- **Thread-safe.** Any number of threads may subscribe, unsubscribe and
  publish at once.
- **Snapshot delivery.** A publish delivers to the subscribers present when it
  started. Callbacks run in the publishing thread, outside the broker's lock,
  so a callback may subscribe, unsubscribe or publish without deadlock; a
  subscriber added during a publish first hears the next one, and one removed
  during a publish still hears the current one.
- **Order.** Messages from one publishing thread reach each subscriber in
  publish order (delivery is synchronous in that thread).
- **Raising callbacks.** A callback that raises is logged, does not stop
  delivery to the others, and is not counted as notified. (Raising
  :class:`SubscriberGone` means the same without the log line.) One that
  raises :class:`~rawws.ConnectionClosed` (say a closed connection's
  ``send``) is gone for good: it is unsubscribed from everything, with one
  INFO line.
- **Duplicates.** Subscribing a callback already subscribed to that channel
  does nothing and returns False; unsubscribing one that is not subscribed
  does nothing and returns False (no exception).
- **No leaks.** A channel is forgotten when its last subscriber leaves.
- **Patterns.** :meth:`MessageBroker.subscribe_pattern` takes a glob such as
  ``news.*`` (``*``, ``?`` and ``[...]`` as in :mod:`fnmatch`, case-sensitive);
  a publish reaches exact and pattern subscribers, each callback at most once
  per publish even if it matches twice.
- **Reserved names.** Channels whose name starts with :data:`RESERVED` (NUL)
  carry the pub/sub server's own traffic; a pattern matches them only if it
  starts with NUL too, so ``*`` sees application channels only.

Fan-out goes through a :class:`Backend`. The default, :class:`LocalBackend`,
delivers in-process. A distributed backend (see ``rawws.pubsub.redis_backend``)
publishes to a shared engine and delivers what comes back, so several server
processes share channels without any change to application code.
"""

from __future__ import annotations

import fnmatch
import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

from ..exceptions import ConnectionClosed

__all__ = [
    "MessageBroker",
    "Backend",
    "LocalBackend",
    "Callback",
    "PatternCallback",
    "MessageCheck",
    "SubscriberGone",
    "RESERVED",
]

RESERVED = "\x00"
"""Channel names starting with this are the pub/sub server's; ordinary patterns do not match them."""

logger = logging.getLogger("rawws.broker")

Callback = Callable[[Any], Any]
"""A channel subscriber: called as ``callback(message)``, as in the classic exercise."""
PatternCallback = Callable[[str, Any], Any]
MessageCheck = Callable[[str, Any], None]
"""``f(channel, message)``: raises to refuse a message before it is published (:attr:`MessageBroker.check_message`)."""
"""A pattern subscriber: called as ``callback(channel, message)``, since the channel varies."""


class SubscriberGone(Exception):
    """Raise from a callback to say "not delivered, and that is expected" (e.g. its client left).

    Like any exception it is not counted as notified, but it is not logged as an error.
    """


class Backend(Protocol):
    """How published messages travel to subscribers.

    The broker calls :meth:`attach` once with its local delivery function.
    :meth:`publish` must eventually call ``deliver(channel, message)`` on every
    broker that has subscribers for ``channel`` (this one included) and return
    the count the broker reports from ``publish``. The broker tells the backend
    when it gains its first local subscriber for a channel or pattern and when
    it loses the last one, so that a distributed backend subscribes upstream
    only to what is needed here.
    """

    def attach(self, deliver: Callable[[str, Any], int]) -> None: ...

    def publish(self, channel: str, message: Any) -> int: ...

    def channel_added(self, channel: str) -> None: ...

    def channel_removed(self, channel: str) -> None: ...

    def pattern_added(self, pattern: str) -> None: ...

    def pattern_removed(self, pattern: str) -> None: ...

    def close(self) -> None: ...


class LocalBackend:
    """In-process fan-out: ``publish`` delivers at once and returns the number notified."""

    def __init__(self) -> None:
        self._deliver: Callable[[str, Any], int] | None = None

    def attach(self, deliver: Callable[[str, Any], int]) -> None:
        self._deliver = deliver

    def publish(self, channel: str, message: Any) -> int:
        assert self._deliver is not None, "attach() first"
        return self._deliver(channel, message)

    def channel_added(self, channel: str) -> None:
        pass

    def channel_removed(self, channel: str) -> None:
        pass

    def pattern_added(self, pattern: str) -> None:
        pass

    def pattern_removed(self, pattern: str) -> None:
        pass

    def close(self) -> None:
        pass


class MessageBroker:
    """Publish/subscribe by channel name. See the module documentation for the rules."""

    def __init__(self, backend: Backend | None = None, *, check_message: MessageCheck | None = None) -> None:
        self.check_message: MessageCheck | None = check_message
        """``f(channel, message)`` run before every publish outside the reserved channels; what it raises refuses
        the message. The pub/sub server sets one (when none is set) that refuses what cannot be sent as JSON."""
        self._lock = threading.Lock()
        # Subscriber lists are tuples, replaced on change: a publish takes a
        # snapshot by reading one reference.
        # Each key's subscribers as a tuple (publish iterates a snapshot without the lock) and as a
        # set beside it (joining checks membership in O(1): a channel of 10,000 is joined 10,000 times).
        self._channels: dict[str, tuple[Callback, ...]] = {}
        self._patterns: dict[str, tuple[PatternCallback, ...]] = {}
        self._members: dict[tuple[bool, str], set[Callable[..., Any]]] = {}
        self.backend: Backend = backend if backend is not None else LocalBackend()
        self.backend.attach(self._deliver)

    # --- the classic API ------------------------------------------------------------

    def subscribe(self, channel: str, callback: Callback) -> bool:
        """Call ``callback(message)`` for every message published on ``channel``.

        Returns False (and changes nothing) if it was already subscribed.
        """
        _check_name(channel, "channel")
        if not callable(callback):
            raise TypeError("callback must be callable")
        return self._add(self._channels, channel, callback, self.backend.channel_added)

    def unsubscribe(self, channel: str, callback: Callback) -> bool:
        """Stop delivering ``channel`` to ``callback``; False if it was not subscribed."""
        return self._remove(self._channels, channel, callback, self.backend.channel_removed)

    def publish(self, channel: str, message: Any) -> int:
        """Deliver ``message`` to the subscribers of ``channel``; return how many were notified.

        With the default backend that is the number of callbacks that ran
        without raising. Other backends document what they count. If
        :attr:`check_message` is set, what it raises (nothing is delivered).
        """
        _check_name(channel, "channel")
        if self.check_message is not None and not channel.startswith(RESERVED):
            self.check_message(channel, message)
        return self.backend.publish(channel, message)

    # --- patterns and introspection ---------------------------------------------------

    def subscribe_pattern(self, pattern: str, callback: PatternCallback) -> bool:
        """Call ``callback(channel, message)`` for every channel matching the glob ``pattern`` (``news.*``)."""
        _check_name(pattern, "pattern")
        if not callable(callback):
            raise TypeError("callback must be callable")
        return self._add(self._patterns, pattern, callback, self.backend.pattern_added)

    def unsubscribe_pattern(self, pattern: str, callback: PatternCallback) -> bool:
        return self._remove(self._patterns, pattern, callback, self.backend.pattern_removed)

    def unsubscribe_all(self, callback: Callable[..., Any]) -> int:
        """Remove ``callback`` from every channel and pattern; return how many subscriptions ended."""
        with self._lock:
            channels = [key for (pattern, key), members in self._members.items() if not pattern and callback in members]
            patterns = [key for (pattern, key), members in self._members.items() if pattern and callback in members]
        removed = sum(self.unsubscribe(c, callback) for c in channels)
        return removed + sum(self.unsubscribe_pattern(p, callback) for p in patterns)

    def subscribers(self, channel: str) -> int:
        """How many callbacks a publish on ``channel`` would reach right now (patterns included)."""
        if not self._patterns:
            return len(self._channels.get(channel, ()))
        return len(self._targets(channel))

    def channels(self) -> list[str]:
        """Channels with at least one exact subscriber."""
        with self._lock:
            return list(self._channels)

    def close(self) -> None:
        """Release the backend (a no-op for the local one)."""
        self.backend.close()

    # --- internals ------------------------------------------------------------------------

    def _add(self, table: dict[str, Any], key: str, callback: Callable[..., Any], added: Callable[[str], None]) -> bool:
        with self._lock:
            members = self._members.setdefault((table is self._patterns, key), set())
            if callback in members:
                return False
            members.add(callback)
            current = table.get(key, ())
            table[key] = current + (callback,)
            first = not current
        if first:
            added(key)
        return True

    def _remove(
        self, table: dict[str, Any], key: str, callback: Callable[..., Any], removed: Callable[[str], None]
    ) -> bool:
        with self._lock:
            members = self._members.get((table is self._patterns, key))
            if members is None or callback not in members:
                return False
            members.discard(callback)
            remaining = tuple(c for c in table[key] if c != callback)
            if remaining:
                table[key] = remaining
            else:
                del table[key]  # forget empty channels: no growth from short-lived ones
                del self._members[(table is self._patterns, key)]
        if not remaining:
            removed(key)
        return True

    def _targets(self, channel: str) -> list[tuple[Callable[..., Any], bool]]:
        """``(callback, is_pattern)`` for each subscriber a publish on ``channel`` reaches, once each."""
        targets: list[tuple[Callable[..., Any], bool]] = [(c, False) for c in self._channels.get(channel, ())]
        if self._patterns:
            seen = {callback for callback, _ in targets}
            reserved = channel.startswith(RESERVED)
            for pattern, callbacks in list(self._patterns.items()):
                if reserved == pattern.startswith(RESERVED) and fnmatch.fnmatchcase(channel, pattern):
                    for callback in callbacks:
                        if callback not in seen:
                            seen.add(callback)
                            targets.append((callback, True))
        return targets

    def _deliver(self, channel: str, message: Any) -> int:
        """Call every local subscriber of ``channel``; return how many did not raise."""
        notified = 0
        for callback, is_pattern in self._targets(channel):
            try:
                if is_pattern:
                    callback(channel, message)
                else:
                    callback(message)
            except SubscriberGone:
                pass
            except ConnectionClosed as exc:
                if self.unsubscribe_all(callback):  # once: a concurrent publish may also have seen it fail
                    logger.info("subscriber %r of %r is closed (%s): unsubscribed", callback, channel, exc)
            except Exception:
                logger.exception("subscriber %r failed on channel %r", callback, channel)
            else:
                notified += 1
        return notified


def _check_name(name: object, what: str) -> None:
    if not isinstance(name, str) or not name:
        raise TypeError(f"{what} must be a non-empty str, not {name!r}")
