"""The GPU timeline of a few back-to-back calls (L2 flushed before each, as do_bench does):
each kernel's start, duration and the idle gap before it, for the whole op (walk.s2o_attention,
the op's path) and for its two parts called directly (build_index_table + walk.attention). A
gap shows the GPU waiting for the host. Then each kernel's mean time per call, summed by name
(the L2 flush's fill among them).

    python benchmarks/gpu_timeline.py 65536 131072
"""
import json
import sys
import tempfile

import torch

from s2o_compile import S2OConfig
from s2o_compile.kernels import triton_s2o as T
from s2o_compile.kernels import walk as W
from s2o_compile.workload import structured_qkv


def main():
    for N in [int(a) for a in sys.argv[1:]] or [65536]:
        timeline(N)


def timeline(N):
    cfg = S2OConfig(threshold=0.8, min_seq_len=0)
    q, k, v = structured_qkv(1, 32, 8, N, 128, device="cuda")
    scale = 128 ** -0.5
    cache = torch.empty(256 * 2**20, dtype=torch.int8, device="cuda")
    op = lambda: W.s2o_attention(q, k, v, scale, cfg)  # noqa: E731
    parts = lambda: W.attention(q, k, v, *T.build_index_table(q, k, scale, cfg),  # noqa: E731
                                scale, cfg)
    for name, fn in (("op", op), ("parts", parts)):
        for _ in range(3):
            fn()
        torch.cuda.synchronize()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                                torch.profiler.ProfilerActivity.CUDA]) as prof:
            for _ in range(4):
                cache.zero_()
                fn()
            torch.cuda.synchronize()
        with tempfile.NamedTemporaryFile(suffix=".json") as f:
            prof.export_chrome_trace(f.name)
            events = json.load(open(f.name))["traceEvents"]
        ev = sorted((e for e in events if e.get("cat") in ("kernel", "gpu_memset", "gpu_memcpy")),
                    key=lambda e: e["ts"])
        t0, prev = ev[0]["ts"], None
        span = (ev[-1]["ts"] + ev[-1]["dur"] - t0) / 1e3
        print(f"== N={N} {name}: {len(ev)} GPU events, span {span:.2f} ms")
        per_name = {}
        for e in ev:
            per_name[e["name"][:60]] = per_name.get(e["name"][:60], 0) + e["dur"] / 4e3
        for n_, ms in sorted(per_name.items(), key=lambda x: -x[1]):
            print(f"  {ms:8.3f} ms per call  {n_}")
        for e in ev:  # kernels over 0.1 ms, and anything after a gap over 20 us
            gap = 0 if prev is None else e["ts"] - (prev["ts"] + prev["dur"])
            if gap > 20 or e["dur"] > 100:
                print(f"  +{(e['ts'] - t0) / 1e3:8.3f} ms dur {e['dur'] / 1e3:7.3f} gap {gap / 1e3:6.3f}  "
                      f"{e['name'][:50]}")
            prev = e


if __name__ == "__main__":
    main()
