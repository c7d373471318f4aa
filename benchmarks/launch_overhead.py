"""Host time of one S2O call in eager mode: how long Python takes to launch the preprocessing
and the attention kernel, against the time until the GPU is done, with every kernel launched
through wrap_triton's eager dispatch and as the op launches them (triton_s2o._launch: directly
unless a compiler traces the op).

    python benchmarks/launch_overhead.py --seq-lens 32768 65536 131072
"""
import argparse
import cProfile
import pstats
import time

import torch
from torch.library import wrap_triton

from s2o_compile import S2OConfig
from s2o_compile.kernels import triton_s2o as T
from s2o_compile.workload import structured_qkv


def host_and_total_ms(fn, n=20):
    """(host ms per call, launches only; ms per call until the GPU is done)."""
    fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    host = (time.perf_counter() - t0) / n * 1e3
    torch.cuda.synchronize()
    return host, (time.perf_counter() - t0) / n * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seq-lens", type=int, nargs="+", default=[32768, 65536, 131072])
    ap.add_argument("--profile", action="store_true", help="cProfile of the wrap_triton path")
    args = ap.parse_args()
    cfg = S2OConfig(threshold=0.8, min_seq_len=0)
    current = T._launch  # launches directly unless a compiler traces the op (session 8)
    wrapped = lambda kernel, grid, *a, **kw: wrap_triton(kernel)[grid](*a, **kw)  # noqa: E731
    for N in args.seq_lens:
        q, k, v = structured_qkv(1, 32, 8, N, 128, device="cuda")
        for name, launch in (("wrap_triton", wrapped), ("_launch", current)):
            T._launch = launch
            b = host_and_total_ms(lambda: T.build_index_table(q, k, 128 ** -0.5, cfg))
            o = host_and_total_ms(lambda: T.s2o_attention(q, k, v, 128 ** -0.5, cfg))
            print(f"N={N} {name:11s} build_index_table host {b[0]:.3f} ms, done {b[1]:.3f} ms; "
                  f"s2o_attention host {o[0]:.3f} ms, done {o[1]:.3f} ms", flush=True)
        T._launch = current
        if args.profile:  # the wrap_triton path
            T._launch = wrapped
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(10):
                T.build_index_table(q, k, 128 ** -0.5, cfg)
            prof.disable()
            torch.cuda.synchronize()
            pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
            T._launch = current
        del q, k, v


if __name__ == "__main__":
    main()
