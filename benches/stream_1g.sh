#!/usr/bin/env bash
# A signed SOAP message of SIZE MiB (default 1024) through sealgate's
# streaming paths, with peak memory beside the payload:
#   1. `sealgate wssec sign` signs the file as it streams (time, peak RSS);
#   2. the same file posted over mutual TLS (curl, client certificate) to a
#      sealgate route that verifies as it streams (max_streamed_body) in
#      front of a sink upstream, against the same upload straight to the sink
#      (throughput ratio; sealgate's peak RSS from /proc VmHWM);
#   3. libxmlsec1 (python-xmlsec, benches/xmlsec_peer.py) verifying the same
#      file once (time and peak RSS, or how it failed).
#
# Usage: benches/stream_1g.sh [SIZE_MIB]
# Needs: cargo, curl, /usr/bin/time (Debian `time`), python3; for step 3
# /usr/bin/python3 with python3-xmlsec and python3-lxml. Disk: about 4×SIZE
# in $TMPDIR (the message, two signed copies, the spool).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${1:-1024}
for tool in curl python3 /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done
echo "## building sealgate (release)" >&2
cargo build --quiet --release --bin sealgate
BIN=$PWD/target/release/sealgate
. benches/common.sh

"$BIN" pki init "$DIR/pki" >/dev/null
echo "## writing a $SIZE MiB message" >&2
python3 benches/big_soap.py "$DIR/big.xml" "$SIZE"
ls -l "$DIR/big.xml" >&2

report() { # label time-output-file
  read -r secs kb < <(tail -1 "$2")
  awk -v l="$1" -v s="$secs" -v k="$kb" -v n="$(stat -c %s "$DIR/big.xml")" \
    'BEGIN { printf "| %s | %.1f s | %.0f MB/s | %.1f MiB |\n", l, s, n / s / 1e6, k / 1024 }'
}

echo "## 1. sealgate wssec sign (streamed)" >&2
/usr/bin/time -f "%e %M" -o "$DIR/sign.time" \
  "$BIN" wssec sign --key "$DIR/pki/signer.key" --cert "$DIR/pki/signer.crt" \
  -o "$DIR/big.signed.1.xml" "$DIR/big.xml"
# A second signature for the second round (the first would be a replay).
"$BIN" wssec sign --key "$DIR/pki/signer.key" --cert "$DIR/pki/signer.crt" \
  -o "$DIR/big.signed.2.xml" "$DIR/big.xml"
SIGNED_BYTES=$(stat -c %s "$DIR/big.signed.1.xml")

