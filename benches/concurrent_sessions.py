#!/usr/bin/env python3
"""N FTP sessions at once: each connects, logs in, downloads one file (passive), checks it.

usage: BENCH_FTP_USER=u BENCH_FTP_PASS=p concurrent_sessions.py HOST PORT N REMOTE SHA256 [ROOT_PID]

The sessions connect RAMP_MS (5 ms) apart and log in; once all N are logged in (a
barrier) the clock starts and every session downloads at once; the wall is from there
until the last one has quit. The ramp is there for the baseline: vsftpd listens with a
fixed backlog of 32 (VSFTP_LISTEN_BACKLOG), so 200 connects in the same millisecond
overflow its accept queue (TcpExtListenOverflows) and the dropped handshakes wait on
SYN-ACK retransmits past any timeout; direct vsftpd then "fails" sessions that no proxy
caused. Session setup has its own figure (session_setup.py); this one is N transfers
at once. A session fails if any step fails (60 s socket timeout) or the file's SHA-256
is not SHA256.

With ROOT_PID, a sampler sums the proportional set size (Pss) of ROOT_PID and all its
descendants every 50 ms while the sessions run (proftpd forks one process per session,
so the tree is what counts) and the peak of that sum is reported; each process's own
VmHWM cannot be summed after it exits, so sampling is the measure for every proxy
alike. The sum is of PSS (smaps_rollup), not RSS: the pages a forking server's sessions
share with their parent count once, split between them, instead of once per process.

Prints "wall_s failures peak_pss_kib" (peak 0 without ROOT_PID). Exits 0 even when
sessions fail: the failure count is a figure.
"""

import ftplib
import hashlib
import os
import sys
import threading
import time


RAMP_MS = 5


def one(index: int, host: str, port: int, user: str, password: str, remote: str, want: str,
        barrier: threading.Barrier, errors: list[str]) -> None:
    digest = hashlib.sha256()
    ftp = ftplib.FTP()
    ready = False
    try:
        time.sleep(index * RAMP_MS / 1000)
        ftp.connect(host, port, timeout=60)
        ftp.login(user, password)
        ready = True
    except (OSError, EOFError, ftplib.Error) as err:
        errors.append(f"setup: {type(err).__name__}: {err}")
    try:
        # Every session reaches the barrier, logged in or not, so that one failed
        # login does not break it for the others.
        barrier.wait(timeout=120)
        if ready:
            ftp.set_pasv(True)
            ftp.retrbinary(f"RETR {remote}", digest.update, blocksize=65536)
            ftp.quit()
            if digest.hexdigest() != want:
                errors.append("sha256 mismatch")
    except (OSError, EOFError, ftplib.Error, threading.BrokenBarrierError) as err:
        errors.append(f"transfer: {type(err).__name__}: {err}")
    finally:
        ftp.close()


def tree_pss_kib(root: int) -> int:
    """Sum of Pss (KiB) over root and its descendants, from /proc/PID/smaps_rollup."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(name))
    total, todo, seen = 0, [root], set()
    while todo and len(seen) < 100000:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        todo.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


def main(argv: list[str]) -> int:
    if len(argv) not in (6, 7):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    host, port, count, remote, want = argv[1], int(argv[2]), int(argv[3]), argv[4], argv[5]
    root = int(argv[6]) if len(argv) == 7 else 0
    if not 1 <= count <= 2000:
        print("concurrent: N must be 1..2000", file=sys.stderr)
        return 2
    user = os.environ["BENCH_FTP_USER"]
    password = os.environ["BENCH_FTP_PASS"]
    errors: list[str] = []
    barrier = threading.Barrier(count + 1)
    threads = [threading.Thread(target=one, args=(i, host, port, user, password, remote, want, barrier, errors),
                                daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        deadline = time.monotonic() + 600
        while not done.is_set() and time.monotonic() < deadline:
            peak = max(peak, tree_pss_kib(root))
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True) if root else None
    if sampler:
        sampler.start()
    barrier.wait(timeout=120)
    start = time.perf_counter()
    for t in threads:
        t.join(timeout=300)
    wall = time.perf_counter() - start
    done.set()
    if sampler:
        sampler.join(timeout=10)
    failures = len(errors) + sum(1 for t in threads if t.is_alive())
    for e in sorted(set(errors))[:5]:
        print(f"concurrent: {e}", file=sys.stderr)
    print(f"{wall:.3f} {failures} {peak}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
