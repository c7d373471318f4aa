"""Kernel A/B timings on one card: attention kernel variants and preprocessing stages.

    python benchmarks/kernel_ab.py --seq-lens 32768 131072
"""
import argparse

import torch
import torch.nn.functional as F
import triton

from s2o_compile import S2OConfig
from s2o_compile.kernels import triton_s2o as T
from s2o_compile.workload import structured_qkv


def bench(fn):
    return triton.testing.do_bench(fn, warmup=25, rep=300, return_mode="median")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seq-lens", type=int, nargs="+", default=[32768, 131072])
    args = ap.parse_args()
    for N in args.seq_lens:
        q, k, v = structured_qkv(1, 32, 8, N, 128, device="cuda")
        dense = bench(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True))
        print(f"N={N} dense default {dense:.2f} ms", flush=True)
        base = S2OConfig(min_seq_len=0)
        for tau, rule in [(0.0, "gain"), (1e-2, "remaining"), (1e-3, "gain")]:
            for bm, bn, nw, chunk, st in [(128, 64, 8, 8, 3), (128, 128, 8, 4, 3), (64, 64, 4, 4, 3),
                                          (64, 64, 4, 8, 3), (64, 128, 4, 4, 3), (64, 128, 8, 4, 3)]:
                cfg = base.replace(threshold=tau, stop_rule=rule, block_m=bm, block_n=bn)
                table, offsets = T.build_index_table(q, k, 128 ** -0.5, cfg)
                run = lambda: T.attention_with_table(q, k, v, table, offsets, 128 ** -0.5, cfg,  # noqa: E731
                                                     num_warps=nw, num_stages=st, chunk=chunk)
                try:
                    out, vis = run()
                    d = (T.pairs_from_visited(vis, N, cfg).double() / (N * (N + 1) / 2)).mean().item()
                    t = bench(run)
                    print(f"  tau={tau:<6g} {rule:9s} BM={bm:3d} BN={bn:3d} warps={nw} chunk={chunk} stages={st}: "
                          f"{t:8.2f} ms density={d:.3f} eff={t / (d * dense):.2f}", flush=True)
                except Exception as e:
                    print(f"  BM={bm} BN={bn} warps={nw} chunk={chunk} stages={st}: FAILED {type(e).__name__}: {str(e)[:120]}")
        cfg = base
        for ordering, bm, tiles in [("tiers", 128, (32, 64, 4)), ("tiers", 128, (64, 128, 8)),
                                    ("tiers", 64, (32, 64, 4)), ("tiers", 64, (64, 128, 8)),
                                    ("tiers", 64, (128, 64, 8)), ("sort", 128, (32, 64, 4))]:
            c = cfg.replace(ordering=ordering, block_m=bm)
            T.SCORE_TILES = tiles
            ref_table, _ = T.build_index_table(q, k, 128 ** -0.5, c)
            t = bench(lambda: T.build_index_table(q, k, 128 ** -0.5, c))
            print(f"  preprocess {ordering} BM={bm} score tiles {tiles}: {t:.2f} ms "
                  f"({100 * t / dense:.1f}% of dense)", flush=True)
        T.SCORE_TILES = (32, 64, 4)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            T.build_index_table(q, k, 128 ** -0.5, cfg)
            torch.cuda.synchronize()
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=8))
        del q, k, v
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
