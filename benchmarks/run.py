"""The rawws benchmark: rawws against `websockets` and a bare threaded TCP server, in one run.

Run by hand (not part of the test suite):

    (cd benchmarks/loadgen && npm install)        # the load generator: Node.js + ws
    python benchmarks/run.py                      # everything, 40 minutes or more
    python benchmarks/run.py --only rt,inflight --reps 3
    python benchmarks/run.py --markdown benchmarks/RESULTS.md
    python benchmarks/run.py --only idle,brokerburst --idle-counts 1000 --hold 5   # bursts
    python benchmarks/run.py --only sustained --sustained-conns 200 --sustained-seconds 5

Each server runs in its own process (``servers.py``) and the load generator
(``loadgen/loadgen.mjs``, Node.js) in another, free on every CPU as users run
servers; ``--pin`` pins the server to CPU 0 and the load generator to CPU 1 so
they never compete for a core (every report says which). Every echo is checked byte for byte
by the load generator; a run with any error is reported and left out of the
medians. The table shows medians over ``--reps`` repetitions (interleaved
across servers to spread the machine's noise) and the ratio rawws / peer.
The load generator's own CPU use is printed with each result: when it stays
well below 100 % of its core, it was not the bottleneck.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
LOADGEN = os.path.join(HERE, "loadgen", "loadgen.mjs")
SERVERS = os.path.join(HERE, "servers.py")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

# (server kind, label, load generator options)
ServerSpec = tuple[str, str, dict[str, Any]]
WS_SERVERS: list[ServerSpec] = [
    ("rawws", "rawws", {"kind": "ws"}),
    ("websockets", "websockets", {"kind": "ws"}),
    ("websockets-deflate", "websockets+deflate", {"kind": "ws", "deflate": True}),
]
TCP_SERVER: ServerSpec = ("tcp", "bare TCP", {"kind": "tcp"})
BROKER_SERVER: list[ServerSpec] = [("rawws-broker", "rawws broker", {"kind": "ws"})]


PINNED = False  # --pin
PINNED_LABEL = "pinned (server CPU 0, load generator CPU 1)"
# Descriptors a process needs besides one per connection (listener, pipes, the interpreter's own files).
FD_MARGIN = 64


def pin(cpu: int) -> list[str]:
    if PINNED and shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", str(cpu)]
    return []


def pinning() -> str:
    return PINNED_LABEL if PINNED else "unpinned"


# Descriptors per connection in the server process, measured ("fds / conn" in the burst table):
# websockets' sync server holds 4 per connection (websockets 17), rawws and the bare TCP server 1.
FDS_PER_CONNECTION = {"websockets": 4, "websockets-deflate": 4, "websockets-relay": 4}


def raise_fd_limit(wanted: int) -> None:
    """Raise ``ulimit -n`` for this process and its children: the hard limit too where allowed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return
        except (ValueError, OSError):
            pass  # needs CAP_SYS_RESOURCE: fd_shortage() then names what does not fit
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def fd_shortage(connections: int, kind: str) -> str | None:
    """Why ``connections`` to a ``kind`` server cannot be opened under ``ulimit -n`` (None if they can).

    The load generator holds one descriptor per connection, the server
    :data:`FDS_PER_CONNECTION`; past the limit the server's accept() fails
    and the run would only time out.
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = connections * FDS_PER_CONNECTION.get(kind, 1) + FD_MARGIN
    if soft != resource.RLIM_INFINITY and soft < need:
        return (
            f"skipped: {connections:,} connections need ulimit -n ≥ {need:,} in the {kind} server "
            f"(the hard limit here is {soft:,})"
        )
    return None


class ServerProcess:
    def __init__(self, kind: str, source: str | None = None) -> None:
        """``source``: another checkout to import rawws from (``--rawws-before``)."""
        self.kind = kind
        env = dict(os.environ, RAWWS_SOURCE=source) if source else None
        self.process = subprocess.Popen(
            pin(0) + [sys.executable, SERVERS, kind, "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("ready"):
            raise RuntimeError(f"server {kind} did not start: {line!r}")
        words = line.split()
        self.port = int(words[1])
        if source and len(words) > 2 and os.path.realpath(words[2]) != os.path.realpath(source):
            self.stop()
            raise RuntimeError(f"server {kind} imported rawws from {words[2]}, not from {source}")

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.process.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def status(self) -> dict[str, int]:
        """RSS (bytes), threads and open descriptors of the server process."""
        rss = threads = 0
        with open(f"/proc/{self.process.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
                elif line.startswith("Threads:"):
                    threads = int(line.split()[1])
        fds = len(os.listdir(f"/proc/{self.process.pid}/fd"))
        return {"rss": rss, "threads": threads, "fds": fds}

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def loadgen(scenario: str, args: dict[str, Any], timeout: float, on_line: Any = None) -> dict[str, Any]:
    """Run one load generator scenario; its last JSON line is the result.

    Lines with a ``phase`` go to ``on_line`` as they come. Bounded by
    ``timeout`` even when the load generator prints nothing: a reader thread
    feeds a queue and the deadline is checked between lines.
    """
    process = subprocess.Popen(
        pin(1) + ["node", LOADGEN, scenario, json.dumps(args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stderr is not None
    lines: queue.Queue[str | None] = queue.Queue()

    def read(stream: Any) -> None:
        for line in stream:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, args=(process.stdout,), daemon=True).start()
    last: dict[str, Any] = {"errors": 1, "error": "no output"}
    deadline = time.monotonic() + timeout
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            process.kill()
            process.wait()
            return {"errors": 1, "error": f"load generator timed out after {timeout:.0f} s"}
        if line is None:
            break
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if on_line is not None and "phase" in data:
            on_line(data)
        last = data
    try:
        process.wait(max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if last.get("error") == "no output":
        last["error"] = "load generator printed nothing: " + process.stderr.read()[-300:]
    return last


@dataclass
class Cell:
    values: list[float] = field(default_factory=list)
    extra: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None


def measure(
    scenario: str, params: dict[str, Any], servers: list[tuple[str, str, dict[str, Any]]], reps: int, key: str
) -> dict[str, Cell]:
    cells = {label: Cell() for _, label, _ in servers}
    for _ in range(reps):
        for kind, label, options in servers:
            server = ServerProcess(kind, options.get("source"))
            try:
                cpu0 = server.cpu_seconds()
                start = time.monotonic()
                result = loadgen(scenario, {**params, **options, "port": server.port}, timeout=300)
                elapsed = time.monotonic() - start
                result["server_cpu"] = (server.cpu_seconds() - cpu0) / elapsed
            finally:
                server.stop()
            cell = cells[label]
            if result.get("errors"):
                cell.failures.append(str(result.get("error") or f"{result['errors']} errors"))
            else:
                cell.values.append(result[key])
                cell.extra.append(result)
    return cells


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    if value >= 100:
        return f"{value:,.0f}{unit}"
    if value >= 10:
        return f"{value:.1f}{unit}"
    return f"{value:.2f}{unit}"


class Report:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def out(self, text: str = "") -> None:
        print(text, flush=True)
        self.lines.append(text)

    def table(
        self, title: str, unit: str, rows: list[tuple[str, dict[str, Cell]]], lower_is_better: bool = False
    ) -> None:
        labels = list(rows[0][1])
        self.out(f"\n### {title} · {pinning()}\n")
        header = ["scenario"] + labels + [f"rawws/{label}" for label in labels if label != "rawws"]
        header += ["loadgen CPU", "rawws server CPU"]
        self.out("| " + " | ".join(header) + " |")
        self.out("|" + "---|" * len(header))
        for name, cells in rows:
            medians = {label: cells[label].median() for label in labels}
            values = [fmt(medians[label], unit) + ("" if not cells[label].failures else " ⚠") for label in labels]
            ratios = []
            for label in labels:
                if label == "rawws":
                    continue
                a, b = medians["rawws"], medians[label]
                ratios.append(f"{a / b:.2f}×" if a and b else "—")
            lg = [e.get("loadgen_cpu") for c in cells.values() for e in c.extra if e.get("loadgen_cpu") is not None]
            rawws_cpu = [e["server_cpu"] for e in cells["rawws"].extra]
            extra = [
                f"≤{max(lg) * 100:.0f}%" if lg else "—",
                f"{statistics.median(rawws_cpu) * 100:.0f}%" if rawws_cpu else "—",
            ]
            self.out("| " + " | ".join([name] + values + ratios + extra) + " |")
        if all(e.get("rate") for cells in (c for _, c in rows) for cell in cells.values() for e in cell.extra):
            self.out("\nServer CPU per message, µs (independent of the load generator's limits):\n")
            for name, cells in rows:
                parts = []
                for label, cell in cells.items():
                    per = [e["server_cpu"] / e["rate"] * 1e6 for e in cell.extra if e.get("rate")]
                    if per:
                        parts.append(f"{label} {statistics.median(per):.1f}")
                self.out(f"- {name}: " + "; ".join(parts))
        failures = [(name, label, c.failures) for name, cells in rows for label, c in cells.items() if c.failures]
        for name, label, reasons in failures:
            self.out(f"\n⚠ {name} / {label}: {len(reasons)} run(s) failed and were left out: {reasons[0][:200]}")
        if lower_is_better:
            self.out("\n(lower is better: a ratio below 1 means rawws is faster)")


Marks = dict[str, tuple[float, float]]


def recorder(server: ServerProcess, marks: Marks) -> Any:
    """An ``on_line`` for :func:`loadgen`: the time and the server's CPU seconds at each phase line."""

    def on_line(data: dict[str, Any]) -> None:
        marks.setdefault(data["phase"], (time.monotonic(), server.cpu_seconds()))

    return on_line


