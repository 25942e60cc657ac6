"""What the fuzzer prints: a progress line, a failure report per broken rule, a summary table."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from ..dissect import FrameStream, one_line
from .cases import Case, save
from .client import Verdict

if TYPE_CHECKING:
    from .runner import RuleResult

__all__ = ["Progress", "failure_report", "summary", "case_lines", "save_failure"]


class Progress:
    """A one-line status on a terminal, rewritten in place; nothing when the output is not a terminal."""

    def __init__(self, total_rules: int, stream: TextIO = sys.stderr) -> None:
        self.total = total_rules
        self.index = 0
        self.stream = stream
        self.live = stream.isatty()

    def __call__(self, result: RuleResult) -> None:
        if self.live:
            state = "failing, shrinking" if result.failures_seen else "ok so far"
            line = f"[{self.index}/{self.total}] {result.rule.id}: {result.examples} examples, {state}"
            self.stream.write("\r" + line[:100].ljust(100))
            self.stream.flush()

    def clear(self) -> None:
        if self.live:
            self.stream.write("\r" + " " * 100 + "\r")
            self.stream.flush()


def case_lines(case: Case) -> list[str]:
    """The case as written: each chunk in hex, then its frames in the one-line form of ``rawws decode``."""
    if case.request is not None:
        return ["request:"] + ["  " + line for line in case.request.decode("latin-1").split("\r\n") if line]
    lines = [f"{len(case.chunks)} write(s):"] + [f"  {chunk.hex(' ')}" for chunk in case.chunks]
    stream = FrameStream()
    frames = stream.feed(case.data)
    lines.append(f"{len(frames)} frame(s):")
    lines += [f"  {one_line(frame)}" for frame in frames]
    if stream.error is not None:
        lines.append(f"  then, at byte {stream.error.offset}: {stream.error.section}: {stream.error.rule}")
    elif stream.buffered:
        lines.append(f"  then {stream.buffered} byte(s) of a frame that never ends")
    return lines


def failure_report(result: RuleResult, replay_path: str | None, url: str) -> str:
    verdict: Verdict | None = result.failure
    assert verdict is not None and result.case is not None
    the_rule = verdict.rule
    lines = [f"FAIL {the_rule.id}  {the_rule.section}: {the_rule.sentence}"]
    if verdict.expected is not None and verdict.expected.outcome == "fail":
        lines.append(f"  rawws's protocol says: {verdict.expected.reason} -> close {verdict.expected.close_code}")
    lines.append(f"  what happened: {verdict.failure}")
    lines.append("  smallest case found:")
    lines += ["    " + line for line in case_lines(result.case)]
    if replay_path is not None:
        lines.append(f"  replay: python -m rawws fuzz {url} --replay {replay_path}")
    return "\n".join(lines)


def save_failure(result: RuleResult, directory: str, url: str) -> str | None:
    """Save the failing case as JSON in ``directory``; its path, or None if it could not be written."""
    assert result.case is not None
    try:
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, f"{result.rule.id}.json")
        save(result.case, path, url)
    except OSError:
        return None
    return path


def summary(results: Sequence[RuleResult], seconds: float) -> str:
    width = max([len(r.rule.id) for r in results] + [4])
    lines = [f"{'rule':<{width}}  {'section':<15} {'examples':>8}  result"]
    for r in results:
        if r.failure is not None:
            outcome = f"FAIL ({r.failure.rule.id})" if r.failure.rule.id != r.rule.id else "FAIL"
        elif r.cut_short and not r.examples:
            outcome = "not run (time budget reached)"
        else:
            outcome = "ok" + (" (time budget reached)" if r.cut_short else "")
        lines.append(f"{r.rule.id:<{width}}  {r.rule.section:<15} {r.examples:>8}  {outcome}")
    failed = sum(1 for r in results if r.failure is not None)
    total = sum(r.examples for r in results)
    verdict = "no failures" if not failed else f"{failed} rule(s) broken"
    lines.append(f"{len(results)} rules, {total} examples in {seconds:.1f} s: {verdict}")
    return "\n".join(lines)
