#!/usr/bin/env python3
"""Send FTP commands after logging in and print every reply, for checks curl and lftp
cannot make (they never send PASV on an IPv6 control connection, nor LPSV/LPRT).

usage: ftpraw.py HOST PORT USER PASS CMD...

Prints "> CMD" for each command sent and "< REPLY" for every reply line, in the same
shape as curl's trace. Exits 0 once every command got a final reply, 1 on a
connection error or timeout (10 s per reply). Only connects to HOST:PORT.
"""

import socket
import sys


def read_reply(f):
    lines = []
    while True:
        raw = f.readline()
        if not raw:
            raise EOFError("connection closed")
        line = raw.decode("latin-1").rstrip("\r\n")
        lines.append(line)
        print("< " + line, flush=True)
        if len(line) >= 4 and line[:3].isdigit() and line[3] == " " and (
            len(lines) == 1 or line[:3] == lines[0][:3]
        ):
            return line[:3]


def main(argv):
    if len(argv) < 5:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    host, port, user, password = argv[1], int(argv[2]), argv[3], argv[4]
    try:
        with socket.create_connection((host, port), timeout=10) as s:
            f = s.makefile("rb")
            read_reply(f)
            for cmd in [f"USER {user}", f"PASS {password}", *argv[5:], "QUIT"]:
                s.sendall(cmd.encode("latin-1") + b"\r\n")
                print("> " + ("PASS ****" if cmd.startswith("PASS ") else cmd), flush=True)
                read_reply(f)
    except (OSError, EOFError) as e:
        print(f"* error: {e}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
