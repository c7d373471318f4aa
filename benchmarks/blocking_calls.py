"""Which call of the op blocks the host: each piece is called while the GPU is busy with a
50 ms sleep kernel; a piece whose host time is ~50 ms waited for the GPU (a hidden sync).

    python benchmarks/blocking_calls.py 65536
"""
import sys
import time

import torch

from s2o_compile import S2OConfig
from s2o_compile.kernels import triton_s2o as T
from s2o_compile.workload import structured_qkv


def host_ms(fn):
    torch.cuda.synchronize()
    torch.cuda._sleep(50_000_000)  # ~25-50 ms of GPU time, depending on the clock
    t0 = time.perf_counter()
    fn()
    t = (time.perf_counter() - t0) * 1e3
    torch.cuda.synchronize()
    return t


def main():
    N = int(sys.argv[1]) if len(sys.argv) > 1 else 65536
    cfg = S2OConfig(threshold=0.8, min_seq_len=0)
    q, k, v = structured_qkv(1, 32, 8, N, 128, device="cuda")
    scale = 128 ** -0.5
    table, offsets = T.build_index_table(q, k, scale, cfg)
    out, visited = T.attention_with_table(q, k, v, table, offsets, scale, cfg)
    pieces = {
        "build_index_table": lambda: T.build_index_table(q, k, scale, cfg),
        "attention_with_table": lambda: T.attention_with_table(q, k, v, table, offsets, scale, cfg),
        "pairs_from_visited": lambda: T.pairs_from_visited(visited, N, cfg, 4),
        "s2o_attention": lambda: T.s2o_attention(q, k, v, scale, cfg),
        "empty": lambda: None,
    }
    for _ in range(2):
        for name, fn in pieces.items():
            print(f"N={N} {name:22s} host {host_ms(fn):8.3f} ms", flush=True)


if __name__ == "__main__":
    main()
