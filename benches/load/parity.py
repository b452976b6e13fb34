#!/usr/bin/env python3
"""Proves both proxies do the swap work: counts the replacements each made in its copy of the page.

usage: parity.py ORIGIN_COPY TELSWAP_COPY NGINX_COPY

The site number and the tracking number have the same length, so a replacement changes bytes in
place; a "replacement" is a run of changed bytes. Prints, for each proxy, how many it made, and
checks that every byte telswap changed nginx changed to the same value (nginx's literal list
covers every format telswap swapped).
"""
import sys


def runs(a, b):
    if len(a) != len(b):
        sys.exit(f"parity: lengths differ ({len(a)} vs {len(b)}); the swap is not length-preserving")
    changed = [i for i in range(len(a)) if a[i] != b[i]]
    n, last = 0, -10
    for i in changed:
        if i - last > 4:  # digits of one number are at most a few bytes apart (separators)
            n += 1
        last = i
    return n, set(changed)


origin, ts, ngx = (open(p, "rb").read() for p in sys.argv[1:4])
n_ts, ch_ts = runs(origin, ts)
n_ngx, ch_ngx = runs(origin, ngx)
covered = ch_ts <= ch_ngx and all(ts[i] == ngx[i] for i in ch_ts)
print(f"PARITY telswap={n_ts} nginx={n_ngx} nginx_covers_telswap={'yes' if covered else 'no'} "
      f"nginx_extra={n_ngx - n_ts if covered else 'n/a'}")
if n_ts == 0 or not covered:
    sys.exit(1)
