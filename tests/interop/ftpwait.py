#!/usr/bin/env python3
"""Wait until an FTP server (or ftpgate in front of one) greets with a 220.

usage: ftpwait.py [--tls] HOST PORT SECONDS [PID]

Connects every 100 ms until a 220 greeting arrives, then sends QUIT and exits 0.
With --tls the connection is TLS from its first byte (implicit FTPS; the certificate
is not checked: this only waits for the server). Exits 1 when SECONDS pass first, or
as soon as process PID (if given) is gone. Only ever connects to the address it is given.
"""

import os
import socket
import ssl
import sys
import time


def alive(pid: int) -> bool:
    """True while PID runs (an unreaped zombie counts as exited)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="latin-1") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def main(argv: list[str]) -> int:
    tls = len(argv) > 1 and argv[1] == "--tls"
    if tls:
        argv = argv[:1] + argv[2:]
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if len(argv) not in (4, 5):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    host, port, secs = argv[1], int(argv[2]), float(argv[3])
    pid = int(argv[4]) if len(argv) == 5 else None
    deadline = time.monotonic() + secs
    last = "no attempt"
    while time.monotonic() < deadline:
        if pid is not None and not alive(pid):
            print(f"ftpwait: process {pid} exited before {host}:{port} greeted", file=sys.stderr)
            return 1
        try:
            with socket.create_connection((host, port), timeout=2) as raw:
                sock = ctx.wrap_socket(raw, server_hostname=host) if tls else raw
                sock.settimeout(max(0.5, min(5.0, deadline - time.monotonic())))
                data = b""
                while b"\n" not in data and len(data) < 4096:
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                line = data.split(b"\n", 1)[0].decode("latin-1").strip()
                if line.startswith("220"):
                    try:
                        sock.sendall(b"QUIT\r\n")
                        sock.recv(4096)
                    except OSError:
                        pass
                    return 0
                last = f"greeting {line!r}"
        except OSError as err:
            last = str(err)
        time.sleep(0.1)
    print(f"ftpwait: no 220 from {host}:{port} within {secs:g}s (last: {last})", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
