"""block_m 64 against 128 in the pair kernel, same run, same inputs (session 15).

With block_m 64 the pair kernel's two 64-row tiles stop on their own: the one that stops first
leaves the SM to the other warpgroup alone for the rest of the pair's walk. With block_m 128
the two tiles share one stop rule (the 128 rows'), so both walk to the same end: more pairs at
a given tau (a tile stops when all its rows do), none of them on a half-idle SM.

For each N: dense SDPA (default, FLASH, cuDNN) and, for each (config, tau), the op's density,
error against dense, op and walk times, in --rounds alternating rounds (medians). Also, for
block_m 64, the walk steps the two tiles of a pair do not share (|v_a - v_b| over v_a + v_b).

    python benchmarks/joint_ab.py --seq-lens 131072 32768 --taus 0.8 0.9 0.95 --out ab.json
"""
from __future__ import annotations

import argparse
import json
import sys

import torch
import torch.nn.functional as F

from s2o_compile import S2OConfig
from s2o_compile.bench import _bench, _median, dense_times
from s2o_compile.kernels import triton_s2o as T
from s2o_compile.kernels import walk as W
from s2o_compile.workload import structured_qkv

CONFIGS = {"bm64": dict(block_m=64), "bm128": dict(block_m=128),
           "bm128c256": dict(block_m=128, walk_chunk=256)}


def unshared_steps(visited: torch.Tensor) -> float:
    """block_m 64: the walk tiles one tile of a pair walks alone, over both tiles' walk tiles."""
    v = visited[..., : visited.shape[-1] // 2 * 2].reshape(*visited.shape[:-1], -1, 2).double()
    return ((v[..., 0] - v[..., 1]).abs().sum() / v.sum().clamp(min=1)).item()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seq-lens", type=int, nargs="+", default=[131072, 65536, 32768])
    ap.add_argument("--taus", type=float, nargs="+", default=[0.8, 0.9, 0.95, 0.98])
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    meta = dict(card=torch.cuda.get_device_name(), torch=torch.__version__)
    print(meta, flush=True)
    rows = []
    scale = 128 ** -0.5
    for N in args.seq_lens:
        q, k, v = structured_qkv(1, 32, 8, N, 128, device="cuda")
        ref = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True).float()
        cases = []
        for name in args.configs:
            for tau in args.taus:
                cfg = S2OConfig(threshold=tau, min_seq_len=0, **CONFIGS[name])
                out, density = W.s2o_attention(q, k, v, scale, cfg)
                table, offsets = T.walk_table(q, k, scale, cfg)
                _, visited = W.attention(q, k, v, table, offsets, scale, cfg)
                kernel = W.kernel_for(q, k, v, table, scale, cfg)[0]
                err = ((out.float() - ref).norm() / ref.norm()).item()
                case = dict(N=N, config=name, tau=tau, kernel=kernel,
                            density=density.mean().item(), rel_err=err,
                            unshared=unshared_steps(visited) if name == "bm64" else 0.0,
                            op=[], att=[])
                case["fns"] = (lambda c=cfg: W.s2o_attention(q, k, v, scale, c),
                               lambda c=cfg, t=table, o=offsets: W.attention(q, k, v, t, o,
                                                                             scale, c))
                cases.append(case)
                del out, table, visited
        dense = []
        for _ in range(args.rounds):
            dense.append(dense_times(q, k, v))
            for case in cases:
                case["op"].append(_bench(case["fns"][0]))
                case["att"].append(_bench(case["fns"][1]))
        best = min(_median([d[n] for d in dense]) for n in dense[0]
                   if _median([d[n] for d in dense]) is not None)
        for case in cases:
            del case["fns"]
            op, att = _median(case["op"]), _median(case["att"])
            case.update(dense_ms=best, dense_readings=dense, op_ms=op, att_ms=att,
                        speedup=best / op, efficiency=op / (case["density"] * best),
                        att_efficiency=att / (case["density"] * best))
            rows.append(case)
            print(f"N={N:6d} {case['config']:9s} tau={case['tau']:<5g} {case['kernel']:6s} "
                  f"density={case['density']:.4f} err={case['rel_err']:.4f} "
                  f"op={op:7.2f} att={att:7.2f} dense={best:7.2f} speedup={best / op:5.2f}x "
                  f"eff={case['efficiency']:.3f} att_eff={case['att_efficiency']:.3f} "
                  f"unshared={case['unshared']:.3f}", flush=True)
        del q, k, v, ref
        torch.cuda.empty_cache()
    if args.out:
        with open(args.out, "w") as f:
            json.dump(dict(meta=meta, rows=rows), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
