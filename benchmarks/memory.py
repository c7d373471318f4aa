"""Peak GPU memory of one attention call: S2O's op vs dense SDPA, at long N.

    python benchmarks/memory.py --seq-lens 131072 262144 --out results.json

Llama-3.1-8B attention shapes (B 1, Hq 32, Hkv 8, D 128, bf16) on the structured workload. For
each method: the peak memory allocated during the call above what was allocated before it (the
inputs), the output's own size, and what remains besides it (workspace: for S2O the index table,
its scores and the sort's buffers). S2O's index table is reported against the layer's K + V.
"""
import argparse
import json
import time

import torch
import torch.nn.functional as F
import triton

import s2o_compile
from s2o_compile import S2OConfig
from s2o_compile.kernels.layout import table_heads, table_size
from s2o_compile.workload import structured_qkv

GiB = 2 ** 30


def peak_extra(fn):
    """(result, peak bytes above the memory allocated before the call, seconds)."""
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    out = fn()
    torch.cuda.synchronize()
    return out, torch.cuda.max_memory_allocated() - before, time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seq-lens", type=int, nargs="+", default=[131072, 262144])
    ap.add_argument("--threshold", type=float, default=S2OConfig.threshold)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    cfg = S2OConfig(threshold=args.threshold)
    rows = []
    for N in args.seq_lens:
        q, k, v = structured_qkv(1, 32, 8, N, 128, device="cuda")
        out_bytes = q.numel() * q.element_size()
        kv_bytes = 2 * k.numel() * k.element_size()
        row = dict(N=N, threshold=args.threshold, output_gib=out_bytes / GiB, kv_gib=kv_bytes / GiB,
                   index_table_gib=table_heads(q.shape[1], k.shape[1], cfg.rank_per_head) * 4 / GiB
                   * table_size(N, cfg.segment_size, cfg.sink_tokens, cfg.local_window))
        sdpa = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)  # noqa: E731
        s2o = lambda: s2o_compile.sparse_attention(q, k, v, enable_gqa=True, config=cfg,  # noqa: E731
                                                   return_stats=True)
        for name, fn in [("dense_sdpa", sdpa), ("s2o", s2o)]:
            fn()  # compile / warm up outside the measurement
            res, peak, secs = peak_extra(fn)
            row[f"{name}_peak_extra_gib"] = peak / GiB
            row[f"{name}_workspace_gib"] = (peak - out_bytes) / GiB
            row[f"{name}_call_s"] = secs
            if name == "dense_sdpa":
                ref = res
            else:
                out, density = res
                row["s2o_density"] = density.mean().item()
                row["s2o_rel_err"] = ((out.float() - ref.float()).norm() / ref.float().norm()).item()
            del res
        del ref, out
        rows.append(row)
        print(json.dumps(row), flush=True)
        del q, k, v
        torch.cuda.empty_cache()
        if args.out:
            json.dump(dict(card=torch.cuda.get_device_name(), torch=torch.__version__,
                           triton=triton.__version__, config=repr(cfg), rows=rows),
                      open(args.out, "w"), indent=1)


if __name__ == "__main__":
    main()
