"""The reactor's wake gate: how many woken handlers run at once, and what a handler that blocks costs the others."""

from __future__ import annotations

import threading
import time
from typing import Any

from rawws.sync.client import connect
from rawws.sync.wakegate import Turn, WakeGate
from tests.conftest import scaled


class Recorder:
    def __init__(self, answer: bool = True) -> None:
        self.turns: list[Turn] = []
        self.answer = answer

    def __call__(self, turn: Turn) -> bool:
        self.turns.append(turn)
        return self.answer


def test_one_turn_at_a_time_and_each_end_passes_it_on() -> None:
    gate = WakeGate(1, lease=60)
    first, second, third = Recorder(), Recorder(), Recorder()
    for wake in (first, second, third):
        gate.wake(wake)
    assert (len(first.turns), len(second.turns), len(third.turns)) == (1, 0, 0)
    gate.end(first.turns[0])
    gate.end(first.turns[0])  # ending twice passes on one turn, not two
    assert (len(second.turns), len(third.turns)) == (1, 0)
    gate.end(second.turns[0])
    assert len(third.turns) == 1
    gate.end(third.turns[0])
    assert gate.running == 0


def test_a_wake_with_nobody_waiting_gives_its_turn_straight_on() -> None:
    gate = WakeGate(1, lease=60)
    nobody, somebody = Recorder(answer=False), Recorder()
    gate.wake(nobody)
    gate.wake(somebody)
    assert len(somebody.turns) == 1 and gate.running == 1


def test_turns_past_the_lease_end_and_raise_the_limit_then_it_comes_back_down() -> None:
    gate = WakeGate(1, lease=0.01)
    wakes = [Recorder() for _ in range(4)]
    for wake in wakes:
        gate.wake(wake)
    assert [len(w.turns) for w in wakes] == [1, 0, 0, 0]
    gate.start(wakes[0].turns[0])  # the handler runs, then blocks elsewhere
    time.sleep(0.02)
    deadline = gate.next_deadline()  # the reactor asks when to look again, then expires
    assert deadline is not None
    gate.expire()
    assert [len(w.turns) for w in wakes] == [1, 1, 1, 0]  # one ran out: the limit is 2 now
    assert gate.limit == 2
    gate.end(wakes[1].turns[0])  # back on time: the limit drops back to 1, no new turn yet
    assert gate.limit == 1 and len(wakes[3].turns) == 0
    gate.end(wakes[2].turns[0])
    assert len(wakes[3].turns) == 1 and gate.next_deadline() is None


def test_a_turn_does_not_run_out_while_its_handler_waits_to_run() -> None:
    """Queueing for the interpreter lock is not blocking elsewhere: letting more run would lengthen the queue."""
    gate = WakeGate(1, lease=0.005)
    first, second = Recorder(), Recorder()
    gate.wake(first)
    gate.wake(second)
    time.sleep(0.02)
    gate.expire()
    assert len(second.turns) == 0 and gate.limit == 1
    deadline = gate.next_deadline()
    assert deadline is not None and deadline > time.monotonic()  # the reactor looks again soon
    gate.start(first.turns[0])
    time.sleep(0.01)
    gate.expire()
    assert len(second.turns) == 1


def test_the_turn_list_stays_small_when_handlers_never_come_back() -> None:
    gate = WakeGate(1, lease=0.001)
    recorders = []
    for _ in range(2000):
        recorder = Recorder()
        recorders.append(recorder)
        gate.wake(recorder)  # handlers that run and never end their turns
        for turn in recorder.turns:
            gate.start(turn)
        time.sleep(0.00005)
    for _ in range(100):
        time.sleep(0.01)
        gate.expire()
        for recorder in recorders:
            for turn in recorder.turns:
                gate.start(turn)
        if gate.next_deadline() is None:
            break
    assert all(recorder.turns for recorder in recorders)
    assert gate.next_deadline() is None


def test_handlers_that_block_do_not_queue_behind_each_other(start_server: Any) -> None:
    """Forty handlers that each sleep 0.3 s per message answer in about 0.3 s, not 40 × 0.3 s."""
    count, pause = 40, 0.3

    def handler(ws: Any) -> None:
        for message in ws:
            time.sleep(pause)
            ws.send(message)

    server = start_server(handler, ping_interval=None)
    clients = [connect(f"ws://127.0.0.1:{server.port}/", ping_interval=None) for _ in range(count)]
    answers: list[object] = []
    lock = threading.Lock()
    try:
        time.sleep(0.2)  # every handler waits in recv()
        start = time.monotonic()
        for index, ws in enumerate(clients):
            ws.send(str(index))

        def read(ws: Any) -> None:
            message = ws.recv(timeout=scaled(20))
            with lock:
                answers.append(message)

        readers = [threading.Thread(target=read, args=(ws,)) for ws in clients]
        for thread in readers:
            thread.start()
        for thread in readers:
            thread.join(scaled(30))
        elapsed = time.monotonic() - start
    finally:
        for ws in clients:
            ws.close()
    assert sorted(answers, key=lambda a: int(str(a))) == [str(i) for i in range(count)]
    assert elapsed < scaled(count * pause / 4), f"{elapsed:.2f} s: the handlers' sleeps were serialised"


def test_pings_and_pongs_wake_no_handler(start_server: Any, monkeypatch: Any) -> None:
    """Only a queued message is worth a turn: 100 pings answered by the reactor cost the waiting handler nothing."""
    from rawws.sync import reactor

    monkeypatch.setattr(reactor, "SELF_READERS", 0)
    server = start_server(lambda ws: [ws.send(m) for m in ws], ping_interval=None)
    with connect(f"ws://127.0.0.1:{server.port}/", ping_interval=None) as ws:
        ws.send("warm")
        assert ws.recv(timeout=scaled(5)) == "warm"
        time.sleep(0.2)  # the handler waits in recv(), through the reactor
        gate = reactor.get_reactor().gate
        before = gate.given
        for _ in range(100):
            assert ws.ping().wait(scaled(5))
        woken = gate.given - before
    assert woken < 10, f"{woken} turns for 100 pings"
