#!/usr/bin/env python3
"""N concurrent FTP sessions, each with a checksummed RETR and STOR.

usage: ftpload.py HOST PORT USER PASSWORD SESSIONS SOURCE_FILE UPLOAD_DIR TAG

Every session connects (10 ms apart), logs in, waits until all SESSIONS are logged in (so they are truly
concurrent), downloads SOURCE_FILE's name (passive) and compares its SHA-256 with the
local file, uploads its own file TAG-<i>.bin and compares it with what lands in
UPLOAD_DIR (the server's directory), then quits. Prints one line per failure and, last,
"sessions=N ok=K failed=F". Exit 1 if any failed. Bounded: 120 s per session.
"""

import ftplib
import hashlib
import os
import sys
import threading
import time

host, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
count, source, updir, tag = int(sys.argv[5]), sys.argv[6], sys.argv[7], sys.argv[8]
name = os.path.basename(source)
with open(source, "rb") as f:
    want = hashlib.sha256(f.read()).hexdigest()

barrier = threading.Barrier(count, timeout=60)
lock = threading.Lock()
failures = []


def session(i):
    try:
        # A 10 ms ramp (2 s for 200): vsftpd accepts with a listen backlog of 32, and
        # a burst beyond it waits on SYN-ACK retransmits for seconds. The sessions are
        # still all open at once: each waits at the barrier before transferring.
        time.sleep(i * 0.01)
        ftp = ftplib.FTP()
        ftp.connect(host, port, timeout=120)
        ftp.login(user, password)
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            pass
        ftp.set_pasv(True)
        h = hashlib.sha256()
        ftp.retrbinary("RETR " + name, h.update, blocksize=65536)
        if h.hexdigest() != want:
            raise RuntimeError("RETR checksum mismatch")
        payload = hashlib.sha256(f"{tag}-{i}".encode()).digest() * 2048  # 64 KiB
        up = f"{tag}-{i}.bin"
        import io

        ftp.storbinary("STOR " + up, io.BytesIO(payload))
        with open(os.path.join(updir, up), "rb") as f:
            if f.read() != payload:
                raise RuntimeError("STOR content mismatch")
        ftp.quit()
    except Exception as e:  # noqa: BLE001 - every failure is reported
        with lock:
            failures.append(f"session {i}: {type(e).__name__}: {e}")


threads = [threading.Thread(target=session, args=(i,)) for i in range(count)]
for t in threads:
    t.start()
for t in threads:
    t.join(150)
alive = sum(t.is_alive() for t in threads)
for f in failures:
    print(f)
failed = len(failures) + alive
print(f"sessions={count} ok={count - failed} failed={failed}")
sys.exit(1 if failed else 0)