def cpu_between(marks: Marks, first: str = "burst", last: str = "done") -> str:
    """The server's CPU seconds between two of the load generator's phase lines."""
    if first in marks and last in marks:
        (t0, c0), (t1, c1) = marks[first], marks[last]
        return f"{c1 - c0:.2f} s ({(c1 - c0) / max(t1 - t0, 1e-9) * 100:.0f}%)"
    return "—"


def opened(result: dict[str, Any]) -> str:
    """How many connections the load generator opened, and in how long."""
    count = f"{result.get('opened', 0):,}"
    seconds = result.get("open_seconds")
    return f"{count} in {fmt(seconds, ' s')}" if seconds is not None else count


def seconds_or_dash(value: float | None, unit: str = " s") -> str:
    return fmt(value, unit) if value is not None else "—"


def failure_note(result: dict[str, Any], alive: bool) -> str:
    note = "" if alive else " (server died)"
    if result.get("error"):
        note += f" ({str(result['error'])[:100]})"
    return note


def run_idle(report: Report, counts: list[int], hold: float, servers: list[tuple[str, str, dict[str, Any]]]) -> None:
    """The burst: N connections opened and held, then one small echo on every one at once."""
    report.out(f"\n### Burst: idle connections all sending at once · {pinning()}\n")
    report.out(
        f"Held for {hold:.0f} s, then one 32-byte echo sent on every connection at once. "
        "*all answered in*: from the first send until the last answer (— if any was missing after "
        "60 s); p50 / p99: each connection's own answer time; RSS, threads and descriptors per "
        "connection sampled while held.\n"
    )
    report.out(
        "| server | connections | opened | answered | all answered in | p50 | p99 "
        "| RSS / conn | threads / conn | fds / conn | server CPU |"
    )
    report.out("|---|---|---|---|---|---|---|---|---|---|---|")
    for n in counts:
        for kind, label, options in servers:
            shortage = fd_shortage(n, kind)
            if shortage:
                report.out(f"| {label} | {n:,} | {shortage} |")
                continue
            server = ServerProcess(kind, options.get("source"))
            base = server.status()
            during: dict[str, int] = {}
            marks: Marks = {}
            mark = recorder(server, marks)

            def sample(
                data: dict[str, Any], server: ServerProcess = server, during: dict[str, int] = during, mark: Any = mark
            ) -> None:
                mark(data)
                if data["phase"] == "opened":
                    time.sleep(min(5.0, hold / 2))
                    during.update(server.status())

            try:
                result = loadgen(
                    "idle",
                    {**options, "port": server.port, "conns": n, "hold": hold, "answer_timeout": 60},
                    timeout=hold + 300,
                    on_line=sample,
                )
            finally:
                alive = server.process.poll() is None
                server.stop()
            if during and result.get("opened"):
                per = {k: (during[k] - base[k]) / max(1, result.get("opened", n)) for k in during}
                rss = f"{per['rss'] / 1024:.1f} KiB"
                threads = f"{per['threads']:.2f}"
                fds = f"{per['fds']:.2f}"
            else:
                rss = threads = fds = "—"
            report.out(
                f"| {label} | {n:,} | {opened(result)} | {result.get('answered', 0):,} | "
                f"{seconds_or_dash(result.get('all_seconds'))}{failure_note(result, alive)} | "
                f"{seconds_or_dash(result.get('p50_ms'), ' ms')} | {seconds_or_dash(result.get('p99_ms'), ' ms')} | "
                f"{rss} | {threads} | {fds} | {cpu_between(marks)} |"
            )
    report.out("\n(server CPU: the server's CPU seconds from the first send of the burst until the last answer)")


