#!/bin/sh
# What sharing state through Redis costs a request: one gateway, one
# upstream, one route with a per-client rate limit and blocking on, run with
# [state] backend = "memory" and then "redis" (redis-server on loopback),
# each driven by oha over keep-alive mutual TLS, alternating A B A B.
# Prints req/s and p50/p99 per run and the redis/memory ratios.
#
#   cargo build --release && benches/state_cost.sh [seconds] [connections]
#
# Needs: target/release/sealgate, oha (cargo install oha), redis-server
# (apt-get install redis-server), python3. Installs nothing.
set -eu
SECS=${1:-10}
CONNS=${2:-64}
BIN=${SEALGATE_BIN:-target/release/sealgate}
missing=""
[ -x "$BIN" ] || missing="$missing $BIN(cargo build --release)"
command -v oha >/dev/null || missing="$missing oha(cargo install oha)"
command -v redis-server >/dev/null || missing="$missing redis-server(apt-get install redis-server)"
command -v python3 >/dev/null || missing="$missing python3"
command -v bc >/dev/null || missing="$missing bc(apt-get install bc)"
if [ -n "$missing" ]; then
  echo "missing:$missing" >&2
  exit 2
fi

. "$(dirname "$0")/common.sh"

"$BIN" pki init "$DIR/pki" >/dev/null
REDIS=$(free_port)
redis-server --port "$REDIS" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
REDIS_PID=$!
PIDS="$PIDS $REDIS_PID"
wait_port "$REDIS"

# The upstream: sealgate's built-in echo, in a process of its own.
ECHO=$(free_port)
cat >"$DIR/upstream.toml" <<EOF
[admin]
listen = "127.0.0.1:$(free_port)"
[echo]
listen = "127.0.0.1:$ECHO"
[[listener]]
name = "unused"
listen = "127.0.0.1:$(free_port)"
[listener.tls]
cert = "pki/gateway.crt"
key = "pki/gateway.key"
client_auth = "off"
[[route]]
name = "unused"
listener = "unused"
upstream = "echo"
allow_anonymous = true
[upstream.echo]
url = "http://127.0.0.1:$ECHO"
EOF
"$BIN" check --config "$DIR/upstream.toml" >/dev/null
"$BIN" run --config "$DIR/upstream.toml" --no-watch >/dev/null 2>&1 &
PIDS="$PIDS $!"
wait_port "$ECHO"

# The gateway under test, with `$1` as its [state].
gateway() {
  port=$(free_port)
  cat >"$DIR/gw.toml" <<EOF
$1
[admin]
listen = "127.0.0.1:$(free_port)"
[server.blocking]
max_failures = 5
window = "1m"
duration = "10m"
[[listener]]
name = "etl"
listen = "127.0.0.1:$port"
[listener.tls]
cert = "pki/gateway.crt"
key = "pki/gateway.key"
client_auth = "required"
client_ca = "pki/ca.crt"
[[route]]
name = "soap"
listener = "etl"
upstream = "echo"
rate_limit = { key = "client", per_second = 1000000, burst = 1000000 }
[upstream.echo]
url = "http://127.0.0.1:$ECHO"
max_concurrent = 1024
EOF
  "$BIN" check --config "$DIR/gw.toml" >/dev/null
  "$BIN" run --config "$DIR/gw.toml" --no-watch >/dev/null 2>&1 &
  GW=$!
  wait_port "$port"
  GW_PORT=$port
}

head -c 2048 /dev/zero | tr '\0' 'x' >"$DIR/body"
cpu() { # CPU seconds used so far by process $1
  awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"
}
load() { # conns seconds output...
  oha -z "$2" -c "$1" --no-tui -m POST -D "$DIR/body" $3 \
    --cert "$DIR/pki/client.crt" --key "$DIR/pki/client.key" --cacert "$DIR/pki/ca.crt" \
    "https://localhost:$GW_PORT/soap"
}
run() { # name state connections
  gateway "$2"
  load "$3" 2s "" >/dev/null 2>&1 || true
  before=$(cpu "$REDIS_PID")
  load "$3" "${SECS}s" "--output-format json" >"$DIR/$1-$3.json"
  echo "$(cpu "$REDIS_PID") - $before" | bc >"$DIR/$1-$3.redis-cpu"
  kill "$GW"
  wait "$GW" 2>/dev/null || true
}

MEMORY=""
SHARED="[state]
backend = \"redis\"
url = \"redis://127.0.0.1:$REDIS/0\""
# One connection: the latency a request gains. 64: the throughput.
for conns in 1 $CONNS; do
  for round in 1 2; do
    run "memory-$round" "$MEMORY" "$conns"
    run "redis-$round" "$SHARED" "$conns"
  done
done

python3 - "$DIR" "$SECS" 1 "$CONNS" <<'EOF'
import json, sys
d, secs, conns = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
for c in conns:
    rows = {}
    for kind in ("memory", "redis"):
        for r in (1, 2):
            j = json.load(open(f"{d}/{kind}-{r}-{c}.json"))
            s, p = j["summary"], j["latencyPercentiles"]
            cpu = float(open(f"{d}/{kind}-{r}-{c}.redis-cpu").read() or 0)
            rows[f"{kind}-{r}"] = (s["requestsPerSec"], p["p50"] * 1e3, p["p99"] * 1e3,
                                   cpu / secs * 100, j.get("statusCodeDistribution", {}))
    print(f"\n{c} connection(s), {secs:.0f} s each:\n")
    print("| run | req/s | p50 ms | p99 ms | redis-server CPU | statuses |")
    print("|---|---|---|---|---|---|")
    for k, (rps, p50, p99, cpu, ok) in rows.items():
        print(f"| {k} | {rps:.0f} | {p50:.3f} | {p99:.3f} | {cpu:.0f} % | {ok} |")
    mean = lambda kind, i: sum(rows[f"{kind}-{r}"][i] for r in (1, 2)) / 2
    print(f"\nredis/memory req/s: {mean('redis', 0) / mean('memory', 0):.3f}; "
          f"added p50: {(mean('redis', 1) - mean('memory', 1)) * 1e3:.0f} µs, "
          f"added p99: {(mean('redis', 2) - mean('memory', 2)) * 1e3:.0f} µs")
EOF
