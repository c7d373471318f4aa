"""Operator benchmark: S2O vs the fastest dense SDPA backend, same run, same card.

Llama-3.1-8B attention shapes by default (B 1, Hq 32, Hkv 8, D 128, bf16, causal) on the
structured workload (s2o_compile/workload.py, a proxy of real heat maps). For each N and tau:
S2O total time, its preprocessing (ranking + index table) and attention kernel separately, dense
SDPA with the default backend, the FLASH backend and cuDNN, density, relative error and MSE
against dense. Medians from triton.testing.do_bench. Writes JSON (--out) and prints a table.

    python benchmarks/bench_op.py --seq-lens 8192 32768 131072 --taus 0 1e-3 1e-2
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import torch
import torch.nn.functional as F
import triton
from torch.nn.attention import SDPBackend, sdpa_kernel

from s2o_compile import S2OConfig
from s2o_compile.kernels import triton_s2o as T
from s2o_compile.workload import structured_qkv


def bench(fn, ms_budget=400):
    return triton.testing.do_bench(fn, warmup=25, rep=ms_budget, return_mode="median")


def dense_times(q, k, v):
    times = {}
    for name, backends in [("default", None), ("flash", [SDPBackend.FLASH_ATTENTION]),
                           ("cudnn", [SDPBackend.CUDNN_ATTENTION])]:
        def run():
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        try:
            if backends is None:
                times[name] = bench(run)
            else:
                with sdpa_kernel(backends):
                    run()
                    times[name] = bench(run)
        except Exception as e:  # a backend that refuses these inputs is reported, not fatal
            times[name] = None
            print(f"  dense {name}: unavailable ({type(e).__name__}: {str(e)[:80]})")
    return times


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seq-lens", type=int, nargs="+", default=[8192, 32768, 131072])
    ap.add_argument("--taus", type=float, nargs="+", default=[0.0, 1e-3, 3e-3, 1e-2])
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--segment-size", type=int, default=S2OConfig.segment_size)
    ap.add_argument("--block-m", type=int, default=S2OConfig.block_m)
    ap.add_argument("--block-n", type=int, default=S2OConfig.block_n)
    ap.add_argument("--ordering", default=S2OConfig.ordering, choices=["tiers", "sort"])
    ap.add_argument("--stop-rule", default=S2OConfig.stop_rule, choices=["gain", "remaining"])
    ap.add_argument("--pooling", default=S2OConfig.pooling, choices=["max", "mean"])
    ap.add_argument("--out", default=None, help="JSON results file")
    args = ap.parse_args(argv)

    dev = torch.cuda.get_device_name()
    meta = dict(card=dev, torch=torch.__version__, triton=triton.__version__,
                python=platform.python_version(), date=time.strftime("%Y-%m-%d"),
                heads=args.heads, kv_heads=args.kv_heads, head_dim=args.head_dim, dtype="bf16")
    print(meta)
    rows = []
    for N in args.seq_lens:
        q, k, v = structured_qkv(1, args.heads, args.kv_heads, N, args.head_dim, device="cuda")
        ref = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True).float()
        dts = dense_times(q, k, v)
        best = min(t for t in dts.values() if t is not None)
        scale = args.head_dim ** -0.5
        for tau in args.taus:
            cfg = S2OConfig(threshold=tau, min_seq_len=0, segment_size=args.segment_size,
                            block_m=args.block_m, block_n=args.block_n, ordering=args.ordering,
                            stop_rule=args.stop_rule, pooling=args.pooling)
            table, offsets = T.build_index_table(q, k, scale, cfg)
            out, density = T.s2o_attention(q, k, v, scale, cfg)
            err = ((out.float() - ref).norm() / ref.norm()).item()
            mse = ((out.float() - ref) ** 2).mean().item()
            t_pre = bench(lambda: T.build_index_table(q, k, scale, cfg))
            t_att = bench(lambda: T.attention_with_table(q, k, v, table, offsets, scale, cfg))
            t_all = bench(lambda: T.s2o_attention(q, k, v, scale, cfg))
            d = density.mean().item()
            row = dict(N=N, tau=tau, config=repr(cfg), density=d, rel_err=err, mse=mse, s2o_ms=t_all,
                       preprocess_ms=t_pre, attention_ms=t_att, dense_ms=dts, best_dense_ms=best,
                       speedup=best / t_all, efficiency=t_all / (d * best),
                       table_mib=table.numel() * 4 / 2**20,
                       kv_mib=(k.numel() + v.numel()) * k.element_size() / 2**20)
            rows.append(row)
            print(f"{args.stop_rule[:4]} {args.ordering[:4]} {args.pooling} N={N:6d} tau={tau:<7g} density={d:.4f} err={err:.4f} s2o={t_all:8.2f}ms "
                  f"(pre {t_pre:6.2f} att {t_att:8.2f}) dense={best:8.2f}ms "
                  f"{' '.join(f'{k_}={v_:.2f}' for k_, v_ in dts.items() if v_)} "
                  f"speedup={best / t_all:5.2f}x eff={t_all / (d * best):4.2f} "
                  f"table={row['table_mib']:.0f}MiB kv={row['kv_mib']:.0f}MiB", flush=True)
        del q, k, v, ref
        torch.cuda.empty_cache()
    if args.out:
        with open(args.out, "w") as f:
            json.dump(dict(meta=meta, rows=rows), f, indent=1)
    return rows


if __name__ == "__main__":
    main()
