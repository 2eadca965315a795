#!/usr/bin/env python3
"""Passive-port theft against a kernel-path mapping (tests/lab/run.sh, topology 7).

Usage: kpath_steal.py HOST PORT USER PASS FILE THIEF_NS

Logs in, sends PASV and then RETR FILE, so ftpgate has installed its mapping. Before
the client connects, a third host (a command run in network namespace THIEF_NS)
connects to the advertised address and reads for two seconds. Then the client
connects and reads the file. Prints "stolen=N sha256=HEX reply=CODE": N is what the
thief got (must be 0), HEX the client's download, CODE the final reply.
"""
import hashlib
import re
import socket
import subprocess
import sys

THIEF = r"""
import socket, sys, time
got = 0
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
    s.settimeout(2)
    end = time.monotonic() + 2
    while time.monotonic() < end:
        b = s.recv(65536)
        if not b:
            break
        got += len(b)
except OSError:
    pass
print(got)
"""


def reply(f):
    line = f.readline().decode("latin-1")
    code = line[:3]
    if line[3:4] == "-":
        while True:
            more = f.readline().decode("latin-1")
            if not more or (more[:3] == code and more[3:4] == " "):
                break
    return code, line


def main():
    host, port, user, pw, name, thief_ns = sys.argv[1:7]
    ctl = socket.create_connection((host, int(port)), timeout=10)
    f = ctl.makefile("rb")
    reply(f)
    for cmd in (f"USER {user}", f"PASS {pw}", "TYPE I"):
        ctl.sendall(cmd.encode() + b"\r\n")
        reply(f)
    ctl.sendall(b"PASV\r\n")
    code, line = reply(f)
    m = re.search(r"(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)", line)
    if code != "227" or not m:
        print(f"stolen=- sha256=- reply={code}")
        return 1
    n = [int(x) for x in m.groups()]
    addr, dport = ".".join(map(str, n[:4])), n[4] * 256 + n[5]
    ctl.sendall(f"RETR {name}\r\n".encode())
    stolen = subprocess.run(
        ["ip", "netns", "exec", thief_ns, "timeout", "8", "python3", "-c", THIEF,
         addr, str(dport)],
        capture_output=True, text=True, timeout=15,
    ).stdout.strip() or "-"
    data = socket.create_connection((addr, dport), timeout=10)
    h = hashlib.sha256()
    while True:
        b = data.recv(1 << 16)
        if not b:
            break
        h.update(b)
    data.close()
    code, _ = reply(f)
    if code.startswith("1"):
        code, _ = reply(f)
    ctl.sendall(b"QUIT\r\n")
    print(f"stolen={stolen} sha256={h.hexdigest()} reply={code}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
