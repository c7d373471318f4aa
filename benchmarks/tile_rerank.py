"""Would ranking per query tile lower the density at a given error? A CPU experiment.

S2O ranks a segment's prefix once (pooled queries of 2048 positions) and every 64-query tile
walks that order. Session 3's oracle put the tile's own order well ahead (at 2% row error,
128K: 0.068 vs 0.087 with an oracle stop). Re-ranking a whole prefix per tile is too costly
(a sort per tile), but the walk rarely goes past the table's first few thousand entries: this
script re-ranks only the front `--front` entries of the segment order per tile, by the tile's
mean query (the same 1/8-logit priorities, or `--buckets` coarse classes, a cheap partition),
and runs the reference walk (stop rule "remaining", block_n 128) on each order.

    python benchmarks/tile_rerank.py --seq-len 16384 --taus 0.3 0.6 0.75 0.9

Reports density (pairs / causal pairs) and relative error against dense SDPA per variant.
Pure PyTorch on the CPU (float32), memory O(tiles x prefix) per segment.
"""
import argparse
import math

import torch
import torch.nn.functional as F

from s2o_compile import S2OConfig
from s2o_compile.kernels import reference as R
from s2o_compile.kernels.layout import segments, table_offsets
from s2o_compile.workload import structured_qkv


def tile_orders(table, q_tiles_mean, kf, scale, front, buckets):
    """Per-tile visiting order [B, H, T, P]: the segment order with its first `front` entries
    re-sorted (stably) by the tile's mean-query score; buckets 0 keeps the segment order,
    None sorts by 1/8-logit priorities, (n, width) by n classes of width logits (the last
    class holds the rest): a stable partition, which a kernel could do with n prefix sums."""
    B, H, P = table.shape
    T = q_tiles_mean.shape[2]
    orders = table[:, :, None, :].expand(B, H, T, P).clone()
    if buckets == 0 or P == 0:
        return orders
    n = min(front, P)
    cand = table[:, :, :n].long()  # [B, H, n]
    kc = torch.gather(kf, 2, cand[..., None].expand(-1, -1, -1, kf.shape[-1]))  # [B, H, n, D]
    s = scale * q_tiles_mean @ kc.transpose(-1, -2)  # [B, H, T, n]
    gap = s.amax(-1, keepdim=True) - s
    if buckets is None:
        prio = torch.floor(gap * R.SORT_STEPS_PER_LOGIT).clamp(max=R.SORT_MAX_KEY - 1)
    else:
        count, width = buckets
        prio = torch.floor(gap / width).clamp(max=count - 1)
    perm = torch.sort(prio, dim=-1, stable=True).indices
    orders[..., :n] = torch.gather(cand[:, :, None, :].expand(B, H, T, n), 3, perm).to(orders.dtype)
    return orders


