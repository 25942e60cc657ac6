"""WebSocket extensions (RFC 6455 §9): the interface the protocol core drives."""

from .base import Extension, ExtensionFactory

__all__ = ["Extension", "ExtensionFactory"]
