"""Command line: ``python -m rawws`` (the chat demo), ``serve --echo|--broker``, ``connect URL``,
``decode HEX`` (the frame dissector) and ``fuzz URL`` (the conformance fuzzer)."""

from __future__ import annotations

import argparse
import codecs
import logging
import os
import queue
import re
import ssl
import sys
import threading
from collections.abc import Sequence
from typing import Any

from . import __version__
from .exceptions import ConnectionClosed, InvalidHandshake, RawwsError
from .sync.client import connect
from .sync.options import ClientOptions, ServerOptions
from .sync.server import Server, serve

__all__ = ["main"]


def _echo(ws: Any) -> None:
    for message in ws:
        ws.send(message)


def _size(text: str) -> int | None:
    """Parse a size like 1048576, 16MiB, 64KiB, or "none" (no limit); 0 and negative sizes are refused."""
    value = text.strip().lower()
    if value in ("none", "unlimited"):
        return None
    try:
        for suffix, factor in (("kib", 1024), ("mib", 1024**2), ("gib", 1024**3), ("k", 1024), ("m", 1024**2)):
            if value.endswith(suffix):
                size = int(float(value[: -len(suffix)]) * factor)
                break
        else:
            size = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 1048576, 64KiB, 16MiB, or none)") from None
    if size < 1:
        raise argparse.ArgumentTypeError(f"a size must be at least 1 byte, not {text!r}; use 'none' for no limit")
    return size


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _header(text: str) -> tuple[str, str]:
    """Parse ``--header NAME:VALUE`` (RFC 9110 §5: a token, a colon, a value without line breaks)."""
    name, colon, value = text.partition(":")
    name, value = name.strip(), value.strip()
    if not colon or not _TOKEN.fullmatch(name) or "\r" in value or "\n" in value:
        raise argparse.ArgumentTypeError(f"expected NAME:VALUE (e.g. 'Authorization: Bearer abc'), not {text!r}")
    return name, value


def _setup_logging(level: str, trace: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if trace else getattr(logging, level.upper()),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )


def _tls_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    if not args.certfile:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    for option, path in (("--certfile", args.certfile), ("--keyfile", args.keyfile)):
        if path is not None and not os.path.isfile(path):
            raise OSError(f"{option} {path}: no such file")
    try:
        context.load_cert_chain(args.certfile, args.keyfile)
    except (OSError, ssl.SSLError) as exc:
        files = args.certfile + (f" / {args.keyfile}" if args.keyfile else "")
        raise OSError(f"cannot load the TLS certificate and key from {files}: {exc}") from None
    return context


def _serve_origins(origins: list[str] | None) -> list[str | None] | None:
    """``--origin`` values as ``origins``: "same-origin" also admits clients without Origin, as the str form does."""
    if not origins:
        return None
    allowed: list[str | None] = list(origins)
    if "same-origin" in allowed:
        allowed.append(None)  # programs (python -m rawws connect) send no Origin; browsers always do
    return allowed


def _serve_hosts(host: str, extra_hosts: list[str] | None) -> list[str] | None:
    """``--allowed-host`` adds names to the server's own (bind address, localhost, 127.0.0.1, ::1), as in the demo."""
    if not extra_hosts:
        return None
    from .demo import demo_hosts

    return demo_hosts(host, extra_hosts)


def _server_options(args: argparse.Namespace) -> ServerOptions:
    return ServerOptions(
        compression=None if args.compression == "none" else args.compression,
        max_size=args.max_size,
        max_queue=args.max_queue,
        origins=_serve_origins(args.origin),
        allowed_hosts=_serve_hosts(args.host, args.allowed_host),
        subprotocols=args.subprotocol or (),
        ping_interval=args.ping_interval or None,
        ssl=_tls_context(args),
    )


def cmd_serve(args: argparse.Namespace) -> int:
    _setup_logging(args.log_level, args.trace)
    if args.echo == args.broker:
        print("choose what to serve: --echo or --broker", file=sys.stderr)
        return 2
    server: Server
    if args.broker:
        from .pubsub.server import serve_broker

        server = serve_broker(
            args.host,
            args.port,
            max_pending=args.max_pending,
            max_pending_bytes=args.max_pending_bytes,
            max_depth=args.max_depth,
            overflow=args.overflow,
            redis=args.redis,
            options=_server_options(args),
        )
        what = "pub/sub server"
    else:
        server = serve(_echo, args.host, args.port, options=_server_options(args))
        what = "echo server"
    return _run(server, what, "wss" if args.certfile else "ws", args.host)


