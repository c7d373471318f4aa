"""S2O in plain PyTorch: the CPU path and the oracle of the Triton kernels.

Written for clarity and vectorized per segment: one segment's queries are processed together, so
memory is O(segment_size * block_n) per head, never N x N. Every step mirrors the contract
(shared/design/S2O.md) and the Triton kernels tile for tile: same segments, same index table
layout (kernels/layout.py), same query tiles, same key tiles, same stop rule. Computation is in
float32; the output is cast back to the input dtype.
"""
from __future__ import annotations

import math

import torch

from ..config import S2OConfig
from .layout import heads_per_tile, query_tiles, segments, table_offsets


def _expand_heads(x: torch.Tensor, group: int) -> torch.Tensor:
    """[B, Hkv, ...] -> [B, Hkv * group, ...]: query head h reads kv head h // group."""
    return x.repeat_interleave(group, dim=1) if group > 1 else x


def segment_scores(q_seg: torch.Tensor, k_prefix: torch.Tensor, scale: float,
                   cfg: S2OConfig, first: int = 0) -> torch.Tensor:
    """Estimated logit of every prefix key for one segment: [B, Hkv, P] (float32).

    pooling="mean" is the paper's: one representative query, the mean over the segment's queries
    and, for GQA, over the query heads of the group, so one ranking serves one kv head.
    pooling="max": one mean query per (query head, pool_rows positions) and the max of their scores,
    so a key that matters to any head or query tile of the segment ranks high (heads of a GQA
    group often favour different keys, which a group mean dilutes).
    first: the position of q_seg's first query inside its segment (> 0 only in the first segment
    of a chunked prefill): the pool_rows groups stay aligned to the segment, and a group without
    queries has no representative.
    """
    B, Hq, L, D = q_seg.shape
    Hkv = k_prefix.shape[1]
    qg = q_seg.reshape(B, Hkv, Hq // Hkv, L, D)
    if cfg.pooling == "mean":
        rep = qg.mean(dim=(2, 3)).unsqueeze(2)  # [B, Hkv, 1, D]
    else:
        rows = min(cfg.pool_rows, cfg.segment_size)
        tile_of_row = (first + torch.arange(L, device=q_seg.device)) // rows
        tile_of_row = tile_of_row - tile_of_row[0]  # groups without queries: none
        tiles = int(tile_of_row[-1]) + 1
        sums = torch.zeros(B, Hkv, Hq // Hkv, tiles, D, device=q_seg.device, dtype=q_seg.dtype)
        sums.index_add_(3, tile_of_row, qg)
        counts = torch.bincount(tile_of_row, minlength=tiles).to(q_seg.dtype)
        rep = (sums / counts[:, None]).flatten(2, 3)  # [B, Hkv, group * tiles, D]
    scores = scale * rep @ k_prefix.transpose(-1, -2)  # [B, Hkv, reps, P]
    return scores.amax(dim=2)


# ordering="sort" orders by the gap to the segment's best score quantized to 1/8 logit and
# capped at 125 steps (15.6 logits below the best estimate; keys further down keep their
# original order): a 7-bit key, which the GPU sorts by counting (128 counts per block of keys,
# triton_s2o._sorted_table). On the structured workload (CPU reference,
# 16K and 32K) this matched 14-bit keys at 1/64 logit within 1% density; 1/16 logit (7.8 logits
# of range) lost keys that matter below the cap (5% error at tau 0.1).
SORT_STEPS_PER_LOGIT = 8
SORT_MAX_KEY = 126


def order_prefix(scores: torch.Tensor, cfg: S2OConfig) -> torch.Tensor:
    """Visiting order of the prefix keys (positions into the prefix), most important first:
    a stable ascending sort of priority_of(scores) (original order among equal priorities)."""
    return torch.sort(priority_of(scores, cfg), dim=-1, stable=True).indices


def priority_of(scores: torch.Tensor, cfg: S2OConfig) -> torch.Tensor:
    """Priority of each prefix key, lowest first: 1 + floor((best - score) / width), capped.

    "tiers": width tier_width, num_tiers tiers (a counting sort on the GPU).
    "sort": width 1/8 logit, 125 steps (a counting sort over blocks on the GPU).
    A NaN score gets priority 0, ahead of every finite key, so a NaN key is always visited and
    propagates as in SDPA; the best score ignores NaN.
    """
    if cfg.ordering == "sort":
        width, last = 1.0 / SORT_STEPS_PER_LOGIT, SORT_MAX_KEY - 1
    else:
        width, last = cfg.tier_width, cfg.num_tiers - 1
    best = torch.nan_to_num(scores, nan=-math.inf).amax(dim=-1, keepdim=True)
    step = torch.floor((best - scores) / width)
    prio = torch.nan_to_num(step, nan=float(last), posinf=float(last)).clamp(0, last) + 1
    return torch.where(torch.isnan(scores), 0.0, prio).to(torch.int32)


def build_index_table(q: torch.Tensor, k: torch.Tensor, scale: float,
                      cfg: S2OConfig) -> torch.Tensor:
    """The flat index table [B, R, total] int32 of absolute key positions (layout.py); R is
    Hkv, or Hq with rank_per_head (each query head ranks the keys of its kv head).
    q may be shorter than k (chunked prefill): its queries are the last positions."""
    if cfg.rank_per_head:
        k = _expand_heads(k, q.shape[1] // k.shape[1])
    B, Hkv, N, _ = k.shape
    q0 = N - q.shape[2]  # the first query's position
    parts = []
    for seg in segments(N, cfg.segment_size, cfg.sink_tokens, cfg.local_window, q0):
        if seg.prefix_len == 0:
            continue
        scores = segment_scores(q[:, :, seg.start - q0:seg.end - q0].float(),
                                k[:, :, seg.sink_end:seg.lo].float(), scale, cfg,
                                first=seg.start - seg.index * cfg.segment_size)
        parts.append((order_prefix(scores, cfg) + seg.sink_end).to(torch.int32))
    if not parts:
        return torch.empty(B, Hkv, 0, dtype=torch.int32, device=q.device)
    return torch.cat(parts, dim=-1)


def attention_with_table(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, index: torch.Tensor,
                         scale: float, cfg: S2OConfig):
    """Pass 1 (dense: sink, local, own keys) and pass 2 (ranked prefix, early stopping: the
    rule is tested after every block_n tile, and the walk ends with the walk_chunk-key chunk in
    which it first held).

    A query tile is BM positions x hpt query heads of one GQA group (layout.heads_per_tile): its
    rows stop together. q [B, Hq, L, D] may be shorter than k and v [B, Hkv, N, D] (chunked
    prefill): its queries are positions N - L .. N - 1, causal by position, and query tiles stay
    aligned to multiples of BM. Returns (out [B, Hq, L, D] in q's dtype, visited [B, Hq, tiles]
    int64: key tiles of the ranked prefix each position tile visited, from the tile holding
    the first query, pairs [B, Hq] int64: QK pairs computed).
    """
    B, Hq, L_all, D = q.shape
    Hkv, N = k.shape[1], k.shape[2]
    q0 = N - L_all  # the first query's position
    group = Hq // Hkv
    hpt = heads_per_tile(group, cfg.block_m, cfg.pack_gqa)
    BM, BN, tau = cfg.block_m // hpt, cfg.block_n, float(cfg.threshold)
    out = torch.empty(B, Hq, L_all, D, dtype=q.dtype, device=q.device)
    visited = torch.zeros(B, Hq, query_tiles(L_all, N, BM), dtype=torch.int64,
                          device=q.device)
    pairs = torch.zeros(B, Hq, dtype=torch.int64, device=q.device)
    offsets = table_offsets(N, cfg.segment_size, cfg.sink_tokens, cfg.local_window,
                            q_start=q0).tolist()
    kf, vf = k.float(), v.float()
    kv_group = group  # query heads per table row
    if cfg.rank_per_head:  # one table row per query head: gather from per-head copies of K/V
        kf, vf, kv_group = _expand_heads(kf, group), _expand_heads(vf, group), 1

    for seg in segments(N, cfg.segment_size, cfg.sink_tokens, cfg.local_window, q0):
        g = seg.index
        qs = q[:, :, seg.start - q0:seg.end - q0].float() * scale
        qpos = torch.arange(seg.start, seg.end, device=q.device)

        # Pass 1: dense over sink + [lo, end), causal by original position.
        kpos = torch.cat([torch.arange(0, seg.sink_end), torch.arange(seg.lo, seg.end)]).to(q.device)
        k1 = _expand_heads(kf[:, :, kpos], kv_group)
        v1 = _expand_heads(vf[:, :, kpos], kv_group)
        s = qs @ k1.transpose(-1, -2)  # [B, Hq, L, K1]
        s = s.masked_fill(kpos[None, :] > qpos[:, None], -math.inf)
        m = s.amax(dim=-1)
        p = torch.exp(s - m[..., None])
        l = p.sum(dim=-1)
        acc = p @ v1
        pairs += (seg.sink_end + (qpos - seg.lo + 1)).sum()

        # Pass 2: the ranked prefix, tile by tile; each query tile stops on its own.
        table = index[:, :, offsets[g]:offsets[g + 1]].long()
        P = table.shape[-1]
        qt0 = seg.start // BM  # the segment's first query tile (a chunk's may be partial)
        n_qt = (seg.end - 1) // BM - qt0 + 1
        tile_of_row = qpos // BM - qt0
        rows_per_tile = torch.bincount(tile_of_row, minlength=n_qt)
        qt0 -= q0 // BM  # as an index of visited
        active = torch.ones(B, Hq, n_qt, dtype=torch.bool, device=q.device)
        stopped = torch.zeros_like(active)  # the rule held in this chunk: walk to its end
        for t0 in range(0, P, BN):
            if not bool(active.any()):
                break
            idx = table[:, :, t0:t0 + BN]  # [B, Hkv (Hq with rank_per_head), bn]
            kt = _expand_heads(torch.gather(kf, 2, idx[..., None].expand(-1, -1, -1, D)), kv_group)
            vt = _expand_heads(torch.gather(vf, 2, idx[..., None].expand(-1, -1, -1, D)), kv_group)
            s = qs @ kt.transpose(-1, -2)  # [B, Hq, L, bn]
            m_new = torch.maximum(m, s.amax(dim=-1))
            alpha = torch.exp(m - m_new)
            p = torch.exp(s - m_new[..., None])
            gain = p.sum(dim=-1)
            l_new = l * alpha + gain
            row_active = active[:, :, tile_of_row]  # [B, Hq, L]
            m = torch.where(row_active, m_new, m)
            l = torch.where(row_active, l_new, l)
            acc = torch.where(row_active[..., None], acc * alpha[..., None] + p @ vt, acc)
            visited[:, :, qt0:qt0 + n_qt] += active
            pairs += (active * rows_per_tile).sum(-1) * idx.shape[-1]
            # Stop rule, over each query tile's rows (all hpt heads): stop once gain * left < tau * l
            # on every row, or for "mean" once the rows' mean of gain * left / l is below tau.
            left = math.ceil(max(P - t0 - BN, 0) / BN) if cfg.stop_rule != "gain" else 1
            if cfg.stop_rule == "mean":
                stop = _tile_sum(gain * left / l_new, tile_of_row, n_qt, hpt) < tau * hpt * rows_per_tile
            else:  # no row still gaining (a NaN ratio keeps the tile walking, as in the kernel)
                keep = (~(gain * left < tau * l_new)).to(torch.int64)
                stop = _tile_sum(keep, tile_of_row, n_qt, hpt) == 0
            stopped |= stop.expand(B, Hq // hpt, hpt, n_qt).reshape(B, Hq, n_qt)
            if (t0 + BN) % cfg.walk_chunk == 0:  # a chunk's last tile: decide
                active &= ~stopped
        out[:, :, seg.start - q0:seg.end - q0] = (acc / l[..., None]).to(q.dtype)
    return out, visited, pairs


def _tile_sum(x: torch.Tensor, tile_of_row: torch.Tensor, n_qt: int, hpt: int) -> torch.Tensor:
    """[B, Hq, L] per-row values -> their sum over each query tile's rows and its hpt heads:
    [B, Hq // hpt, 1, n_qt]."""
    B, Hq = x.shape[:2]
    sums = torch.zeros(B, Hq, n_qt, dtype=x.dtype, device=x.device).index_add_(2, tile_of_row, x)
    return sums.view(B, Hq // hpt, hpt, n_qt).sum(2, keepdim=True)


def s2o_attention_reference(q, k, v, scale: float, cfg: S2OConfig):
    """Full S2O on [B, Hq, L, D] / [B, Hkv, N, D] (L = N, or L < N for the last L positions of
    a chunked prefill): returns (out, visited, pairs)."""
    index = build_index_table(q, k, scale, cfg)
    return attention_with_table(q, k, v, index, scale, cfg)