echo "## 2. upload: straight to the sink, then through sealgate verifying" >&2
UP=$(free_port)
start "$DIR/sink.log" python3 benches/sink.py "$UP"
wait_port "$UP"
GW=$(free_port)
cat >"$DIR/sealgate.toml" <<TOML
[admin]
listen = "127.0.0.1:$(free_port)"
[[listener]]
name = "etl"
listen = "127.0.0.1:$GW"
[listener.tls]
cert = "pki/gateway.crt"
key = "pki/gateway.key"
client_auth = "required"
client_ca = "pki/ca.crt"
[[route]]
name = "ledger"
listener = "etl"
upstream = "up"
[route.wssec.request]
mode = "verify"
trust = "pki/ca.crt"
max_body = "16 MiB"
max_streamed_body = "64 GiB"
[upstream.up]
url = "http://127.0.0.1:$UP"
request_timeout = "1h"
[spool]
dir = "spool"
max_total = "64 GiB"
TOML
"$BIN" check --config "$DIR/sealgate.toml" >/dev/null
RUST_LOG="warn" start "$DIR/sealgate.log" "$BIN" run --config "$DIR/sealgate.toml" --no-watch
SG=$LAST
wait_port "$GW"
upload() { # round url extra-curl-args...
  file="$DIR/big.signed.$1.xml"
  url=$2
  shift 2
  curl -sS -o "$DIR/answer" -w "%{http_code} %{time_total}\n" -X POST -T "$file" \
    -H "content-type: text/xml; charset=utf-8" -H 'soapaction: ""' "$@" "$url"
}
TLS=(--cert "$DIR/pki/client.crt" --key "$DIR/pki/client.key" --cacert "$DIR/pki/ca.crt")
RSS_BEFORE=$(awk '/VmHWM/ { print $2 }' "/proc/$SG/status")
cpu() { awk '{ print $14 + $15 }' "/proc/$SG/stat"; } # user + system, in clock ticks
TICKS=$(getconf CLK_TCK)
CPU=0
results=()
for round in 1 2; do
  read -r code t <<<"$(upload "$round" "http://127.0.0.1:$UP/ledger")"
  [ "$code" = 200 ] || { echo "direct upload: $code" >&2; exit 1; }
  results+=("direct $t")
  c0=$(cpu)
  read -r code t <<<"$(upload "$round" "https://localhost:$GW/ledger" "${TLS[@]}" --resolve "localhost:$GW:127.0.0.1")"
  [ "$code" = 200 ] || { echo "sealgate: $code $(cat "$DIR/answer")" >&2; cat "$DIR/sealgate.log" >&2; exit 1; }
  CPU=$((CPU + $(cpu) - c0))
  results+=("sealgate $t")
  echo "round $round: ${results[*]: -2}" >&2
done
RSS_PEAK=$(awk '/VmHWM/ { print $2 }' "/proc/$SG/status")
FORWARDED=$(cat "$DIR/answer")

echo "## 3. libxmlsec1 (python-xmlsec) on the same file" >&2
PEER="not run: /usr/bin/python3 lacks xmlsec or lxml"
if /usr/bin/python3 -c 'import xmlsec, lxml' 2>/dev/null; then
  if /usr/bin/time -f "%e %M" -o "$DIR/peer.time" /usr/bin/python3 benches/xmlsec_peer.py \
    "$DIR/pki/signer.crt" 0 "$DIR/big.signed.1.xml" >"$DIR/peer.out" 2>"$DIR/peer.err"; then
    PEER=$(report "libxmlsec1 (python-xmlsec): read the file, parse, verify once" "$DIR/peer.time")
  else
    PEER="| libxmlsec1 (python-xmlsec) | failed: $(tail -1 "$DIR/peer.err") | | $(tail -1 "$DIR/peer.time" | awk '{ printf "%.1f MiB", $2 / 1024 }') |"
  fi
fi

echo
echo "Message: $(stat -c %s "$DIR/big.xml") bytes unsigned, $SIGNED_BYTES signed; the upstream got $FORWARDED bytes."
echo
echo "| What | Time | Throughput | Peak RSS |"
echo "|---|---|---|---|"
report "sealgate wssec sign (streamed, RSA-2048)" "$DIR/sign.time"
printf '%s\n' "${results[@]}" | awk -v cpu="$CPU" -v hz="$TICKS" -v n="$SIGNED_BYTES" -v before="$RSS_BEFORE" -v peak="$RSS_PEAK" '
  { t[$1] += $2; c[$1]++ }
  END {
    d = t["direct"] / c["direct"]; s = t["sealgate"] / c["sealgate"]
    printf "| upload straight to the sink (plain HTTP, mean of %d) | %.1f s | %.0f MB/s | |\n", c["direct"], d, n / d / 1e6
    printf "| upload through sealgate, mutual TLS, verified as it streams (mean of %d) | %.1f s | %.0f MB/s (%.0f %% of direct; sealgate busy %.0f %% of a core) | %.1f MiB (%.1f MiB idle) |\n", c["sealgate"], s, n / s / 1e6, 100 * d / s, 100 * cpu / hz / c["sealgate"] / s, peak / 1024, before / 1024
  }'
echo "$PEER"
