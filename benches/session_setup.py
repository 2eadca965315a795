#!/usr/bin/env python3
"""Time FTP session setup: connect + login + PASV + LIST + QUIT, N times in a row.

usage: BENCH_FTP_USER=u BENCH_FTP_PASS=p session_setup.py HOST PORT N

Prints "median_ms p90_ms min_ms max_ms" (milliseconds, 3 decimals). Exits 1 if
any session fails. Sessions run one after another (no concurrency), each bounded
by a 10 s socket timeout.
"""

import ftplib
import os
import statistics
import sys
import time


def one_session(host: str, port: int, user: str, password: str) -> float:
    lines: list[str] = []
    start = time.perf_counter()
    ftp = ftplib.FTP()
    try:
        ftp.connect(host, port, timeout=10)
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
    if len(argv) != 4:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    host, port, count = argv[1], int(argv[2]), int(argv[3])
    user = os.environ["BENCH_FTP_USER"]
    password = os.environ["BENCH_FTP_PASS"]
    times = []
    for i in range(count):
        try:
            times.append(one_session(host, port, user, password))
        except (OSError, EOFError, ftplib.Error, RuntimeError) as err:
            print(f"session_setup: session {i + 1} failed: {err}", file=sys.stderr)
            return 1
    times.sort()
    ms = [t * 1000 for t in times]
    print(f"{statistics.median(ms):.3f} {percentile(ms, 90):.3f} {ms[0]:.3f} {ms[-1]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