def run_broker_burst(
    report: Report, counts: list[int], hold: float, servers: list[tuple[str, str, dict[str, Any]]], presence: bool
) -> None:
    """The pub/sub burst: N subscribers of one channel, one publish, until every subscriber has it."""
    report.out(f"\n### Pub/sub burst: one publish to N subscribers of one channel · {pinning()}\n")
    if presence:
        joins = (
            "each server announces `presence` as subscribers join: rawws at most one per channel every 0.25 s, "
            "the websockets relay and rawws before that change one per join to everyone already there (N²/2); "
            "waited out before the publish, at most 120 s"
        )
    else:
        joins = "`presence` announcements off (servers.py `-quiet` kinds, `--broker-quiet`)"
    report.out(
        f"Every subscriber joins the channel `burst` ({joins}), then {hold:.0f} s held, then one `publish`. "
        "*all delivered in*: from the publish until the last subscriber has the message; p50 / p99: "
        "each subscriber's own delivery time.\n"
    )
    report.out(
        "| server | subscribers | subscribed | presence msgs | delivered | all delivered in | p50 | p99 | server CPU |"
    )
    report.out("|---|---|---|---|---|---|---|---|---|")
    for n in counts:
        for kind, label, options in servers:
            shortage = fd_shortage(n, kind)
            if shortage:
                report.out(f"| {label} | {n:,} | {shortage} |")
                continue
            server = ServerProcess(kind if presence else f"{kind}-quiet", options.get("source"))
            marks: Marks = {}
            try:
                result = loadgen(
                    "brokerburst",
                    {
                        "port": server.port,
                        "subscribers": n,
                        "hold": hold,
                        "settle_timeout": 120,
                        "answer_timeout": 60,
                    },
                    timeout=hold + 600,
                    on_line=recorder(server, marks),
                )
            finally:
                alive = server.process.poll() is None
                server.stop()
            setup_text = f"{result.get('presence', 0):,}" + ("" if result.get("settled", True) else " (still arriving)")
            report.out(
                f"| {label} | {n:,} | {opened(result)} | {setup_text} | {result.get('answered', 0):,} | "
                f"{seconds_or_dash(result.get('all_seconds'))}{failure_note(result, alive)} | "
                f"{seconds_or_dash(result.get('p50_ms'), ' ms')} | {seconds_or_dash(result.get('p99_ms'), ' ms')} | "
                f"{cpu_between(marks)} |"
            )
    report.out("\n(server CPU: the server's CPU seconds from the publish until the last delivery)")


