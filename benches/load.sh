#!/bin/sh
# sealgate against nginx and HAProxy doing the same mutual-TLS work in front
# of one upstream, on this machine: the same certificates (RSA-2048 and
# ECDSA P-256) and CRL, client certificates required, as many workers as
# cores, access logs off, upstream keep-alive. Each gateway is driven in turn
# by oha at the same concurrency and duration, alternating A B C A B C; the
# upstream alone (plain HTTP) is the ceiling. Prints req/s, p50 and p99 per
# gateway and the sealgate/peer ratios.
#
# Scenarios:
#   keepalive   2 KiB SOAP POST over 64 keep-alive connections
#   handshake   a new mutual-TLS connection per request, session resumption on
#   full        a new mutual-TLS connection per request, resumption off
#
#   cargo build --release && benches/load.sh [seconds] [connections] [scenario...]
#
# Needs: target/release/sealgate, oha (cargo install oha), nginx (apt-get
# install nginx-light), haproxy (apt-get install haproxy), python3. Installs
# nothing, and says what is missing.
set -eu
SECS=${1:-10}
CONNS=${2:-64}
shift $(($# < 2 ? $# : 2))
SCENARIOS=${*:-keepalive handshake full}
ALGS=${ALGS:-rsa2048 ecdsa-p256}
BIN=${SEALGATE_BIN:-target/release/sealgate}
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
missing=""
[ -x "$BIN" ] || missing="$missing $BIN(cargo build --release)"
command -v oha >/dev/null || missing="$missing oha(cargo install oha)"
[ -x "$NGINX" ] || missing="$missing nginx(apt-get install nginx-light)"
[ -x "$HAPROXY" ] || missing="$missing haproxy(apt-get install haproxy)"
command -v python3 >/dev/null || missing="$missing python3"
if [ -n "$missing" ]; then
  echo "missing:$missing" >&2
  exit 2
fi
CORES=$(nproc)
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")

. "$(dirname "$0")/common.sh"

# The upstream: nginx answering a fixed body, as many workers as cores.
UP=$(free_port)
mkdir -p "$DIR/up"
cat >"$DIR/up/nginx.conf" <<EOF
user root;
worker_processes auto;
pid $DIR/up/nginx.pid;
error_log $DIR/up/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_buffer_size 16k;
  server {
    listen 127.0.0.1:$UP;
    location / { return 200 "<ok/>\n"; }
  }
}
EOF
start "$DIR/up/out" "$NGINX" -p "$DIR/up" -c "$DIR/up/nginx.conf" -g 'daemon off;'
wait_port "$UP"

# One SOAP body for every run.
python3 - "$DIR/body" <<'EOF'
import sys
head = b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><ledger:post xmlns:ledger="urn:acme:ledger">'
tail = b'</ledger:post></soapenv:Body></soapenv:Envelope>'
line = b'<ledger:line account="4000" amount="125.00">Invoice 2026-0042</ledger:line>'
body = head
while len(body) + len(line) + len(tail) <= 2048:
    body += line
body += tail
open(sys.argv[1], "wb").write(body.ljust(2048, b" "))
EOF

# Each gateway, for one key algorithm and resumption on or off; sets GW_PORT.
sealgate() { # alg resumption(true|false)
  GW_PORT=$(free_port)
  d="$DIR/$1"
  cat >"$d/sealgate.toml" <<EOF
[admin]
listen = "127.0.0.1:$(free_port)"
[[listener]]
name = "etl"
listen = "127.0.0.1:$GW_PORT"
[listener.tls]
cert = "pki/gateway.crt"
key = "pki/gateway.key"
client_auth = "required"
client_ca = "pki/ca.crt"
crls = ["pki/ca.crl"]
session_resumption = $2
[[route]]
name = "soap"
listener = "etl"
upstream = "up"
[upstream.up]
url = "http://127.0.0.1:$UP"
EOF
  "$BIN" check --config "$d/sealgate.toml" >/dev/null
  RUST_LOG="info,sealgate::access=off" start "$d/sealgate.log" \
    "$BIN" run --config "$d/sealgate.toml" --no-watch
  GW=$LAST
  wait_port "$GW_PORT"
}
nginx_gw() { # alg resumption
  GW_PORT=$(free_port)
  d="$DIR/$1/nginx"
  mkdir -p "$d"
  if [ "$2" = true ]; then
    cache="ssl_session_cache shared:tls:10m; ssl_session_tickets on;"
  else
    cache="ssl_session_cache off; ssl_session_tickets off;"
  fi
  cat >"$d/nginx.conf" <<EOF
user root;
worker_processes $CORES;
pid $d/nginx.pid;
error_log $d/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  upstream up {
    server 127.0.0.1:$UP;
    keepalive 128;
  }
  server {
    listen 127.0.0.1:$GW_PORT ssl;
    ssl_certificate $DIR/$1/pki/gateway.crt;
    ssl_certificate_key $DIR/$1/pki/gateway.key;
    ssl_client_certificate $DIR/$1/pki/ca.crt;
    ssl_crl $DIR/$1/pki/ca.crl;
    ssl_verify_client on;
    ssl_protocols TLSv1.2 TLSv1.3;
    $cache
    location / {
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Client-Subject \$ssl_client_s_dn;
    }
  }
}
EOF
  start "$d/out" "$NGINX" -p "$d" -c "$d/nginx.conf" -g 'daemon off;'
  GW=$LAST
  wait_port "$GW_PORT"
}
haproxy_gw() { # alg resumption
  GW_PORT=$(free_port)
  d="$DIR/$1/haproxy"
  mkdir -p "$d"
  cat "$DIR/$1/pki/gateway.crt" "$DIR/$1/pki/gateway.key" >"$d/gateway.pem"
  if [ "$2" = true ]; then
    cache="" tickets=""
  else
    cache="tune.ssl.cachesize 0" tickets="no-tls-tickets"
  fi
  cat >"$d/haproxy.cfg" <<EOF
global
  nbthread $CORES
  maxconn 8000
  $cache
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  http-reuse always
frontend etl
  bind 127.0.0.1:$GW_PORT ssl crt $d/gateway.pem ca-file $DIR/$1/pki/ca.crt crl-file $DIR/$1/pki/ca.crl verify required $tickets
  http-request set-header X-Client-Subject %{+Q}[ssl_c_s_dn]
  default_backend up
backend up
  server up 127.0.0.1:$UP
EOF
  start "$d/out" "$HAPROXY" -f "$d/haproxy.cfg" -db
  GW=$LAST
  wait_port "$GW_PORT"
}

