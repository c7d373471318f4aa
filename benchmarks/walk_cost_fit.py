"""The pair walk's time as a fixed cost per tile pair plus a cost per step (session 16).

For each block_m, one index table (the ranking does not depend on tau) and the pair kernel at
several taus: each tau changes only how many steps the pairs stream, never how many pairs there
are, so a least-squares line time = F_total + c x steps gives the fixed cost of all pairs
(F_total, the intercept; F = F_total / pairs) and the cost of a step (c). A step is 128 keys
for a pair's 128 rows: its steps are its dense ones (own rows, sink, window) and its walk, up to
where its last tile stops (block_m 64: the longer of its two tiles' walks). Both are also
given in cuDNN's time per 128 x 128 causal block of the same call.

    python benchmarks/walk_cost_fit.py --seq-len 32768 --taus 1e-6 0.3 0.6 0.8 0.9 0.95
"""
from __future__ import annotations

import argparse
import json
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from s2o_compile import S2OConfig
from s2o_compile.bench import _bench
from s2o_compile.kernels import gluon_pair as GP
from s2o_compile.kernels import triton_s2o as T
from s2o_compile.kernels.layout import query_tiles, segments
from s2o_compile.workload import structured_qkv


def pair_steps(visited: torch.Tensor, N: int, cfg: S2OConfig) -> int:
    """Steps streamed over all pairs (dense steps + walk steps to the pair's last stop)."""
    step = GP.pair_step(cfg)
    pair = 2 * GP.BLOCK
    segs = segments(N, cfg.segment_size, cfg.sink_tokens, cfg.local_window)
    # a pair's dense keys: the sink, then the window and its segment's rows before it
    n_d = torch.tensor([sg.sink_end + m0 - sg.lo for sg in segs
                        for m0 in range(sg.start, sg.end, pair)], device=visited.device)
    n_dense = pair // step + (n_d + step - 1) // step
    v = visited.long() * (cfg.block_n // step)  # walk steps per visited tile
    if cfg.block_m == GP.BLOCK:  # two tiles a pair: the stream runs to the later stop
        v = torch.nn.functional.pad(v, (0, v.shape[-1] % 2)).reshape(*v.shape[:-1], -1, 2)
        v = v.max(dim=-1).values
    return int((v + n_dense).sum())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seq-len", type=int, default=32768)
    ap.add_argument("--taus", type=float, nargs="+", default=[1e-6, 0.3, 0.6, 0.8, 0.9, 0.95])
    ap.add_argument("--block-ms", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    N = args.seq_len
    print(dict(card=torch.cuda.get_device_name(), torch=torch.__version__), flush=True)
    q, k, v = structured_qkv(1, 32, 8, N, 128, device="cuda")
    with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
        dense = _bench(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                                              enable_gqa=True))
    n_blocks = q.shape[1] * (N // 128) * (N // 128 + 1) // 2  # 128 x 128 causal blocks
    dense_block = dense / n_blocks  # ms per block
    rows = []
    for bm in args.block_ms:
        cfg0 = S2OConfig(min_seq_len=0, block_m=bm)
        table, offsets = T.build_index_table(q, k, 128 ** -0.5, cfg0)
        pts = []
        for tau in args.taus:
            cfg = cfg0.replace(threshold=tau)
            _, vis = GP.attention_pair(q, k, v, table, offsets, 128 ** -0.5, cfg)
            steps = pair_steps(vis, N, cfg)
            ms = _bench(lambda cfg=cfg: GP.attention_pair(q, k, v, table, offsets, 128 ** -0.5,
                                                          cfg))
            pts.append((steps, ms))
            print(f"N={N} bm={bm} tau={tau:g}: {steps} steps, {ms:.3f} ms", flush=True)
        x = torch.tensor([p[0] for p in pts], dtype=torch.float64)
        y = torch.tensor([p[1] for p in pts], dtype=torch.float64)
        A = torch.stack([torch.ones_like(x), x], dim=1)
        intercept, slope = torch.linalg.lstsq(A, y[:, None]).solution.flatten()
        pairs = q.shape[1] * query_tiles(N, N, 2 * GP.BLOCK)
        resid = (A @ torch.stack([intercept, slope]) - y).abs().max().item()
        row = dict(N=N, block_m=bm, points=pts, cudnn_ms=dense, pairs=pairs,
                   fixed_ms=intercept.item(), step_us=slope.item() * 1e3,
                   fixed_per_pair_steps=intercept.item() / pairs / slope.item(),
                   step_vs_cudnn=slope.item() / dense_block, max_residual_ms=resid)
        rows.append(row)
        print(f"N={N} bm={bm}: fixed {intercept.item():.3f} ms over {pairs} pairs "
              f"({row['fixed_per_pair_steps']:.2f} steps a pair), a step {row['step_us']:.3f} us "
              f"= {row['step_vs_cudnn']:.3f}x cuDNN's 128 x 128 block; max residual "
              f"{resid:.3f} ms", flush=True)
        del table
    if args.out:
        with open(args.out, "w") as f:
            json.dump(dict(rows=rows), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
