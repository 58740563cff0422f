#!/usr/bin/env bash
# Relayed G.711 calls, switchboard's embedded media relay against rtpengine
# (Debian 12's rtpengine 10.5, user-space forwarding) on this machine, back
# to back, with a direct (unrelayed) baseline at each size:
#   for each CALLS in $SIZES: direct, rtpengine, switchboard
# Each run: bench/rtpload sets up CALLS concurrent calls (switchboard: over
# SIP, the server started with --media-relay always; rtpengine: over its ng
# protocol), then every call streams 160-byte PCMU packets at 50 packets/s
# each way for DURATION, each packet stamped with its sequence number and
# send time; loss and one-way latency are counted by the receiving party;
# the relay's CPU (utime+stime over the steady window, after WARMUP) and
# PSS (before the calls, at the end of the window) come from /proc. Every
# relay is started fresh for its run and stopped by PID. Prints one table.
#
#   bench/setup.sh && bench/media.sh                      # 100, 500, 1,000 calls, 20 s each (~4 min)
#   SIZES=20 DURATION=5s bench/media.sh                   # a short check of the set-up
#   PIN=0 bench/media.sh                                  # relay and load tool share both cores
#
# PIN=1 (default) gives the relay one core (CPU $RELAY_CPU, taskset; Go's
# GOMAXPROCS and rtpengine's --num-threads follow it) and the load tool the
# other ($LOAD_CPU): a fixed CPU budget for the relay, and a load tool that
# does not compete with it. Users: bench/setup.sh's extensions; call i is
# 100000+i calling 101000+i (CALLER_FIRST, CALLEE_FIRST).
# Everything is on 127.0.0.1; rtpload refuses any other address. Raw lines
# go to $RUN_DIR/media-results.tsv.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
SIZES=${SIZES:-100 500 1000}
DURATION=${DURATION:-20s}
WARMUP=${WARMUP:-2s}
TARGETS=${TARGETS:-direct rtpengine switchboard}
PIN=${PIN:-1}
RELAY_CPU=${RELAY_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
CALLER_FIRST=${CALLER_FIRST:-100000}
CALLEE_FIRST=${CALLEE_FIRST:-101000}
RTPE_NG=${RTPE_NG:-127.0.0.1:2223}
RTPE_PORTS=${RTPE_PORTS:-24576-32767}
SB_RTP_PORTS=${SB_RTP_PORTS:-16384-24575}
# serve flags of the switchboard run (the relay on every call, advertised on loopback)
SB_MEDIA_FLAGS=${SB_MEDIA_FLAGS---media-relay always --media-ip 127.0.0.1 --rtp-ports $SB_RTP_PORTS}
RTPE_PIDFILE=$RUN_DIR/rtpengine.pid
RTPE_LOG=$RUN_DIR/rtpengine.log
LOAD=$RUN_DIR/rtpload
OUT=$RUN_DIR/media-results.tsv

[ -x "$SB_BIN" ] && [ -d "$SB_DATA" ] || { echo "no switchboard bench data: run bench/setup.sh first" >&2; exit 1; }
command -v rtpengine >/dev/null || {
  echo "rtpengine missing: apt-get install -y --no-install-recommends rtpengine-daemon (then: systemctl disable rtpengine-daemon)" >&2; exit 1; }
(cd "$HERE/.." && go build -o "$LOAD" ./bench/rtpload)
# Four sockets per call in the load tool (two RTP, two SIP), four per call in the relay.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

if [ "$PIN" = 1 ]; then
  RELAY_RUN=(taskset -c "$RELAY_CPU")
  LOAD_RUN=(taskset -c "$LOAD_CPU")
  RELAY_THREADS=1
else
  RELAY_RUN=()
  LOAD_RUN=()
  RELAY_THREADS=$(nproc)
fi

rtpe_pid() { [ -s "$RTPE_PIDFILE" ] && kill -0 "$(cat "$RTPE_PIDFILE")" 2>/dev/null && cat "$RTPE_PIDFILE"; }

rtpe_stop() {
  local pid
  pid=$(rtpe_pid) || { rm -f "$RTPE_PIDFILE"; return 0; }
  kill -TERM "$pid"
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  rm -f "$RTPE_PIDFILE"
}

# ng_ping: true when rtpengine answers an ng "ping" with "pong".
ng_ping() {
  python3 - "$RTPE_NG" <<'PY'
import socket, sys
host, port = sys.argv[1].rsplit(":", 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.2)
s.sendto(b"mb1 d7:command4:pinge", (host, int(port)))
try:
    sys.exit(0 if b"pong" in s.recv(4096) else 1)
except socket.timeout:
    sys.exit(1)
PY
}

# rtpe_start: rtpengine in user space only (--table=-1: no kernel
# forwarding), RTP on 127.0.0.1, ng control on $RTPE_NG, warnings only (as
# switchboard runs with --log-level warn).
rtpe_start() {
  rtpe_stop
  "${RELAY_RUN[@]}" rtpengine --config-file=none --table=-1 --interface=127.0.0.1 \
    --listen-ng="$RTPE_NG" --port-min="${RTPE_PORTS%-*}" --port-max="${RTPE_PORTS#*-}" \
    --num-threads="$RELAY_THREADS" --foreground --log-stderr --log-level=4 \
    >"$RTPE_LOG" 2>&1 </dev/null &
  echo $! >"$RTPE_PIDFILE"
  for _ in $(seq 100); do
    ng_ping && return 0
    kill -0 "$(cat "$RTPE_PIDFILE")" 2>/dev/null || break
    sleep 0.05
  done
  echo "rtpengine did not start; see $RTPE_LOG" >&2
  tail -5 "$RTPE_LOG" >&2
  return 1
}

sb_fresh() {
  sb_stop >/dev/null
  if [ -n "${SWITCHBOARD_DB:-}" ]; then
    psql "$SWITCHBOARD_DB" -qc 'TRUNCATE bindings, journal, calls'
  else
    sqlite3 "$SB_DATA/switchboard.db" "DELETE FROM bindings; DELETE FROM journal; DELETE FROM calls;"
  fi
  # shellcheck disable=SC2086 # SB_MEDIA_FLAGS is a list of flags
  "${RELAY_RUN[@]}" "$HERE/run.sh" start $SB_MEDIA_FLAGS --http "" --tls off --ws off --wss off >/dev/null
}

cleanup() { sb_stop >/dev/null || true; rtpe_stop || true; }
trap cleanup EXIT

# measure TARGET CALLS [PID]: one rtpload run, its line appended to $OUT.
measure() {
  local target=$1 calls=$2 pid=${3:-0} secs
  secs=$(python3 -c "import sys; s=sys.argv[1]; print(int(float(s[:-1])) if s.endswith('s') else 60)" "$DURATION")
  timeout -k 5 $((secs + 120)) "${LOAD_RUN[@]}" "$LOAD" -target "$target" -calls "$calls" -duration "$DURATION" \
    -warmup "$WARMUP" -pid "$pid" -sip "$SB_ADDR" -ng "$RTPE_NG" -caller-first "$CALLER_FIRST" \
    -callee-first "$CALLEE_FIRST" -label "$target" | tee -a "$OUT" >>"$OUT.run"
}

[ -s "$OUT" ] || "$LOAD" -columns >"$OUT"
: >"$OUT.run"
START=$(date +%s)
for n in $SIZES; do
  for target in $TARGETS; do
    echo "== $n calls: $target" >&2
    case $target in
      direct) measure direct "$n" ;;
      rtpengine) rtpe_start; measure rtpengine "$n" "$(rtpe_pid)"; rtpe_stop ;;
      switchboard) sb_fresh; measure switchboard "$n" "$(sb_pid)"; sb_stop >/dev/null ;;
      *) echo "unknown target $target (TARGETS: direct rtpengine switchboard)" >&2; exit 2 ;;
    esac
  done
