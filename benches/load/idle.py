#!/usr/bin/env python3
"""Opens N keep-alive connections to a server, sends one request on each, reads the whole answer,
then leaves every connection open and idle; measures the server's resident memory (VmRSS) before
and with the connections open, and how many the server still holds after HOLD seconds.

usage: idle.py HOST PORT PATH N HOLD_S SERVER_PID [tls]
With `tls`, every connection is HTTPS (HTTP/1.1 by ALPN, SNI "localhost", the certificate not
checked: the figure is the server's memory, not its identity).
Prints: RESULT rss_before_kib rss_open_kib open_after_requests open_after_hold hold_s
"""
import asyncio
import resource
import ssl
import sys
import time

host, port, path, n, hold, pid = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(
    sys.argv[5]), int(sys.argv[6])
tls = None
if sys.argv[7:] == ["tls"]:
    tls = ssl.create_default_context()
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE
    tls.set_alpn_protocols(["http/1.1"])


def rss_kib():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SystemExit("no VmRSS")


async def read_response(r):
    head = await r.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for l in lines[1:]:
        if ":" in l:
            k, v = l.split(":", 1)
            hdrs[k.strip().lower()] = v.strip().lower()
    if "content-length" in hdrs:
        await r.readexactly(int(hdrs["content-length"]))
    elif "chunked" in hdrs.get("transfer-encoding", ""):
        while True:
            size = int((await r.readuntil(b"\r\n")).split(b";")[0], 16)
            await r.readexactly(size + 2)
            if size == 0:
                break
    if hdrs.get("connection") == "close":
        raise SystemExit("server asked to close the connection")
    return status


async def one(sem, conns, errors):
    async with sem:
        try:
            if tls:
                r, w = await asyncio.open_connection(host, port, ssl=tls, server_hostname="localhost")
            else:
                r, w = await asyncio.open_connection(host, port)
            w.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: idle-check\r\n"
                    f"Accept: text/html\r\n\r\n".encode())
            status = await read_response(r)
            if status != 200:
                errors.append(status)
            conns.append((r, w))
        except Exception as e:  # counted, reported
            errors.append(repr(e))


async def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < n + 100:
        raise SystemExit(f"open-file limit {hard} is below {n} connections")
    before = rss_kib()
    sem = asyncio.Semaphore(200)
    conns, errors = [], []
    t0 = time.time()
    await asyncio.gather(*(one(sem, conns, errors) for _ in range(n)))
    await asyncio.sleep(1.0)
    opened = sum(1 for r, _ in conns if not r.at_eof())
    rss_open = rss_kib()
    print(f"opened {len(conns)} connections in {time.time() - t0:.1f} s, {len(errors)} errors "
          f"{errors[:3]}; RSS {before} -> {rss_open} KiB", file=sys.stderr)
    # Stay idle; a connection the server closes reads EOF.
    waiters = [asyncio.ensure_future(r.read(1)) for r, _ in conns]
    await asyncio.sleep(hold)
    still = sum(1 for wt in waiters if not wt.done())
    print(f"RESULT {before} {rss_open} {opened} {still} {hold:.0f}")
    for wt in waiters:
        wt.cancel()
    for _, w in conns:
        w.close()


asyncio.run(main())
