"""One result line (tab-separated) of a PostgreSQL benchmark run: the SIPp
figures of one or more summarize.py lines (several SIPp, one per node,
summed), the CPU of the server(s) and of PostgreSQL, and the database
writes per completed request.

usage: pgreport.py HZ LABEL TABLE SERVER_TICKS DB_TICKS WALL WINDOW BEFORE AFTER IDLE_RATE SUMMARY_FILE
  SERVER_TICKS, DB_TICKS  "LOAD ALL": CPU clock ticks of the server process(es)
          and of PostgreSQL's during the load (for *_cpu_pct) and from the
          load's start until the counters settled (for *_per_1000: includes
          writes the server defers, e.g. Kamailio's db_mode 2 timer)
  BEFORE  "TABLE_WRITES ALL_WRITES XACT_COMMIT" before the load (pglib.sh pg_counters)
  AFTER   the same once settled, and the number of counter reads made since BEFORE
  WALL    seconds of load; WINDOW seconds from BEFORE to AFTER
  IDLE_RATE committed transactions per second with no load (polling, leases)

Columns: HEADER below. *_per_1000 is CPU time (core-milliseconds) per 1,000
completed requests; writes are rows inserted + updated + deleted
(pg_stat_user_tables) in TABLE and in all tables; commits_per_ok is
(xact_commit delta - IDLE_RATE * WINDOW - the reads of the counters) per
completed request.
"""
import sys

HEADER = ("label scenario rate ok failed retrans achieved_per_s rt_avg_ms rt_p99_ms "
          "server_cpu_pct server_cpu_ms_per_1000 db_cpu_pct db_cpu_ms_per_1000 "
          "table_writes table_writes_per_ok all_writes_per_ok commits_per_ok "
          "udp_rcvbuf_err sipp_rc runs").split()


def main(argv):
    if len(argv) == 2 and argv[1] == "--header":
        print("\t".join(HEADER))
        return
    hz, label, table, sticks, dticks, wall, window, before, after, idle, summ = argv[1:12]
    hz, wall, window, idle = int(hz), float(wall), float(window), float(idle)
    sload, sall = [int(x) for x in sticks.split()]
    dload, dall = [int(x) for x in dticks.split()]
    b = [int(x) for x in before.split()]
    a = [int(x) for x in after.split()]
    reads = a[3] if len(a) > 3 else 0
    rows = [l.rstrip("\n").split("\t") for l in open(summ) if l.strip()]
    scen = rows[0][0]
    rate = sum(int(r[2]) for r in rows)
    ok = sum(int(r[4]) for r in rows)
    failed = sum(int(r[5]) for r in rows)
    retr = sum(sum(int(x) for x in r[6].split("+") if x.isdigit()) for r in rows)
    achieved = sum(float(r[7]) for r in rows)
    rt = sum(float(r[9]) * int(r[4]) for r in rows) / ok if ok else 0
    p99 = "/".join(r[10] for r in rows)
    udp = sum(int(r[13]) for r in rows)
    rc = "/".join(r[14] for r in rows)
    runs = ",".join(r[15] for r in rows)
    tw, aw = a[0] - b[0], a[1] - b[1]
    commits = a[2] - b[2] - idle * window - reads
    per = lambda x, d=3: ("%." + str(d) + "f") % (x / ok) if ok else "-"
    print("\t".join(str(x) for x in [
        label, scen, rate, ok, failed, retr, "%.0f" % achieved, "%.0f" % rt, p99,
        "%.0f" % (sload / hz / wall * 100), per(sall / hz * 1e6, 0),
        "%.0f" % (dload / hz / wall * 100), per(dall / hz * 1e6, 0),
        tw, per(tw), per(aw), per(max(commits, 0)), udp, rc, runs]))


if __name__ == "__main__":
    main(sys.argv)
