"""Print one summary line (tab-separated) for a SIPp run, in the Kamailio
anchor's column order: scenario transport rate count ok failed retrans
achieved_per_s elapsed_s rt_avg_ms rt_p99_ms server_cpu_pct sipp_cpu_pct
udp_rcvbuf_err sipp_rc run."""
import csv
import sys

scen, out, rate, count, rc, t0, t1, k0, k1, hz, u0, u1, tr = sys.argv[1:14]
wall = float(t1) - float(t0)
rows = list(csv.reader(open(out + "/stat.csv"), delimiter=";"))
h, last = rows[0], rows[-1]
g = lambda k: last[h.index(k)]
ok, failed = int(g("SuccessfulCall(C)")), int(g("FailedCall(C)"))
retr = str(int(g("Retransmissions(C)")))
if scen == "call":
    try:
        urows = list(csv.reader(open(out + "/uas.csv"), delimiter=";"))
        retr += "+" + urows[-1][urows[0].index("Retransmissions(C)")]
    except Exception:
        retr += "+?"
rt = g("ResponseTime1(C)").split(":")
rt_ms = (int(rt[0]) * 3600 + int(rt[1]) * 60 + int(rt[2])) * 1000 + int(rt[3]) / 1000
buckets = [k for k in h if k.startswith("ResponseTimeRepartition1_")]
tot, p99, cum = sum(int(g(k)) for k in buckets), None, 0
for k in buckets:
    cum += int(g(k))
    if tot and p99 is None and cum >= 0.99 * tot:
        p99 = k.split("_", 1)[1]
scpu_srv = (int(k1) - int(k0)) / int(hz) / wall * 100
sw, su, ss = open(out + "/sipp.time").read().split()[-3:]
el = float(sw)
scpu = (float(su) + float(ss)) / el * 100 if el > 0 else 0
print("\t".join(str(x) for x in [
    scen, tr, rate, count, ok, failed, retr, "%.0f" % (ok / el if el else 0), "%.1f" % el,
    "%.0f" % rt_ms, p99, "%.0f" % scpu_srv, "%.0f" % scpu, int(u1) - int(u0), rc, out.rsplit("/", 1)[-1]]))
