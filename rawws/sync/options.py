"""Every setting of the threaded layer, typed, with its default written once.

:class:`ConnectionOptions` holds what a connection needs whichever end it is
(limits and timers); :class:`ServerOptions` and :class:`ClientOptions` add
each side's own. ``serve(...)`` and ``connect(...)`` take the same names as
keyword arguments (checked by ``mypy`` through :class:`ServerSettings` and
:class:`ClientSettings`), or a whole options object. The README's tables and
"Limits and defences" explain each one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from ssl import SSLContext
from typing import Any, TypedDict, Union

from ..extensions.permessage_deflate import DeflateConfig, compression_config
from ..handshake import normalize_allowed_hosts, normalize_origins
from ..http11 import Request, Response
from .pending import PendingConnection

__all__ = [
    "ConnectionOptions",
    "ServerOptions",
    "ClientOptions",
    "ConnectionSettings",
    "ServerSettings",
    "ClientSettings",
    "EventClientSettings",
    "Compression",
    "ProcessRequest",
    "SelectSubprotocol",
]

Compression = Union[str, DeflateConfig, None]
"""``"deflate"`` (permessage-deflate with :class:`DeflateConfig`'s defaults), a ``DeflateConfig``, or None (off)."""

ProcessRequest = Callable[[PendingConnection, Request], Union[Response, None]]
SelectSubprotocol = Callable[[list[str]], Union[str, None]]


@dataclass(frozen=True)
class ConnectionOptions:
    """Limits and timers of one connection, either end."""

    max_size: int | None = 2**20
    """Largest message (1 MiB); bigger ones close the connection with 1009. None: no limit."""
    max_queue: int | None = 16
    """Received messages waiting for ``recv()`` before rawws stops reading (TCP pushes back)."""
    ping_interval: float | None = 20.0
    """Seconds between keepalive pings; None: no keepalive."""
    ping_timeout: float | None = 20.0
    """Seconds a keepalive ping waits for its pong before the connection is closed with 1011."""
    open_timeout: float | None = 10.0
    """Seconds to finish TLS and the opening handshake."""
    close_timeout: float | None = 10.0
    """Seconds to finish the closing handshake before TCP is closed anyway."""
    write_limit: int | None = 2**20
    """Bytes queued behind a stuck write before rawws stops reading from that peer."""
    write_timeout: float | None = 20.0
    """Seconds a peer may take no byte of what is written to it before it is dropped."""
    compression: Compression = "deflate"
    """permessage-deflate (RFC 7692): ``"deflate"``, a :class:`DeflateConfig`, or None."""
    logger: logging.Logger | None = None
    """Where to log; at DEBUG level every frame in and out. None: ``rawws.server`` / ``rawws.client``."""

    def __post_init__(self) -> None:
        compression_config(self.compression)  # refuses anything else now, not at the first connection
        for name in ("max_size", "max_queue", "write_limit"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, or None for no limit, not {value!r}")
        for name in ("ping_interval", "ping_timeout", "open_timeout", "close_timeout", "write_timeout"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be a positive number of seconds, or None, not {value!r}")

    @property
    def deflate(self) -> DeflateConfig | None:
        """The compression setting as a config (None: off)."""
        return compression_config(self.compression)


@dataclass(frozen=True)
class ServerOptions(ConnectionOptions):
    """What :func:`rawws.serve` accepts besides the handler and the address."""

    subprotocols: Sequence[str] = ()
    """Supported subprotocols; the client's order of preference wins."""
    select_subprotocol: SelectSubprotocol | None = None
    """``f(offered) -> str | None`` to choose the subprotocol yourself."""
    origins: Sequence[str | None] | str | None = None
    """Allowed ``Origin`` values (None in the list allows no header); others get 403. None: any.

    ``"same-origin"`` (in the list, or alone as short for ``["same-origin", None]``)
    allows pages served from the scheme, host and port the request was sent to
    (:func:`rawws.handshake.check_origin`). Checked and normalised when the
    options are made (``"HTTPS://App.example/"`` is stored as ``"https://app.example"``,
    :func:`rawws.handshake.normalize_origins`): TypeError or ValueError then, not at a handshake."""
    allowed_hosts: Sequence[str] | str | None = None
    """Names the ``Host`` header may carry (``["localhost", "127.0.0.1"]``; a str is one name), port aside;
    others get 403, pages included. None: any. A name with a port is refused (ValueError)."""
    process_request: ProcessRequest | None = None
    """``f(pending, request) -> Response | None``: answer plain HTTP instead of upgrading."""
    max_handshakes: int | None = 256
    """Opening handshakes in progress at once; past it new connections wait for a slot,
    then get 503 (see ``DEFAULT_MAX_HANDSHAKES``)."""
    ssl: SSLContext | None = None
    """A server-side TLS context for ``wss://``."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_handshakes is not None and self.max_handshakes < 1:
            raise ValueError(f"max_handshakes must be at least 1, or None for no cap, not {self.max_handshakes!r}")
        # Checked once here, so that a mistake is an error at serve() time rather than a 500 at every handshake.
        object.__setattr__(self, "origins", normalize_origins(self.origins))
        object.__setattr__(self, "allowed_hosts", normalize_allowed_hosts(self.allowed_hosts))


@dataclass(frozen=True)
class ClientOptions(ConnectionOptions):
    """What :func:`rawws.connect` accepts besides the URI."""

    subprotocols: Sequence[str] = ()
    """Subprotocols to offer, most preferred first."""
    origin: str | None = None
    """The ``Origin`` header to send."""
    additional_headers: Sequence[tuple[str, str]] | Mapping[str, str] = ()
    """More headers for the handshake request."""
    user_agent: str | None = "rawws/0.1"
    """The ``User-Agent`` header; None sends none."""
    ssl: SSLContext | None = None
    """A client TLS context for ``wss://`` (default: ``ssl.create_default_context()``)."""
    server_hostname: str | None = None
    """The name to check the certificate against and send as SNI (default: the URI's host)."""


class ConnectionSettings(TypedDict, total=False):
    """:class:`ConnectionOptions` as keyword arguments."""

    max_size: int | None
    max_queue: int | None
    ping_interval: float | None
    ping_timeout: float | None
    open_timeout: float | None
    close_timeout: float | None
    write_limit: int | None
    write_timeout: float | None
    compression: Compression
    logger: logging.Logger | None


class ServerSettings(ConnectionSettings, total=False):
    """:class:`ServerOptions` as keyword arguments (for ``serve(**settings)`` and what wraps it)."""

    subprotocols: Sequence[str]
    select_subprotocol: SelectSubprotocol | None
    origins: Sequence[str | None] | str | None
    allowed_hosts: Sequence[str] | str | None
    process_request: ProcessRequest | None
    max_handshakes: int | None
    ssl: SSLContext | None


class ClientSettings(ConnectionSettings, total=False):
    """:class:`ClientOptions` as keyword arguments (for ``connect(**settings)`` and what wraps it)."""

    subprotocols: Sequence[str]
    origin: str | None
    additional_headers: Sequence[tuple[str, str]] | Mapping[str, str]
    user_agent: str | None
    ssl: SSLContext | None
    server_hostname: str | None


class EventClientSettings(ClientSettings, total=False):
    """:class:`~rawws.sync.eventclient.EventClient`'s keyword arguments (for what wraps it)."""

    on_close: Callable[[Any, int, str], Any] | None
    on_error: Callable[[Any, BaseException], Any] | None
    reconnect: bool
    initial_delay: float
    factor: float
    max_delay: float
    jitter: float
    max_attempts: int | None
