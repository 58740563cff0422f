#!/usr/bin/env bash
# switchboard on PostgreSQL: a private PostgreSQL 15 (initdb/pg_ctl into
# $PG_DIR, default $RUN_DIR/pg; unix socket there and 127.0.0.1:$PG_PORT,
# default 55432; fsync on), filled with bench/setup.sh's 100,000 extensions
# by `switchboard db copy`, and the SIPp scenarios of register.sh and
# call.sh against one node or three. Each measured run starts its node(s)
# fresh (bindings, journal, calls and leases emptied) and stops them after;
# one line per run goes to $RUN_DIR/results-pg.tsv (columns: pgreport.py).
#
#   bench/setup.sh                          once: build, the extensions in SQLite, SIPp CSVs
#   bench/pg.sh start                       PostgreSQL up, the extensions copied in
#   bench/pg.sh register RATE COUNT         one node: new users (register.sh's scenario)
#   bench/pg.sh refresh RATE USERS [PASSES] one node: USERS phones register, then refresh PASSES times
#   bench/pg.sh call RATE COUNT             one node: bench/call.sh
#   bench/pg.sh nodes RATE COUNT            three nodes on 127.0.0.11/.12/.13, one SIPp each (RATE, COUNT each)
#   bench/pg.sh stop                        stop the nodes and PostgreSQL (by PID)
#   bench/pg.sh psql [ARGS]                 psql on the switchboard database
#
# Bounded: every SIPp run stops after COUNT (or USERS) requests or
# COUNT/RATE+30 s, and is killed 15 s later at the latest; keep COUNT/RATE
# at 20 s or less. Env: SB_FLAGS (extra serve flags, e.g. --journal=false),
# EXPIRES (refresh, default 3600), PG_PORT, PG_DIR, RUN_DIR, SB_ADDR (the
# single node, default 127.0.0.1:5070), NODE_PORT (the three nodes, 5070).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BENCH_DIR=$HERE
. "$HERE/lib.sh"
. "$HERE/pglib.sh"
unset SWITCHBOARD_DB # the nodes get --db explicitly; setup.sh's data stays SQLite
LPORT=${LPORT:-5090}
NODE_PORT=${NODE_PORT:-5070}
EXPIRES=${EXPIRES:-3600}
SB_FLAGS=${SB_FLAGS:-}

usage() { sed -n '10,17p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

node_pidfile() { echo "$RUN_DIR/pgnode$1.pid"; }

# node_start I ADDR: switchboard node I (name bench$I, data $RUN_DIR/pgnodeI)
# on ADDR with --db PostgreSQL; the web console off (three nodes cannot all
# have its default 127.0.0.1:8080; SB_FLAGS="--http ADDR" turns it on).
node_start() {
  local i=$1 addr=$2 s
  # shellcheck disable=SC2086
  s=$(PIDFILE=$(node_pidfile "$i") SB_DATA="$RUN_DIR/pgnode$i" SB_ADDR="$addr" SB_LOG="$RUN_DIR/pgnode$i.log" \
    sb_start --db "$PG_URL" --node "bench$i" --http "" $SB_FLAGS)
  echo "node bench$i started in ${s}s: pid $(cat "$(node_pidfile "$i")"), $addr" >&2
}

nodes_stop() {
  local i
  for i in 1 2 3; do PIDFILE=$(node_pidfile "$i") sb_stop >/dev/null; done
}

node_ticks() { sb_ticks "$(cat "$(node_pidfile "$1")")"; }
node1_ticks() { node_ticks 1; }
node2_ticks() { node_ticks 2; }
node3_ticks() { node_ticks 3; }

# fresh: no node running, no binding, journal event, call record or lease
# left from an earlier run (the directory stays).
fresh() {
  nodes_stop
  pg_pid >/dev/null || { echo "PostgreSQL is not running: bench/pg.sh start" >&2; exit 1; }
  psql_db switchboard -c "TRUNCATE bindings, journal, calls" -c "DELETE FROM nodes"
}

# load: the extensions into PostgreSQL (copied from bench/setup.sh's
# SQLite data once; PG_RELOAD=1 copies again).
load() {
  local n
  n=$(psql_db switchboard -Atc "SELECT count(*) FROM extensions" 2>/dev/null || echo 0)
  if [ "$n" -gt 0 ] && [ -z "${PG_RELOAD:-}" ]; then
    echo "extensions in PostgreSQL: $n"
    return
  fi
  [ -s "$SB_DATA/switchboard.db" ] || { echo "no $SB_DATA/switchboard.db: run bench/setup.sh first" >&2; exit 1; }
  /usr/bin/time -f "db copy: %e s" "$SB_BIN" db copy --from "sqlite:$SB_DATA" --to "$PG_URL" --force
  echo "extensions in PostgreSQL: $(psql_db switchboard -Atc "SELECT count(*) FROM extensions")"
}

stamp() { date +%s.%N; }
since() { python3 -c "print('%.3f' % ($(stamp) - $1))"; }

cmd=${1:-}
[ -n "$cmd" ] || usage
shift
case "$cmd" in
start)
  pg_start
  load
  ;;
