#!/usr/bin/env bash
# Back-to-back rounds against the Kamailio anchor: per round, a fresh
# switchboard (empty location table, journal and call records) runs the
# load, then Kamailio runs the same scenario with the same SIPp flags.
# Prints each run's summary line and its response-time distribution.
#
#   bench/versus.sh register|call RATE [ROUNDS]     e.g. bench/versus.sh register 5000 3
#
# Needs bench/setup.sh and the anchor's setup.sh first. ANCHOR is the
# anchor's directory (default ../shared/anchors/kamailio beside the repo);
# UDP_MAXBUF and CHILDREN are passed to it (default 4 MiB, 2 children);
# its runs are in /tmp/kamailio-anchor/runs.
# Bounded: each run is RATE*20 registrations or calls, as the anchor's
# sweep runs them, and each script bounds its own SIPp in time.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
usage() { echo "usage: $0 register|call RATE [ROUNDS]" >&2; exit 2; }
WHAT=${1:-}; RATE=${2:-}; ROUNDS=${3:-1}
case "$WHAT" in register|call) ;; *) usage ;; esac
[[ "$RATE" =~ ^[1-9][0-9]*$ && "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || usage
ANCHOR=${ANCHOR:-$(cd "$HERE/../.." && pwd)/shared/anchors/kamailio}
[ -x "$ANCHOR/sweep.sh" ] || { echo "no Kamailio anchor at $ANCHOR (set ANCHOR)" >&2; exit 1; }
[ -x "$SB_BIN" ] || { echo "no switchboard at $SB_BIN: run bench/setup.sh first" >&2; exit 1; }
KAMAILIO_RUN_DIR=/tmp/kamailio-anchor # where the anchor's scripts write
DB="$SB_DATA/switchboard.db"
lastdir() { awk 'END {print $NF}'; }
for round in $(seq 1 "$ROUNDS"); do
  echo "# round $round: switchboard $WHAT $RATE/s $(date +%T)"
  "$HERE/run.sh" stop >/dev/null 2>&1 || true
  sqlite3 "$DB" "DELETE FROM bindings; DELETE FROM journal; DELETE FROM calls; PRAGMA wal_checkpoint(TRUNCATE);" >/dev/null
  "$HERE/run.sh" start >/dev/null
  line=$("$HERE/$WHAT.sh" "$RATE" $(( RATE * 20 )) | tail -1)
  "$HERE/run.sh" stop >/dev/null
  echo "$line"
  if [ "$WHAT" = register ]; then python3 "$HERE/distribution.py" "$RUN_DIR/runs/$(echo "$line" | lastdir)"; fi
  echo "# round $round: kamailio $WHAT $RATE/s $(date +%T)"
  line=$(cd "$ANCHOR" && env -u RUN_DIR UDP_MAXBUF="${UDP_MAXBUF:-4194304}" CHILDREN="${CHILDREN:-2}" ./sweep.sh "$WHAT" "$RATE" | tail -1)
  echo "$line"
  if [ "$WHAT" = register ]; then python3 "$HERE/distribution.py" "$KAMAILIO_RUN_DIR/runs/$(echo "$line" | lastdir)"; fi
done
