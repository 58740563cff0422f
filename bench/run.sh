#!/usr/bin/env bash
# Start or stop the benchmarked switchboard (data from bench/setup.sh) on
# $SB_ADDR (default 127.0.0.1:5070), by PID.
#   bench/run.sh start [serve flags]     bench/run.sh stop     bench/run.sh mem
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
case "${1:-start}" in
  start) shift || true; s=$(sb_start "$@"); echo "switchboard started in ${s}s: pid $(sb_pid), $SB_ADDR, data $SB_DATA" ;;
  stop) sb_stop ;;
  mem) pid=$(sb_pid) || { echo "not running" >&2; exit 1; }
       echo "$(sb_mem "$pid") registrations=$("$SB_BIN" status --data "$SB_DATA" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["registrations"])')" ;;
  *) echo "usage: $0 start|stop|mem" >&2; exit 2 ;;
esac
