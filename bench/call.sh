#!/usr/bin/env bash
# Authenticated calls through switchboard with SIPp, as in the Kamailio anchor:
#   1. register 1000 callees with Contact -> a SIPp UAS on 127.0.0.1:$UAS_PORT,
#   2. start the SIPp UAS (uas.xml: INVITE -> 200 -> ACK -> BYE -> 200),
#   3. run the SIPp UAC (uac-call.xml): INVITE -> 407 -> ACK -> INVITE(auth)
#      -> 200 -> ACK -> BYE -> 200, caller i calls callee i+1000.
#
#   bench/call.sh RATE COUNT          e.g. bench/call.sh 2500 50000
#
# Bounded like register.sh; the UAS is stopped by PID.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
RATE=${1:?usage: $0 RATE COUNT}
COUNT=${2:?usage: $0 RATE COUNT}
HOLD_MS=${HOLD_MS:-0}
LIMIT=${LIMIT:-5000}
UAS_PORT=${UAS_PORT:-5080}
LPORT=${LPORT:-5091}
TIMEOUT=${TIMEOUT:-$(( COUNT / RATE + HOLD_MS / 1000 + 30 ))}
PID=$(sb_pid) || { echo "switchboard is not running (bench/run.sh start)" >&2; exit 1; }
TAG="call_r${RATE}_m${COUNT}_$(date +%H%M%S)"
OUT="$RUN_DIR/runs/$TAG"
mkdir -p "$OUT"
timeout -k 5 60 sipp "$SB_ADDR" -sf "$HERE/sipp/reg-callee.xml" -inf "$RUN_DIR/callees.csv" \
  -key uas_port "$UAS_PORT" -i 127.0.0.1 -p "$LPORT" -r 1000 -rp 1000 -m 1000 \
  -timeout 40 -timeout_error -nostdin -trace_stat -stf "$OUT/reg-callee.csv" \
  >"$OUT/reg-callee.screen" 2>&1 </dev/null \
  || { echo "callee registration failed, see $OUT" >&2; exit 1; }
timeout -k 5 $(( TIMEOUT + 20 )) sipp -sf "$HERE/sipp/uas.xml" -i 127.0.0.1 -p "$UAS_PORT" \
  -m "$COUNT" -timeout $(( TIMEOUT + 5 )) -nostdin -buff_size 4194304 \
  -trace_stat -stf "$OUT/uas.csv" -fd 1 -trace_err -error_file "$OUT/uas-errors.log" \
  >"$OUT/uas.screen" 2>&1 </dev/null &
UAS_PID=$!
cleanup() { kill -0 "$UAS_PID" 2>/dev/null && kill "$UAS_PID" 2>/dev/null; wait "$UAS_PID" 2>/dev/null || true; }
trap cleanup EXIT
sleep 0.5
HZ=$(getconf CLK_TCK)
K0=$(sb_ticks "$PID"); U0=$(udp_rcvbuf_err); T0=$(date +%s.%N)
set +e
timeout -k 5 $(( TIMEOUT + 15 )) /usr/bin/time -f "%e %U %S" -o "$OUT/sipp.time" \
  sipp "$SB_ADDR" -sf "$HERE/sipp/uac-call.xml" -inf "$RUN_DIR/calls.csv" \
    -i 127.0.0.1 -p "$LPORT" -r "$RATE" -rp 1000 -m "$COUNT" -l "$LIMIT" -d "$HOLD_MS" \
    -timeout "$TIMEOUT" -timeout_error -nostdin -buff_size 4194304 \
    -trace_stat -stf "$OUT/stat.csv" -fd 1 -trace_err -error_file "$OUT/errors.log" \
    >"$OUT/screen.log" 2>&1 </dev/null
RC=$?
set -e
T1=$(date +%s.%N); K1=$(sb_ticks "$PID"); U1=$(udp_rcvbuf_err)
echo $(( K1 - K0 )) >"$OUT/ticks" # server clock ticks and seconds of the load (bench/pg.sh)
python3 -c "print('%.3f' % ($T1 - $T0))" >"$OUT/wall"
for _ in $(seq 40); do kill -0 "$UAS_PID" 2>/dev/null || break; sleep 0.25; done
cleanup
python3 "$HERE/summarize.py" call "$OUT" "$RATE" "$COUNT" "$RC" "$T0" "$T1" "$K0" "$K1" "$HZ" "$U0" "$U1" u1 \
  | tee -a "$RUN_DIR/results.tsv"
