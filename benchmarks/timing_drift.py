"""Why the op's time moves between readings, beside the card's clock, power and temperature.

Session 17 (H100): the op read 23.3 then 26.7 ms at 128K in two rounds of `s2o bench`, its walk
alone 22.9 then 20.8, while the Triton walk read 25.3 and 25.4. This times the op, its parts,
the Triton walk and cuDNN in rounds whose order rotates (so "what ran before" shows), each
reading with its wall-clock span, its per-repetition spread, and the SM clock, power,
temperature and clock-event reasons that nvidia-smi sampled during it (every 100 ms, in the
background). The efficiency of each round is computed from that round's own dense reading.

    python benchmarks/timing_drift.py --seq-lens 32768 131072 --rounds 4 --out drift.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import threading
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from s2o_compile import S2OConfig
from s2o_compile.kernels import triton_s2o as T
from s2o_compile.kernels import walk as W
from s2o_compile.workload import structured_qkv

SMI_FIELDS = "clocks.sm,clocks.mem,power.draw,temperature.gpu,clocks_event_reasons.active"


class Sampler:
    """nvidia-smi's readings of SMI_FIELDS every period_ms, each stamped with time.time()."""

    def __init__(self, period_ms=100):
        self.rows = []
        try:
            self.proc = subprocess.Popen(
                ["nvidia-smi", f"--query-gpu={SMI_FIELDS}", "--format=csv,noheader,nounits",
                 f"-lms={period_ms}"], stdout=subprocess.PIPE, text=True)
        except OSError as e:
            print(f"no nvidia-smi sampling: {e}")
            self.proc = None
            return
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            parts = [p.strip() for p in line.split(",")]
            try:
                sm, mem, power, temp = (float(p) for p in parts[:4])
            except ValueError:
                continue
            self.rows.append((time.time(), sm, mem, power, temp, parts[4]))

    def during(self, t0, t1):
        """(mean SM MHz, min SM MHz, mean W, max C, event reasons seen) over [t0, t1]."""
        rows = [r for r in self.rows if t0 <= r[0] <= t1]
        if not rows:
            return None
        return dict(sm_mhz=statistics.mean(r[1] for r in rows), sm_min=min(r[1] for r in rows),
                    mem_mhz=statistics.mean(r[2] for r in rows),
                    watts=statistics.mean(r[3] for r in rows), temp_c=max(r[4] for r in rows),
                    reasons=sorted({r[5] for r in rows}), samples=len(rows))

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()


def reading(fn, sampler):
    """One do_bench (median, as the bench does) with every repetition, its span and the card."""
    import triton.testing

    t0 = time.time()
    times = triton.testing.do_bench(fn, warmup=25, rep=400, return_mode="all")
    t1 = time.time()
    times = sorted(times)
    q = lambda f: times[min(len(times) - 1, int(f * len(times)))]  # noqa: E731
    return dict(t0=t0, t1=t1, median=times[len(times) // 2], p10=q(0.1), p90=q(0.9),
                n=len(times), card=sampler.during(t0, t1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seq-lens", type=int, nargs="+", default=[32768, 131072])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--tau", type=float, default=0.8)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    sampler = Sampler()
    time.sleep(0.5)
    print({"card": torch.cuda.get_device_name(), "torch": torch.__version__})
    rows = []
    for N in args.seq_lens:
        q, k, v = structured_qkv(1, 32, 8, N, 128, device="cuda")
        cfg = S2OConfig(threshold=args.tau, min_seq_len=0)
        scale = 128 ** -0.5
        table, offsets = T.walk_table(q, k, scale, cfg)
        _, density = W.s2o_attention(q, k, v, scale, cfg)
        d = density.mean().item()

        def cudnn():
            with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
                return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        fns = {"s2o": lambda: W.s2o_attention(q, k, v, scale, cfg),
               "att": lambda: W.attention(q, k, v, table, offsets, scale, cfg),
               "pre": lambda: T.build_index_table(q, k, scale, cfg),
               "triton": lambda: T.attention_with_table(q, k, v, table, offsets, scale, cfg),
               "cudnn": cudnn}
        names = list(fns)
        for r in range(args.rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            got = {}
            for name in order:
                got[name] = reading(fns[name], sampler)
                rows.append(dict(N=N, round=r, name=name, density=d, **got[name]))
            eff = got["s2o"]["median"] / (d * got["cudnn"]["median"])
            parts = got["att"]["median"] + got["pre"]["median"]
            print(f"N={N} round {r} order {' '.join(order)}: eff {eff:.3f}  "
                  f"s2o {got['s2o']['median']:.3f} vs att+pre {parts:.3f}")
            for name in order:
                g, c = got[name], got[name]["card"] or {}
                print(f"   {name:7s} {g['median']:9.3f} ms (p10 {g['p10']:.3f} p90 {g['p90']:.3f}, "
                      f"n {g['n']:4d})  SM {c.get('sm_mhz', 0):6.0f} MHz (min {c.get('sm_min', 0):5.0f}) "
                      f"{c.get('watts', 0):5.0f} W {c.get('temp_c', 0):3.0f} C {c.get('reasons', '')}",
                      flush=True)
        del q, k, v, table
        torch.cuda.empty_cache()
    sampler.stop()
    if args.out:
        with open(args.out, "w") as f:
            json.dump(dict(rows=rows, smi=sampler.rows), f)


if __name__ == "__main__":
    main()