stop)
  nodes_stop
  pg_stop
  ;;
psql)
  psql_db switchboard "$@"
  ;;
register)
  RATE=${1:?usage: $0 register RATE COUNT}; COUNT=${2:?usage: $0 register RATE COUNT}
  fresh
  node_start 1 "$SB_ADDR"
  trap nodes_stop EXIT
  OUT="$RUN_DIR/runs/pgreg_r${RATE}_m${COUNT}_$(date +%H%M%S)"
  mkdir -p "$OUT"
  IDLE=$(pg_idle_rate switchboard bindings 3)
  B=$(pg_counters switchboard bindings); TB=$(stamp); D0=$(pg_ticks); K0=$(node1_ticks)
  sipp_register "$OUT" "$SB_ADDR" "$LPORT" "$RUN_DIR/users.csv" "$HERE/sipp/register.xml" node1_ticks "$RATE" "$COUNT" >"$OUT/summary"
  D1=$(pg_ticks)
  A=$(pg_settle switchboard bindings)
  report "switchboard-pg" bindings "$(cat "$OUT/ticks") $(( $(node1_ticks) - K0 ))" "$((D1 - D0)) $(( $(pg_ticks) - D0 ))" \
    "$(cat "$OUT/wall")" "$(since "$TB")" "$B" "$A" "$IDLE" "$OUT/summary"
  ;;
refresh)
  RATE=${1:?usage: $0 refresh RATE USERS [PASSES]}; USERS=${2:?usage: $0 refresh RATE USERS [PASSES]}; PASSES=${3:-2}
  [ "$USERS" -le $(( $(wc -l <"$RUN_DIR/users.csv") - 1 )) ] || { echo "USERS is larger than users.csv" >&2; exit 2; }
  fresh
  node_start 1 "$SB_ADDR"
  trap nodes_stop EXIT
  IDLE=$(pg_idle_rate switchboard bindings 3)
  for p in $(seq 0 "$PASSES"); do
    OUT="$RUN_DIR/runs/pgrefresh_r${RATE}_u${USERS}_p${p}_$(date +%H%M%S)"
    mkdir -p "$OUT"
    if [ "$p" = 0 ]; then B=$(pg_counters switchboard bindings); else B=${A% *}; fi
    TB=$(stamp); D0=$(pg_ticks); K0=$(node1_ticks)
    # Pass 0 registers the phones; pass P>0 registers them again with the
    # same Call-ID and the next CSeq (a refresh).
    sipp_register "$OUT" "$SB_ADDR" "$LPORT" "$RUN_DIR/users.csv" "$HERE/sipp/refresh.xml" node1_ticks "$RATE" "$USERS" \
      -cid_str 'refresh-%u@%s' -base_cseq $((2 * p + 1)) -key expires_s "$EXPIRES" >"$OUT/summary"
    D1=$(pg_ticks)
    A=$(pg_settle switchboard bindings)
    label="switchboard-pg-refresh$p"; [ "$p" = 0 ] && label="switchboard-pg-first"
    report "$label" bindings "$(cat "$OUT/ticks") $(( $(node1_ticks) - K0 ))" "$((D1 - D0)) $(( $(pg_ticks) - D0 ))" \
      "$(cat "$OUT/wall")" "$(since "$TB")" "$B" "$A" "$IDLE" "$OUT/summary"
  done
  ;;
