"""Run every threaded-layer test both ways a waiting ``recv()`` can get its data.

A handler that gets one of the reactor's self-reading slots reads its own socket;
the others sleep while the shared reactor reads for them (see rawws/sync/reactor.py).
With a few connections per test the first way is the only one taken, so each test
also runs with no slots at all, where every wait goes through the reactor.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rawws.sync import reactor


@pytest.fixture(autouse=True, params=["self-read", "reactor-read"])
def read_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "reactor-read":
        monkeypatch.setattr(reactor, "SELF_READERS", 0)
    yield str(request.param)