load() { # alg scheme port seconds output-args...
  alg=$1 scheme=$2 port=$3 secs=$4
  shift 4
  keep=""
  [ "$SCENARIO" = keepalive ] || keep="--disable-keepalive"
  tls=""
  [ "$scheme" = http ] || tls="--cert $DIR/$alg/pki/client.crt --key $DIR/$alg/pki/client.key --cacert $DIR/$alg/pki/ca.crt"
  # shellcheck disable=SC2086
  oha -z "$secs" -c "$CONNS" --no-tui -m POST -D "$DIR/body" \
    -H "content-type: text/xml; charset=utf-8" $keep $tls "$@" \
    "$scheme://localhost:$port/ledger"
}
measure() { # name alg scheme
  load "$2" "$3" "$GW_PORT" 2s >/dev/null 2>&1 || true
  load "$2" "$3" "$GW_PORT" "${SECS}s" --output-format json >"$DIR/$SCENARIO-$2-$1.json"
}
stop() {
  kill "$GW" 2>/dev/null || true
  wait "$GW" 2>/dev/null || true
}

for alg in $ALGS; do
  mkdir -p "$DIR/$alg"
  "$BIN" pki init --key-alg "$alg" "$DIR/$alg/pki" >/dev/null
done
for SCENARIO in $SCENARIOS; do
  resume=true
  [ "$SCENARIO" != full ] || resume=false
  for alg in $ALGS; do
    for round in 1 2; do
      sealgate "$alg" "$resume"
      measure "sealgate-$round" "$alg" https
      stop
      nginx_gw "$alg" "$resume"
      measure "nginx-$round" "$alg" https
      stop
      haproxy_gw "$alg" "$resume"
      measure "haproxy-$round" "$alg" https
      stop
    done
    if [ "$SCENARIO" = keepalive ]; then
      GW_PORT=$UP
      measure "direct-1" "$alg" http
    fi
  done
done

python3 - "$DIR" "$SECS" "$CONNS" "$SCENARIOS" "$ALGS" <<'EOF'
import json, os, sys
d, secs, conns, scenarios, algs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split(), sys.argv[5].split()

def stats(name):
    j = json.load(open(os.path.join(d, name)))
    s = j["summary"]
    p = j.get("latencyPercentiles", {})
    codes = j.get("statusCodeDistribution", {})
    not_ok = sum(v for k, v in codes.items() if not k.startswith("2"))
    # Requests still in flight when the run's time is up are not failures.
    errors = sum(v for k, v in j.get("errorDistribution", {}).items() if "deadline" not in k)
    return s["requestsPerSec"], p.get("p50", 0) * 1000, p.get("p99", 0) * 1000, not_ok + errors

print(f"{conns} connections, {secs} s per run, two runs each (A B C A B C)")
for sc in scenarios:
    for alg in algs:
        print(f"\n{sc} / {alg}")
        print(f"{'gateway':<10} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx/errors':>15}")
        got = {}
        for gw in ("sealgate", "nginx", "haproxy", "direct"):
            runs = [f"{sc}-{alg}-{gw}-{r}.json" for r in (1, 2)]
            runs = [r for r in runs if os.path.exists(os.path.join(d, r))]
            if not runs:
                continue
            rows = [stats(r) for r in runs]
            rps = sum(r[0] for r in rows) / len(rows)
            p50 = sum(r[1] for r in rows) / len(rows)
            p99 = sum(r[2] for r in rows) / len(rows)
            bad = sum(r[3] for r in rows)
            got[gw] = (rps, p50, p99)
            label = gw if gw != "direct" else "direct*"
            print(f"{label:<10} {rps:>9.0f} {p50:>8.2f} {p99:>8.2f} {bad:>15}")
        if "sealgate" in got:
            for peer in ("nginx", "haproxy", "direct"):
                if peer in got:
                    s, o = got["sealgate"], got[peer]
                    print(f"  sealgate/{peer}: {s[0] / o[0]:.2f}x req/s, p99 {s[2] / o[2]:.2f}x")
print("\n* direct: the upstream alone over plain HTTP, the ceiling")
EOF
