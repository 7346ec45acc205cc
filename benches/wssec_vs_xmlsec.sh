#!/usr/bin/env bash
# Times sealgate::wssec::verify::verify (criterion, benches/wssec_verify.rs) and libxmlsec1
# (python-xmlsec, benches/xmlsec_peer.py) on the same two signed messages and
# prints a Markdown table for BENCHMARKS.md.
#
# Usage: benches/wssec_vs_xmlsec.sh [PEER_ITERATIONS]   (default 2000)
# Needs: cargo; /usr/bin/python3 with the Debian packages python3-xmlsec and
# python3-lxml (apt-get install -y python3-xmlsec).
set -euo pipefail
cd "$(dirname "$0")/.."
ITER=${1:-2000}
PY=/usr/bin/python3
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

echo "## writing messages to $dir" >&2
cargo run --quiet --release --example write_bench_messages -- "$dir" >&2

echo "## criterion (benches/wssec_verify.rs)" >&2
WSSEC_BENCH_DIR="$dir" cargo bench --quiet --bench wssec_verify >&2

echo "## libxmlsec1 peer (benches/xmlsec_peer.py, $ITER iterations)" >&2
$PY benches/xmlsec_peer.py "$dir/signer.pem" "$ITER" "$dir/msg-5KB.xml" "$dir/msg-1MB.xml" >"$dir/peer.tsv"
cat "$dir/peer.tsv" >&2

$PY - "$dir/peer.tsv" target/criterion/verify <<'PYEOF'
import json, subprocess, sys

peer_tsv, crit = sys.argv[1], sys.argv[2]

def human(us):
    return f"{us / 1000:.2f} ms" if us >= 1000 else f"{us:.1f} µs"

def size(n):
    return f"{n / 1048576:.2f} MiB" if n >= 1048576 // 2 else f"{n / 1024:.1f} KiB"

def version(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True).stdout.strip().splitlines()[0]
    except Exception:
        return "?"

import xmlsec
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"Machine: {cpu}; {version(['rustc', '--version'])}; python-xmlsec {xmlsec.__version__} "
      f"(libxmlsec1 {version(['dpkg-query', '-W', '-f=${Version}', 'libxmlsec1'])}).\n")
print("| Message | Size | sealgate `wssec::verify` (criterion mean) | libxmlsec1 parse + verify (mean) | ratio sealgate ÷ xmlsec | xmlsec `ctx.verify()` alone |")
print("|---|---|---|---|---|---|")
for line in open(peer_tsv):
    name, nbytes, n, e2e, call = line.split("\t")
    bench = name.removeprefix("msg-").removesuffix(".xml")
    est = json.load(open(f"{crit}/{bench}/new/estimates.json"))
    ours = est["mean"]["point_estimate"] / 1000.0
    print(f"| {name} | {size(int(nbytes))} | {human(ours)} | {human(float(e2e))} ({n.strip()} runs) | "
          f"{ours / float(e2e):.2f} | {human(float(call))} |")
PYEOF
