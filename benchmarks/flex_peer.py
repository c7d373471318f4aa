"""FlexAttention peer: the block-sparse baseline run through PyTorch's own block-sparse kernel.

Why: paper_claims.py runs block-sparse tables inside S2O's kernel, which isolates the ordering
but says nothing about speed against a production block-sparse kernel. FlexAttention
(torch.nn.attention.flex_attention) is PyTorch's compile-native one: a BlockMask lists, per query
block, the kv blocks to compute, and torch.compile generates a fused Triton kernel that skips the
rest. This script builds that BlockMask from the block-sparse selection (baselines.py's block
scores) and reports its density, error and time next to dense SDPA and S2O's operator, on the
same inputs, card and run.

Selection, per (batch, kv head, S2O segment), shared by the query heads of its GQA group:
  dense    the sink's blocks, the local window's blocks and the segment's own blocks up to the
           diagonal (S2O's pass 1, kernels/layout.py `segments`, rounded out to whole blocks);
  prefix   the blocks between sink and window, ranked by baselines.block_scores (default "max":
           the best of S2O's per-key estimates in the block), most important first. Every
           segment keeps the same fraction of its prefix blocks, as many as fit the target
           density (a fraction of the N(N+1)/2 causal pairs); below the dense part's floor none.
Blocks are 128 x 128: FlexAttention's default and the size its GPU kernels are tuned for. Only
the diagonal block of a query block is partial (the causal mask_mod runs there); every other
selected block lies below the diagonal and is passed as a full block. The mask_mod also looks
up the block selection, so that eager flex_attention (which ignores block lists) computes the
same thing. The block lists are built directly (BlockMask.from_kv_blocks), nothing N x N.
Unlike S2O there is no early stop: the budget is fixed before the kernel runs, as in
MInference/FlexPrefill-style block-sparse prefill.

    python benchmarks/flex_peer.py --seq-len 131072 --densities 0.05 0.1 0.2 0.4 --device cuda \
        --out benchmarks/results/flex_peer_h100.json
    python benchmarks/flex_peer.py --device cpu      # small shapes, mechanics only
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import BlockMask, flex_attention

from baselines import BLOCK_SCORES, block_scores
from s2o_compile import S2OConfig, sparse_attention
from s2o_compile.cli_args import add_config_arguments, config_from_args
from s2o_compile.kernels.layout import segments
from s2o_compile.workload import structured_qkv

try:
    from tqdm import tqdm
except ImportError:  # progress bars are optional
    class tqdm:  # noqa: N801
        def __new__(cls, it, **_):
            return it

        write = staticmethod(print)

FLEX_BLOCK = 128
DEFAULT_DENSITIES = [0.05, 0.1, 0.2, 0.4]
DEFAULT_TAUS = [0.1, 0.3, 0.6]  # README's operator table


# ---------------------------------------------------------------- block selection

@dataclass(frozen=True)
class SegmentBlocks:
    """One S2O segment in Flex blocks: query blocks [q0, q1), rows = its query positions;
    dense kv blocks [0, sink) and [lo, diagonal]; ranked prefix blocks [sink, lo)."""
    q0: int
    q1: int
    rows: int
    sink: int
    lo: int

    @property
    def prefix(self) -> int:
        return self.lo - self.sink


def segment_blocks(n: int, cfg: S2OConfig, bs: int = FLEX_BLOCK) -> list[SegmentBlocks]:
    if cfg.segment_size % bs:
        raise ValueError(f"segment_size {cfg.segment_size} must be a multiple of the Flex block {bs}")
    out = []
    for s in segments(n, cfg.segment_size, cfg.sink_tokens, cfg.local_window):
        lo = s.lo // bs                      # the block holding key lo is dense (local window)
        sink = min(-(-s.sink_end // bs), lo)  # blocks touching the sink are dense
        out.append(SegmentBlocks(s.start // bs, -(-s.end // bs), s.end - s.start, sink, lo))
    return out


def keep_counts(n: int, cfg: S2OConfig, density: float, bs: int = FLEX_BLOCK) -> list[int]:
    """Prefix blocks each segment keeps: the same fraction of every segment's prefix, as many as
    keep the pairs computed <= density * N(N+1)/2 (none if the dense part alone exceeds it).

    Candidates are taken in order of (rank + 1/2) / prefix blocks over all segments; a prefix
    block costs rows * bs pairs (it lies wholly below the diagonal).
    """
    segs = segment_blocks(n, cfg, bs)
    budget = density * n * (n + 1) / 2 - dense_pairs(n, segs, bs)
    cands = sorted(((j + 0.5) / s.prefix, g) for g, s in enumerate(segs) for j in range(s.prefix))
    keep = [0] * len(segs)
    for _, g in cands:
        cost = segs[g].rows * bs
        if cost > budget:
            break
        budget -= cost
        keep[g] += 1
    return keep


def dense_pairs(n: int, segs: list[SegmentBlocks], bs: int) -> int:
    """Causal pairs of the always-computed blocks (sink, local window, own segment)."""
    total = 0
    for s in segs:
        for qb in range(s.q0, s.q1):
            r = min(bs, n - qb * bs)
            total += r * bs * (s.sink + qb - s.lo) + r * (r + 1) // 2
    return total


def select_blocks(q: torch.Tensor, k: torch.Tensor, scale: float, cfg: S2OConfig,
                  keep: list[int], bs: int = FLEX_BLOCK, how: str = "max"):
    """Full (below-diagonal) kv blocks of every query block: (num [B, Hkv, nqb] int32,
    indices [B, Hkv, nqb, nkb] int32, ascending; entries past num are 0 and unused).

    Per segment: sink blocks, the keep[g] best-scored prefix blocks, then the local and own
    blocks below the query block. The diagonal block is not listed (it is the partial one).
    """
    B, Hkv, n, _ = k.shape
    nb = -(-n // bs)
    num = torch.zeros(B, Hkv, nb, dtype=torch.int32, device=k.device)
    idx = torch.zeros(B, Hkv, nb, nb, dtype=torch.int32, device=k.device)
    kf = k.float()
    for g, s in enumerate(segment_blocks(n, cfg, bs)):
        chosen = torch.empty(B, Hkv, 0, dtype=torch.long, device=k.device)
        if keep[g]:
            scores = block_scores(q[:, :, s.q0 * bs:s.q0 * bs + s.rows].float(),
                                  kf[:, :, s.sink * bs:s.lo * bs], scale,
                                  cfg.replace(block_n=bs), how)  # [B, Hkv, prefix]
            order = torch.sort(torch.nan_to_num(scores, nan=-math.inf), dim=-1,
                               descending=True, stable=True).indices
            chosen = order[..., :keep[g]].sort(dim=-1).values + s.sink
        row = torch.cat([torch.arange(s.sink, device=k.device).expand(B, Hkv, -1), chosen,
                         torch.arange(s.lo, s.q1 - 1, device=k.device).expand(B, Hkv, -1)], -1)
        idx[:, :, s.q0:s.q1, :row.shape[-1]] = row[:, :, None].to(torch.int32)
        qb = torch.arange(s.q0, s.q1, dtype=torch.int32, device=k.device)
        num[:, :, s.q0:s.q1] = qb + (s.sink + keep[g] - s.lo)
    return num, idx


def block_mask(full_num: torch.Tensor, full_idx: torch.Tensor, n: int, group: int,
               bs: int = FLEX_BLOCK) -> BlockMask:
    """BlockMask over query heads: FlexAttention indexes it by query head, so the kv head's
    lists are repeated for its group. The diagonal is each query block's one partial block.

    The mask_mod is causal AND "block selected" (a [B, Hkv, nqb, nkb] lookup, block-level, not
    N x N): the compiled kernel only runs it on the diagonal blocks, where the lookup is always
    true, but eager flex_attention ignores the block lists and applies the mask_mod alone.
    """
    B, Hkv, nb = full_num.shape
    dev = full_num.device
    diag = torch.arange(nb, dtype=torch.int32, device=dev)
    listed = torch.arange(nb, device=dev) < full_num[..., None]
    selected = torch.zeros(B, Hkv, nb, nb + 1, dtype=torch.bool, device=dev)  # + unused column
    selected.scatter_(-1, torch.where(listed, full_idx, nb).long(), True)
    selected = selected[..., :nb] | torch.eye(nb, dtype=torch.bool, device=dev)

    def causal_selected(b, h, q_idx, kv_idx):
        return (q_idx >= kv_idx) & selected[b, h // group, q_idx // bs, kv_idx // bs]

    part_idx = torch.zeros_like(full_idx)
    part_idx[..., 0] = diag
    rep = lambda t: t.repeat_interleave(group, dim=1)  # noqa: E731
    return BlockMask.from_kv_blocks(rep(torch.ones_like(full_num)), rep(part_idx), rep(full_num),
                                    rep(full_idx), BLOCK_SIZE=bs, mask_mod=causal_selected,
                                    seq_lengths=(n, n))


def achieved_density(full_num: torch.Tensor, n: int, bs: int = FLEX_BLOCK) -> torch.Tensor:
    """Causal pairs computed / N(N+1)/2 per (batch, kv head): a full block holds rows x bs
    causal pairs, the diagonal one rows(rows+1)/2."""
    rows = (n - torch.arange(full_num.shape[-1], device=full_num.device) * bs).clamp(max=bs)
    pairs = (full_num.double() * rows * bs + rows * (rows + 1) / 2).sum(-1)
    return pairs / (n * (n + 1) / 2)


def flex_block_mask(q, k, scale, cfg, density, bs=FLEX_BLOCK, how="max"):
    """(BlockMask, achieved density) of the block-sparse selection at a target density."""
    n = k.shape[2]
    num, idx = select_blocks(q, k, scale, cfg, keep_counts(n, cfg, density, bs), bs, how)
    return block_mask(num, idx, n, q.shape[1] // k.shape[1], bs), achieved_density(num, n, bs)


# ---------------------------------------------------------------- the benchmark

def time_ms(fn, on_gpu: bool) -> float:
    """Median ms (triton.testing.do_bench) on CUDA; one call after one warm-up on CPU."""
    if on_gpu:
        import triton.testing
        return triton.testing.do_bench(fn, warmup=25, rep=400, return_mode="median")
    fn()
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1e3


def errors(out, ref) -> dict:
    diff = out.float() - ref
    return dict(rel_err=(diff.norm() / ref.norm()).item(), mse=(diff ** 2).mean().item())


def run_one(N, args, cfg, on_gpu, flex) -> dict:
    device = "cuda" if on_gpu else "cpu"
    dtype = getattr(torch, args.dtype)
    q, k, v = structured_qkv(1, args.heads, args.kv_heads, N, args.head_dim, dtype=dtype,
                             device=device, seed=args.seed)
    scale = args.head_dim ** -0.5
    sdpa = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)  # noqa: E731
    ref = sdpa().float()
    if on_gpu:
        from s2o_compile.bench import dense_times
        dense_ms = dense_times(q, k, v)
    else:
        dense_ms = dict(default=time_ms(sdpa, on_gpu))
    print(f"N={N} dense SDPA: " + " ".join(f"{n}={t:.2f}ms" for n, t in dense_ms.items() if t))
    segs = segment_blocks(N, cfg, args.block_size)
    floor = dense_pairs(N, segs, args.block_size) / (N * (N + 1) / 2)
    print(f"  Flex density floor (sink, window, own segment): {floor:.4f}")
    run = dict(N=N, dense_ms=dense_ms, flex_density_floor=floor, flex=[], s2o=[])

    # Flex: the full causal mask first (Flex's own dense speed), then each target density.
    for target in tqdm([1.0] + list(args.densities), desc=f"flex N={N}"):
        t0 = time.perf_counter()
        mask, dens = flex_block_mask(q, k, scale, cfg, target, args.block_size, args.score)
        if on_gpu:
            torch.cuda.synchronize()
        mask_s = time.perf_counter() - t0
        call = lambda: flex(q, k, v, block_mask=mask, scale=scale, enable_gqa=True)  # noqa: E731
        row = dict(target=target, density=dens.mean().item(), mask_s=mask_s,
                   **errors(call(), ref), flex_ms=time_ms(call, on_gpu))
        row["speedup"] = dense_ms["default"] / row["flex_ms"]
        run["flex"].append(row)
        tqdm.write(f"  flex  target={target:<5g} density={row['density']:.4f} "
                   f"rel_err={row['rel_err']:.5f} mse={row['mse']:.3e} "
                   f"flex={row['flex_ms']:.2f}ms vs default SDPA {row['speedup']:.2f}x")

    # S2O's operator on the same inputs (preprocessing included in its time).
    for tau in tqdm(args.taus, desc=f"s2o N={N}"):
        c = cfg.replace(threshold=tau)
        call = lambda: sparse_attention(q, k, v, enable_gqa=True, config=c)  # noqa: E731
        out, dens = sparse_attention(q, k, v, enable_gqa=True, config=c, return_stats=True)
        row = dict(tau=tau, density=dens.mean().item(), **errors(out, ref),
                   s2o_ms=time_ms(call, on_gpu))
        row["speedup"] = dense_ms["default"] / row["s2o_ms"]
        run["s2o"].append(row)
        tqdm.write(f"  s2o   tau={tau:<8g} density={row['density']:.4f} "
                   f"rel_err={row['rel_err']:.5f} mse={row['mse']:.3e} "
                   f"s2o={row['s2o_ms']:.2f}ms vs default SDPA {row['speedup']:.2f}x")
    return run


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seq-len", type=int, nargs="+", default=None,
                    help="tokens; several allowed (default 131072 on CUDA, 4096 on CPU)")
    ap.add_argument("--densities", type=float, nargs="+", default=DEFAULT_DENSITIES,
                    help="Flex target densities (fractions of the causal pairs)")
    ap.add_argument("--taus", type=float, nargs="+", default=DEFAULT_TAUS,
                    help="S2O thresholds run for comparison")
    ap.add_argument("--score", choices=BLOCK_SCORES, default="max",
                    help="block score (baselines.block_scores): max = best per-key estimate")
    ap.add_argument("--block-size", type=int, default=FLEX_BLOCK, help="Flex block (default 128)")
    ap.add_argument("--heads", type=int, default=None, help="query heads (default 32 CUDA, 4 CPU)")
    ap.add_argument("--kv-heads", type=int, default=None, help="kv heads (default 8 CUDA, 2 CPU)")
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--dtype", choices=["bfloat16", "float16", "float32"], default=None,
                    help="default bfloat16 on CUDA, float32 on CPU")
    ap.add_argument("--device", choices=["cpu", "cuda"], default=None)
    ap.add_argument("--eager", action="store_true",
                    help="run flex_attention without torch.compile (materializes N x N scores)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="JSON results file")
    add_config_arguments(ap, exclude=("threshold", "min_seq_len"))
    args = ap.parse_args(argv)
    args.config = config_from_args(ap, args, threshold=0.0, min_seq_len=0)
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA GPU is available")
    on_gpu = args.device == "cuda"
    args.seq_len = args.seq_len or ([131072] if on_gpu else [4096])
    args.heads = args.heads or (32 if on_gpu else 4)
    args.kv_heads = args.kv_heads or (8 if on_gpu else 2)
    args.dtype = args.dtype or ("bfloat16" if on_gpu else "float32")
    if any(not 0 < d <= 1 for d in args.densities):
        ap.error("--densities must be in (0, 1]")
    if args.config.segment_size % args.block_size:
        ap.error(f"--segment-size must be a multiple of --block-size {args.block_size}")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    on_gpu = args.device == "cuda"
    flex = flex_attention if args.eager else torch.compile(flex_attention)
    meta = dict(card=torch.cuda.get_device_name() if on_gpu else platform.processor() or "cpu",
                torch=torch.__version__, triton=_triton_version(),
                python=platform.python_version(), date=time.strftime("%Y-%m-%d"),
                heads=args.heads, kv_heads=args.kv_heads, head_dim=args.head_dim,
                dtype=args.dtype, block_size=args.block_size, score=args.score,
                flex="eager" if args.eager else "torch.compile", config=repr(args.config),
                seed=args.seed, workload="structured_qkv",
                timing="triton.testing.do_bench median" if on_gpu else "one call after a warm-up")
    print(meta)
    results = dict(meta=meta, runs=[])
    for N in args.seq_len:
        results["runs"].append(run_one(N, args, args.config, on_gpu, flex))
        if on_gpu:
            torch.cuda.empty_cache()
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
        print(f"wrote {args.out}")
    return results


def _triton_version():
    try:
        import triton
        return triton.__version__
    except ImportError:
        return None


if __name__ == "__main__":
    main()
