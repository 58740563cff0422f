# Shared helpers for the bench scripts (sourced). Everything listens on and
# sends to 127.0.0.1 only; every process is stopped by PID.
RUN_DIR=${RUN_DIR:-/tmp/switchboard-bench}
SB_ADDR=${SB_ADDR:-127.0.0.1:5070}
SB_BIN=${SB_BIN:-$RUN_DIR/switchboard}
SB_DATA=${SB_DATA:-$RUN_DIR/data}
PIDFILE=${SB_PIDFILE:-$RUN_DIR/switchboard.pid}
SB_LOG=${SB_LOG:-$RUN_DIR/switchboard.log}  # SB_PIDFILE and SB_LOG: another node (bench/pg.sh)
mkdir -p "$RUN_DIR"

sb_pid() { [ -s "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null && cat "$PIDFILE"; }

sb_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

udp_rcvbuf_err() { awk '/^Udp:/ {n++; if (n==2) print $6}' /proc/net/snmp; }

# sb_start [extra serve flags]: start switchboard in the background and wait
# until it listens; prints the seconds it took.
sb_start() {
  sb_stop >/dev/null
  local t0 t1
  t0=$(date +%s.%N)
  nohup "$SB_BIN" serve --data "$SB_DATA" --sip "$SB_ADDR" --domain 127.0.0.1 \
    --log-level warn --qualify-interval 0 "$@" >"$SB_LOG" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  for _ in $(seq 600); do
    if sip_ping "$SB_ADDR"; then
      t1=$(date +%s.%N)
      python3 -c "print('%.2f' % ($t1 - $t0))"
      return 0
    fi
    kill -0 "$(cat "$PIDFILE")" 2>/dev/null || break
    sleep 0.05
  done
  echo "switchboard did not start; see $SB_LOG" >&2
  tail -5 "$SB_LOG" >&2
  return 1
}

# sip_ping HOST:PORT: true when an OPTIONS over UDP gets a 200 within 100 ms
# (the server answers only once its directory and bindings are loaded).
sip_ping() {
  python3 - "$1" <<'PY'
import socket, sys, uuid
host, port = sys.argv[1].rsplit(":", 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
s.settimeout(0.1)
lp = s.getsockname()[1]
cid = uuid.uuid4().hex
msg = (f"OPTIONS sip:{host}:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{lp};branch=z9hG4bK{cid}\r\n"
       f"From: <sip:ping@127.0.0.1>;tag=1\r\nTo: <sip:{host}>\r\nCall-ID: {cid}\r\nCSeq: 1 OPTIONS\r\n"
       f"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
s.sendto(msg.encode(), (host, int(port)))
try:
    data = s.recv(65535)
    sys.exit(0 if data.startswith(b"SIP/2.0 200") else 1)
except socket.timeout:
    sys.exit(1)
PY
}

sb_stop() {
  local pid
  pid=$(sb_pid) || { rm -f "$PIDFILE"; return 0; }
  kill -TERM "$pid"
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  rm -f "$PIDFILE"
  echo "switchboard (pid $pid) stopped"
}

# sb_mem: PSS and RSS of the (single) switchboard process, in MiB.
sb_mem() {
  local pid=$1
  awk '/^Pss:/ {p=$2} /^Rss:/ {r=$2} END {printf "pss_MiB=%.1f rss_MiB=%.1f\n", p/1024, r/1024}' "/proc/$pid/smaps_rollup"
}
