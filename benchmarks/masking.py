"""Throughput of rawws.frames.apply_mask (RFC 6455 §5.3), in MB/s.

Run: python benchmarks/masking.py

For each size it prints the best of several rounds for rawws's apply_mask and,
for comparison, the two textbook pure-Python methods: one big-integer XOR,
and the same in 64 KiB chunks.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from rawws.frames import apply_mask  # noqa: E402


def int_xor(data: bytes, key: bytes) -> bytes:
    n = len(data)
    q, r = divmod(n, 4)
    return (int.from_bytes(data, "little") ^ int.from_bytes(key * q + key[:r], "little")).to_bytes(n, "little")


def chunked_int_xor(data: bytes, key: bytes, chunk: int = 65536) -> bytes:
    if len(data) <= chunk:
        return int_xor(data, key)
    mask = int.from_bytes(key * (chunk // 4), "little")
    out = bytearray(len(data))
    view = memoryview(data)
    for start in range(0, len(data), chunk):
        piece = view[start : start + chunk]
        size = len(piece)
        part_mask = mask if size == chunk else mask & ((1 << (8 * size)) - 1)
        out[start : start + size] = (int.from_bytes(piece, "little") ^ part_mask).to_bytes(size, "little")
    return bytes(out)


def measure(function: Callable[[bytes, bytes], bytes], size: int, rounds: int = 5) -> float:
    data = os.urandom(size)
    key = os.urandom(4)
    repeat = max(3, (64 << 20) // size)
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeat):
            function(data, key)
        elapsed = time.perf_counter() - start
        best = max(best, size * repeat / elapsed / 1e6)
    return best


def main() -> None:
    sizes = [("125 B", 125), ("64 KiB", 64 << 10), ("1 MiB", 1 << 20), ("16 MiB", 16 << 20)]
    methods: list[tuple[str, Callable[[bytes, bytes], bytes]]] = [
        ("rawws apply_mask", apply_mask),
        ("int XOR", int_xor),
        ("chunked int XOR", chunked_int_xor),
    ]
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; MB/s, best of 5 rounds")
    print(f"{'size':>8} " + " ".join(f"{name:>18}" for name, _ in methods))
    for label, size in sizes:
        print(f"{label:>8} " + " ".join(f"{measure(fn, size):18.0f}" for _, fn in methods))


if __name__ == "__main__":
    main()
