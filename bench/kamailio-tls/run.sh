#!/usr/bin/env bash
# Kamailio 5.6 with its TLS module, the anchor of bench/tls.sh: a registrar
# with digest authentication on UDP and TLS (kamailio.cfg here), in the
# background, stopped by PID. Loopback only.
#
#   bench/kamailio-tls/run.sh setup    # SQLite subscribers: the bench users' HA1 hashes
#   bench/kamailio-tls/run.sh start    # udp:$KAM_UDP and tls:$KAM_TLS
#   bench/kamailio-tls/run.sh stop
#
# The users are those of bench/setup.sh (FIRST=100000, NUSERS=100000,
# password pw<N>, realm 127.0.0.1); the certificate is the one switchboard
# created in its data directory (TLS_CERT, TLS_KEY), so one client trust
# file serves both servers. Needs the Debian packages kamailio,
# kamailio-tls-modules, kamailio-sqlite-modules and sqlite3.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
RUN_DIR=${RUN_DIR:-/tmp/switchboard-bench}
KAM_DIR=${KAM_DIR:-$RUN_DIR/kamailio-tls}
KAM_UDP=${KAM_UDP:-127.0.0.1:5080}
KAM_TLS=${KAM_TLS:-127.0.0.1:5081}
TLS_CERT=${TLS_CERT:-$RUN_DIR/data/tls-cert.pem}
TLS_KEY=${TLS_KEY:-$RUN_DIR/data/tls-key.pem}
CHILDREN=${CHILDREN:-2}
SHM_MB=${SHM_MB:-512}
PKG_MB=${PKG_MB:-8}
FIRST=${FIRST:-100000}
NUSERS=${NUSERS:-100000}
DB=$KAM_DIR/kamailio.sqlite
PIDFILE=$KAM_DIR/kamailio.pid
LOG=$KAM_DIR/kamailio.log
mkdir -p "$KAM_DIR"

kam_stop() {
  if [ -s "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    local pid
    pid=$(cat "$PIDFILE")
    kill -TERM "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi
    echo "kamailio (pid $pid) stopped"
  fi
  rm -f "$PIDFILE"
}

kam_setup() {
  for f in /usr/lib/x86_64-linux-gnu/kamailio/modules/tls.so /usr/lib/x86_64-linux-gnu/kamailio/modules/db_sqlite.so; do
    [ -f "$f" ] || { echo "$f missing: apt-get install kamailio kamailio-tls-modules kamailio-sqlite-modules" >&2; exit 1; }
  done
  rm -f "$DB"
  {
    cat /usr/share/kamailio/db_sqlite/standard-create.sql /usr/share/kamailio/db_sqlite/auth_db-create.sql
    python3 - "$FIRST" "$NUSERS" <<'PY'
import hashlib, sys
first, n = int(sys.argv[1]), int(sys.argv[2])
print("BEGIN;")
for u in range(first, first + n):
    ha1 = hashlib.md5(f"{u}:127.0.0.1:pw{u}".encode()).hexdigest()
    print(f"INSERT INTO subscriber (username, domain, ha1) VALUES ('{u}', '127.0.0.1', '{ha1}');")
print("COMMIT;")
PY
  } | sqlite3 "$DB"
  echo "subscribers: $(sqlite3 "$DB" 'SELECT count(*) FROM subscriber;') in $DB (HA1 only)"
}

kam_start() {
  [ -f "$DB" ] || kam_setup
  [ -f "$TLS_CERT" ] && [ -f "$TLS_KEY" ] || { echo "no certificate $TLS_CERT / $TLS_KEY (start switchboard once: bench/run.sh start)" >&2; exit 1; }
  kam_stop >/dev/null
  local args=(-f "$HERE/kamailio.cfg" -DD -E --atexit=no -m "$SHM_MB" -M "$PKG_MB"
      -A "CHILDREN=$CHILDREN" -A "UDP_ADDR=udp:$KAM_UDP" -A "TLS_ADDR=tls:$KAM_TLS"
      -A "TLS_CERT=\"$TLS_CERT\"" -A "TLS_KEY=\"$TLS_KEY\""
      -A "DBURL=\"sqlite://$DB\"" -A "CTLSOCK=\"unix:$KAM_DIR/kamailio_ctl\"")
  kamailio "${args[@]}" -c >/dev/null 2>"$KAM_DIR/cfgcheck.log" || { cat "$KAM_DIR/cfgcheck.log" >&2; exit 1; }
  nohup kamailio "${args[@]}" >"$LOG" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  for _ in $(seq 50); do
    if kamcmd -s "unix:$KAM_DIR/kamailio_ctl" core.uptime >/dev/null 2>&1; then
      echo "kamailio started: pid $(cat "$PIDFILE"), children=$CHILDREN, udp $KAM_UDP, tls $KAM_TLS, log $LOG"
      return 0
    fi
    kill -0 "$(cat "$PIDFILE")" 2>/dev/null || break
    sleep 0.2
  done
  echo "kamailio did not come up; see $LOG" >&2
  tail -20 "$LOG" >&2
  kam_stop >/dev/null
  exit 1
}

case "${1:-start}" in
  setup) kam_setup ;;
  start) kam_start ;;
  stop) kam_stop ;;
  pid) [ -s "$PIDFILE" ] && cat "$PIDFILE" ;;
  *) echo "usage: $0 setup|start|stop" >&2; exit 2 ;;
esac
