"""A wss:// (TLS) echo server with a self-signed certificate.

Run:  python examples/wss_server.py [PORT] [CERTDIR]

Without a certificate in CERTDIR (default: ./wss-cert), it makes one for
localhost/127.0.0.1 with the `openssl` command, valid for 30 days. Then:

    python -m rawws connect wss://localhost:8443/ --insecure    (or trust CERTDIR/cert.pem)

For production, load a real certificate into an ssl.SSLContext the same way.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import sys

from rawws import ServerConnection, serve


def ensure_certificate(directory: str) -> tuple[str, str]:
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    if not (os.path.exists(cert) and os.path.exists(key)):
        os.makedirs(directory, exist_ok=True)
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", key, "-out", cert, "-days", "30", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
            check=True,
            capture_output=True,
        )  # fmt: skip
    return cert, key


def echo(ws: ServerConnection) -> None:
    for message in ws:
        ws.send(message)


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8443
    cert, key = ensure_certificate(sys.argv[2] if len(sys.argv) > 2 else "wss-cert")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with serve(echo, "127.0.0.1", port, ssl=context) as server:
        print(f"wss echo server on wss://localhost:{server.port}/ (certificate: {cert})", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
