#!/usr/bin/env bash
# Authenticated REGISTER/s over TLS and over UDP, switchboard and Kamailio's
# TLS module side by side on this machine, back to back:
#   switchboard TLS, switchboard UDP, Kamailio TLS, Kamailio UDP.
# Each run: CLIENTS Go clients (bench/regload; Debian's SIPp has no TLS),
# each on one persistent TLS connection or one UDP socket, REGISTER -> 401
# -> REGISTER(digest) -> 200 with a new user each time, for DURATION; each
# server freshly started with an empty location table. Prints one table.
#
#   bench/setup.sh && bench/tls.sh                    # 32 clients, 10 s per run
#   CLIENTS=2 DURATION=2s bench/tls.sh                # a short check
#
# Users: bench/setup.sh's (FIRST=100000, NUSERS=100000, password pw<N>);
# Kamailio gets their HA1 hashes (bench/kamailio-tls/run.sh setup). Both
# servers present the certificate switchboard created in its data directory.
# Bounded: regload stops registering after DURATION (at most 60 s) and
# `timeout` kills it 60 s later at the latest; servers are stopped by PID.
# Raw lines go to $RUN_DIR/tls-results.tsv.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
CLIENTS=${CLIENTS:-32}
DURATION=${DURATION:-10s}
FIRST=${FIRST:-100000}
NUSERS=${NUSERS:-100000}
SB_TLS=${SB_TLS:-127.0.0.1:5071}
export RUN_DIR FIRST NUSERS
export KAM_UDP=${KAM_UDP:-127.0.0.1:5080} KAM_TLS=${KAM_TLS:-127.0.0.1:5081}
export TLS_CERT=$SB_DATA/tls-cert.pem TLS_KEY=$SB_DATA/tls-key.pem
KAM="$HERE/kamailio-tls/run.sh"
HZ=$(getconf CLK_TCK)
OUT=$RUN_DIR/tls-results.tsv
LOAD=$RUN_DIR/regload

[ -x "$SB_BIN" ] && [ -d "$SB_DATA" ] || { echo "no switchboard bench data: run bench/setup.sh first" >&2; exit 1; }
command -v kamailio >/dev/null || { echo "kamailio missing: apt-get install kamailio kamailio-tls-modules kamailio-sqlite-modules" >&2; exit 1; }
(cd "$HERE/.." && go build -o "$LOAD" ./bench/regload)

cleanup() { sb_stop >/dev/null || true; "$KAM" stop >/dev/null || true; }
trap cleanup EXIT

# ticks PID...: user+system CPU ticks of the processes.
ticks() { local t=0 p; for p in "$@"; do t=$((t + $(sb_ticks "$p" 2>/dev/null || echo 0))); done; echo "$t"; }

sb_fresh() {
  sb_stop >/dev/null
  if [ -n "${SWITCHBOARD_DB:-}" ]; then
    psql "$SWITCHBOARD_DB" -qc 'TRUNCATE bindings, journal, calls'
  else
    sqlite3 "$SB_DATA/switchboard.db" "DELETE FROM bindings; DELETE FROM journal; DELETE FROM calls;"
  fi
  sb_start --tls "$SB_TLS" --ws off --wss off --http "" --tcp-max-per-ip 0 --rate-limit 0 >/dev/null
  local host=${SB_TLS%:*} port=${SB_TLS##*:}
  for _ in $(seq 100); do
    [ -f "$TLS_CERT" ] && timeout 1 bash -c "exec 3<>/dev/tcp/$host/$port" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "switchboard has no TLS listener on $SB_TLS; see $RUN_DIR/switchboard.log" >&2
  exit 1
}

# measure LABEL TRANSPORT ADDR PID...: one regload run; appends its line
# and the servers' CPU (percent of one core, and core-ms per 1,000
# registrations) to $OUT.
measure() {
  local label=$1 transport=$2 addr=$3; shift 3
  local secs k0 k1 line
  secs=$(python3 -c "import sys; s=sys.argv[1]; print(int(float(s[:-1]) if s.endswith('s') else 60))" "$DURATION")
  k0=$(ticks "$@")
  line=$(timeout -k 5 $((secs + 60)) "$LOAD" -transport "$transport" -addr "$addr" -ca "$TLS_CERT" \
    -clients "$CLIENTS" -first "$FIRST" -users "$NUSERS" -duration "$DURATION" -label "$label")
  k1=$(ticks "$@")
  python3 - "$line" "$k0" "$k1" "$HZ" <<'PY' | tee -a "$OUT"
import sys
line, k0, k1, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
f = line.split("\t")
ok, elapsed = int(f[3]), float(f[5])
cpu_s = (k1 - k0) / hz
pct = 100 * cpu_s / elapsed if elapsed else 0
per1000 = 1e6 * cpu_s / ok if ok else 0
print("\t".join(f + [f"{pct:.0f}", f"{per1000:.0f}"]))
PY
}

: >"$OUT.run"
{
  sb_fresh
  measure switchboard tls "$SB_TLS" "$(sb_pid)"
  sb_fresh
  measure switchboard udp "$SB_ADDR" "$(sb_pid)"
  sb_stop >/dev/null
  "$KAM" setup >/dev/null
  "$KAM" start >/dev/null
  kpid=$("$KAM" pid)
  measure Kamailio tls "$KAM_TLS" "$kpid" $(pgrep -P "$kpid")
  "$KAM" start >/dev/null   # restart: an empty location table
  kpid=$("$KAM" pid)
  measure Kamailio udp "$KAM_UDP" "$kpid" $(pgrep -P "$kpid")
  "$KAM" stop >/dev/null
} >"$OUT.run"

echo
echo "Authenticated REGISTER/s, $CLIENTS clients, $DURATION per run, new user each time ($(date -u +%F' '%H:%M) UTC):"
echo
python3 - "$OUT.run" <<'PY'
import sys
print("| server | transport | registrations | failed | achieved /s | server CPU % | CPU per 1,000 |")
print("|---|---|---|---|---|---|---|")
for l in open(sys.argv[1]):
    f = l.rstrip("\n").split("\t")
    if len(f) < 11:
        continue
    label, tr, clients, ok, failed, el, per_s, exh, err, pct, per1000 = f[:11]
    note = f" (first failure: {err})" if err != "-" else ""
    note += f" ({exh} clients ran out of users)" if exh != "0" else ""
    print(f"| {label} | {tr} | {int(ok):,} | {int(failed):,}{note} | {int(float(per_s)):,} | {pct} | {per1000} ms |")
PY
