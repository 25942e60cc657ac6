"""The README's REPL sessions (the core stepped through with byte strings) are real."""

from __future__ import annotations

import doctest
import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"
SESSIONS = [block for block in re.findall(r"```python\n(.*?)```", README.read_text(), re.S) if block.startswith(">>>")]


def test_the_readme_has_repl_sessions() -> None:
    assert len(SESSIONS) >= 2


@pytest.mark.parametrize("session", SESSIONS, ids=[s.splitlines()[0][4:40] for s in SESSIONS])
def test_a_readme_repl_session_runs(session: str) -> None:
    parser = doctest.DocTestParser()
    test = parser.get_doctest(session, {}, "README", str(README), 0)
    result = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE).run(test)
    assert result.failed == 0
