#!/usr/bin/env bash
# Registrations/s with browsers' live streams open: opens STREAMS console
# SSE streams (curl, as a browser's EventSource would) to the running
# benchmark server, runs bench/register.sh RATE COUNT, and closes them.
# Run it with STREAMS=50 and STREAMS=0 back to back and compare
# achieved_per_s (target: less than 5 % lower with 50 streams).
#
#   bench/run.sh start --http 127.0.0.1:8089
#   bench/console-sse.sh 4000 80000 50 ; bench/console-sse.sh 4000 80000 0
#   bench/run.sh stop
#
# Loopback only; bounded: register.sh's COUNT, and each stream ends after
# at most 300 s. The streams are stopped by PID.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
RATE=${1:?usage: $0 RATE COUNT [STREAMS]}
COUNT=${2:?usage: $0 RATE COUNT [STREAMS]}
STREAMS=${3:-50}
HTTP=${SB_HTTP:-127.0.0.1:8089}
sb_pid >/dev/null || { echo "switchboard is not running: bench/run.sh start --http $HTTP" >&2; exit 1; }
case "$HTTP" in 127.*|localhost:*|\[::1\]:*) ;; *) echo "SB_HTTP must be a loopback address" >&2; exit 2 ;; esac

jar=$(mktemp); pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -f "$jar"; }
trap cleanup EXIT

if [ "$STREAMS" -gt 0 ]; then
  pw=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
  "$SB_BIN" admin rm bench --data "$SB_DATA" >/dev/null 2>&1 || true
  printf '%s\n' "$pw" | "$SB_BIN" admin add bench --data "$SB_DATA" --password-stdin >/dev/null
  code=$(curl -s -o /dev/null -w '%{http_code}' -c "$jar" --data-urlencode name=bench --data-urlencode "password=$pw" "http://$HTTP/login")
  [ "$code" = 303 ] || { echo "login to http://$HTTP failed (HTTP $code)" >&2; exit 1; }
  for _ in $(seq "$STREAMS"); do
    curl -sN --max-time 300 -b "$jar" "http://$HTTP/events" -o /dev/null &
    pids+=($!)
  done
  sleep 1
  open=$(ss -tn state established "( dport = :${HTTP##*:} )" | tail -n +2 | wc -l)
  echo "console-sse: $STREAMS streams requested, $open connections to $HTTP open"
fi
"$HERE/register.sh" "$RATE" "$COUNT"
