"""Operator benchmark: S2O vs the fastest dense SDPA backend, same run, same card.

    python -m s2o_compile bench --seq-lens 8192 32768 131072 --taus 0 1e-3 1e-2
    python benchmarks/bench_op.py ...          (the same, from a checkout)

Llama-3.1-8B attention shapes by default (B 1, Hq 32, Hkv 8, D 128, bf16, causal) on the
structured workload (s2o_compile/workload.py, a proxy of real heat maps). For each N and tau:
S2O total time, its preprocessing (ranking + index table) and attention kernel separately (the
op's walk kernel, named: "pair" for the Gluon pair kernel, "triton"; and the Triton walk's time
beside it), dense
SDPA with the default backend, the FLASH backend and cuDNN, density, relative error and MSE
against dense. Medians from triton.testing.do_bench. With --rounds R everything is timed R
times in alternating rounds, each round dense first and then every tau; the times reported are
the medians of the R readings, and speedup and efficiency the medians of the rounds' own ratios
(each round's op reading over the same round's dense reading). Paired rounds matter: the cards
run at their power cap, so the SM clock moves with what ran just before, and a dense reading and
an op reading taken far apart moved the ratio by up to 15% (BENCHMARKS.md session 18). The JSON
keeps every reading. Writes JSON (--out) and prints a table.
It lives in the package so that it runs after `pip install`; it needs a CUDA GPU (speed of the
Triton kernels is what it measures: the CPU reference says nothing about it).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import torch
import torch.nn.functional as F

from . import S2OConfig
from .cli_args import add_config_arguments, config_from_args
from .workload import structured_qkv

HELP = "operator benchmark: S2O vs the fastest dense SDPA backend (needs a CUDA GPU)"
NEEDS_GPU = ("s2o bench: needs a CUDA GPU (it times the Triton kernels against cuDNN/FLASH SDPA); "
             "none is available here. On CPU, `python -m s2o_compile demo` shows density and "
             "error with the PyTorch reference.")


def _bench(fn, ms_budget=400):
    import triton.testing

    return triton.testing.do_bench(fn, warmup=25, rep=ms_budget, return_mode="median")


def _median(values):
    """The upper median of readings or ratios, None (a backend that refused) left out."""
    values = sorted(v for v in values if v is not None)
    return values[len(values) // 2] if values else None


def dense_times(q, k, v) -> dict:
    """Median ms of causal SDPA with the default backend, FLASH and cuDNN (None: refused)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    times = {}
    for name, backends in [("default", None), ("flash", [SDPBackend.FLASH_ATTENTION]),
                           ("cudnn", [SDPBackend.CUDNN_ATTENTION])]:
        def run():
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        try:
            if backends is None:
                times[name] = _bench(run)
            else:
                with sdpa_kernel(backends):
                    run()
                    times[name] = _bench(run)
        except Exception as e:  # a backend that refuses these inputs is reported, not fatal
            times[name] = None
            print(f"  dense {name}: unavailable ({type(e).__name__}: {str(e)[:80]})")
    return times


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--seq-lens", type=int, nargs="+", default=[8192, 32768, 131072])
    ap.add_argument("--taus", type=float, nargs="+", default=[0.0, 0.1, 0.3, 0.6, 0.9])
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=1,
                    help="time everything this many times in alternating rounds, dense first "
                         "in each; report medians, and the medians of the rounds' own speedups "
                         "and efficiencies (the card's speed moves by up to ~15%% between "
                         "readings, BENCHMARKS.md sessions 13 and 18)")
    ap.add_argument("--out", default=None, help="JSON results file")
    add_config_arguments(ap, exclude=("threshold", "min_seq_len"))


def check_arguments(ap: argparse.ArgumentParser, args) -> S2OConfig:
    """Usage errors (exit 2) for shapes and config; the returned config has threshold 0."""
    if args.rounds < 1:
        ap.error("--rounds must be >= 1")
    if any(n < 1 for n in args.seq_lens):
        ap.error("--seq-lens must be >= 1")
    if any(not 0 <= t < 1 for t in args.taus):
        ap.error("--taus must be in [0, 1)")
    if args.heads < 1 or args.kv_heads < 1 or args.heads % args.kv_heads:
        ap.error(f"--heads {args.heads} must be a positive multiple of --kv-heads {args.kv_heads}")
    return config_from_args(ap, args, threshold=0.0, min_seq_len=0)