_EVERY_INTERFACE = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


def url_host(host: str) -> str:
    """The host to print in a URL for a server bound to ``host``: loopback for every-interface binds."""
    reachable = _EVERY_INTERFACE.get(host, host)
    return f"[{reachable}]" if ":" in reachable else reachable


def _run(server: Server, what: str, scheme: str, host: str) -> int:
    """Print a URL the server answers (the first line of output, which tests read) and serve.

    Bound to every interface (``0.0.0.0``, ``::``), the URL names the loopback
    address, which this machine can open; other machines use its address or
    name, allowed with ``--allowed-host``.
    """
    print(f"rawws {what} on {scheme}://{url_host(host)}:{server.port}/ (Ctrl-C to stop)", flush=True)
    if host in _EVERY_INTERFACE:
        print(
            f"listening on every interface ({host or '0.0.0.0'}): from other machines use this one's address "
            "or name, and allow it with --allowed-host NAME if the server checks Host",
            file=sys.stderr,
            flush=True,
        )
    with server:
        server.serve_forever()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    _setup_logging(args.log_level, args.trace)
    from .demo import serve_demo

    server = serve_demo(
        args.host,
        args.port,
        extra_origins=args.origin or (),
        extra_hosts=args.allowed_host or (),
        ssl=_tls_context(args),
    )
    return _run(server, "chat demo", "https" if args.certfile else "http", args.host)


def cmd_connect(args: argparse.Namespace) -> int:
    """Send stdin's lines, print what arrives; the exit status says how the connection ended.

    0 when it ended with a normal close (1000 or 1001), 1 otherwise (the
    server went away, closed with an error code, or could not be reached).
    When stdin ends, messages are still printed until none has come for
    ``--wait`` seconds; then the client closes with 1000.
    """
    _setup_logging(args.log_level, args.trace)
    context = None
    if args.insecure and not args.url.lower().startswith("wss://"):
        print("python -m rawws connect: error: --insecure only applies to wss:// URLs", file=sys.stderr)
        return 2
    if args.insecure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        ws = connect(
            args.url,
            options=ClientOptions(
                subprotocols=args.subprotocol or (),
                origin=args.origin,
                ssl=context,
                additional_headers=args.header or (),
            ),
        )
    except RawwsError as exc:  # every failure to connect (ConnectError, InvalidHandshake, InvalidURI, ...)
        print(f"could not connect: {exc}{_server_reason(exc)}", file=sys.stderr)
        return 1
    print(f"connected to {args.url}" + (f" (subprotocol {ws.subprotocol})" if ws.subprotocol else ""), flush=True)
    events: queue.Queue[tuple[str, Any]] = queue.Queue()
    threading.Thread(target=_receive_into, args=(ws, events), daemon=True).start()
    threading.Thread(target=_read_lines_into, args=(events,), daemon=True).start()
    stdin_ended = False
    try:
        while True:
            try:
                kind, value = events.get(timeout=args.wait if stdin_ended else None)
            except queue.Empty:
                break  # stdin ended and nothing came for --wait seconds
            if kind == "message":
                _print_message(value)
            elif kind == "line":
                try:
                    ws.send(value)
                except ConnectionClosed:
                    pass  # the "closed" event follows
            elif kind == "eof":
                stdin_ended = True
            else:  # "closed": the server closed or went away; say so at once
                return _report_close(ws)
    except KeyboardInterrupt:
        pass
    ws.close()
    while True:  # what arrived before the close, then the close itself
        kind, value = events.get(timeout=(ws.close_timeout or 10.0) + 1.0)
        if kind == "message":
            _print_message(value)
        elif kind == "closed":
            return _report_close(ws)


def _server_reason(exc: RawwsError) -> str:
    """The first line of the body of a refused handshake (trimmed), as ``: reason``; empty if none."""
    if not isinstance(exc, InvalidHandshake) or not exc.body:
        return ""
    line = exc.body.decode("utf-8", "replace").strip().split("\n", 1)[0].strip()
    line = "".join(char if char.isprintable() else "?" for char in line)
    if not line:
        return ""
    return f" ({'the server says: ' + line[:200]}{'…' if len(line) > 200 else ''})"


