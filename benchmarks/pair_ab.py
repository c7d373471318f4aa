"""A/B of the pair kernel's launch switches (gluon_pair.attention_pair keywords), one process.

First each variant against the Triton kernel on random inputs (the same visits, outputs within
bf16 rounding), then the walk alone on the structured workload with one table per (N, block_m),
in alternating rounds (medians), beside cuDNN's dense time for the walk's efficiency
(walk ms / (density x dense ms), the median of the rounds' own ratios: each round reads cuDNN
first, then every variant).

    python benchmarks/pair_ab.py --seq-lens 131072 32768 --variants base q_by_consumer=1 \
        half_diag=1 q_by_consumer=1,half_diag=1
"""
from __future__ import annotations

import argparse
import json
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from s2o_compile import S2OConfig
from s2o_compile.bench import _bench, _median
from s2o_compile.kernels import gluon_pair as GP
from s2o_compile.kernels import triton_s2o as T
from s2o_compile.workload import structured_qkv
from kernel_ab import rel_err  # benchmarks/kernel_ab.py


def walk(q, k, v, table, offsets, scale, cfg, kw):
    """The pair kernel with keywords kw; persist=1: the persistent experiment
    (benchmarks/gluon_persist.py); old=1: benchmarks/old_pair.py, an uncommitted copy of an
    earlier gluon_pair.py (a whole kernel against another, without a switch)."""
    kw = dict(kw)
    if kw.pop("persist", 0):
        from gluon_persist import attention_persist
        return attention_persist(q, k, v, table, offsets, scale, cfg, **kw)
    if kw.pop("old", 0):
        import old_pair
        return old_pair.attention_pair(q, k, v, table, offsets, scale, cfg, **kw)
    return GP.attention_pair(q, k, v, table, offsets, scale, cfg, **kw)


def parse(spec: str) -> dict:
    """'base' or 'key=int,key=int' -> attention_pair keywords."""
    if spec == "base":
        return {}
    return {k: int(v) for k, v in (f.split("=") for f in spec.split(","))}


def check(variants, block_ms) -> bool:
    ok = True
    shapes = [(2, 8, 2, 8192 + 37, 128, torch.bfloat16), (1, 4, 4, 6000, 64, torch.float16),
              (1, 8, 2, 8192 + 64, 128, torch.bfloat16)]
    for (B, Hq, Hkv, N, D, dtype) in shapes:
        g = torch.Generator(device="cuda").manual_seed(N + D)
        q = torch.randn(B, Hq, N, D, generator=g, device="cuda", dtype=dtype)
        k = torch.randn(B, Hkv, N, D, generator=g, device="cuda", dtype=dtype) * 1.5
        v = torch.randn(B, Hkv, N, D, generator=g, device="cuda", dtype=dtype)
        for bm in block_ms:
            for tau in (0.05, 0.5):
                cfg = S2OConfig(threshold=tau, min_seq_len=0, block_m=bm)
                table, offsets = T.build_index_table(q, k, D ** -0.5, cfg)
                ref, ref_vis = T.attention_with_table(q, k, v, table, offsets, D ** -0.5, cfg)
                for name, kw in variants.items():
                    out, vis = walk(q, k, v, table, offsets, D ** -0.5, cfg, kw)
                    e = rel_err(out, ref)
                    good = (torch.equal(vis, ref_vis) and e < 5e-3
                            and bool(torch.isfinite(out).all()))
                    ok &= good
                    print(f"check {name:28s} B={B} Hq={Hq} N={N} D={D} {dtype} bm={bm} tau={tau}: "
                          f"visits equal {torch.equal(vis, ref_vis)}, err {e:.2e}"
                          f"{'' if good else '  FAILED'}", flush=True)
    return ok


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seq-lens", type=int, nargs="+", default=[131072, 32768])
    ap.add_argument("--block-ms", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--tau", type=float, default=0.8)
    ap.add_argument("--variants", nargs="+", default=["base"])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default=None)
    ap.add_argument("--skip-checks", action="store_true")
    args = ap.parse_args(argv)
    variants = {name: parse(name) for name in args.variants}
    print(dict(card=torch.cuda.get_device_name(), torch=torch.__version__), flush=True)
    ok = True if args.skip_checks else check(variants, args.block_ms)
    rows = []
    for N in args.seq_lens:
        q, k, v = structured_qkv(1, 32, 8, N, 128, device="cuda")

        def cudnn():
            with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
                return _bench(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                                                     enable_gqa=True))
        for bm in args.block_ms:
            cfg = S2OConfig(threshold=args.tau, min_seq_len=0, block_m=bm)
            table, offsets = T.build_index_table(q, k, 128 ** -0.5, cfg)
            _, vis = GP.attention_pair(q, k, v, table, offsets, 128 ** -0.5, cfg)
            first = None
            for name, kw in variants.items():  # on this workload too: against the first variant
                out_v, vis_v = walk(q, k, v, table, offsets, 128 ** -0.5, cfg, kw)
                if first is None:
                    first = (out_v, vis_v)
                    continue
                same = torch.equal(vis_v, first[1])
                ok &= same
                print(f"N={N:6d} bm={bm:3d} {name:28s} against {args.variants[0]}: visits equal "
                      f"{same}, outputs bit-equal {torch.equal(out_v, first[0])}, err "
                      f"{rel_err(out_v, first[0]):.2e}{'' if same else '  FAILED'}", flush=True)
            del first, out_v, vis_v
            density = (T.pairs_from_visited(vis, N, cfg, 4).double()
                       / T.causal_pairs(N, N)).mean().item()
            times = {name: [] for name in variants}
            dense = []  # one cuDNN reading a round: each round's ratio from its own (session 18)
            for _ in range(args.rounds):
                dense.append(cudnn())
                for name, kw in variants.items():
                    times[name].append(_bench(lambda kw=kw: walk(
                        q, k, v, table, offsets, 128 ** -0.5, cfg, kw)))
            base = _median(times[args.variants[0]])
            for name in variants:
                t = _median(times[name])
                eff = _median([x / (density * d) for x, d in zip(times[name], dense)])
                rows.append(dict(N=N, block_m=bm, tau=args.tau, variant=name, ms=t,
                                 readings=times[name], density=density, cudnn_ms=_median(dense),
                                 cudnn_readings=dense, walk_eff=eff))
                print(f"N={N:6d} bm={bm:3d} {name:28s} walk {t:7.3f} ms ({t / base - 1:+.1%}) "
                      f"walk_eff {eff:.3f} (density {density:.4f}, cuDNN "
                      f"{_median(dense):.2f} ms)", flush=True)
            del table
        del q, k, v
        torch.cuda.empty_cache()
    if args.out:
        with open(args.out, "w") as f:
            json.dump(dict(rows=rows, checks_ok=ok), f, indent=1)
    print("checks", "ok" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
