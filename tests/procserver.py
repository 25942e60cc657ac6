"""A rawws server in its own process, measured from outside (``/proc/PID/status`` and ``stat``).

Hostile-peer tests attack a server that shares nothing with the test: its
memory, threads and CPU time are read the way an operator would read them.
``ServerProcess(handler_source, **serve_options)`` runs ``serve(handler, ...)``
where ``handler`` is defined by ``handler_source`` (Python code defining a
function named ``handler``); the process prints its port and serves until the
test ends it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from typing import Any

__all__ = ["ServerProcess", "ECHO", "SLOW_ECHO"]

ECHO = """
def handler(ws):
    for message in ws:
        ws.send(message)
"""

SLOW_ECHO = """
import time
def handler(ws):
    for message in ws:
        time.sleep(0.5)  # a busy application: received messages wait for it
        ws.send(message)
"""

_MAIN = """
import json, sys
from rawws import serve
{handler}
options = json.loads(sys.argv[1])
server = serve(handler, "127.0.0.1", 0, **options)
print(server.port, flush=True)
server.start()
sys.stdin.read()  # the test closes stdin (or kills us) to stop the server
"""


class ServerProcess:
    """Start ``serve(handler, **options)`` in a subprocess; a context manager."""

    def __init__(self, handler_source: str = ECHO, *, root: str | None = None, **options: Any) -> None:
        """``root``: the source tree to import rawws from (default: this checkout)."""
        source = _MAIN.format(handler=textwrap.dedent(handler_source))
        self.process = subprocess.Popen(
            [sys.executable, "-c", source, json.dumps(options)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=root or os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self.process.kill()
            raise RuntimeError("the server process did not start")
        self.port = int(line)
        self.pid = self.process.pid

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)

    def _status(self, field: str) -> int:
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise KeyError(field)

    @property
    def rss(self) -> int:
        """Resident memory in bytes."""
        return self._status("VmRSS") * 1024

    @property
    def threads(self) -> int:
        return self._status("Threads")

    @property
    def cpu_seconds(self) -> float:
        """User plus system CPU time the process has used."""
        with open(f"/proc/{self.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def alive(self) -> bool:
        return self.process.poll() is None

    def peak_rss_during(self, seconds: float, interval: float = 0.05) -> int:
        """Sample resident memory for ``seconds``; return the highest reading."""
        peak = self.rss
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(interval)
            peak = max(peak, self.rss)
        return peak
