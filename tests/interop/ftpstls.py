#!/usr/bin/env python3
"""FTPS helper for the TLS interop suite (tests/interop/tls.sh): Python's ftplib as a
third client next to curl and lftp, and the raw-socket probes of the negative cases.

usage:
  ftpstls.py xfer [options] OP REMOTE [LOCAL]       one ftplib session: retr|stor|list
  ftpstls.py long [options] COUNT DIR               ONE session: COUNT STOR + COUNT RETR
                                                    of the files DIR/long-*.bin
  ftpstls.py user-first HOST PORT                   USER before AUTH TLS; prints the code
  ftpstls.py plain-to-tls HOST PORT                 plaintext bytes to an implicit listener
  ftpstls.py tls-to-plain HOST PORT                 a TLS ClientHello to a plaintext listener

options of xfer and long:
  --host H --port P --user U (password in $FTP_PASS) --tls off|explicit|implicit
  --prot p|c --cafile FILE (verify against it; the name is checked against the IP SAN)
  --active (PORT instead of PASV) --timeout SECS

The protocol trace goes to stderr in ftplib's debug format ("*cmd* 'PASV'",
"*resp* '227 ...'"; ftplib masks the password). Exit 0 on success, 1 on any FTP,
TLS or socket error (the error is printed as "* error: ..."), 2 on usage errors.
Only ever connects to the address it is given.

ftplib does not resume the control connection's TLS session on data connections,
so it cannot talk to servers or listeners that require session reuse.
"""

import argparse
import contextlib
import ftplib
import hashlib
import os
import socket
import ssl
import sys


def out(msg):
    """Results go to the real stdout; ftplib's debug trace is redirected to stderr."""
    print(msg, file=sys.__stdout__, flush=True)


def context(cafile):
    if cafile:
        ctx = ssl.create_default_context(cafile=cafile)
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class ImplicitFTP_TLS(ftplib.FTP_TLS):
    """FTP_TLS over a connection that is TLS from its first byte (RFC 4217 calls it
    implicit FTPS; port 990 by tradition)."""

    def connect(self, host="", port=0, timeout=-999, source_address=None):
        if host:
            self.host = host
        if port:
            self.port = port
        if timeout != -999:
            self.timeout = timeout
        self.sock = socket.create_connection((self.host, self.port), self.timeout)
        self.af = self.sock.family
        self.sock = self.context.wrap_socket(self.sock, server_hostname=self.host)
        self.file = self.sock.makefile("r", encoding=self.encoding)
        self.welcome = self.getresp()
        return self.welcome


def session(args):
    if args.tls == "off":
        ftp = ftplib.FTP(timeout=args.timeout)
    elif args.tls == "implicit":
        ftp = ImplicitFTP_TLS(context=context(args.cafile), timeout=args.timeout)
    else:
        ftp = ftplib.FTP_TLS(context=context(args.cafile), timeout=args.timeout)
    ftp.set_debuglevel(1)
    ftp.connect(args.host, args.port)
    if args.tls == "implicit":
        ftp.login(args.user, os.environ.get("FTP_PASS", ""), secure=False)
    else:
        ftp.login(args.user, os.environ.get("FTP_PASS", ""))
    if args.tls != "off":
        if args.prot == "p":
            ftp.prot_p()  # sends PBSZ 0 first
        else:
            # ftplib's prot_c() sends PROT C alone; RFC 4217 section 9 wants PBSZ first
            # (vsftpd and pure-ftpd let it pass, ftpgate and proftpd refuse it).
            ftp.voidcmd("PBSZ 0")
            ftp.prot_c()
    ftp.set_pasv(not args.active)
    return ftp


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def retr(ftp, remote, local):
    with open(local, "wb") as f:
        ftp.retrbinary("RETR " + remote, f.write, blocksize=1 << 16)


def stor(ftp, remote, local):
    with open(local, "rb") as f:
        ftp.storbinary("STOR " + remote, f, blocksize=1 << 16)


def cmd_xfer(args):
    ftp = session(args)
    if args.op == "retr":
        retr(ftp, args.remote, args.local)
    elif args.op == "stor":
        stor(ftp, args.remote, args.local)
    else:
        lines = []
        ftp.retrlines("LIST", lines.append)
        for line in lines:
            out(line)
    ftp.quit()
    return 0


