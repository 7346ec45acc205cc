#!/usr/bin/env python3
"""Memory per idle keep-alive mutual-TLS connection held by a gateway.

Opens N connections to HOST:PORT, each with the client certificate, and sends
one POST on each (so the gateway has done its per-request work and pooled its
upstream connection), then holds them all open and idle. The gateway's
resident memory (the process PID and its children, summed: nginx's and
HAProxy's workers count) is read before and after; the difference divided by
N is the memory per idle connection. Prints one JSON line.

    idle_conns.py HOST PORT N CERT KEY CA BODY PID [SETTLE_SECONDS]

Fails (exit 1) if any connection did not get a 2xx answer, or if a
connection the gateway should hold was closed before the measurement.
"""

import asyncio
import json
import resource
import ssl
import sys
import time

from proc_mem import tree_kib


async def one(host, port, ctx, request, gate):
    async with gate:
        reader, writer = await asyncio.open_connection(host, port, ssl=ctx, server_hostname="localhost")
        writer.write(request)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status = head.split(b" ", 2)[1]
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await reader.readexactly(length)
        if not status.startswith(b"2"):
            raise RuntimeError(f"answer {status.decode()}")
        return reader, writer


async def main():
    host, port, n, cert, key, ca, body_path, pid = sys.argv[1:9]
    port, n, pid = int(port), int(n), int(pid)
    settle = float(sys.argv[9]) if len(sys.argv) > 9 else 3.0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 256
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard) if hard != resource.RLIM_INFINITY else want, hard))
    ctx = ssl.create_default_context(cafile=ca)
    ctx.load_cert_chain(cert, key)
    body = open(body_path, "rb").read()
    request = (
        f"POST /ledger HTTP/1.1\r\nhost: localhost\r\ncontent-type: text/xml; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body
    gate = asyncio.Semaphore(64)

    # One connection first, so lazily built state (the upstream pool, TLS
    # contexts, allocator arenas) is in the baseline rather than counted as
    # the first connection's.
    warm = [await one(host, port, ctx, request, gate)]
    await asyncio.sleep(settle)
    before = tree_kib(pid)
    started = time.monotonic()
    results = await asyncio.gather(*(one(host, port, ctx, request, gate) for _ in range(n)), return_exceptions=True)
    opened = time.monotonic() - started
    failed = [r for r in results if isinstance(r, BaseException)]
    held = [r for r in results if not isinstance(r, BaseException)]
    await asyncio.sleep(settle)
    after = tree_kib(pid)
    # Still open? A gateway that closed idle connections early would look cheap.
    closed = sum(1 for reader, _ in held if reader.at_eof())
    for _, writer in held + warm:
        writer.close()
    print(json.dumps({
        "connections": len(held),
        "failed": len(failed),
        "closed_early": closed,
        "first_failure": repr(failed[0]) if failed else None,
        "pss_before_kib": before,
        "pss_after_kib": after,
        "kib_per_connection": (after - before) / max(len(held), 1),
        "open_seconds": round(opened, 1),
    }))
    return 1 if failed or closed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
