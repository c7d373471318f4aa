"""Kernel A/B timings on one card: attention-kernel variants (tile shape, GQA packing, warps,
walk chunk, stages) at a few thresholds, and preprocessing variants, on the structured workload.

    python benchmarks/kernel_ab.py --seq-lens 32768 131072 --taus 0 0.1 0.3

Every variant reports time (do_bench median), density and relative error against dense SDPA, so
that a faster tile shape which walks further (coarser stop) is visible as such.
"""
import argparse
import importlib
import inspect

import torch
import torch.nn.functional as F
import triton

from s2o_compile import S2OConfig
from s2o_compile.kernels import triton_s2o as T
from s2o_compile.kernels.layout import causal_pairs, prefix_lengths, table_offsets
from s2o_compile.workload import structured_qkv

# [module:]block_m, block_n, warps, walk chunk, stages, pack_gqa[, NAME=int ...]; module names a
# copy of the kernels module in s2o_compile.kernels (an earlier version, for a same-run A/B);
# NAME=int are launch options (maxnreg=168) or the kernel's switches (LONGEST_FIRST=0)
VARIANTS = ["64,64,4,8,3,0", "64,64,4,8,3,1", "128,64,8,8,3,1", "128,64,8,4,3,1",
            "128,128,8,4,3,1", "128,64,8,8,2,1"]
# [module:]ordering, pool_rows (module: an earlier kernels module, as for VARIANTS)
PREPROCESS = ["sort,64", "sort,128", "sort,256", "tiers,64"]


def kernels_module(spec):
    """'[module:]rest' -> (name for the log, the kernels module, rest): module is a copy of
    triton_s2o.py in s2o_compile/kernels (an earlier version), else the current one."""
    mod, _, rest = spec.rpartition(":")
    if not mod:
        return "current", T, rest
    return mod, importlib.import_module(f"s2o_compile.kernels.{mod}"), rest


def bench(fn):
    return triton.testing.do_bench(fn, warmup=25, rep=300, return_mode="median")


def rel_err(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def density(visited, N, cfg):
    """Mean density of a whole prefill's attention run (Llama's GQA group of 4)."""
    return (T.pairs_from_visited(visited, N, cfg, 4).double() / causal_pairs(N, N)).mean().item()


def llama_inputs(N):
    """Llama-3.1-8B attention inputs of the structured workload at N tokens, with dense SDPA:
    (q, k, v, sdpa (the call), its output, its median ms); prints the time."""
    q, k, v = structured_qkv(1, 32, 8, N, 128, device="cuda")
    sdpa = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)  # noqa: E731
    ref = sdpa()
    dense = bench(sdpa)
    print(f"N={N} dense default {dense:.2f} ms", flush=True)
    return q, k, v, sdpa, ref, dense


