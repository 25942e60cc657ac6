"""``python -m rawws fuzz URL``: a property-based conformance fuzzer for any WebSocket server.

It connects as a client over real sockets, writes Hypothesis-generated frame
streams (valid and broken in every way RFC 6455 names), and judges what the
server does against rawws's own sans-I/O :class:`~rawws.protocol.Protocol`:
valid input must leave the connection open (and, with ``--echo``, come back
unchanged); broken input must be answered with the right close code and the
TCP connection closed. Each failure is reported by the rule it breaks, with
the smallest byte stream Hypothesis found, saved for ``--replay``.

The modules, each with one job:

- :mod:`rawws.fuzz.rules` — the rules, their RFC sections, sentences and groups.
- :mod:`rawws.fuzz.cases` — a test case (bytes and how they were written), saved and loaded as JSON.
- :mod:`rawws.fuzz.oracle` — what a conforming server does with a case, from rawws's ``Protocol``.
- :mod:`rawws.fuzz.generate` — the Hypothesis strategies for each rule (imports Hypothesis).
- :mod:`rawws.fuzz.client` — one case against the server over a socket, and the verdict.
- :mod:`rawws.fuzz.runner` — Hypothesis runs per rule, shrinking, the time budget.
- :mod:`rawws.fuzz.report` — the progress line, the summary table, the failure reports.
- :mod:`rawws.fuzz.cli` — the command's options and entry point.

Hypothesis is an optional dependency (``pip install 'rawws[fuzz]'``), imported
only when the command runs.
"""
