#!/usr/bin/env python3
"""Print the response-time distribution of SIPp runs.

usage: bench/distribution.py RUN_DIR...

Each RUN_DIR is a run's directory (bench/register.sh, bench/call.sh or the
Kamailio anchor's scripts write one per run, named in the summary's last
column); its stat.csv holds SIPp's cumulative ResponseTimeRepartition1
counts. Prints one line per run: the share of answers in each bucket
("<5" holds the answers from the previous bound up to 5 ms).
"""
import csv
import sys


def distribution(run_dir):
    with open(run_dir + "/stat.csv", newline="") as f:
        rows = list(csv.reader(f, delimiter=";"))
    if len(rows) < 2:
        raise ValueError(run_dir + "/stat.csv has no data row")
    head, last = rows[0], rows[-1]
    cols = [(i, c.split("_", 1)[1]) for i, c in enumerate(head)
            if c.startswith("ResponseTimeRepartition1_")]
    counts = [(bucket, int(last[i] or 0)) for i, bucket in cols]
    total = sum(n for _, n in counts)
    return total, counts


def main(args):
    if not args:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    rc = 0
    for d in args:
        d = d.rstrip("/")
        try:
            total, counts = distribution(d)
        except (OSError, ValueError) as e:
            print(f"{d}: {e}", file=sys.stderr)
            rc = 1
            continue
        shares = " ".join(f"{b}:{100 * n / total:.2f}%" for b, n in counts if total)
        print(f"{d.split('/')[-1]} answers={total} {shares}")
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
