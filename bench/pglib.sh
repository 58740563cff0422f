# Helpers for the PostgreSQL benchmarks (sourced after lib.sh): a private
# PostgreSQL 15 in $PG_DIR (unix socket there, TCP on 127.0.0.1:$PG_PORT
# only, fsync and synchronous_commit on), its counters, the CPU of its
# processes, and the SIPp REGISTER run shared by bench/pg.sh and
# bench/kamailio-pg/bench.sh. Every process is stopped by PID.
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PG_DIR=${PG_DIR:-$RUN_DIR/pg}
PG_PORT=${PG_PORT:-55432}
# switchboard reaches the database over TCP on loopback, as Kamailio's
# db_postgres does (set PG_URL to use the socket: host=$PG_DIR in the query).
PG_URL=${PG_URL:-postgres://switchboard@127.0.0.1:$PG_PORT/switchboard?sslmode=disable}
PG_SETTLE=${PG_SETTLE:-60}  # at most this many seconds for the statistics to settle
HZ=$(getconf CLK_TCK)

# pg_as CMD...: run CMD as the postgres OS user when root (initdb refuses root).
pg_as() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# pg_pid: the postmaster's PID (first line of postmaster.pid) while it runs.
pg_pid() {
  local p
  [ -s "$PG_DIR/data/postmaster.pid" ] || return 1
  p=$(head -1 "$PG_DIR/data/postmaster.pid")
  kill -0 "$p" 2>/dev/null && echo "$p"
}

# psql_db DB ARGS...: psql as the superuser over the unix socket.
psql_db() {
  local db=$1; shift
  psql -X -q -v ON_ERROR_STOP=1 -h "$PG_DIR" -p "$PG_PORT" -U postgres -d "$db" "$@"
}

# pg_start: initdb (once) and start the private server; creates the roles
# and databases switchboard and kamailio (trust authentication, loopback
# and the private socket only).
pg_start() {
  if pg_pid >/dev/null; then return 0; fi
  [ -x "$PG_BIN/initdb" ] || { echo "no $PG_BIN/initdb: apt-get install postgresql (15)" >&2; return 1; }
  if [ ! -s "$PG_DIR/data/PG_VERSION" ]; then
    rm -rf "$PG_DIR"
    mkdir -p "$PG_DIR"
    chmod 700 "$PG_DIR"
    if [ "$(id -u)" = 0 ]; then chown postgres: "$PG_DIR"; fi
    pg_as "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres --auth=trust -E UTF8 --locale=C \
      >"$PG_DIR/initdb.log" 2>&1 || { cat "$PG_DIR/initdb.log" >&2; return 1; }
  fi
  pg_as "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_DIR -c fsync=on -c synchronous_commit=on -c full_page_writes=on -c max_connections=100" \
    start >/dev/null || { tail -20 "$PG_DIR/log" >&2; return 1; }
  local role
  for role in switchboard kamailio; do
    if [ -z "$(psql_db postgres -Atc "SELECT 1 FROM pg_roles WHERE rolname = '$role'")" ]; then
      psql_db postgres -c "CREATE ROLE $role LOGIN" -c "CREATE DATABASE $role OWNER $role"
    fi
  done
  echo "postgresql started: pid $(pg_pid), 127.0.0.1:$PG_PORT and socket $PG_DIR, fsync on, data $PG_DIR/data"
}

# pg_stop: fast shutdown (SIGINT to the postmaster's PID), immediate
# (SIGQUIT) if it has not stopped within 60 s.
pg_stop() {
  local p
  p=$(pg_pid) || return 0
  kill -INT "$p"
  for _ in $(seq 600); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$p" 2>/dev/null; then kill -QUIT "$p"; sleep 1; fi
  echo "postgresql (pid $p) stopped"
}

# pg_ticks: CPU clock ticks (user + system) of the postmaster, its live
# children, and its children that have exited (cutime + cstime).
pg_ticks() {
  local p t c
  p=$(pg_pid) || { echo 0; return; }
  t=$(awk '{print $14 + $15 + $16 + $17}' "/proc/$p/stat")
  for c in $(ps -o pid= --ppid "$p"); do
    [ -r "/proc/$c/stat" ] && t=$(( t + $(awk '{print $14 + $15}' "/proc/$c/stat" 2>/dev/null || echo 0) ))
  done
  echo "$t"
}

# pg_counters DB TABLE: "TABLE_WRITES ALL_WRITES XACT_COMMIT": inserted +
# updated + deleted rows of TABLE and of every table of DB
# (pg_stat_user_tables), and DB's committed transactions (pg_stat_database;
# read-only ones included). One transaction of its own.
pg_counters() {
  psql_db "$1" -At -F' ' -c "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del) FILTER (WHERE relname = '$2'), 0),
    coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0),
    (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database())
    FROM pg_stat_user_tables"
}

