"""Where the whole op's time goes beyond its two parts: the bench's s2o time was 0.7-0.9 ms
above preprocessing + attention (each timed alone) at 64K-128K (session 8, H100). This times,
in one run, the parts, the op, the parts called back to back, the op replayed from a CUDA graph
(no host work), and reports any synchronizing call (torch.cuda sync debug mode), the allocator's
cudaMalloc/cudaFree count per call and the CUDA API calls of one call (torch.profiler).

    python benchmarks/op_overhead.py --seq-lens 65536 131072 --tau 0.8
"""
import argparse
import warnings

import torch

from kernel_ab import bench  # benchmarks/kernel_ab.py: do_bench median, the A/B scripts' settings
from s2o_compile import S2OConfig
from s2o_compile.kernels import triton_s2o as T
from s2o_compile.workload import structured_qkv


def loop_ms(fn, n=20):
    """Back to back, no cache flush: CUDA events around n calls."""
    fn()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    for _ in range(n):
        fn()
    b.record()
    torch.cuda.synchronize()
    return a.elapsed_time(b) / n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seq-lens", type=int, nargs="+", default=[65536, 131072])
    ap.add_argument("--tau", type=float, default=0.8)
    args = ap.parse_args()
    cfg = S2OConfig(threshold=args.tau, min_seq_len=0)
    scale = 128 ** -0.5
    for N in args.seq_lens:
        q, k, v = structured_qkv(1, 32, 8, N, 128, device="cuda")
        table, offsets = T.build_index_table(q, k, scale, cfg)
        op = lambda: T.s2o_attention(q, k, v, scale, cfg)  # noqa: E731
        parts = lambda: T.attention_with_table(q, k, v, *T.build_index_table(q, k, scale, cfg),  # noqa: E731
                                               scale, cfg)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            op()
            torch.cuda.set_sync_debug_mode(0)
        syncs = [str(w.message)[:120] for w in caught if "synchron" in str(w.message).lower()]
        print(f"N={N}: synchronizing calls in one op call: {len(syncs)} {syncs[:3]}", flush=True)
        stats0 = torch.cuda.memory_stats()
        for _ in range(5):
            op()
        torch.cuda.synchronize()
        stats1 = torch.cuda.memory_stats()
        for key in ("num_device_alloc", "num_device_free", "num_alloc_retries"):
            print(f"  {key} per call: {(stats1.get(key, 0) - stats0.get(key, 0)) / 5:g}")
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                                torch.profiler.ProfilerActivity.CUDA]) as prof:
            op()
            torch.cuda.synchronize()
        api = [e for e in prof.key_averages() if e.key.startswith("cuda")]
        print("  CUDA API calls of one call: " + ", ".join(
            f"{e.key} x{e.count} {e.cpu_time_total / 1e3:.2f} ms" for e in api), flush=True)
        for name, fn in (("op", op), ("parts", parts)):
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
                fn()
                torch.cuda.synchronize()
            kern = sorted(prof.key_averages(), key=lambda e: -e.device_time_total)
            print(f"  GPU time of one {name} call: {sum(e.device_time_total for e in kern) / 1e3:.2f} ms; "
                  + ", ".join(f"{e.key[:40]} x{e.count} {e.device_time_total / 1e3:.3f}" for e in kern[:12]),
                  flush=True)
        stats = lambda: T.pairs_from_visited(T.attention_with_table(q, k, v, table, offsets, scale, cfg)[1],  # noqa: E731
                                             N, cfg, 4)
        print(f"  attention + pairs_from_visited: {bench(stats):.2f} ms", flush=True)
        graph = None
        try:
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                for _ in range(2):
                    op()
            torch.cuda.current_stream().wait_stream(s)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                op()
        except Exception as e:  # a sync or an allocation the graph cannot hold
            print(f"  CUDA graph capture failed: {type(e).__name__}: {str(e)[:160]}")
            graph = None
        for rnd in range(2):
            t = dict(pre=bench(lambda: T.build_index_table(q, k, scale, cfg)),
                     att=bench(lambda: T.attention_with_table(q, k, v, table, offsets, scale, cfg)),
                     op=bench(op), parts=bench(parts))
            if graph is not None:
                t["op_graph"] = bench(graph.replay)
            t["walk_table+att"] = bench(lambda: T.attention_with_table(
                q, k, v, *T.walk_table(q, k, scale, cfg), scale, cfg))
            t["parts+pairs"] = bench(lambda: T.pairs_from_visited(parts()[1], N, cfg, 4))
            t["parts+sum"] = bench(lambda: parts()[1].sum())
            t["parts+sleep"] = bench(lambda: (parts(), torch.cuda._sleep(1)))
            t["op_loop"] = loop_ms(op)
            t["parts_loop"] = loop_ms(parts)
            print(f"  round {rnd}: " + " ".join(f"{k_}={v_:.2f}" for k_, v_ in t.items())
                  + f" | op - (pre + att) = {t['op'] - t['pre'] - t['att']:+.2f} ms", flush=True)
        del q, k, v, table, offsets, graph
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