def walk(q, k, v, table, scale, cfg, front, buckets, rank_block=None):
    """reference.attention_with_table with one order per (head, query tile), ranked by the mean
    query of the tile's rank_block positions (default: the tile). Returns (out, pairs)."""
    B, Hq, N, D = q.shape
    group = Hq // k.shape[1]
    BM, BN, tau = cfg.block_m, cfg.block_n, float(cfg.threshold)
    rank_block = rank_block or BM
    kf = R._expand_heads(k.float(), group)
    vf = R._expand_heads(v.float(), group)
    out = torch.empty(B, Hq, N, D)
    pairs = 0
    offsets = table_offsets(N, cfg.segment_size, cfg.sink_tokens, cfg.local_window).tolist()
    for g, seg in enumerate(segments(N, cfg.segment_size, cfg.sink_tokens, cfg.local_window)):
        L = seg.end - seg.start
        assert L % BM == 0, "the experiment needs whole query tiles"
        T = L // BM
        qs = q[:, :, seg.start:seg.end].float() * scale
        qpos = torch.arange(seg.start, seg.end)
        kpos = torch.cat([torch.arange(0, seg.sink_end), torch.arange(seg.lo, seg.end)])
        s = (qs @ kf[:, :, kpos].transpose(-1, -2)).masked_fill(kpos[None, :] > qpos[:, None],
                                                                -math.inf)
        m = s.amax(-1)
        p = torch.exp(s - m[..., None])
        l, acc = p.sum(-1), p @ vf[:, :, kpos]
        pairs += Hq * B * int((seg.sink_end + (qpos - seg.lo + 1)).sum())
        table_g = table[:, :, offsets[g]:offsets[g + 1]]
        P = table_g.shape[-1]
        if P:
            rb = min(rank_block, L)  # queries per ranking block: tiles of a block share its order
            qb = q[:, :, seg.start:seg.end].float().view(B, Hq, L // rb, rb, D).mean(3)
            orders = tile_orders(table_g, qb, kf, scale, front, buckets)  # [B, H, L / rb, P]
            orders = orders.repeat_interleave(rb // BM, dim=2)  # [B, H, T, P]
            m, l = m.view(B, Hq, T, BM), l.view(B, Hq, T, BM)
            acc = acc.view(B, Hq, T, BM, D)
            qs_t = qs.view(B, Hq, T, BM, D)
            active = torch.ones(B, Hq, T, dtype=torch.bool)
            stopped = torch.zeros_like(active)  # as the reference: walk to the chunk's end
            for t0 in range(0, P, BN):
                if not bool(active.any()):
                    break
                idx = orders[..., t0:t0 + BN].long()  # [B, H, T, bn]
                bn = idx.shape[-1]
                flat = idx.reshape(B, Hq, T * bn, 1).expand(-1, -1, -1, D)
                kt = torch.gather(kf, 2, flat).view(B, Hq, T, bn, D)
                vt = torch.gather(vf, 2, flat).view(B, Hq, T, bn, D)
                s = qs_t @ kt.transpose(-1, -2)  # [B, H, T, BM, bn]
                m_new = torch.maximum(m, s.amax(-1))
                alpha = torch.exp(m - m_new)
                p = torch.exp(s - m_new[..., None])
                gain = p.sum(-1)
                l_new = l * alpha + gain
                a = active[..., None]
                m, l = torch.where(a, m_new, m), torch.where(a, l_new, l)
                acc = torch.where(a[..., None], acc * alpha[..., None] + p @ vt, acc)
                pairs += int(active.sum()) * BM * bn
                left = math.ceil(max(P - t0 - BN, 0) / BN)
                keep = ~(gain * left < tau * l_new)
                stopped |= ~keep.any(-1)
                if (t0 + BN) % cfg.walk_chunk == 0:
                    active &= ~stopped
            m, l, acc = m.reshape(B, Hq, L), l.reshape(B, Hq, L), acc.reshape(B, Hq, L, D)
        out[:, :, seg.start:seg.end] = acc / l[..., None]
    return out, pairs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seq-len", type=int, default=16384)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--taus", type=float, nargs="+", default=[0.3, 0.6, 0.75, 0.9])
    ap.add_argument("--fronts", type=int, nargs="+", default=[2048, 8192])
    ap.add_argument("--sort-only", action="store_true", help="only the 1/8-logit sort variants")
    ap.add_argument("--rank-block", type=int, default=64,
                    help="queries whose mean ranks the front (a multiple of block_m)")
    args = ap.parse_args()
    torch.manual_seed(0)
    N, D = args.seq_len, 128
    q, k, v = structured_qkv(1, args.heads, args.kv_heads, N, D, dtype=torch.bfloat16)
    scale = D ** -0.5
    dense = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=True,
                                           enable_gqa=True)
    causal = args.heads * N * (N + 1) // 2
    base = S2OConfig(min_seq_len=0)
    table = R.build_index_table(q, k, scale, base)
    variants = [("segment order", 0, 0)] + [
        (f"front {f}, {name}", f, b) for f in args.fronts
        for name, b in (("1/8-logit sort", None), ("2 classes: within 2 logits", (2, 2.0)),
                        ("4 classes of 1 logit", (4, 1.0)), ("16 classes of 0.5 logit", (16, 0.5)))
        if b is None or not args.sort_only]
    print(f"N={N} heads {args.heads}/{args.kv_heads}, structured workload, defaults but tau; "
          f"ranking blocks of {args.rank_block} queries")
    for tau in args.taus:
        cfg = base.replace(threshold=tau)
        for name, front, buckets in variants:
            out, pairs = walk(q, k, v, table, scale, cfg, front, buckets, args.rank_block)
            err = ((out - dense).norm() / dense.norm()).item()
            print(f"  tau={tau:<5g} {name:32s} density={pairs / causal:.4f} err={err:.4f}",
                  flush=True)


if __name__ == "__main__":
    main()
