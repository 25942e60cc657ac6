"""A recording TCP proxy on loopback: what crossed the wire, byte for byte, in each direction."""

from __future__ import annotations

import socket
import threading

__all__ = ["RecordingProxy"]


class RecordingProxy:
    def __init__(self, target_port: int) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.target_port = target_port
        self.to_server = bytearray()
        self.to_client = bytearray()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        try:
            client, _ = self.listener.accept()
        except OSError:
            return
        server = socket.create_connection(("127.0.0.1", self.target_port))
        threading.Thread(target=self._pump, args=(client, server, self.to_server), daemon=True).start()
        threading.Thread(target=self._pump, args=(server, client, self.to_client), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, record: bytearray) -> None:
        try:
            while data := source.recv(65536):
                record += data
                sink.sendall(data)
        except OSError:
            pass
        finally:
            try:
                sink.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def close(self) -> None:
        self.listener.close()

    @staticmethod
    def websocket_part(stream: bytes | bytearray) -> bytes:
        """The bytes after the HTTP head: the WebSocket frames."""
        end = bytes(stream).find(b"\r\n\r\n")
        return bytes(stream[end + 4 :])
