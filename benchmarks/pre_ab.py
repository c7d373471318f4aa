"""Preprocessing A/B on one card: the index table built by the current kernels module with
module constants set per variant (e.g. SCORE_PROGRAMS=1024, SCORE_TILES=16,128,8), against an
earlier module (default _ab_prev: a copy of an earlier triton_s2o.py placed in
s2o_compile/kernels/, not committed), same inputs, same run, alternating rounds. Prints each
variant's whole preprocessing (do_bench median) and its kernels' times (profiler), and whether
its table equals the earlier module's. Session 18 folded sort_ab.py (one flag per constant) into
it: `--blocks 256` is `SORT_BLOCK=256`, `--per-program 4,4` is
`KEYS_BLOCKS_PER_PROGRAM=4;RANK_BLOCKS_PER_PROGRAM=4`, `--pool-tiles 64,8` is `POOL_TILES=64,8`.

    python benchmarks/pre_ab.py --seq-lens 32768 131072 --variants base SCORE_STAGES=2
"""
from __future__ import annotations

import argparse
import importlib
import json

import torch
import triton

from s2o_compile import S2OConfig
from s2o_compile.kernels import triton_s2o as T
from s2o_compile.workload import structured_qkv


def parse(spec: str) -> dict:
    """'base' or 'NAME=v[,v...];NAME=v' -> module constants (a tuple where commas)."""
    if spec == "base":
        return {}
    out = {}
    for part in spec.split(";"):
        name, value = part.split("=")
        vals = tuple(int(x) for x in value.split(","))
        out[name] = vals if len(vals) > 1 else vals[0]
    return out


def kernel_times(fn, reps=10) -> dict:
    """Mean device ms per call of each kernel fn launches (profiler)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            fn()
        torch.cuda.synchronize()
    return {e.key[:40]: e.device_time_total / 1000 / reps for e in prof.key_averages()
            if e.device_time_total > 0}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seq-lens", type=int, nargs="+", default=[32768, 131072])
    ap.add_argument("--variants", nargs="+", default=["base"])
    ap.add_argument("--prev", default="_ab_prev")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    prev = importlib.import_module(f"s2o_compile.kernels.{args.prev}") if args.prev else None
    cfg = S2OConfig(min_seq_len=0, threshold=0.8)
    scale = 128 ** -0.5
    rows = []
    for N in args.seq_lens:
        q, k, _ = structured_qkv(1, 32, 8, N, 128, device="cuda")
        builds = {}
        if prev is not None:
            builds[args.prev] = lambda: prev.build_index_table(q, k, scale, cfg)
        for spec in args.variants:
            consts = parse(spec)

            def build(consts=consts):
                saved = {name: getattr(T, name) for name in consts}
                for name, value in consts.items():
                    setattr(T, name, value)
                try:
                    return T.build_index_table(q, k, scale, cfg)
                finally:
                    for name, value in saved.items():
                        setattr(T, name, value)
            builds[spec] = build
        ref = next(iter(builds.values()))()[0]
        readings = {name: [] for name in builds}
        for name, fn in builds.items():
            table = fn()[0]
            same = torch.equal(table, ref)
            frac = (table == ref).float().mean().item()  # a score's last bit can move a key
            print(f"N={N} {name}: table equal to {next(iter(builds))}: {same} "
                  f"(entries equal: {frac:.6f})", flush=True)
            del table
        for _ in range(args.rounds):
            for name, fn in builds.items():
                readings[name].append(triton.testing.do_bench(fn, warmup=25, rep=300,
                                                              return_mode="median"))
        for name, fn in builds.items():
            ms = sorted(readings[name])[len(readings[name]) // 2]
            kt = kernel_times(fn)
            rows.append(dict(N=N, variant=name, ms=ms, readings=readings[name], kernels=kt))
            print(f"N={N} {name:28s} {ms:7.3f} ms  (rounds {' '.join(f'{x:.3f}' for x in readings[name])})  "
                  + " ".join(f"{key.strip('_')[:18]}={t:.3f}" for key, t in
                             sorted(kt.items(), key=lambda kv: -kv[1])[:6]), flush=True)
        del q, k, ref
        torch.cuda.empty_cache()
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