def key_order_table(N, cfg, rows, device):
    """The index table with every segment's prefix in position order: [1, rows, total]."""
    lens = prefix_lengths(N, cfg.segment_size, cfg.sink_tokens, cfg.local_window, device)
    offsets = table_offsets(N, cfg.segment_size, cfg.sink_tokens, cfg.local_window, device)
    seg = torch.repeat_interleave(torch.arange(len(lens), device=device), lens)
    sink_end = torch.clamp(seg * cfg.segment_size, max=cfg.sink_tokens)
    pos = torch.arange(len(seg), device=device) - offsets[seg] + sink_end
    return pos.to(torch.int32).expand(1, rows, -1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seq-lens", type=int, nargs="+", default=[32768, 131072])
    ap.add_argument("--taus", type=float, nargs="+", default=[0.0, 0.1, 0.3])
    ap.add_argument("--variants", nargs="+", default=VARIANTS)
    ap.add_argument("--preprocess", nargs="*", default=PREPROCESS)
    ap.add_argument("--key-order", action="store_true",
                    help="also time tau 0 through a table in key order (same kernel, contiguous "
                         "rows): the cost of scattered rows versus the kernel's own")
    args = ap.parse_args()
    for N in args.seq_lens:
        q, k, v, sdpa, ref, dense = llama_inputs(N)
        with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.FLASH_ATTENTION):
            flash = sdpa()
        print(f"  FLASH backend's output against the default's: err={rel_err(flash, ref):.4f} "
              "(two exact kernels: the floor of err at tau 0)", flush=True)
        del flash
        base = S2OConfig(min_seq_len=0)
        tables = {}  # per rank_per_head: packed tiles share one walk, so they rank per kv head
        for tau in args.taus:
            for spec in args.variants:
                name, K, shape = kernels_module(spec)
                fields = shape.split(",")
                bm, bn, nw, chunk, st, pack = (int(x) for x in fields[:6])
                opts = {name: int(x) for name, x in (f.split("=") for f in fields[6:])}
                # walk chunk in steps of min(block_n, 64) keys: the current module reads it from
                # cfg.walk_chunk, one before session 8 as its chunk argument
                cfg = base.replace(threshold=tau, block_m=bm, block_n=bn, pack_gqa=bool(pack),
                                   rank_per_head=base.rank_per_head and not pack,
                                   walk_chunk=chunk * min(bn, T.SUB_TILE_N))
                if "chunk" in inspect.signature(K.attention_with_table).parameters:
                    opts["chunk"] = chunk
                if cfg.rank_per_head not in tables:
                    tables[cfg.rank_per_head] = T.build_index_table(q, k, 128 ** -0.5, cfg)
                table, offsets = tables[cfg.rank_per_head]
                run = lambda: K.attention_with_table(q, k, v, table, offsets, 128 ** -0.5, cfg,  # noqa: E731
                                                     num_warps=nw, num_stages=st, **opts)
                try:
                    out, vis = run()
                    d = density(vis, N, cfg)
                    t = bench(run)
                    print(f"  {name} tau={tau:<5g} BM={bm:3d} BN={bn:3d} warps={nw} chunk={chunk} stages={st} "
                          f"pack={pack} {','.join(fields[6:])}: {t:8.2f} ms density={d:.3f} err={rel_err(out, ref):.4f} "
                          f"eff={t / (d * dense):.2f}", flush=True)
                except Exception as e:
                    print(f"  {spec}: FAILED {type(e).__name__}: {str(e)[:200]}", flush=True)
        if args.key_order:
            cfg = base.replace(threshold=0.0)
            table, offsets = T.build_index_table(q, k, 128 ** -0.5, cfg)
            table.copy_(key_order_table(N, cfg, table.shape[1], q.device))
            run = lambda: T.attention_with_table(q, k, v, table, offsets, 128 ** -0.5, cfg)  # noqa: E731
            out, _ = run()
            print(f"  tau=0 key-order table (contiguous rows): {bench(run):8.2f} ms "
                  f"err={rel_err(out, ref):.4f}", flush=True)
        del table, tables
        modules = {}  # kernels module -> its profiled preprocessing
        for spec in args.preprocess:
            name, K, shape = kernels_module(spec)
            ordering, pool = shape.split(",")
            c = base.replace(ordering=ordering, pool_rows=int(pool))
            t = bench(lambda: K.build_index_table(q, k, 128 ** -0.5, c))
            tab, off = K.build_index_table(q, k, 128 ** -0.5, c)
            same = ""
            if K is not T:  # an earlier kernels module: is its table the current one's?
                cur, _ = T.build_index_table(q, k, 128 ** -0.5, c)
                same = f" table equal to current: {(cur == tab).float().mean().item():.6f}"
                del cur
            c3 = c.replace(threshold=max(args.taus))
            out, vis = T.attention_with_table(q, k, v, tab, off, 128 ** -0.5, c3)
            d = (T.pairs_from_visited(vis, N, c3, 4).double() / (N * (N + 1) / 2)).mean().item()
            print(f"  preprocess {name} {ordering} pool_rows={pool}: {t:.2f} ms ({100 * t / dense:.1f}% of "
                  f"dense); at tau {c3.threshold:g} density={d:.3f} err={rel_err(out, ref):.4f}{same}", flush=True)
            del tab
            modules.setdefault(name, (K, c))
        for name, (K, c) in (modules or {"current": (T, base)}).items():
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
                K.build_index_table(q, k, 128 ** -0.5, c)
                torch.cuda.synchronize()
            print(f"  profile of {name}'s preprocessing:", flush=True)
            print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=12), flush=True)
        del q, k, v, ref
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
