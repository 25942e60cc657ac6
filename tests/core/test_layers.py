"""The layers hold: the core loads no I/O, no module touches another's private names, public names resolve."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys
from dataclasses import fields

import pytest

import rawws
from rawws.sync.options import ClientOptions, ClientSettings, ServerOptions, ServerSettings

ROOT = pathlib.Path(__file__).resolve().parents[2]
CORE = [
    "frames",
    "utf8",
    "http11",
    "uri",
    "handshake",
    "opening",
    "protocol",
    "dissect",
    "extensions.permessage_deflate",
]


def test_the_sans_io_core_imports_no_socket_ssl_or_threading() -> None:
    # -S: no site packages, so nothing but the core itself can bring these modules in.
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); before = set(sys.modules); "
        + "; ".join(f"import rawws.{name}" for name in CORE)
        + "; print(sorted(m for m in ('socket', 'ssl', 'threading', '_thread', 'select', 'selectors')"
        " if m in sys.modules and m not in before))"
    )
    result = subprocess.run([sys.executable, "-S", "-c", code, str(ROOT)], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_hypothesis_stays_out_of_the_runtime_and_the_fuzz_command_until_it_runs() -> None:
    # The fuzzer (rawws.fuzz) may import Hypothesis only in generate.py and runner.py, which the
    # command loads when it runs; the command line and the rest of the package never do.
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import rawws, rawws.__main__, rawws.dissect; "
        "import rawws.fuzz.cli, rawws.fuzz.client, rawws.fuzz.report, rawws.fuzz.oracle; "
        "rawws.__main__.build_parser(); print('hypothesis' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code, str(ROOT)], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def _private_definitions(tree: ast.Module) -> set[str]:
    """``_names`` a module defines: functions, classes, attributes assigned on self, class-level names."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {name for name in names if name.startswith("_") and not name.startswith("__")}


def test_no_module_reads_or_writes_another_modules_private_names() -> None:
    offences = []
    for path in sorted((ROOT / "rawws").rglob("*.py")):
        tree = ast.parse(path.read_text())
        own = _private_definitions(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                if node.attr not in own:
                    offences.append(f"{path.relative_to(ROOT)}:{node.lineno}: .{node.attr}")
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(("rawws", ".")):
                offences += [
                    f"{path.relative_to(ROOT)}:{node.lineno}: imports {alias.name}"
                    for alias in node.names
                    if alias.name.startswith("_") and not alias.name.startswith("__")
                ]
    allowed = {"._thread", "._Compress", "._Decompress"}  # the standard library's own names (zlib's types)
    assert [o for o in offences if not any(o.endswith(a) for a in allowed)] == []


@pytest.mark.parametrize("name", rawws.__all__)
def test_every_public_name_resolves(name: str) -> None:
    assert getattr(rawws, name) is not None


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        rawws.nothing  # noqa: B018


@pytest.mark.parametrize(("settings", "options"), [(ServerSettings, ServerOptions), (ClientSettings, ClientOptions)])
def test_keyword_settings_list_exactly_the_options_fields(settings: type, options: type) -> None:
    assert set(settings.__annotations__) == {field.name for field in fields(options)}
