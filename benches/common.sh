# Shared by the load scripts in benches/ (sourced): a scratch directory
# removed on exit with every process started in the background, free
# loopback ports, and waiting for a listener.
DIR=$(mktemp -d)
PIDS=""
LAST_LOG=""
cleanup() {
  for p in $PIDS; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT INT TERM

start() { # log command...: runs in the background, remembered for cleanup
  log=$1
  shift
  "$@" >"$log" 2>&1 &
  LAST=$!
  LAST_LOG=$log
  PIDS="$PIDS $LAST"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_port() {
  i=0
  until python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),1)" 2>/dev/null; do
    i=$((i + 1))
    [ $i -lt 100 ] || {
      echo "nothing listens on $1" >&2
      [ -z "$LAST_LOG" ] || { echo "the last process started said:" >&2; cat "$LAST_LOG" >&2; }
      exit 1
    }
    sleep 0.1
  done
}