def _case(q, k, v, ref, scale, cfg) -> dict:
    """One tau: density and error of the op's output, and what is timed (the op, its parts, the
    Triton walk where the op takes another kernel), each with its list of readings."""
    from .kernels import triton_s2o as T
    from .kernels import walk as W

    out, density = W.s2o_attention(q, k, v, scale, cfg)  # the op's path
    table, offsets = T.walk_table(q, k, scale, cfg)  # tau 0: no ranking, no table
    kernel, _ = W.kernel_for(q, k, v, table, scale, cfg)
    timed = {"s2o": lambda: W.s2o_attention(q, k, v, scale, cfg),  # the op, its parts
             "att": lambda: W.attention(q, k, v, table, offsets, scale, cfg)}
    if table is not None:  # tau 0 builds none
        timed["pre"] = lambda: T.build_index_table(q, k, scale, cfg)
    if kernel != "triton":  # the Triton walk, for comparison
        timed["triton"] = lambda: T.attention_with_table(q, k, v, table, offsets, scale, cfg)
    return dict(N=k.shape[2], cfg=cfg, density=density.mean().item(),
                err=((out.float() - ref).norm() / ref.norm()).item(),
                mse=((out.float() - ref) ** 2).mean().item(), kernel=kernel,
                table_mib=0 if table is None else table.numel() * 4 / 2**20,
                kv_mib=(k.numel() + v.numel()) * k.element_size() / 2**20,
                timed=timed, readings={name: [] for name in timed})


def _row(case, dts, best, best_rounds, dense_rounds) -> dict:
    """The JSON row of one (N, tau), printed as one line."""
    cfg, d, readings = case["cfg"], case["density"], case["readings"]
    t_all, t_att = _median(readings["s2o"]), _median(readings["att"])
    t_pre = _median(readings["pre"]) if "pre" in readings else 0.0
    t_tri = _median(readings["triton"]) if "triton" in readings else t_att
    speedups = [b / t for b, t in zip(best_rounds, readings["s2o"])]
    effs = [t / (d * b) for b, t in zip(best_rounds, readings["s2o"])]
    row = dict(N=case["N"], tau=cfg.threshold, config=repr(cfg), density=d,
               rel_err=case["err"], mse=case["mse"], s2o_ms=t_all, preprocess_ms=t_pre,
               attention_ms=t_att, kernel=case["kernel"], triton_attention_ms=t_tri,
               readings_ms=readings, dense_readings_ms=dense_rounds, dense_ms=dts,
               best_dense_ms=best, speedup=_median(speedups), efficiency=_median(effs),
               speedup_rounds=speedups, efficiency_rounds=effs,
               table_mib=case["table_mib"], kv_mib=case["kv_mib"])
    print(f"{cfg.stop_rule[:4]} {cfg.ordering[:4]} {cfg.pooling} N={row['N']:6d} "
          f"tau={cfg.threshold:<7g} density={d:.4f} err={case['err']:.4f} s2o={t_all:8.2f}ms "
          f"(pre {t_pre:6.2f} att {t_att:8.2f} {case['kernel']}, triton {t_tri:8.2f}) "
          f"dense={best:8.2f}ms "
          f"{' '.join(f'{k_}={v_:.2f}' for k_, v_ in dts.items() if v_)} "
          f"speedup={row['speedup']:5.2f}x eff={row['efficiency']:4.2f} "
          f"(rounds {min(effs):.2f}-{max(effs):.2f}) "
          f"table={row['table_mib']:.0f}MiB kv={row['kv_mib']:.0f}MiB", flush=True)
    return row


def run(args, cfg0: S2OConfig) -> list[dict]:
    """The benchmark proper (CUDA): one row per (N, tau)."""
    import triton

    meta = dict(card=torch.cuda.get_device_name(), torch=torch.__version__,
                triton=triton.__version__, python=platform.python_version(),
                date=time.strftime("%Y-%m-%d"), heads=args.heads, kv_heads=args.kv_heads,
                head_dim=args.head_dim, dtype="bf16")
    print(meta)
    rows = []
    for N in args.seq_lens:
        q, k, v = structured_qkv(1, args.heads, args.kv_heads, N, args.head_dim, device="cuda")
        ref = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True).float()
        scale = args.head_dim ** -0.5
        cases = [_case(q, k, v, ref, scale, cfg0.replace(threshold=tau)) for tau in args.taus]
        dense_rounds = []
        for _ in range(args.rounds):  # a round: dense, then every tau's op and parts
            dense_rounds.append(dense_times(q, k, v))
            for case in cases:
                for name, fn in case["timed"].items():
                    case["readings"][name].append(_bench(fn))
        dts = {name: _median([r[name] for r in dense_rounds]) for name in dense_rounds[0]}
        best = min(t for t in dts.values() if t is not None)
        best_rounds = [min(t for t in r.values() if t is not None) for r in dense_rounds]
        for case in cases:
            rows.append(_row(case, dts, best, best_rounds, dense_rounds))
        del q, k, v, ref, cases
        torch.cuda.empty_cache()
    if args.out:
        with open(args.out, "w") as f:
            json.dump(dict(meta=meta, rows=rows), f, indent=1)
    return rows


def command(ap: argparse.ArgumentParser, args) -> int:
    """Entry point of `python -m s2o_compile bench`: 0 on success, 1 without a GPU."""
    cfg = check_arguments(ap, args)
    if not torch.cuda.is_available():
        print(NEEDS_GPU, file=sys.stderr)
        return 1
    run(args, cfg)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="bench_op.py", description=__doc__.splitlines()[0])
    add_arguments(ap)
    return command(ap, ap.parse_args(argv))
