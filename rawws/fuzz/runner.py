"""Hypothesis runs: one per rule, each shrinking its failure to the smallest case that still shows it."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as fixed_seed
from hypothesis.errors import Flaky, HypothesisWarning

from .cases import Case
from .client import Target, Verdict, run_case
from .generate import strategy_for
from .rules import Rule

__all__ = ["RuleResult", "run_rule"]


class _Broken(AssertionError):
    """Raised inside Hypothesis's test so that it shrinks the case."""


@dataclass
class RuleResult:
    rule: Rule
    examples: int = 0
    failure: Verdict | None = None
    case: Case | None = None
    cut_short: bool = False
    """The time budget ran out before ``max_examples``."""
    seconds: float = 0.0
    failures_seen: list[tuple[Case, Verdict]] = field(default_factory=list)


def run_rule(
    target: Target,
    the_rule: Rule,
    *,
    max_examples: int,
    seed: int | None,
    deadline: float,
    progress: Callable[[RuleResult], None],
) -> RuleResult:
    """Run up to ``max_examples`` cases of ``the_rule`` (and Hypothesis's shrinking) until ``deadline``."""
    result = RuleResult(the_rule)
    started = time.monotonic()

    def check(case: Case) -> None:
        if time.monotonic() > deadline:
            result.cut_short = True
            return  # out of time: every further case "passes", so Hypothesis stops quickly
        result.examples += 1
        verdict = run_case(target, case)
        if verdict.failure is not None:
            result.failures_seen.append((case, verdict))
        progress(result)
        if verdict.failure is not None:
            raise _Broken(verdict.failure)

    test = settings(
        max_examples=max_examples,
        database=None,
        deadline=None,
        derandomize=False,
        verbosity=Verbosity.quiet,
        report_multiple_bugs=False,
        phases=(Phase.explicit, Phase.generate, Phase.shrink),
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )(given(strategy_for(the_rule.id, target.uri.host_header, target.uri.resource_name))(check))
    if seed is not None:
        test = fixed_seed(seed)(test)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HypothesisWarning)  # the repr of a 64 KiB case is long, and never shown
        try:
            test()
        except (_Broken, Flaky):  # Flaky: a failure that did not come back while shrinking (a timing-dependent server)
            pass
    if result.failures_seen:
        # The smallest failing case: Hypothesis's shrunk one, unless the server was flaky while shrinking.
        result.case, result.failure = min(result.failures_seen, key=lambda item: item[0].size)
    result.seconds = time.monotonic() - started
    return result
