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
#   upload      one 256 MiB POST at a time (curl, mutual TLS) to a sink
#               upstream that reads it whole: throughput against the same
#               upload straight to the sink, and each gateway's peak RSS;
#               sealgate also on a route that verifies it as it streams
#   wssec       keepalive with a 5 KB SOAP POST, sealgate only, through a
#               plain route, one that signs, one that signs and hands the
#               message to a second listener that verifies it (a replayed
#               fixed body would be refused, so the load signs its own), and
#               that same hop without the WS-Security stages
#   idle        10,000 keep-alive mutual-TLS connections held open after one
#               request each: resident memory per connection
#
#   cargo build --release && benches/load.sh [seconds] [connections] [scenario...]
#
# Environment: ALGS (default "rsa2048 ecdsa-p256"), UPLOAD_MIB (256),
# IDLE_CONNS (10000), SIGNER (wssec's signing key: "gateway-signer", the
# default, is RSA-2048; "signer" is ECDSA P-256, so the XML work shows
# apart from RSA's private-key operation).
#
# Needs: target/release/sealgate, oha (cargo install oha), nginx (apt-get
# install nginx-light), haproxy (apt-get install haproxy), python3, curl.
# Installs nothing, and says what is missing.
set -eu
SECS=${1:-10}
CONNS=${2:-64}
shift $(($# < 2 ? $# : 2))
SCENARIOS=${*:-keepalive handshake full upload wssec idle}
UPLOAD_MIB=${UPLOAD_MIB:-256}
IDLE_CONNS=${IDLE_CONNS:-10000}
ALGS=${ALGS:-rsa2048 ecdsa-p256}
SIGNER=${SIGNER:-gateway-signer}
BIN=${SEALGATE_BIN:-target/release/sealgate}
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
missing=""
[ -x "$BIN" ] || missing="$missing $BIN(cargo build --release)"
command -v oha >/dev/null || missing="$missing oha(cargo install oha)"
[ -x "$NGINX" ] || missing="$missing nginx(apt-get install nginx-light)"
[ -x "$HAPROXY" ] || missing="$missing haproxy(apt-get install haproxy)"
command -v python3 >/dev/null || missing="$missing python3"
command -v curl >/dev/null || missing="$missing curl"
if [ -n "$missing" ]; then
  echo "missing:$missing" >&2
  exit 2
fi
CORES=$(nproc)
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
BENCHES=$(cd "$(dirname "$0")" && pwd)
# Every gateway (and the idle scenario's client) holds a descriptor per
# connection; HAProxy asks for two per connection it may accept.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
NOFILE=$(ulimit -n)
HAPROXY_MAXCONN=$(((NOFILE - 200) / 2))
[ "$HAPROXY_MAXCONN" -le 32768 ] || HAPROXY_MAXCONN=32768

. "$(dirname "$0")/common.sh"

# The upstream: nginx answering a fixed body, as many workers as cores.
UP=$(free_port)
mkdir -p "$DIR/up"
cat >"$DIR/up/nginx.conf" <<EOF
user root;
worker_processes auto;
pid $DIR/up/nginx.pid;
error_log $DIR/up/error.log;
worker_rlimit_nofile $NOFILE;
events { worker_connections 32768; }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 600s;
  client_body_buffer_size 16k;
  server {
    listen 127.0.0.1:$UP;
    location / { return 200 "<ok/>\n"; }
  }
}
EOF
start "$DIR/up/out" "$NGINX" -p "$DIR/up" -c "$DIR/up/nginx.conf" -g 'daemon off;'
wait_port "$UP"

# The SOAP bodies: 2 KiB for the load scenarios, 5 KB for wssec.
soap_body() { # path bytes
  python3 - "$1" "$2" <<'EOF'
import sys
size = int(sys.argv[2])
head = b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><ledger:post xmlns:ledger="urn:acme:ledger">'
tail = b'</ledger:post></soapenv:Body></soapenv:Envelope>'
line = b'<ledger:line account="4000" amount="125.00">Invoice 2026-0042</ledger:line>'
body = head
while len(body) + len(line) + len(tail) <= size:
    body += line
body += tail
open(sys.argv[1], "wb").write(body.ljust(size, b" "))
EOF
}
soap_body "$DIR/body" 2048
soap_body "$DIR/body5k" 5120

# Each gateway, for one key algorithm and resumption on or off; sets GW_PORT
# and GW (its pid). UP is the upstream's port; SG_ROUTES, NGINX_EXTRA add a
# scenario's own settings.
sealgate() { # alg resumption(true|false)
  GW_PORT=$(free_port)
  d="$DIR/$1"
  cat >"$d/sealgate.toml" <<EOF
[admin]
listen = "127.0.0.1:$(free_port)"
[server.limits]
idle_timeout = "10m"
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
${SG_ROUTES:-}
[[route]]
name = "soap"
listener = "etl"
upstream = "up"
max_body = "64 GiB"
[upstream.up]
url = "http://127.0.0.1:$UP"
request_timeout = "1h"
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
worker_rlimit_nofile $NOFILE;
pid $d/nginx.pid;
error_log $d/error.log;
events { worker_connections 32768; }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 600s;
  ${NGINX_EXTRA:-}
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
  maxconn $HAPROXY_MAXCONN
  $cache
defaults
  mode http
  timeout connect 5s
  timeout client 600s
  timeout server 1h
  timeout http-keep-alive 600s
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
  case $SCENARIO in keepalive | wssec) ;; *) keep="--disable-keepalive" ;; esac
  tls=""
  [ "$scheme" = http ] || tls="--cert $DIR/$alg/pki/client.crt --key $DIR/$alg/pki/client.key --cacert $DIR/$alg/pki/ca.crt"
  # shellcheck disable=SC2086
  oha -z "$secs" -c "$CONNS" --no-tui -m POST -D "${BODY:-$DIR/body}" \
    -H "content-type: text/xml; charset=utf-8" $keep $tls "$@" \
    "$scheme://localhost:$port${URL_PATH:-/ledger}"
}
measure() { # name alg scheme
  load "$2" "$3" "$GW_PORT" 2s >/dev/null 2>&1 || true
  load "$2" "$3" "$GW_PORT" "${SECS}s" --output-format json >"$DIR/$SCENARIO-$2-$1.json"
}
stop() {
  kill "$GW" 2>/dev/null || true
  wait "$GW" 2>/dev/null || true
  GW=""
}

