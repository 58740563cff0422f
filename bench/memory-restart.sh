#!/usr/bin/env bash
# Memory with 100,000 registrations and restart time with 100,000 bindings:
#   start fresh -> mem -> register 100k users at 4,000/s -> mem -> mem 15 s later ->
#   graceful stop + start (timed) -> kill -9 + start (timed) -> registrations
#   still there.
#   bench/memory-restart.sh
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
N=${N:-100000}
# forget old bindings (fresh location table), keep the directory
sqlite3 "$SB_DATA/switchboard.db" "DELETE FROM bindings; DELETE FROM journal;" 2>/dev/null || true
s=$(sb_start)
echo "fresh start: ${s}s; $(sb_mem "$(sb_pid)")"
"$HERE/register.sh" 4000 "$N" | cut -f1-12
sleep 2
regs() { "$SB_BIN" status --data "$SB_DATA" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["registrations"])'; }
echo "after $N registrations: $(sb_mem "$(sb_pid)") registrations=$(regs)"
sleep 15
echo "15 s later: $(sb_mem "$(sb_pid)")"
sb_stop >/dev/null
s=$(sb_start)
echo "graceful restart with $(regs) bindings: ready in ${s}s; $(sb_mem "$(sb_pid)")"
kill -KILL "$(sb_pid)"; sleep 0.5; rm -f "$PIDFILE"
s=$(sb_start)
echo "restart after kill -9: ready in ${s}s; registrations=$(regs)"
sb_stop >/dev/null
