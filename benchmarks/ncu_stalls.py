"""Summary of an Nsight Compute source page (ncu --page source --csv --print-source sass, as
benchmarks/profile_walk.sh writes it): warp-stall samples by reason, by loop (instructions
with the same execution count: the walk's step, the dense pass, a chunk's prologue, the
per-CTA code), and by opcode in the hottest loop.

    python benchmarks/ncu_stalls.py benchmarks/results/session11/walk128k_source.csv
"""
import collections
import csv
import sys


def main():
    rows = list(csv.reader(open(sys.argv[1])))
    hdr = rows[1]
    data = [r for r in rows[2:] if len(r) == len(hdr)]
    col = {h: i for i, h in enumerate(hdr)}
    reasons = [h for h in hdr if h.startswith("stall_") and "Not Issued" not in h]
    samples = lambda r: float(r[col["Warp Stall Sampling (All Samples)"]] or 0)  # noqa: E731
    executed = lambda r: int(r[col["Instructions Executed"]] or 0)  # noqa: E731
    total = sum(samples(r) for r in data)
    by_reason = collections.Counter()
    for r in data:
        for h in reasons:
            by_reason[h[6:]] += float(r[col[h]] or 0)
    print(f"{total:.0f} samples; by reason: " + ", ".join(
        f"{k} {v / total:.1%}" for k, v in by_reason.most_common(9)))
    by_loop = collections.Counter()
    size = collections.Counter()
    for r in data:
        by_loop[executed(r)] += samples(r)
        size[executed(r)] += 1
    print("by execution count (one count = one loop body or straight-line region):")
    for e, v in by_loop.most_common(6):
        print(f"  executed {e:>11d} times: {size[e]:5d} instructions, {v / total:6.1%} of samples")
    hot = max(by_loop, key=by_loop.get)
    ops = collections.defaultdict(collections.Counter)
    for r in data:
        if executed(r) == hot:
            words = r[1].split()
            op = words[1] if words[0].startswith("@") else words[0]
            for h in reasons:
                ops[op][h[6:]] += float(r[col[h]] or 0)
    print("hottest loop by opcode (share of all samples; top reasons):")
    for op, c in sorted(ops.items(), key=lambda x: -sum(x[1].values()))[:12]:
        print(f"  {op:28s} {sum(c.values()) / total:6.1%}  "
              + " ".join(f"{k} {v / total:.1%}" for k, v in c.most_common(3)))


if __name__ == "__main__":
    main()