# pg_settle DB TABLE: the counters once every backend has reported its
# statistics and the row counts have stopped moving. A backend reports at
# most once a second, and one that goes idle within a second of its last
# report does so 10 s later (PostgreSQL 15's PGSTAT_MIN_INTERVAL and
# PGSTAT_IDLE_INTERVAL): wait $PG_IDLE_FLUSH s (11), then read every second
# until two reads in a row agree, at most $PG_SETTLE s more. Prints the
# counters and, last, the number of reads it made (each one a transaction).
pg_settle() {
  local prev cur n=0
  sleep "${PG_IDLE_FLUSH:-11}"
  prev=$(pg_counters "$1" "$2"); n=1
  for _ in $(seq "$PG_SETTLE"); do
    sleep 1
    cur=$(pg_counters "$1" "$2"); n=$((n + 1))
    [ "${cur% *}" = "${prev% *}" ] && break
    prev=$cur
  done
  echo "$cur $n"
}

# pg_idle_rate DB TABLE SECONDS: committed transactions per second in DB
# while no load runs (the servers' own polling and lease renewals), less
# the reads of this measure.
pg_idle_rate() {
  local a b
  a=$(pg_counters "$1" "$2"); sleep "$3"; b=$(pg_counters "$1" "$2")
  python3 -c "print('%.2f' % (max(0, ${b##* } - ${a##* } - 1) / $3))"
}

# sipp_register OUT ADDR LPORT USERS_CSV SCENARIO TICKS_FN RATE COUNT [SIPP FLAGS...]:
# the SIPp REGISTER run of bench/register.sh (same flags), against ADDR
# from 127.0.0.1:LPORT; CPU of the server from TICKS_FN (a function that
# prints clock ticks). Prints summarize.py's line (bench/README.md) and
# writes OUT/ticks (server clock ticks used during the run) and OUT/wall.
sipp_register() {
  local out=$1 addr=$2 lport=$3 csv=$4 scen=$5 ticksfn=$6 rate=$7 count=$8
  shift 8
  local timeout=$(( count / rate + 30 )) k0 k1 u0 u1 t0 t1 rc
  mkdir -p "$out"
  k0=$($ticksfn); u0=$(udp_rcvbuf_err); t0=$(date +%s.%N)
  set +e
  timeout -k 5 $(( timeout + 15 )) /usr/bin/time -f "%e %U %S" -o "$out/sipp.time" \
    sipp "$addr" -sf "$scen" -inf "$csv" -t u1 -i 127.0.0.1 -p "$lport" \
      -r "$rate" -rp 1000 -m "$count" -l "${LIMIT:-5000}" \
      -timeout "$timeout" -timeout_error -nostdin -buff_size 4194304 \
      -trace_stat -stf "$out/stat.csv" -fd 1 -trace_err -error_file "$out/errors.log" \
      "$@" >"$out/screen.log" 2>&1 </dev/null
  rc=$?
  set -e
  t1=$(date +%s.%N); k1=$($ticksfn); u1=$(udp_rcvbuf_err)
  echo $(( k1 - k0 )) >"$out/ticks"
  python3 -c "print('%.3f' % ($t1 - $t0))" >"$out/wall"
  if [ ! -s "$out/stat.csv" ]; then
    echo "sipp wrote no statistics (rc $rc); see $out/screen.log" >&2
    tail -5 "$out/screen.log" >&2
    return 1
  fi
  python3 "$BENCH_DIR/summarize.py" register "$out" "$rate" "$count" "$rc" "$t0" "$t1" "$k0" "$k1" "$HZ" "$u0" "$u1" u1
}

# report LABEL TABLE SERVER_TICKS DB_TICKS WALL WINDOW BEFORE AFTER IDLE_RATE SUMMARY_FILE:
# one line of $RUN_DIR/results-pg.tsv (columns in pgreport.py).
report() {
  [ -s "$RUN_DIR/results-pg.tsv" ] || python3 "$BENCH_DIR/pgreport.py" --header >"$RUN_DIR/results-pg.tsv"
  python3 "$BENCH_DIR/pgreport.py" "$HZ" "$@" | tee -a "$RUN_DIR/results-pg.tsv"
}