# keepalive, handshake, full: the three gateways and the upstream alone.
run_load() {
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
}

# upload: one large POST at a time into a sink that reads it whole.
upload() { # name file url curl-args...
  name=$1 file=$2 url=$3
  shift 3
  out=$(curl -sS -o "$DIR/answer" -w "%{http_code} %{time_total}" -X POST -T "$file" \
    -H "content-type: text/xml; charset=utf-8" -H 'soapaction: ""' "$@" "$url")
  [ "${out% *}" = 200 ] || {
    echo "upload through $name: ${out% *} $(cat "$DIR/answer")" >&2
    exit 1
  }
  hwm=0
  [ -z "${GW:-}" ] || hwm=$(python3 "$BENCHES/proc_mem.py" "$GW" hwm)
  echo "$name ${out#* } $hwm $(stat -c %s "$file") $(cat "$DIR/answer")" >>"$DIR/upload.txt"
}
run_upload() {
  alg=${ALGS%% *}
  pki=$DIR/$alg/pki
  sink=$(free_port)
  start "$DIR/sink.log" python3 "$BENCHES/sink.py" "$sink"
  wait_port "$sink"
  python3 "$BENCHES/big_soap.py" "$DIR/upload.xml" "$UPLOAD_MIB"
  for round in 1 2; do # each round its own signature: the first would be a replay
    "$BIN" wssec sign --key "$pki/signer.key" --cert "$pki/signer.crt" \
      -o "$DIR/upload.signed.$round.xml" "$DIR/upload.xml"
  done
  keep_up=$UP
  UP=$sink
  NGINX_EXTRA="client_max_body_size 0; proxy_request_buffering off;"
  tls="--cert $pki/client.crt --key $pki/client.key --cacert $pki/ca.crt"
  for round in 1 2; do
    GW=""
    upload direct "$DIR/upload.xml" "http://127.0.0.1:$sink/ledger"
    sealgate "$alg" true
    # shellcheck disable=SC2086
    upload sealgate "$DIR/upload.xml" "https://localhost:$GW_PORT/ledger" $tls
    stop
    SG_ROUTES='
[[route]]
name = "verified"
listener = "etl"
upstream = "up"
match.path_prefix = "/verified"
[route.wssec.request]
mode = "verify"
trust = "pki/ca.crt"
max_streamed_body = "64 GiB"
stream_read_timeout = "1h"
[spool]
dir = "spool"
max_total = "64 GiB"'
    sealgate "$alg" true
    SG_ROUTES=""
    # shellcheck disable=SC2086
    upload sealgate-verify "$DIR/upload.signed.$round.xml" "https://localhost:$GW_PORT/verified" $tls
    stop
    nginx_gw "$alg" true
    # shellcheck disable=SC2086
    upload nginx "$DIR/upload.xml" "https://localhost:$GW_PORT/ledger" $tls
    stop
    haproxy_gw "$alg" true
    # shellcheck disable=SC2086
    upload haproxy "$DIR/upload.xml" "https://localhost:$GW_PORT/ledger" $tls
    stop
  done
  UP=$keep_up
  NGINX_EXTRA=""
  rm -f "$DIR/upload.xml" "$DIR"/upload.signed.*.xml
}

