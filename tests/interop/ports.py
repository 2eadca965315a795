#!/usr/bin/env python3
"""Pick free, disjoint blocks of TCP ports on this machine, at run time.

usage: ports.py LO HI SIZE [SIZE ...]

Prints one line "FIRST LAST" per SIZE, in order. Every port of every block was
bindable (no SO_REUSEADDR, on 0.0.0.0 and on [::] where IPv6 exists) when it was
checked, so nothing listens on it and no connection holds it. Blocks never
overlap each other. Starts are random so that two suites running at once rarely
race for the same ports. Keep LO..HI below net.ipv4.ip_local_port_range so that
clients' ephemeral ports do not land in a block later.

Exit status 1 when no free block could be found within a bounded number of tries.
"""

import random
import socket
import sys

TRIES_PER_BLOCK = 400


def bindable(port: int) -> bool:
    """True when a TCP socket can bind the port on every local address."""
    for family, addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            continue  # no IPv6 on this machine
        try:
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((addr, port))
        except OSError:
            return False
        finally:
            sock.close()
    return True


def main(argv: list[str]) -> int:
    if len(argv) < 4:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    lo, hi = int(argv[1]), int(argv[2])
    sizes = [int(s) for s in argv[3:]]
    if not 1024 <= lo <= hi <= 65535 or any(s < 1 for s in sizes):
        print("ports.py: bad range or size", file=sys.stderr)
        return 2
    taken: set[int] = set()
    out = []
    rng = random.SystemRandom()
    for size in sizes:
        for _ in range(TRIES_PER_BLOCK):
            first = rng.randint(lo, hi - size + 1)
            block = range(first, first + size)
            if any(p in taken for p in block):
                continue
            if all(bindable(p) for p in block):
                taken.update(block)
                out.append((first, first + size - 1))
                break
        else:
            print(f"ports.py: no free block of {size} ports in {lo}-{hi}", file=sys.stderr)
            return 1
    for first, last in out:
        print(first, last)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
