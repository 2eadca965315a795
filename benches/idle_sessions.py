#!/usr/bin/env python3
"""Idle-session memory: a stub FTP upstream on 127.0.0.1:UP_PORT (220, 331 to USER, 230 to
PASS, 200 to the rest) and N clients logged in through the ftpgate at 127.0.0.1:GW_PORT
(route fixed to UP_PORT, limits.max_sessions and max_sessions_per_ip above N), held idle;
prints ftpgate's VmRSS (process GW_PID) before and after, and the growth per session.
The stub runs in a forked child, so each side holds one descriptor per session: N is
bounded by RLIMIT_NOFILE here, and by about half of ftpgate's (two sockets a session).

usage: idle_sessions.py UP_PORT GW_PORT N GW_PID"""
import asyncio, os, signal, sys, resource
up, gw, n, pid = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
if not 1 <= n <= 100_000:
    sys.exit("N must be 1..100000")
_, hard = resource.getrlimit(resource.RLIMIT_NOFILE); resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

async def serve(r, w):
    w.write(b"220 stub\r\n")
    while True:
        line = await r.readline()
        if not line:
            break
        v = line[:4].upper()
        w.write(b"331 pw\r\n" if v == b"USER" else b"230 ok\r\n" if v == b"PASS" else b"221 bye\r\n" if v == b"QUIT" else b"200 ok\r\n")
        await w.drain()
    w.close()

def rss():
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS:"):
            return int(l.split()[1])

async def client(held, sem):
    async with sem:
        r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", gw), 30)
        assert (await asyncio.wait_for(r.readline(), 30)).startswith(b"220")
        w.write(b"USER u\r\n"); assert (await asyncio.wait_for(r.readline(), 30)).startswith(b"331")
        w.write(b"PASS p\r\n"); assert (await asyncio.wait_for(r.readline(), 30)).startswith(b"230")
        held.append(w)

async def stub(ready_fd):
    srv = await asyncio.start_server(serve, "127.0.0.1", up, backlog=4096)
    os.write(ready_fd, b"1")  # listening: the parent may start its clients
    async with srv:
        await srv.serve_forever()

async def main():
    base = rss()
    held, sem = [], asyncio.Semaphore(200)
    res = await asyncio.gather(*(client(held, sem) for _ in range(n)), return_exceptions=True)
    bad = [e for e in res if isinstance(e, BaseException)]
    await asyncio.sleep(2)
    after = rss()
    ok = len(held)
    print(f"sessions {ok} ok, {len(bad)} failed{' ('+repr(bad[0])+')' if bad else ''}; ftpgate RSS {base} KiB -> {after} KiB; {((after-base)/max(ok,1)):.1f} KiB per idle session")
    for w in held:
        w.close()

ready_r, ready_w = os.pipe()
child = os.fork()
if child == 0:
    # The stub upstream: ended by the parent's SIGTERM (or by the 600 s alarm).
    signal.alarm(600)
    asyncio.run(stub(ready_w))
    os._exit(0)
# Wait until the stub listens (an empty read: it died before that).
os.close(ready_w)
if os.read(ready_r, 1) != b"1":
    sys.exit("the stub upstream did not start")
try:
    asyncio.run(main())
finally:
    os.kill(child, signal.SIGTERM)
    os.waitpid(child, 0)
