#!/usr/bin/env python3
"""Opens N keep-alive connections to a server, sends one request on each, reads the whole answer,
then leaves every connection open and idle; measures the server's resident memory (VmRSS) before
and with the connections open, and how many the server still holds after HOLD seconds.

usage: idle.py HOST PORT PATH N HOLD_S SERVER_PID [tls | h2 | h2c]
With `tls`, every connection is HTTPS (HTTP/1.1 by ALPN, SNI "localhost", the certificate not
checked: the figure is the server's memory, not its identity). With `h2`, HTTPS with HTTP/2
chosen by ALPN, as browsers do; with `h2c`, HTTP/2 by prior knowledge on plain TCP. An HTTP/2
connection sends its preface and SETTINGS, one GET on stream 1, acknowledges the server's
SETTINGS and reads frames until the response's END_STREAM.
Prints: RESULT rss_before_kib rss_open_kib open_after_requests open_after_hold hold_s
"""
import asyncio
import resource
import ssl
import sys
import time

host, port, path, n, hold, pid = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(
    sys.argv[5]), int(sys.argv[6])
mode = sys.argv[7] if len(sys.argv) > 7 else "plain"
if mode not in ("plain", "tls", "h2", "h2c"):
    raise SystemExit(f"unknown mode {mode}")
tls = None
if mode in ("tls", "h2"):
    tls = ssl.create_default_context()
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE
    tls.set_alpn_protocols(["h2" if mode == "h2" else "http/1.1"])


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


def h2_frame(kind, flags, stream, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


def hpack_literal(index, value):
    """A literal header field with incremental indexing, the name from the static table
    (RFC 7541 §6.2.1; every index used here is below 63, so it fits the 6-bit prefix)."""
    v = value.encode()
    return bytes([0x40 | index, len(v)]) + v


async def h2_request(r, w):
    """One GET on stream 1 (RFC 9113); returns the response's :status."""
    block = (b"\x82" + (b"\x87" if tls else b"\x86")  # :method GET, :scheme https / http
             + hpack_literal(4, path) + hpack_literal(1, "localhost")  # :path, :authority
             + hpack_literal(58, "idle-check") + hpack_literal(19, "text/html"))  # user-agent, accept
    w.write(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2_frame(4, 0, 0) + h2_frame(1, 0x5, 1, block))
    status = None
    while True:
        head = await r.readexactly(9)
        size, kind, flags = int.from_bytes(head[:3], "big"), head[3], head[4]
        stream = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
        payload = await r.readexactly(size)
        if kind == 4 and not flags & 1:  # the server's SETTINGS: acknowledge
            w.write(h2_frame(4, 1, 0))
        elif kind == 7:
            raise RuntimeError("server sent GOAWAY")
        elif kind == 1 and stream == 1:
            # hyper sends no padding or priority, and `:status: 200` as static entry 8 (0x88).
            status = 200 if payload[:1] == b"\x88" else -1
        if stream == 1 and kind in (0, 1) and flags & 1:
            return status


async def one(sem, conns, errors):
    async with sem:
        try:
            if tls:
                r, w = await asyncio.open_connection(host, port, ssl=tls, server_hostname="localhost")
            else:
                r, w = await asyncio.open_connection(host, port)
            if mode in ("h2", "h2c"):
                status = await h2_request(r, w)
            else:
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
