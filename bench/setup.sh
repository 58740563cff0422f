#!/usr/bin/env bash
# Build switchboard, create a data directory with 100,000 extensions
# 100000..199999 (password pw<N>, as in ../shared/anchors/kamailio), and write
# the SIPp injection files (same format as the Kamailio anchor's).
#
#   bench/setup.sh                 NUSERS=10000 bench/setup.sh
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
NUSERS=${NUSERS:-100000}
FIRST=${FIRST:-100000}
LAST=$((FIRST + NUSERS - 1))
command -v sipp >/dev/null || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y sip-tester time; }
(cd "$HERE/.." && go build -o "$SB_BIN" ./cmd/switchboard)
sb_stop >/dev/null || true
rm -rf "$SB_DATA"
"$SB_BIN" domain add 127.0.0.1 --data "$SB_DATA" >/dev/null
# The weak-password rule rejects pw<N>; import the digest hashes instead
# (what `ext export --with-hashes` writes), computed for realm 127.0.0.1.
python3 - "$FIRST" "$LAST" >"$RUN_DIR/exts.csv" <<'PY'
import sys, hashlib
first, last = int(sys.argv[1]), int(sys.argv[2])
print("extension,domain,ha1_md5,ha1_sha256")
for n in range(first, last + 1):
    s = f"{n}:127.0.0.1:pw{n}".encode()
    print(f"{n},127.0.0.1,{hashlib.md5(s).hexdigest()},{hashlib.sha256(s).hexdigest()}")
PY
/usr/bin/time -f "import of $NUSERS extensions: %e s, max RSS %M KiB" \
  "$SB_BIN" ext import "$RUN_DIR/exts.csv" --data "$SB_DATA"
# Trust loopback so the flood and brute-force guards do not throttle SIPp.
if "$SB_BIN" acl --help >/dev/null 2>&1; then
  "$SB_BIN" acl add bench --default deny --data "$SB_DATA" >/dev/null
  "$SB_BIN" acl allow bench 127.0.0.0/8 --data "$SB_DATA" >/dev/null
  "$SB_BIN" profile set internal --trusted-acl bench --data "$SB_DATA" >/dev/null
fi
{
  echo "SEQUENTIAL"
  seq "$FIRST" "$LAST" | awk '{print $1 ";pw" $1 ";[authentication username=" $1 " password=pw" $1 "]"}'
} >"$RUN_DIR/users.csv"
{
  echo "SEQUENTIAL"
  seq "$FIRST" $((FIRST + 999)) | awk '{print $1 ";pw" $1 ";[authentication username=" $1 " password=pw" $1 "];" $1 + 1000}'
} >"$RUN_DIR/calls.csv"
{
  echo "SEQUENTIAL"
  seq $((FIRST + 1000)) $((FIRST + 1999)) | awk '{print $1 ";pw" $1 ";[authentication username=" $1 " password=pw" $1 "]"}'
} >"$RUN_DIR/callees.csv"
echo "ready: $NUSERS extensions in $SB_DATA; binary $SB_BIN"
