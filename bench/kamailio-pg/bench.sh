#!/usr/bin/env bash
# Kamailio 5.6 with usrloc in PostgreSQL (kamailio-postgres-modules), on the
# PostgreSQL of bench/pg.sh, under the SIPp REGISTER scenarios of
# bench/pg.sh (register.xml: a new user each time; refresh.xml: the same
# phones registering again). Config: bench/kamailio-pg/kamailio.cfg.
# One line per run goes to $RUN_DIR/results-pg.tsv, as bench/pg.sh's.
#
#   bench/pg.sh start                                    PostgreSQL (shared with switchboard's runs)
#   bench/kamailio-pg/bench.sh setup                     tables + 100,000 subscribers (HA1) in database kamailio
#   bench/kamailio-pg/bench.sh register MODE RATE COUNT  MODE = usrloc db_mode 1 (write-through) or 2 (write-back)
#   bench/kamailio-pg/bench.sh refresh MODE RATE USERS [PASSES]
#   bench/kamailio-pg/bench.sh start MODE | stop         Kamailio alone (e.g. for bench/call.sh-like runs)
#
# Each run starts Kamailio fresh (empty location table) and stops it by PID.
# Bounded like bench/pg.sh. Env: KAM_ADDR (default 127.0.0.1:5070),
# CHILDREN (2), TIMER (usrloc timer_interval, 10 s: the db_mode 2 flush
# period; the writes of a run are counted after one more timer run),
# UDP_MAXBUF (4194304), SHM_MB (512), PKG_MB (8), EXPIRES (3600), FIRST and
# NUSERS (100000 and 100000, as bench/setup.sh).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BENCH_DIR=$(cd "$HERE/.." && pwd)
. "$BENCH_DIR/lib.sh"
. "$BENCH_DIR/pglib.sh"
KAM_ADDR=${KAM_ADDR:-127.0.0.1:5070}
CHILDREN=${CHILDREN:-2}
TIMER=${TIMER:-10}
UDP_MAXBUF=${UDP_MAXBUF:-4194304}
SHM_MB=${SHM_MB:-512}
PKG_MB=${PKG_MB:-8}
EXPIRES=${EXPIRES:-3600}
FIRST=${FIRST:-100000}
NUSERS=${NUSERS:-100000}
LPORT=${LPORT:-5090}
KAM_PIDFILE=$RUN_DIR/kamailio-pg.pid
KAM_LOG=$RUN_DIR/kamailio-pg.log
KAM_CTL=unix:$RUN_DIR/kamailio-pg.ctl

usage() { sed -n '8,12p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

kam_pid() { [ -s "$KAM_PIDFILE" ] && kill -0 "$(cat "$KAM_PIDFILE")" 2>/dev/null && cat "$KAM_PIDFILE"; }

# kam_ticks: CPU clock ticks of Kamailio's main process and its children.
kam_ticks() {
  local m t=0 p
  m=$(kam_pid) || { echo 0; return; }
  for p in "$m" $(ps -o pid= --ppid "$m"); do
    [ -r "/proc/$p/stat" ] && t=$(( t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0) ))
  done
  echo "$t"
}

kam_stop() {
  local p
  p=$(kam_pid) || { rm -f "$KAM_PIDFILE"; return 0; }
  kill -TERM "$p"
  for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$p" 2>/dev/null && kill -KILL "$p"
  rm -f "$KAM_PIDFILE"
  echo "kamailio (pid $p) stopped" >&2
}

# kam_start MODE: an empty location table, then Kamailio on $KAM_ADDR.
kam_start() {
  local mode=$1
  case "$mode" in 1|2) ;; *) echo "MODE is the usrloc db_mode: 1 or 2" >&2; exit 2 ;; esac
  kam_stop 2>/dev/null
  pg_pid >/dev/null || { echo "PostgreSQL is not running: bench/pg.sh start" >&2; exit 1; }
  psql_db kamailio -c "TRUNCATE location, location_attrs" 2>/dev/null \
    || { echo "no kamailio tables: $0 setup" >&2; exit 1; }
  local args=(-f "$HERE/kamailio.cfg" -DD -E -m "$SHM_MB" -M "$PKG_MB" -l "udp:$KAM_ADDR"
    -A "DB_MODE=$mode" -A "TIMER=$TIMER" -A "CHILDREN=$CHILDREN" -A "UDP_MAXBUF=$UDP_MAXBUF"
    -A "DBURL=\"postgres://kamailio@127.0.0.1:$PG_PORT/kamailio\"" -A "CTLSOCK=\"$KAM_CTL\"")
  kamailio "${args[@]}" -c >"$RUN_DIR/kamailio-pg.cfgcheck" 2>&1 || { cat "$RUN_DIR/kamailio-pg.cfgcheck" >&2; exit 1; }
  nohup kamailio "${args[@]}" >"$KAM_LOG" 2>&1 </dev/null &
  echo $! >"$KAM_PIDFILE"
  for _ in $(seq 100); do
    if sip_ping "$KAM_ADDR"; then
      echo "kamailio started: pid $(kam_pid), db_mode $mode, timer_interval $TIMER s, children $CHILDREN, $KAM_ADDR" >&2
      return 0
    fi
    kam_pid >/dev/null || break
    sleep 0.1
  done
  echo "kamailio did not start; see $KAM_LOG" >&2
  tail -20 "$KAM_LOG" >&2
  kam_stop
  exit 1
}