def run_sustained(
    report: Report,
    conns: int,
    rate: float,
    seconds: float,
    echo_servers: list[tuple[str, str, dict[str, Any]]],
    room_servers: list[tuple[str, str, dict[str, Any]]],
) -> None:
    """Chat-like load: every connection sends ``rate`` messages/s on its own random phase."""
    report.out(f"\n### Sustained chat-like load · {pinning()}\n")
    report.out(
        f"{conns:,} connections × {rate:g} messages/s each for {seconds:g} s, each connection on its own "
        "random phase; ~150-byte JSON text messages. *echo*: latency of each echo on its own connection. "
        "*rooms of 10*: pub/sub clients in rooms of 10, each sending `chat` to its room; latency from the "
        "send to the delivery at each of the 9 other members. Latencies in ms; *delivered* counts "
        "messages that arrived (within 10 s of the end) against those expected; *server CPU*: the "
        "server's CPU seconds while the load ran, and as a share of one core; *send lag p99*: how late "
        "the load generator sent against its schedule (high: the load generator was the limit).\n"
    )
    report.out(
        "| load | server | delivered / expected | p50 | p90 | p99 | max | server CPU | loadgen CPU | send lag p99 |"
    )
    report.out("|---|---|---|---|---|---|---|---|---|---|")
    for mode, servers in (("echo", echo_servers), ("rooms", room_servers)):
        for kind, label, options in servers:
            shortage = fd_shortage(conns, kind)
            if shortage:
                report.out(f"| {mode} | {label} | {shortage} |")
                continue
            server = ServerProcess(kind, options.get("source"))
            marks: Marks = {}
            try:
                result = loadgen(
                    "sustained",
                    {
                        "port": server.port,
                        "mode": mode,
                        "conns": conns,
                        "rate": rate,
                        "duration": seconds,
                        "room_size": 10,
                        "drain_timeout": 10,
                    },
                    timeout=seconds + 300,
                    on_line=recorder(server, marks),
                )
            finally:
                alive = server.process.poll() is None
                server.stop()
            server_cpu = cpu_between(marks, "load", "drain")
            expected = result.get("expected", 0)
            delivered = result.get("delivered", 0)
            mark = "" if expected and delivered == expected and not result.get("errors") else " ⚠"
            loadgen_cpu = result.get("loadgen_cpu")
            report.out(
                f"| {'echo' if mode == 'echo' else 'rooms of 10'} | {label} | "
                f"{delivered:,} / {expected:,}{mark}{failure_note(result, alive)} | "
                + " | ".join(seconds_or_dash(result.get(k), "") for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms"))
                + f" | {server_cpu} | {f'{loadgen_cpu * 100:.0f}%' if loadgen_cpu is not None else '—'} | "
                f"{seconds_or_dash(result.get('lag_p99_ms'), ' ms')} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--only", default="rt,inflight,handshakes,fanout,broker,compression,idle,brokerburst,sustained")
    parser.add_argument("--idle-counts", default="1000,5000,10000", help="connections for the idle burst")
    parser.add_argument("--broker-counts", default="1000,5000,10000", help="subscribers for the pub/sub burst")
    parser.add_argument(
        "--broker-quiet",
        action="store_true",
        help="drop the presence messages while the pub/sub burst's subscribers join (servers.py -quiet kinds)",
    )
    parser.add_argument("--hold", type=float, default=30.0, help="seconds the burst connections are held")
    parser.add_argument("--sustained-conns", type=int, default=1000)
    parser.add_argument("--sustained-rate", type=float, default=10.0, help="messages/s per connection")
    parser.add_argument("--sustained-seconds", type=float, default=20.0)
    parser.add_argument("--pin", action="store_true", help=f"{PINNED_LABEL}; default: unpinned")
    parser.add_argument("--servers", default="", help="comma-separated labels to run (default: all)")
    parser.add_argument("--markdown", help="also write the report to this file")
    parser.add_argument(
        "--rawws-before",
        metavar="DIR",
        help="also measure rawws imported from another checkout (git worktree add DIR COMMIT), as 'rawws-before'",
    )
    args = parser.parse_args()
    global PINNED
    PINNED = args.pin
    if not os.path.isdir(os.path.join(HERE, "loadgen", "node_modules", "ws")):
        raise SystemExit("install the load generator first: (cd benchmarks/loadgen && npm install)")
    raise_fd_limit(4 * max(int(c) for c in f"{args.idle_counts},{args.broker_counts}".split(",")) + FD_MARGIN)
    only = set(args.only.split(","))
    report = Report()
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    import websockets

    report.out("## rawws benchmark results\n")
    report.out(
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} · {platform.platform()} · "
        f"{os.cpu_count()} CPUs · {platform.python_implementation()} {platform.python_version()} · "
        f"websockets {websockets.__version__} · load generator: Node.js {node} + ws · "
        f"{pinning()} · medians of {args.reps} runs"
    )
    global WS_SERVERS, TCP_SERVER
    broker_servers = list(BROKER_SERVER)
    room_servers: list[ServerSpec] = broker_servers + [("websockets-relay", "websockets relay", {"kind": "ws"})]
    if args.rawws_before:
        before = os.path.abspath(args.rawws_before)
        WS_SERVERS.insert(1, ("rawws", "rawws-before", {"kind": "ws", "source": before}))
        broker_servers.append(("rawws-broker", "rawws-before broker", {"kind": "ws", "source": before}))
        room_servers.insert(1, broker_servers[-1])
    if args.servers:
        wanted = set(args.servers.split(","))
        WS_SERVERS = [s for s in WS_SERVERS if s[1] in wanted or s[0] in wanted]
        # "rawws broker" and "websockets relay" follow "rawws" and "websockets"
        room_servers = [s for s in room_servers if s[1] in wanted or s[1].split()[0] in wanted]
    all_servers = WS_SERVERS + [TCP_SERVER]
    plain_ws = [s for s in WS_SERVERS if s[0] != "websockets-deflate"]
    d = args.duration
    if "rt" in only:
        rows = []
        for size, label in [(32, "32 B"), (1024, "1 KiB"), (65536, "64 KiB"), (1 << 20, "1 MiB")]:
            params = {"size": size, "warmup": 0.5, "duration": d, "max_count": 10**7}
            rows.append((f"{label} round trips/s", measure("rt", params, all_servers, args.reps, "rate")))
        report.table("One connection, sequential round trips (round trips/s)", "", rows)
        report.out("\nLatency (p50 / p99, µs):\n")
        for name, cells in rows:
            parts = []
            for label, cell in cells.items():
                if cell.extra:
                    p50 = statistics.median(e["p50_us"] for e in cell.extra)
                    p99 = statistics.median(e["p99_us"] for e in cell.extra)
                    parts.append(f"{label} {p50:.0f} / {p99:.0f}")
            report.out(f"- {name.split(' round')[0]}: " + "; ".join(parts))
    if "inflight" in only:
        rows = []
        for conns in (10, 100):
            for size, label in [(32, "32 B"), (1024, "1 KiB")]:
                params = {"conns": conns, "inflight": 16, "size": size, "warmup": 1.0, "duration": d}
                rows.append(
                    (
                        f"{conns} conns × 16 in flight, {label}",
                        measure("inflight", params, all_servers, args.reps, "rate"),
                    )
                )
        report.table("Many connections, 16 messages in flight each (messages/s)", "", rows)
    if "handshakes" in only:
        rows = []
        for concurrency in (1, 10):
            params = {"concurrency": concurrency, "duration": d}
            rows.append(
                (
                    f"handshakes/s, {concurrency} at a time",
                    measure("handshakes", params, WS_SERVERS[:2], args.reps, "rate"),
                )
            )
        report.table("Opening and closing handshakes (connections/s)", "", rows)
    if "fanout" in only:
        rows = []
        for subscribers in (100, 1000):
            params = {"subscribers": subscribers, "rounds": 20, "size": 64}
            rows.append((f"fan-out to {subscribers:,}", measure("fanout", params, plain_ws, args.reps, "ms_p50")))
        report.table(
            "Fan-out: one published message until every subscriber has it (ms, median of 20)",
            " ms",
            rows,
            lower_is_better=True,
        )
    if "broker" in only:
        report.out(f"\n### Pub/sub server: one publish until every subscriber has it (ms) · {pinning()}\n")
        report.out("`rawws.serve_broker()` and its JSON protocol (subscribe, publish, message).\n")
        report.out("| subscribers | median | worst of 20 |")
        report.out("|---|---|---|")
        for subscribers in (100, 1000):
            params = {"subscribers": subscribers, "rounds": 20}
            cell = measure("brokerfanout", params, BROKER_SERVER, args.reps, "ms_p50")["rawws broker"]
            worst = max((e["ms_max"] for e in cell.extra), default=None)
            report.out(f"| {subscribers:,} | {fmt(cell.median(), ' ms')} | {fmt(worst, ' ms')} |")
    if "compression" in only:
        rows = []
        deflate_servers = [
            ("rawws-deflate", "rawws+deflate", {"kind": "ws", "deflate": True}),
            ("websockets-deflate", "websockets+deflate", {"kind": "ws", "deflate": True}),
            ("rawws", "rawws, off", {"kind": "ws"}),
        ]
        for text, kind in ((True, "JSON text"), (False, "random binary")):
            for size, label in [(1024, "1 KiB"), (65536, "64 KiB")]:
                params = {"conns": 10, "inflight": 16, "size": size, "text": text, "warmup": 1.0, "duration": d}
                cells = measure("inflight", params, deflate_servers, args.reps, "rate")
                renamed = {("rawws" if k == "rawws+deflate" else k): v for k, v in cells.items()}
                rows.append((f"{kind}, {label}", renamed))
        report.table("Compression on: 10 connections × 16 in flight (messages/s)", "", rows)
        report.out("\n(`rawws` is rawws with permessage-deflate negotiated; `rawws, off` is the same server and load")
        report.out("without compression, for the cost of compressing.)")
    if "idle" in only:
        counts = [int(c) for c in args.idle_counts.split(",")]
        idle_servers = [s for s in WS_SERVERS if s[0] != "websockets-deflate"]
        run_idle(report, counts, args.hold, idle_servers + ([TCP_SERVER] if not args.servers else []))
    if "brokerburst" in only:
        counts = [int(c) for c in args.broker_counts.split(",")]
        run_broker_burst(report, counts, args.hold, room_servers, not args.broker_quiet)
    if "sustained" in only:
        run_sustained(report, args.sustained_conns, args.sustained_rate, args.sustained_seconds, plain_ws, room_servers)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("\n".join(report.lines) + "\n")


if __name__ == "__main__":
    main()
