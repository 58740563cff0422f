#!/usr/bin/env bash
# REGISTER load with SIPp against a running switchboard (bench/run.sh start):
# REGISTER -> 401 -> REGISTER(auth) -> 200, a new user per registration from
# users.csv. Same scenario and flags as the Kamailio anchor.
#
#   bench/register.sh RATE COUNT      e.g. bench/register.sh 10000 200000
#
# Bounded: SIPp stops after COUNT registrations or TIMEOUT s (COUNT/RATE+30),
# and `timeout` kills it 15 s later at the latest. Appends one line to
# $RUN_DIR/results.tsv.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
RATE=${1:?usage: $0 RATE COUNT}
COUNT=${2:?usage: $0 RATE COUNT}
LIMIT=${LIMIT:-5000}
TRANSPORT=${TRANSPORT:-u1}
LPORT=${LPORT:-5090}
TIMEOUT=${TIMEOUT:-$(( COUNT / RATE + 30 ))}
PID=$(sb_pid) || { echo "switchboard is not running (bench/run.sh start)" >&2; exit 1; }
TAG="reg_r${RATE}_m${COUNT}_${TRANSPORT}_$(date +%H%M%S)"
OUT="$RUN_DIR/runs/$TAG"
mkdir -p "$OUT"
HZ=$(getconf CLK_TCK)
K0=$(sb_ticks "$PID"); U0=$(udp_rcvbuf_err); T0=$(date +%s.%N)
set +e
timeout -k 5 $(( TIMEOUT + 15 )) /usr/bin/time -f "%e %U %S" -o "$OUT/sipp.time" \
  sipp "$SB_ADDR" -sf "$HERE/sipp/register.xml" -inf "$RUN_DIR/users.csv" \
    -t "$TRANSPORT" -i 127.0.0.1 -p "$LPORT" \
    -r "$RATE" -rp 1000 -m "$COUNT" -l "$LIMIT" \
    -timeout "$TIMEOUT" -timeout_error -nostdin -buff_size 4194304 \
    -trace_stat -stf "$OUT/stat.csv" -fd 1 \
    -trace_err -error_file "$OUT/errors.log" \
    >"$OUT/screen.log" 2>&1 </dev/null
RC=$?
set -e
T1=$(date +%s.%N); K1=$(sb_ticks "$PID"); U1=$(udp_rcvbuf_err)
python3 "$HERE/summarize.py" register "$OUT" "$RATE" "$COUNT" "$RC" "$T0" "$T1" "$K0" "$K1" "$HZ" "$U0" "$U1" "$TRANSPORT" \
  | tee -a "$RUN_DIR/results.tsv"