# settle MODE: counters once the writes of the run are in (db_mode 2: after
# the next timer run).
settle() {
  [ "$1" = 2 ] && sleep $(( TIMER + 1 ))
  pg_settle kamailio location
}

stamp() { date +%s.%N; }
since() { python3 -c "print('%.3f' % ($(stamp) - $1))"; }

cmd=${1:-}
[ -n "$cmd" ] || usage
shift
case "$cmd" in
setup)
  pg_pid >/dev/null || { echo "PostgreSQL is not running: bench/pg.sh start" >&2; exit 1; }
  SQL=/usr/share/kamailio/postgres
  [ -r "$SQL/usrloc-create.sql" ] || { echo "no $SQL: apt-get install kamailio-postgres-modules" >&2; exit 1; }
  LAST=$((FIRST + NUSERS - 1))
  {
    echo "SET client_min_messages = warning;"
    echo "DROP TABLE IF EXISTS version, subscriber, location, location_attrs;"
    cat "$SQL/standard-create.sql" "$SQL/auth_db-create.sql" "$SQL/usrloc-create.sql"
    # HA1 = MD5(user:realm:password), realm 127.0.0.1, password pw<N>
    # (bench/setup.sh's users); ha1b for a username given as user@domain.
    echo "INSERT INTO subscriber (username, domain, password, ha1, ha1b)
      SELECT x::text, '127.0.0.1', '', md5(x || ':127.0.0.1:pw' || x), md5(x || '@127.0.0.1:127.0.0.1:pw' || x)
      FROM generate_series($FIRST, $LAST) AS x;"
    echo "ANALYZE subscriber;"
  } | psql -X -q -v ON_ERROR_STOP=1 -h "$PG_DIR" -p "$PG_PORT" -U kamailio -d kamailio
  echo "subscribers: $(psql_db kamailio -Atc 'SELECT count(*) FROM subscriber')"
  ;;
start)
  kam_start "${1:?usage: $0 start MODE}"
  ;;
stop)
  kam_stop
  ;;
register)
  MODE=${1:?usage: $0 register MODE RATE COUNT}; RATE=${2:?}; COUNT=${3:?}
  kam_start "$MODE"
  trap kam_stop EXIT
  OUT="$RUN_DIR/runs/kampgreg_db${MODE}_r${RATE}_m${COUNT}_$(date +%H%M%S)"
  mkdir -p "$OUT"
  IDLE=$(pg_idle_rate kamailio location 3)
  B=$(pg_counters kamailio location); TB=$(stamp); D0=$(pg_ticks); K0=$(kam_ticks)
  sipp_register "$OUT" "$KAM_ADDR" "$LPORT" "$RUN_DIR/users.csv" "$BENCH_DIR/sipp/register.xml" kam_ticks "$RATE" "$COUNT" >"$OUT/summary"
  D1=$(pg_ticks)
  A=$(settle "$MODE")
  report "kamailio-pg-db_mode$MODE" location "$(cat "$OUT/ticks") $(( $(kam_ticks) - K0 ))" "$((D1 - D0)) $(( $(pg_ticks) - D0 ))" \
    "$(cat "$OUT/wall")" "$(since "$TB")" "$B" "$A" "$IDLE" "$OUT/summary"
  ;;
refresh)
  MODE=${1:?usage: $0 refresh MODE RATE USERS [PASSES]}; RATE=${2:?}; USERS=${3:?}; PASSES=${4:-2}
  [ "$USERS" -le $(( $(wc -l <"$RUN_DIR/users.csv") - 1 )) ] || { echo "USERS is larger than users.csv" >&2; exit 2; }
  kam_start "$MODE"
  trap kam_stop EXIT
  IDLE=$(pg_idle_rate kamailio location 3)
  for p in $(seq 0 "$PASSES"); do
    OUT="$RUN_DIR/runs/kampgrefresh_db${MODE}_r${RATE}_u${USERS}_p${p}_$(date +%H%M%S)"
    mkdir -p "$OUT"
    if [ "$p" = 0 ]; then B=$(pg_counters kamailio location); else B=${A% *}; fi
    TB=$(stamp); D0=$(pg_ticks); K0=$(kam_ticks)
    sipp_register "$OUT" "$KAM_ADDR" "$LPORT" "$RUN_DIR/users.csv" "$BENCH_DIR/sipp/refresh.xml" kam_ticks "$RATE" "$USERS" \
      -cid_str 'refresh-%u@%s' -base_cseq $((2 * p + 1)) -key expires_s "$EXPIRES" >"$OUT/summary"
    D1=$(pg_ticks)
    A=$(settle "$MODE")
    label="kamailio-pg-db_mode$MODE-refresh$p"; [ "$p" = 0 ] && label="kamailio-pg-db_mode$MODE-first"
    report "$label" location "$(cat "$OUT/ticks") $(( $(kam_ticks) - K0 ))" "$((D1 - D0)) $(( $(pg_ticks) - D0 ))" \
      "$(cat "$OUT/wall")" "$(since "$TB")" "$B" "$A" "$IDLE" "$OUT/summary"
  done
  ;;
*)
  usage
  ;;
esac
