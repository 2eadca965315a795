#!/usr/bin/env python3
"""Time FTP session setup: connect + login + PASV + LIST + QUIT, N times in a row.

usage: BENCH_FTP_USER=u BENCH_FTP_PASS=p session_setup.py [--tls CAFILE] HOST PORT N

With --tls, each session is explicit FTPS (ftplib.FTP_TLS): connect, AUTH TLS, login,
PBSZ 0 + PROT P, PASV, LIST over TLS, QUIT; the server's certificate is verified
against CAFILE and HOST. ftplib does not resume the control connection's TLS session
on data connections, so the server (and an ftpgate listener) must not require reuse.

Prints "median_ms p90_ms min_ms max_ms" (milliseconds, 3 decimals). Exits 1 if
any session fails. Sessions run one after another (no concurrency), each bounded
by a 10 s socket timeout.
"""

import ftplib
import os
import ssl
import statistics
import sys
import time


def one_session(host: str, port: int, user: str, password: str, ctx: ssl.SSLContext | None) -> float:
    lines: list[str] = []
    start = time.perf_counter()
    ftp = ftplib.FTP() if ctx is None else ftplib.FTP_TLS(context=ctx)
    try:
        ftp.connect(host, port, timeout=10)
        if isinstance(ftp, ftplib.FTP_TLS):
            ftp.auth()  # AUTH TLS; login() would do it too, explicit here for the record
            ftp.login(user, password)
            ftp.prot_p()  # PBSZ 0 + PROT P: the LIST goes over TLS
        else:
            ftp.login(user, password)
        ftp.set_pasv(True)  # ftplib sends PASV on IPv4
        ftp.retrlines("LIST", lines.append)
        ftp.quit()
    finally:
        ftp.close()
    elapsed = time.perf_counter() - start
    if not lines:
        raise RuntimeError("empty LIST")
    return elapsed


def percentile(sorted_vals: list[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    rank = max(1, -(-len(sorted_vals) * pct // 100))  # ceil
    return sorted_vals[int(rank) - 1]


def main(argv: list[str]) -> int:
    args = argv[1:]
    ctx = None
    if args[:1] == ["--tls"] and len(args) >= 2:
        ctx = ssl.create_default_context(cafile=args[1])
        args = args[2:]
    if len(args) != 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    host, port, count = args[0], int(args[1]), int(args[2])
    user = os.environ["BENCH_FTP_USER"]
    password = os.environ["BENCH_FTP_PASS"]
    times = []
    for i in range(count):
        try:
            times.append(one_session(host, port, user, password, ctx))
        except (OSError, EOFError, ftplib.Error, RuntimeError) as err:
            print(f"session_setup: session {i + 1} failed: {err}", file=sys.stderr)
            return 1
    times.sort()
    ms = [t * 1000 for t in times]
    print(f"{statistics.median(ms):.3f} {percentile(ms, 90):.3f} {ms[0]:.3f} {ms[-1]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
