"""`python -m s2o_compile demo`: S2O vs dense SDPA on the structured long-context workload.

Shows, on whatever device is here, that the threshold trades density for error (and on a GPU,
time): CPU runs the PyTorch reference at N 4096, CUDA the Triton kernels at N 32768.
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from . import S2OConfig, sparse_attention
from .workload import mass_coverage, structured_qkv

HELP = "S2O vs dense SDPA on a structured long-context workload"


def _time(fn, device):
    fn()  # warm-up (compilation, caches)
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    out = fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return out, (time.perf_counter() - t) * 1e3


def demo(args) -> int:
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    N = args.seq_len or (32768 if device == "cuda" else 4096)
    H, Hkv, D = (32, 8, 128) if device == "cuda" else (8, 2, 128)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    print(f"S2O demo on {device}: structured attention workload, B=1 Hq={H} Hkv={Hkv} N={N} "
          f"D={D} {str(dtype).replace('torch.', '')}")
    q, k, v = structured_qkv(1, H, Hkv, N, D, dtype=dtype, device=device, seed=0)
    cov = mass_coverage(q, k, rows=16)
    print(f"workload: 90% of each row's attention mass sits in {cov[0.9]:.1%} of its keys, "
          f"95% in {cov[0.95]:.1%}")
    ref, t_dense = _time(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                                                enable_gqa=True), device)
    print(f"{'threshold':>10} {'density':>8} {'rel.err':>8} {'time ms':>8}   (dense SDPA {t_dense:.1f} ms)")
    for tau in args.taus:
        cfg = S2OConfig(threshold=tau, min_seq_len=0)
        (out, density), t = _time(lambda: sparse_attention(q, k, v, enable_gqa=True, config=cfg,
                                                           return_stats=True), device)
        err = ((out.float() - ref.float()).norm() / ref.float().norm()).item()
        print(f"{tau:>10g} {density.mean().item():>8.3f} {err:>8.4f} {t:>8.1f}")
    if device == "cpu":
        print("(on CPU the PyTorch reference runs: it shows density and error; speed needs a GPU)")
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seq-len", type=int, default=None, help="tokens (default 4096 CPU, 32768 GPU)")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None)
    p.add_argument("--taus", type=float, nargs="+", default=[0.0, 1e-3, 1e-2, 1e-1])


def command(p: argparse.ArgumentParser, args) -> int:
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA GPU is available")
    if args.seq_len is not None and args.seq_len < 1:
        p.error("--seq-len must be >= 1")
    if any(not 0 <= t < 1 for t in args.taus):
        p.error("--taus must be in [0, 1)")
    return demo(args)
