"""Publish/subscribe on the threaded layer's public API.

:mod:`~rawws.pubsub.broker` (``MessageBroker`` and its backends),
:mod:`~rawws.pubsub.messages` (the ``{type, payload, timestamp}`` JSON
envelope), :mod:`~rawws.pubsub.server` (``serve_broker``, ``broker_handler``),
:mod:`~rawws.pubsub.client` (``PubSubClient``) and
:mod:`~rawws.pubsub.redis_backend` (channels shared across processes).
"""

from .server import (
    CLIENT_TYPES,
    MAX_DEPTH,
    MAX_PENDING,
    MAX_PENDING_BYTES,
    Authorize,
    BrokerClient,
    BrokerServer,
    broker_handler,
    serve_broker,
)

__all__ = [
    "serve_broker",
    "broker_handler",
    "Authorize",
    "BrokerClient",
    "BrokerServer",
    "CLIENT_TYPES",
    "MAX_DEPTH",
    "MAX_PENDING",
    "MAX_PENDING_BYTES",
]
