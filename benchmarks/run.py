"""The rawws benchmark: rawws against `websockets` and a bare threaded TCP server, in one run.

Run by hand (not part of the test suite):

    (cd benchmarks/loadgen && npm install)        # the load generator: Node.js + ws
    python benchmarks/run.py                      # everything, ~20 minutes
    python benchmarks/run.py --only rt,inflight --reps 3
    python benchmarks/run.py --markdown benchmarks/RESULTS.md

Each server runs in its own process (``servers.py``), pinned to CPU 0; the load
generator (``loadgen/loadgen.mjs``, Node.js) runs in another process pinned to
CPU 1, so they never compete for a core. Every echo is checked byte for byte
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
import resource
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
LOADGEN = os.path.join(HERE, "loadgen", "loadgen.mjs")
SERVERS = os.path.join(HERE, "servers.py")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

# (server kind, label, load generator options)
WS_SERVERS = [
    ("rawws", "rawws", {"kind": "ws"}),
    ("websockets", "websockets", {"kind": "ws"}),
    ("websockets-deflate", "websockets+deflate", {"kind": "ws", "deflate": True}),
]
TCP_SERVER = ("tcp", "bare TCP", {"kind": "tcp"})


def pin(cpu: int) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", str(cpu)]
    return []


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
        self.port = int(line.split()[1])

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
    process = subprocess.Popen(
        pin(1) + ["node", LOADGEN, scenario, json.dumps(args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    last: dict[str, Any] = {"errors": 1, "error": "no output"}
    deadline = time.monotonic() + timeout
    try:
        for line in process.stdout:
            data = json.loads(line)
            if on_line is not None and "answered" not in data and "opened" in data:
                on_line(data)
            last = data
            if time.monotonic() > deadline:
                break
        process.wait(max(1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        process.kill()
        last = {"errors": 1, "error": "load generator timed out"}
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
        self.out(f"\n### {title}\n")
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


def run_idle(report: Report, counts: list[int], hold: float, servers: list[tuple[str, str, dict[str, Any]]]) -> None:
    report.out("\n### Idle connections\n")
    report.out(f"Held for {hold:.0f} s, then one 32-byte echo sent on every connection at once.\n")
    report.out("| server | connections | opened | answered | answer time | RSS / conn | threads / conn | fds / conn |")
    report.out("|---|---|---|---|---|---|---|---|")
    for n in counts:
        for kind, label, options in servers:
            server = ServerProcess(kind, options.get("source"))
            base = server.status()
            during: dict[str, int] = {}

            def sample(_: dict[str, Any], server: ServerProcess = server, during: dict[str, int] = during) -> None:
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
            answered = result.get("answered", 0)
            t = result.get("answer_seconds")
            note = "" if alive else " (server died)"
            if result.get("error"):
                note += f" ({str(result['error'])[:80]})"
            report.out(
                f"| {label} | {n:,} | {result.get('opened', 0):,} | {answered:,} | "
                f"{fmt(t, ' s') if t is not None else '—'}{note} | {rss} | {threads} | {fds} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--only", default="rt,inflight,handshakes,fanout,broker,compression,idle")
    parser.add_argument("--idle-counts", default="1000,5000,10000")
    parser.add_argument("--hold", type=float, default=30.0)
    parser.add_argument("--servers", default="", help="comma-separated labels to run (default: all)")
    parser.add_argument("--markdown", help="also write the report to this file")
    parser.add_argument(
        "--rawws-before",
        metavar="DIR",
        help="also measure rawws imported from another checkout (git worktree add DIR COMMIT), as 'rawws-before'",
    )
    args = parser.parse_args()
    if not os.path.isdir(os.path.join(HERE, "loadgen", "node_modules", "ws")):
        raise SystemExit("install the load generator first: (cd benchmarks/loadgen && npm install)")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by the load generator
    only = set(args.only.split(","))
    report = Report()
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    import websockets

    report.out("## rawws benchmark results\n")
    report.out(
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} · {platform.platform()} · "
        f"{os.cpu_count()} CPUs · {platform.python_implementation()} {platform.python_version()} · "
        f"websockets {websockets.__version__} · load generator: Node.js {node} + ws · "
        f"servers pinned to CPU 0, load generator to CPU 1 · medians of {args.reps} runs"
    )
    global WS_SERVERS, TCP_SERVER
    if args.rawws_before:
        WS_SERVERS.insert(1, ("rawws", "rawws-before", {"kind": "ws", "source": os.path.abspath(args.rawws_before)}))
    if args.servers:
        wanted = set(args.servers.split(","))
        WS_SERVERS = [s for s in WS_SERVERS if s[1] in wanted or s[0] in wanted]
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
        report.out("\n### Pub/sub server: one publish until every subscriber has it (ms)\n")
        report.out("`rawws.serve_broker()` and its JSON protocol (subscribe, publish, message).\n")
        report.out("| subscribers | median | worst of 20 |")
        report.out("|---|---|---|")
        broker_server = [("rawws-broker", "rawws broker", {"kind": "ws"})]
        for subscribers in (100, 1000):
            params = {"subscribers": subscribers, "rounds": 20}
            cell = measure("brokerfanout", params, broker_server, args.reps, "ms_p50")["rawws broker"]
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
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("\n".join(report.lines) + "\n")


if __name__ == "__main__":
    main()
