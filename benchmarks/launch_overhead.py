"""Host time of one S2O call in eager mode: how long Python takes to launch the preprocessing
and the attention kernel, against the time until the GPU is done, with every kernel launched
through wrap_triton's eager dispatch and as the op launches them (triton_s2o._launch: directly
unless a compiler traces the op).

    python benchmarks/launch_overhead.py --seq-lens 32768 65536 131072 [--chunks 512 2048]

Also (session 11) with the shape-only tensors cached (the op's default) against built on every
call (triton_s2o._shape_tensors bypassed), alternating, for whole prefills and, with --chunks,
for chunks of the last L queries of the longest sequence: host ms, ms until the GPU is done,
and do_bench ms.
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
    ap.add_argument("--chunks", type=int, nargs="*", default=[],
                    help="also chunked prefills of these query counts (cache on/off only)")
    args = ap.parse_args()
    cache_ab(args)
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


def cache_ab(args):
    """Shape tensors cached (the default) against built each call, alternating twice."""
    from kernel_ab import bench  # benchmarks/kernel_ab.py
    cfg = S2OConfig(threshold=0.8, min_seq_len=0)
    cached = T._shape_tensors
    fresh = lambda key, device, build: build()  # noqa: E731
    N = max(args.seq_lens)
    cases = [(n, n) for n in args.seq_lens] + [(N, L) for L in args.chunks]
    for n, L in cases:
        q, k, v = structured_qkv(1, 32, 8, n, 128, device="cuda")
        q = q[:, :, n - L:]
        fn = lambda: T.s2o_attention(q, k, v, 128 ** -0.5, cfg)  # noqa: E731
        for _ in range(2):
            for name, impl in (("cached", cached), ("fresh", fresh)):
                T._shape_tensors = impl
                host, done = host_and_total_ms(fn)
                t = bench(fn)
                print(f"N={n} L={L} shape tensors {name:6s}: host {host:.3f} ms, done {done:.3f} ms, "
                      f"do_bench {t:.3f} ms", flush=True)
        T._shape_tensors = cached
        del q, k, v


if __name__ == "__main__":
    main()