done

echo
echo "Relayed G.711 calls, 50 packets/s each way, $DURATION per run, PIN=$PIN ($(date -u +%F' '%H:%M) UTC, $(( $(date +%s) - START )) s in all):"
echo
python3 - "$OUT.run" <<'PY'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
cols = ("label target calls established setup_failed setup_s duration_s sent received lost loss_pct dup foreign send_err "
        "lat_p50_us lat_p99_us lat_max_us relay_cpu_pct rss_before_kib rss_after_kib pss_before_kib pss_after_kib "
        "pss_per_call_kib load_cpu_pct send_lag_p99_ms send_lag_max_ms teardown_failed first_error").split()
rows = [dict(zip(cols, r)) for r in rows if len(r) >= len(cols)]
base = {r["calls"]: r for r in rows if r["target"] == "direct"}
def num(s):
    try:
        return float(s)
    except ValueError:
        return None
def added(r, key, fmt):
    b = base.get(r["calls"])
    if r["target"] == "direct" or b is None or num(r[key]) is None or num(b[key]) is None:
        return "—"
    return fmt % (num(r[key]) - num(b[key]))
print("| calls | relay | calls up | packets sent | loss % | added loss % | p50 / p99 latency | added p50 / p99 | relay CPU % (1 core = 100) | CPU per 100 calls (≈ calls per core) | PSS before → after | PSS per call | load tool CPU % / send lag p99 |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    cpu = num(r["relay_cpu_pct"])
    est = int(r["established"])
    per100 = "%.1f %% (≈ %s)" % (100 * cpu / est, f"{int(est * 100 / cpu):,}") if cpu and est else "—"
    pss = "—" if r["pss_before_kib"] == "-" else "%.1f → %.1f MiB" % (int(r["pss_before_kib"]) / 1024, int(r["pss_after_kib"]) / 1024)
    perc = "—" if r["pss_per_call_kib"] == "-" else r["pss_per_call_kib"] + " KiB"
    up = r["established"] + ("" if r["setup_failed"] == "0" else " (%s failed)" % r["setup_failed"])
    print(f"| {int(r['calls']):,} | {r['target']} | {up} | {int(r['sent']):,} | {float(r['loss_pct']):.3f} | {added(r, 'loss_pct', '%+.3f')} "
          f"| {r['lat_p50_us']} / {r['lat_p99_us']} µs | {added(r, 'lat_p50_us', '%+.1f')} / {added(r, 'lat_p99_us', '%+.1f')} µs "
          f"| {r['relay_cpu_pct'] if cpu is not None else '—'} | {per100} | {pss} | {perc} | {r['load_cpu_pct']} / {r['send_lag_p99_ms']} ms |")
errs = [f"{r['target']} {r['calls']}: {r['first_error']}" for r in rows if r["first_error"] != "-"]
if errs:
    print()
    for e in errs:
        print("first error, " + e)
PY
