"""``python -m rawws fuzz URL``: the options, the loopback guard, and the run from first rule to summary."""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import sys
import time
from typing import Any

from ..exceptions import InvalidURI
from ..uri import parse_uri
from .cases import load
from .client import Target, check_websocket, resolve, run_case
from .report import Progress, case_lines, failure_report, save_failure, summary
from .rules import GROUPS, rule, select

__all__ = ["add_arguments", "run", "INSTALL_HINT"]

INSTALL_HINT = "rawws fuzz needs Hypothesis: pip install 'rawws[fuzz]'"
MAX_EXAMPLES_CAP = 10_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", help="the server to test, ws://HOST:PORT/PATH")
    parser.add_argument(
        "--max-examples",
        type=int,
        default=25,
        help=f"cases per rule, before shrinking (default 25, at most {MAX_EXAMPLES_CAP})",
    )
    parser.add_argument("--seed", type=int, help="Hypothesis seed, to repeat a run")
    parser.add_argument(
        "--echo", action="store_true", help="the server echoes every message: check each comes back unchanged"
    )
    parser.add_argument(
        "--timeout", type=float, default=2.0, help="seconds to wait for the server in each case (default 2)"
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="GROUP",
        help=f"only these rule groups or rule ids (repeatable or comma-separated): {', '.join(GROUPS)}",
    )
    parser.add_argument(
        "--max-time", type=float, default=300.0, help="time budget of the whole run in seconds (default 300)"
    )
    parser.add_argument("--replay", metavar="FILE", help="run one saved case (written by an earlier run) and report it")
    parser.add_argument(
        "--save-dir",
        default="rawws-fuzz-failures",
        help="where failing cases are saved (default ./rawws-fuzz-failures)",
    )
    parser.add_argument("--allow-remote", action="store_true", help="allow a host that is not this machine (loopback)")


def _is_loopback(address: tuple[Any, ...]) -> bool:
    return ipaddress.ip_address(str(address[0]).split("%")[0]).is_loopback


def _target(args: argparse.Namespace) -> Target | str:
    """The checked target: the URL parsed, its host resolved once and (unless remote is allowed) loopback."""
    try:
        uri = parse_uri(args.url)
    except InvalidURI as exc:
        return str(exc)
    if not 0 < args.timeout <= 60:
        return "--timeout is between 0 and 60 seconds"
    if not 1 <= args.max_examples <= MAX_EXAMPLES_CAP:
        return f"--max-examples is between 1 and {MAX_EXAMPLES_CAP}"
    if not args.max_time > 0:
        return "--max-time is a number of seconds above 0"
    try:
        addresses = resolve(uri.host, uri.port)
    except OSError as exc:
        return f"cannot resolve {uri.host}: {exc}"
    if not args.allow_remote and not all(_is_loopback(sockaddr) for _, sockaddr in addresses):
        return f"{uri.host} is not a loopback address: fuzzing other machines needs --allow-remote"
    # Every case connects to this one checked address, never to the name again (a rebound name cannot move it).
    return Target(uri, args.url, args.timeout, args.echo, address=addresses[0])


def run(args: argparse.Namespace) -> int:
    target = _target(args)
    if isinstance(target, str):
        print(f"fuzz: {target}", file=sys.stderr)
        return 2
    if args.replay:
        return _replay(target, args.replay)
    try:
        from .runner import RuleResult, run_rule
    except ImportError:
        print(INSTALL_HINT, file=sys.stderr)
        return 2
    only = [name.strip() for value in args.only or () for name in value.split(",") if name.strip()]
    try:
        rules = select(only)
    except ValueError as exc:
        print(f"fuzz: {exc}", file=sys.stderr)
        return 2
    started = time.monotonic()
    deadline = started + args.max_time
    target = dataclasses.replace(target, stop_at=deadline)
    problem = check_websocket(target)
    if problem is not None:
        print(f"fuzz: {problem}; nothing was fuzzed", file=sys.stderr)
        return 2
    print(f"fuzzing {args.url}: {len(rules)} rules, up to {args.max_examples} examples each", flush=True)
    progress = Progress(len(rules))
    results = []
    for index, the_rule in enumerate(rules, 1):
        if time.monotonic() >= deadline:
            results.append(RuleResult(the_rule, cut_short=True))  # the budget is spent: not run
            continue
        progress.index = index
        result = run_rule(
            target, the_rule, max_examples=args.max_examples, seed=args.seed, deadline=deadline, progress=progress
        )
        progress.clear()
        results.append(result)
        if result.failure is not None:
            path = save_failure(result, args.save_dir, args.url)
            print(failure_report(result, path, args.url) + "\n", flush=True)
    print(summary(results, time.monotonic() - started), flush=True)
    return 1 if any(r.failure is not None for r in results) else 0


def _replay(target: Target, path: str) -> int:
    try:
        case = load(path)
        the_rule = rule(case.rule)
    except (OSError, ValueError) as exc:
        print(f"fuzz: cannot replay {path}: {exc}", file=sys.stderr)
        return 2
    except KeyError:
        print(f"fuzz: cannot replay {path}: unknown rule", file=sys.stderr)
        return 2
    problem = check_websocket(target)
    if problem is not None:
        print(f"fuzz: {problem}; nothing was replayed", file=sys.stderr)
        return 2
    verdict = run_case(target, case)
    print(f"replaying {path} against {target.url}: {the_rule.id}  {the_rule.section}: {the_rule.sentence}")
    print("\n".join(case_lines(case)))
    if verdict.failure is None:
        print("ok: the server did what the rule requires")
        return 0
    print(f"FAIL: {verdict.failure}")
    return 1