def _seconds(text: str) -> float:
    """A duration for ``--wait``: a number of seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"a number of seconds, 0 or more, not {text!r}")
    return value


def _port(text: str) -> int:
    """A TCP port: 0 (any free port) to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535 (0: any free port), not {value}")
    return value


def _receive_into(ws: Any, events: queue.Queue[tuple[str, Any]]) -> None:
    try:
        for message in ws:
            events.put(("message", message))
    except ConnectionClosed:
        pass
    events.put(("closed", None))


def _read_lines_into(events: queue.Queue[tuple[str, Any]]) -> None:
    """Stdin's lines, read from the file descriptor (no buffer lock held when the program exits meanwhile)."""
    decoder = codecs.getincrementaldecoder(sys.stdin.encoding or "utf-8")("replace")
    pending = ""
    while True:
        try:
            data = os.read(sys.stdin.fileno(), 65536)
        except OSError:
            data = b""
        pending += decoder.decode(data, not data)
        *lines, pending = pending.split("\n")
        for line in lines:
            events.put(("line", line.rstrip("\r")))
        if not data:
            if pending:
                events.put(("line", pending))
            events.put(("eof", None))
            return


def _print_message(message: str | bytes) -> None:
    print(f"< {message!r}" if isinstance(message, bytes) else f"< {message}", flush=True)


def _report_close(ws: Any) -> int:
    code, reason = ws.close_code, ws.close_reason or ""
    if code == 1006:
        reason = reason or "abnormal closure: the connection was lost without a close frame"
    print(f"connection closed: {code} {reason}".rstrip(), flush=True)
    return 0 if code in (1000, 1001) else 1


def cmd_decode(args: argparse.Namespace) -> int:
    from .dissect import describe, dissect, parse_hex

    try:
        if args.file:
            with open(args.file, "rb") as source:
                data = source.read()
        else:
            data = parse_hex(" ".join(args.hex) if args.hex else sys.stdin.read())
    except (OSError, ValueError) as exc:
        print(f"decode: {exc}", file=sys.stderr)
        return 2
    if not data:
        print("decode: no bytes given (hex as arguments or on stdin, or --file FILE)", file=sys.stderr)
        return 2
    frames, error = dissect(data, None if args.role == "any" else args.role, deflate=args.deflate)
    print(describe(frames, error, limit=args.limit))
    return 1 if error is not None else 0


def cmd_fuzz(args: argparse.Namespace) -> int:
    from .fuzz.cli import run

    return run(args)