call)
  RATE=${1:?usage: $0 call RATE COUNT}; COUNT=${2:?usage: $0 call RATE COUNT}
  fresh
  node_start 1 "$SB_ADDR"
  trap nodes_stop EXIT
  IDLE=$(pg_idle_rate switchboard calls 3)
  B=$(pg_counters switchboard calls); TB=$(stamp); D0=$(pg_ticks)
  SB_PIDFILE=$(node_pidfile 1) "$HERE/call.sh" "$RATE" "$COUNT" >"$RUN_DIR/call.line"
  D1=$(pg_ticks)
  A=$(pg_settle switchboard calls)
  OUT="$RUN_DIR/runs/$(cut -f16 "$RUN_DIR/call.line")"
  cp "$RUN_DIR/call.line" "$OUT/summary"
  # call.sh's window starts after the 1,000 callees registered; the database
  # window (writes, commits) includes them (about 2,000 rows).
  # Server CPU per 1,000 calls is call.sh's window (the calls only).
  report "switchboard-pg" calls "$(cat "$OUT/ticks") $(cat "$OUT/ticks")" "$((D1 - D0)) $(( $(pg_ticks) - D0 ))" \
    "$(cat "$OUT/wall")" "$(since "$TB")" "$B" "$A" "$IDLE" "$OUT/summary"
  ;;
nodes)
  RATE=${1:?usage: $0 nodes RATE COUNT}; COUNT=${2:?usage: $0 nodes RATE COUNT}
  N=$(( $(wc -l <"$RUN_DIR/users.csv") - 1 ))
  [ "$COUNT" -le $(( N / 3 )) ] || echo "note: COUNT > $((N / 3)) users per node: the users wrap and register again" >&2
  # One third of users.csv per node, so that no two nodes register the same user.
  for i in 1 2 3; do
    { echo SEQUENTIAL; tail -n +2 "$RUN_DIR/users.csv" | sed -n "$(( (i - 1) * N / 3 + 1 )),$(( i * N / 3 ))p"; } >"$RUN_DIR/users-node$i.csv"
  done
  fresh
  trap nodes_stop EXIT
  for i in 1 2 3; do node_start "$i" "127.0.0.1$i:$NODE_PORT"; done
  TAG="pgnodes_r${RATE}_m${COUNT}_$(date +%H%M%S)"
  IDLE=$(pg_idle_rate switchboard bindings 3)
  B=$(pg_counters switchboard bindings); TB=$(stamp); D0=$(pg_ticks)
  K0=$(( $(node1_ticks) + $(node2_ticks) + $(node3_ticks) )); T0=$(stamp)
  pids=()
  for i in 1 2 3; do
    sipp_register "$RUN_DIR/runs/${TAG}_n$i" "127.0.0.1$i:$NODE_PORT" $((LPORT + i)) "$RUN_DIR/users-node$i.csv" \
      "$HERE/sipp/register.xml" "node${i}_ticks" "$RATE" "$COUNT" >"$RUN_DIR/runs/${TAG}_n$i.line" &
    pids+=($!)
  done
  rc=0
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  K1=$(( $(node1_ticks) + $(node2_ticks) + $(node3_ticks) )); WALL=$(since "$T0")
  D1=$(pg_ticks)
  A=$(pg_settle switchboard bindings)
  cat "$RUN_DIR/runs/${TAG}"_n?.line >"$RUN_DIR/runs/${TAG}.summary"
  K2=$(( $(node1_ticks) + $(node2_ticks) + $(node3_ticks) ))
  report "switchboard-pg-3nodes" bindings "$((K1 - K0)) $((K2 - K0))" "$((D1 - D0)) $(( $(pg_ticks) - D0 ))" "$WALL" "$(since "$TB")" "$B" "$A" "$IDLE" "$RUN_DIR/runs/${TAG}.summary"
  [ "$rc" = 0 ] || { echo "a SIPp run failed; see $RUN_DIR/runs/${TAG}_n*" >&2; exit 1; }
  ;;
*)
  usage
  ;;
esac