def cmd_long(args):
    """One control session: COUNT uploads of DIR/long-N.bin as up-long-N.bin, then COUNT
    downloads of the server's long-N.bin into DIR/dl-long-N.bin, each checksummed
    (uploads are checked on the server's disk by the caller)."""
    ftp = session(args)
    for i in range(args.count):
        stor(ftp, f"pyup-long-{i}.bin", os.path.join(args.dir, f"long-{i}.bin"))
    bad = []
    for i in range(args.count):
        dst = os.path.join(args.dir, f"pydl-long-{i}.bin")
        retr(ftp, f"long-{i}.bin", dst)
        if sha256_file(dst) != sha256_file(os.path.join(args.dir, f"long-{i}.bin")):
            bad.append(i)
    ftp.quit()
    if bad:
        print(f"* error: downloads with a wrong sha256: {bad}", file=sys.stderr)
        return 1
    out(f"{args.count} uploads and {args.count} downloads in one session")
    return 0


def read_line(sock, limit=10.0):
    sock.settimeout(limit)
    data = b""
    while b"\n" not in data and len(data) < 4096:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def cmd_user_first(args):
    """USER before AUTH TLS: prints the reply code (530 or 534 expected)."""
    with socket.create_connection((args.host, args.port), timeout=10) as s:
        greet = read_line(s)
        print("< " + greet.decode("latin-1").strip(), file=sys.stderr)
        s.sendall(b"USER anonymous\r\n")
        print("> USER anonymous", file=sys.stderr)
        reply = read_line(s)
        print("< " + reply.decode("latin-1").strip(), file=sys.stderr)
        out(reply[:3].decode("latin-1"))
    return 0


def cmd_plain_to_tls(args):
    """A plaintext client on an implicit-TLS port: send a command, then read until the
    peer closes. Prints 'closed' (with what arrived) or 'open' after 10 s."""
    with socket.create_connection((args.host, args.port), timeout=10) as s:
        s.sendall(b"USER anonymous\r\n")
        got = b""
        s.settimeout(10)
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
                if len(got) > 65536:
                    break
        except ConnectionResetError:
            pass
        except socket.timeout:
            out(f"open {got[:80]!r}")
            return 0
        out(f"closed {got[:80]!r}")
    return 0


def cmd_tls_to_plain(args):
    """A TLS client on a plaintext port: the handshake must fail (quickly)."""
    with socket.create_connection((args.host, args.port), timeout=10) as raw:
        raw.settimeout(10)
        try:
            with context(None).wrap_socket(raw, server_hostname=args.host):
                out("handshake-ok")
        except ssl.SSLError as err:
            out(f"handshake-failed {err.reason or err}")
        except (ConnectionResetError, BrokenPipeError, EOFError) as err:
            out(f"closed {err}")
        except socket.timeout:
            out("timeout")
    return 0


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    def ftp_opts(sp):
        sp.add_argument("--host", default="127.0.0.1")
        sp.add_argument("--port", type=int, required=True)
        sp.add_argument("--user", required=True)
        sp.add_argument("--tls", choices=("off", "explicit", "implicit"), default="explicit")
        sp.add_argument("--prot", choices=("p", "c"), default="p")
        sp.add_argument("--cafile")
        sp.add_argument("--active", action="store_true")
        sp.add_argument("--timeout", type=float, default=30)

    sp = sub.add_parser("xfer")
    ftp_opts(sp)
    sp.add_argument("op", choices=("retr", "stor", "list"))
    sp.add_argument("remote", nargs="?", default="")
    sp.add_argument("local", nargs="?", default="")
    sp = sub.add_parser("long")
    ftp_opts(sp)
    sp.add_argument("count", type=int)
    sp.add_argument("dir")
    for name in ("user-first", "plain-to-tls", "tls-to-plain"):
        sp = sub.add_parser(name)
        sp.add_argument("host")
        sp.add_argument("port", type=int)
    args = p.parse_args(argv[1:])
    handler = {
        "xfer": cmd_xfer,
        "long": cmd_long,
        "user-first": cmd_user_first,
        "plain-to-tls": cmd_plain_to_tls,
        "tls-to-plain": cmd_tls_to_plain,
    }[args.cmd]
    try:
        with contextlib.redirect_stdout(sys.stderr):
            return handler(args)
    except (OSError, EOFError, ftplib.Error, ssl.SSLError) as err:
        print(f"* error: {type(err).__name__}: {err}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