def build_parser() -> argparse.ArgumentParser:
    defaults = argparse.ArgumentDefaultsHelpFormatter  # every --help shows every default
    parser = argparse.ArgumentParser(
        prog="python -m rawws", description="rawws: WebSocket in pure Python", formatter_class=defaults
    )
    parser.add_argument("--version", action="version", version=f"rawws {__version__}")
    sub = parser.add_subparsers(dest="command")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--log-level", default="warning", choices=["debug", "info", "warning", "error"], help="log level"
    )
    common.add_argument("--trace", action="store_true", help="log every frame in and out")

    s = sub.add_parser("serve", parents=[common], help="run a server", formatter_class=defaults)
    s.add_argument("--echo", action="store_true", help="echo every message back with the same type")
    s.add_argument("--broker", action="store_true", help="the pub/sub server (JSON protocol, see README)")
    s.add_argument("--max-pending", type=int, default=1000, help="--broker: messages queued per slow client")
    s.add_argument(
        "--max-pending-bytes",
        type=_size,
        default="4MiB",
        metavar="SIZE",
        help="--broker: bytes queued per slow client (e.g. 4MiB; none: no byte limit)",
    )
    s.add_argument("--overflow", choices=["close", "drop_oldest"], default="close", help="--broker: slow client policy")
    s.add_argument("--max-depth", type=int, default=32, help="--broker: deepest JSON nesting accepted in a message")
    s.add_argument("--redis", metavar="URL", help="--broker: share channels through Redis (redis://host:port/db)")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on")
    s.add_argument("--port", type=_port, default=8765, help="port to listen on (0: any free port)")
    s.add_argument(
        "--max-size", type=_size, default="1MiB", metavar="SIZE", help="largest message (e.g. 64MiB; none: no limit)"
    )
    s.add_argument("--max-queue", type=int, default=16, help="received messages waiting before reading stops")
    s.add_argument("--compression", choices=["deflate", "none"], default="deflate", help="permessage-deflate or none")
    s.add_argument(
        "--origin",
        action="append",
        help="allowed Origin (repeatable), e.g. https://app.example; others get 403. 'same-origin': pages served "
        "from this server's own address, and clients that send no Origin (programs such as 'connect'); "
        "without 'same-origin', a client without Origin is refused (default: any origin)",
    )
    s.add_argument(
        "--allowed-host",
        action="append",
        metavar="NAME",
        help="another name the Host header may carry besides the bind address, localhost, 127.0.0.1 and ::1 "
        "(repeatable; as in the demo); others get 403 (default: any Host)",
    )
    s.add_argument("--subprotocol", action="append", help="supported subprotocol (repeatable)")
    s.add_argument("--ping-interval", type=float, default=20.0, help="keepalive seconds; 0 disables")
    s.add_argument("--certfile", help="TLS certificate (PEM) for wss://")
    s.add_argument("--keyfile", help="TLS private key (PEM)")
    s.set_defaults(func=cmd_serve)

    d = sub.add_parser(
        "demo", parents=[common], help="the chat demo for browsers (the default command)", formatter_class=defaults
    )
    d.add_argument("--host", default="127.0.0.1", help="address to listen on")
    d.add_argument("--port", type=_port, default=8765, help="port to listen on (0: any free port)")
    d.add_argument(
        "--origin", action="append", metavar="URL", help="another origin whose pages may connect (repeatable)"
    )
    d.add_argument(
        "--allowed-host",
        action="append",
        metavar="NAME",
        help="another name the server answers to besides its address and localhost (repeatable)",
    )
    d.add_argument("--certfile", help="TLS certificate (PEM): serve https:// and wss://")
    d.add_argument("--keyfile", help="TLS private key (PEM)")
    d.set_defaults(func=cmd_demo)

    c = sub.add_parser(
        "connect",
        parents=[common],
        help="interactive client: stdin lines out, messages printed",
        description="Send each line of stdin as a text message and print every message received. "
        "Exit status: 0 after a normal close (1000 or 1001), 1 after any other ending or a failure to connect.",
        formatter_class=defaults,
    )
    c.add_argument("url", help="ws:// or wss:// URI")
    c.add_argument("--subprotocol", action="append", help="subprotocol to offer (repeatable)")
    c.add_argument("--origin", help="the Origin header to send")
    c.add_argument(
        "--header",
        action="append",
        type=_header,
        metavar="NAME:VALUE",
        help="extra request header (repeatable), e.g. --header 'Authorization: Bearer abc'",
    )
    c.add_argument(
        "--wait",
        type=_seconds,
        default=1.0,
        metavar="SECONDS",
        help="after stdin ends, keep printing messages until none has come for this long, then close",
    )
    c.add_argument("--insecure", action="store_true", help="wss:// without certificate checks (testing only)")
    c.set_defaults(func=cmd_connect)

    x = sub.add_parser("decode", help="dissect frames: every field with its RFC 6455 section")
    x.add_argument("hex", nargs="*", help="the bytes in hex, spaces allowed (read from stdin if absent)")
    x.add_argument("--file", help="read raw bytes from this file instead")
    x.add_argument(
        "--role",
        choices=["client", "server", "any"],
        default="any",
        help="who sent the bytes: a client must mask every frame, a server none (default: do not judge)",
    )
    x.add_argument("--deflate", action="store_true", help="permessage-deflate is in use: RSV1 frames are inflated")
    x.add_argument("--limit", type=int, default=64, help="payload bytes shown in hex (default 64)")
    x.set_defaults(func=cmd_decode)

    from .fuzz.cli import add_arguments

    f = sub.add_parser("fuzz", help="property-based conformance fuzzer for any WebSocket server (rawws[fuzz])")
    add_arguments(f)
    f.set_defaults(func=cmd_fuzz)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    arguments = list(sys.argv[1:] if argv is None else argv)
    if not arguments or (arguments[0].startswith("-") and arguments[0] not in ("-h", "--help", "--version")):
        arguments = ["demo"] + arguments  # plain `python -m rawws [--port P]` runs the demo
    args = parser.parse_args(arguments)
    try:
        result: int = args.func(args)
    except (OSError, ValueError, RawwsError) as exc:  # a port in use, a missing certificate file, ...
        print(f"python -m rawws {args.command}: error: {exc}", file=sys.stderr)
        return 1
    return result


if __name__ == "__main__":
    sys.exit(main())
