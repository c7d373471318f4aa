"""Preprocessing A/B on one card: the index table built with the counting sort at several block
sizes (kernels.triton_s2o.SORT_BLOCK) and prefix-score tiles
(SCORE_TILES), against an earlier kernels module (default _ab_prev, a copy of an earlier
triton_s2o.py placed in s2o_compile/kernels/), same inputs, same run; prints whether each table
equals the earlier module's.

    python benchmarks/sort_ab.py --seq-lens 32768 131072 --blocks 256 512 --prev _ab_prev \
        --score-tiles 64,256,8 --per-program 4,4 16,16 --pool-tiles 64,8
"""
import argparse
import importlib

import torch
import triton

from s2o_compile import S2OConfig
from s2o_compile.kernels import triton_s2o as T
from s2o_compile.workload import structured_qkv


def bench(fn):
    return triton.testing.do_bench(fn, warmup=25, rep=300, return_mode="median")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seq-lens", type=int, nargs="+", default=[32768, 131072])
    ap.add_argument("--blocks", type=int, nargs="+", default=[512, 1024, 2048])
    ap.add_argument("--prev", default="_ab_prev")
    ap.add_argument("--score-tiles", nargs="*", default=[],
                    help="SCORE_TILES variants 'segments,keys,warps', each timed at the first block size")
    ap.add_argument("--per-program", nargs="*", default=[],
                    help="blocks per program of the keys and rank kernels, 'keys,rank' "
                         "(KEYS_/RANK_BLOCKS_PER_PROGRAM), each timed at the first block size")
    ap.add_argument("--pool-tiles", nargs="*", default=[],
                    help="POOL_TILES variants 'rows,warps', each timed at the first block size")
    args = ap.parse_args()
    prev = importlib.import_module(f"s2o_compile.kernels.{args.prev}") if args.prev else None
    cfg = S2OConfig(min_seq_len=0, threshold=0.75)
    scale = 128 ** -0.5
    for N in args.seq_lens:
        q, k, v = structured_qkv(1, 32, 8, N, 128, device="cuda")
        ref = None
        if prev is not None:
            ref, _ = prev.build_index_table(q, k, scale, cfg)
            print(f"N={N} {args.prev}: {bench(lambda: prev.build_index_table(q, k, scale, cfg)):.3f} ms",
                  flush=True)
        defaults = (T.SORT_BLOCK, T.SCORE_TILES, T.KEYS_BLOCKS_PER_PROGRAM,
                    T.RANK_BLOCKS_PER_PROGRAM, T.POOL_TILES)
        runs = [(blk, *defaults[1:]) for blk in args.blocks]
        runs += [(args.blocks[0], tuple(int(x) for x in t.split(",")), *defaults[2:])
                 for t in args.score_tiles]
        runs += [(args.blocks[0], defaults[1], *(int(x) for x in p.split(",")), defaults[4])
                 for p in args.per_program]
        runs += [(args.blocks[0], *defaults[1:4], tuple(int(x) for x in t.split(",")))
                 for t in args.pool_tiles]
        for blk, tiles, kpp, rpp, pool in runs:
            (T.SORT_BLOCK, T.SCORE_TILES, T.KEYS_BLOCKS_PER_PROGRAM, T.RANK_BLOCKS_PER_PROGRAM,
             T.POOL_TILES) = blk, tiles, kpp, rpp, pool
            tab, _ = T.build_index_table(q, k, scale, cfg)
            same = "" if ref is None else f" table equal: {(tab == ref).float().mean().item():.6f}"
            t = bench(lambda: T.build_index_table(q, k, scale, cfg))
            print(f"N={N} SORT_BLOCK={blk} SCORE_TILES={tiles} blocks per program {kpp},{rpp} "
                  f"POOL_TILES={pool}: "
                  f"{t:.3f} ms{same}",
                  flush=True)
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
                T.build_index_table(q, k, scale, cfg)
                torch.cuda.synchronize()
            print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=8), flush=True)
            del tab
        (T.SORT_BLOCK, T.SCORE_TILES, T.KEYS_BLOCKS_PER_PROGRAM, T.RANK_BLOCKS_PER_PROGRAM,
         T.POOL_TILES) = defaults
        if prev is not None:
            print(f"N={N} {args.prev} again: "
                  f"{bench(lambda: prev.build_index_table(q, k, scale, cfg)):.3f} ms", flush=True)
        del q, k, v, ref
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
