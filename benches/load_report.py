#!/usr/bin/env python3
"""Prints benches/load.sh's tables from the results it left in DIR.

    load_report.py DIR SECONDS CONNECTIONS "SCENARIOS" "ALGS"
"""

import json
import os
import sys

d, secs, conns = sys.argv[1], sys.argv[2], sys.argv[3]
scenarios, algs = sys.argv[4].split(), sys.argv[5].split()


def stats(name):
    """req/s, p50 ms, p99 ms, non-2xx + errors of one oha JSON result."""
    j = json.load(open(os.path.join(d, name)))
    s = j["summary"]
    p = j.get("latencyPercentiles", {})
    codes = j.get("statusCodeDistribution", {})
    not_ok = sum(v for k, v in codes.items() if not k.startswith("2"))
    # Requests still in flight when the run's time is up are not failures.
    errors = sum(v for k, v in j.get("errorDistribution", {}).items() if "deadline" not in k)
    return s["requestsPerSec"], p.get("p50", 0) * 1000, p.get("p99", 0) * 1000, not_ok + errors


def mean_runs(prefix):
    """The mean of rounds 1 and 2 of prefix-N.json, or None."""
    runs = [f"{prefix}-{r}.json" for r in (1, 2)]
    runs = [r for r in runs if os.path.exists(os.path.join(d, r))]
    if not runs:
        return None
    rows = [stats(r) for r in runs]
    n = len(rows)
    return (sum(r[0] for r in rows) / n, sum(r[1] for r in rows) / n,
            sum(r[2] for r in rows) / n, sum(r[3] for r in rows))


def row(label, m):
    print(f"{label:<10} {m[0]:>9.0f} {m[1]:>8.2f} {m[2]:>8.2f} {m[3]:>15}")


def header(first):
    print(f"{first:<10} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx/errors':>15}")


def load(sc):
    for alg in algs:
        print(f"\n{sc} / {alg}")
        header("gateway")
        got = {}
        for gw in ("sealgate", "nginx", "haproxy", "direct"):
            m = mean_runs(f"{sc}-{alg}-{gw}")
            if m:
                got[gw] = m
                row(gw if gw != "direct" else "direct*", m)
        if "sealgate" in got:
            for peer in ("nginx", "haproxy", "direct"):
                if peer in got:
                    s, o = got["sealgate"], got[peer]
                    print(f"  sealgate/{peer}: {s[0] / o[0]:.2f}x req/s, p99 {s[2] / o[2]:.2f}x")


def upload():
    path = os.path.join(d, "upload.txt")
    if not os.path.exists(path):
        return
    runs = {}
    for line in open(path):
        name, t, hwm, size, got = line.split()
        runs.setdefault(name, []).append((float(t), int(hwm), int(size), got))
    print("\nupload: one POST at a time into a sink that reads it whole (mean of the runs)")
    print(f"{'path':<16} {'seconds':>8} {'MB/s':>8} {'of direct':>10} {'peak RSS MiB':>13}")
    direct = None
    for name in ("direct", "sealgate", "sealgate-verify", "nginx", "haproxy"):
        if name not in runs:
            continue
        r = runs[name]
        t = sum(x[0] for x in r) / len(r)
        mbs = r[0][2] / t / 1e6
        if name == "direct":
            direct = mbs
        share = f"{100 * mbs / direct:.0f} %" if direct else ""
        hwm = max(x[1] for x in r) / 1024
        peak = f"{hwm:.1f}" if hwm else ""
        print(f"{name:<16} {t:>8.2f} {mbs:>8.0f} {share:>10} {peak:>13}")
    print("  sealgate-verify: the signed message, verified as it streams through the encrypted spool")


def wssec():
    for alg in algs:
        got = {}
        for route in ("plain", "sign", "hop", "chain"):
            m = mean_runs(f"wssec-{alg}-{route}")
            if m:
                got[route] = m
        if not got:
            continue
        print(f"\nwssec / {alg}: 5 KB SOAP POST, sealgate's routes in one process")
        header("route")
        for route, m in got.items():
            row(route, m)
        if len(got) == 4:
            p = {k: v[1] * 1000 for k, v in got.items()}
            sign = p["sign"] - p["plain"]
            verify = (p["chain"] - p["hop"]) - sign
            print(f"  p50 added by signing: {sign:.0f} us (sign - plain)")
            print(f"  p50 added by verifying: {verify:.0f} us ((chain - hop) - (sign - plain))")
            # Under saturation, time per request on the machine is 1 / req/s.
            cost = {k: 1e6 / v[0] for k, v in got.items()}
            print(f"  machine time per request: plain {cost['plain']:.0f} us, signing +{cost['sign'] - cost['plain']:.0f} us, "
                  f"verifying +{(cost['chain'] - cost['hop']) - (cost['sign'] - cost['plain']):.0f} us")


def idle():
    for alg in algs:
        got = {}
        for gw in ("sealgate", "nginx", "haproxy"):
            path = os.path.join(d, f"idle-{alg}-{gw}.json")
            if os.path.exists(path):
                got[gw] = json.load(open(path))
        if not got:
            continue
        print(f"\nidle / {alg}: keep-alive mutual-TLS connections held open after one request")
        print(f"{'gateway':<10} {'connections':>12} {'KiB each':>9} {'PSS before MiB':>15} {'after MiB':>10}")
        for gw, j in got.items():
            print(f"{gw:<10} {j['connections']:>12} {j['kib_per_connection']:>9.1f} "
                  f"{j['pss_before_kib'] / 1024:>15.1f} {j['pss_after_kib'] / 1024:>10.1f}")
        if "sealgate" in got:
            for peer in ("nginx", "haproxy"):
                if peer in got:
                    ratio = got["sealgate"]["kib_per_connection"] / got[peer]["kib_per_connection"]
                    print(f"  sealgate/{peer}: {ratio:.2f}x memory per connection")


print(f"{conns} connections, {secs} s per run, two runs each (A B C A B C)")
for sc in scenarios:
    {"upload": upload, "wssec": wssec, "idle": idle}.get(sc, lambda: load(sc))()
print("\n* direct: the upstream alone over plain HTTP, the ceiling")