# wssec: sealgate alone, four routes over one process, alternating.
run_wssec() {
  for alg in $ALGS; do
    inner=$(free_port)
    # Short Timestamps, so the replay cache holds one run's messages, not five minutes'.
    sign="[route.wssec.request]
mode = \"sign\"
key = \"pki/$SIGNER.key\"
cert = \"pki/$SIGNER.crt\"
ttl = \"10s\""
    SG_ROUTES="
[[route]]
name = \"sign\"
listener = \"etl\"
upstream = \"up\"
match.path_prefix = \"/sign\"
$sign
[[route]]
name = \"chain\"
listener = \"etl\"
upstream = \"inner\"
match.path_prefix = \"/chain\"
$sign
[[route]]
name = \"hop\"
listener = \"etl\"
upstream = \"inner\"
match.path_prefix = \"/hop\"
[[route]]
name = \"verify\"
listener = \"inner\"
upstream = \"up\"
match.path_prefix = \"/chain\"
[route.wssec.request]
mode = \"verify\"
trust = \"pki/ca.crt\"
max_clock_skew = \"1s\"
replay_cache_entries = 1000000
[[route]]
name = \"inner\"
listener = \"inner\"
upstream = \"up\"
[upstream.inner]
url = \"https://localhost:$inner\"
ca = \"pki/ca.crt\"
client_cert = \"pki/gateway-client.crt\"
client_key = \"pki/gateway-client.key\"
[[listener]]
name = \"inner\"
listen = \"127.0.0.1:$inner\"
[listener.tls]
cert = \"pki/gateway.crt\"
key = \"pki/gateway.key\"
client_auth = \"required\"
client_ca = \"pki/ca.crt\""
    sealgate "$alg" true
    SG_ROUTES=""
    wait_port "$inner"
    for round in 1 2; do
      for route in plain sign hop chain; do
        URL_PATH=/$route BODY=$DIR/body5k measure "$route-$round" "$alg" https
      done
    done
    stop
  done
}

# idle: connections held open after one request each.
run_idle() {
  for alg in $ALGS; do
    for gw in sealgate nginx haproxy; do
      if [ "$gw" = haproxy ] && [ "$HAPROXY_MAXCONN" -le "$IDLE_CONNS" ]; then
        echo "idle: HAProxy skipped, its $HAPROXY_MAXCONN connections (two descriptors each, ulimit -n $NOFILE) are under $IDLE_CONNS" >&2
        continue
      fi
      case $gw in sealgate) sealgate "$alg" true ;; *) "${gw}_gw" "$alg" true ;; esac
      pki=$DIR/$alg/pki
      python3 "$BENCHES/idle_conns.py" 127.0.0.1 "$GW_PORT" "$IDLE_CONNS" \
        "$pki/client.crt" "$pki/client.key" "$pki/ca.crt" "$DIR/body" "$GW" \
        >"$DIR/idle-$alg-$gw.json" || {
        echo "idle connections through $gw failed: $(cat "$DIR/idle-$alg-$gw.json")" >&2
        echo "the gateway said (last lines):" >&2
        tail -5 "$LAST_LOG" >&2
        exit 1
      }
      stop
    done
  done
}

for alg in $ALGS; do
  mkdir -p "$DIR/$alg"
  "$BIN" pki init --key-alg "$alg" "$DIR/$alg/pki" >/dev/null
done
for SCENARIO in $SCENARIOS; do
  echo "## $SCENARIO" >&2
  case $SCENARIO in
    keepalive | handshake | full) run_load ;;
    upload) run_upload ;;
    wssec) run_wssec ;;
    idle) run_idle ;;
    *)
      echo "unknown scenario: $SCENARIO" >&2
      exit 2
      ;;
  esac
done

python3 "$BENCHES/load_report.py" "$DIR" "$SECS" "$CONNS" "$SCENARIOS" "$ALGS"
