"""S2O on the GPU: Triton kernels for ranking and for gathered-load attention with early stopping.

Pipeline (all on the device, no host sync, CUDA-graph safe):
  1. _pool_queries_kernel: representative queries: per (query head, block_m-row tile) for
     pooling="max", per segment averaged over the GQA group's heads for pooling="mean".
  2. _prefix_scores_kernel: estimated logits of every prefix key for every segment, written to a
     flat float32 buffer laid out like the index table; a key chunk is loaded once and scored
     against all segments (a real matrix product), with the segment's best score by atomic max.
  3. ordering="sort" (default): a stable 16-bit radix sort (torch.sort of int16 priorities on a
     padded copy); ordering="tiers": _tier_table_kernel, a stable counting sort by tier (two
     passes: histogram, then scatter). Both follow reference.priority_of.
  4. _s2o_attention_kernel: per (query tile, batch * query head): pass 1 dense over the sink and
     [lo, tile end) with the causal mask; pass 2 walks the index table tile by tile, gathering K/V
     rows by index (an inner for loop over WALK_CHUNK tiles, which Triton pipelines), and stops
     when the stop rule holds on every row of the tile.
Semantics equal kernels/reference.py tile for tile; layout.py defines the table.
"""
from __future__ import annotations


import torch
import triton
import triton.language as tl
from torch.library import wrap_triton

from ..config import S2OConfig
from .layout import num_segments, segments, table_offsets, table_size
from .reference import SORT_MAX_KEY, SORT_STEPS_PER_LOGIT

HEAD_DIMS = (16, 32, 64, 128, 256)
WALK_CHUNK = 8  # tiles per pipelined chunk of the gathered walk (1: plain while loop)
SCORE_TILES = (64, 128, 8)  # prefix-score kernel: rep rows, keys per program, warps


def unsupported_reason(q: torch.Tensor) -> str | None:
    """Why the Triton kernels cannot run these inputs (None when they can)."""
    if q.shape[-1] not in HEAD_DIMS:
        return f"head_dim {q.shape[-1]} not in {HEAD_DIMS}"
    return None


@triton.jit
def _pool_queries_kernel(Q, REP, stride_qb, stride_qh, stride_qn, N, H_KV, GROUP, N_REP,
                         SEG: tl.constexpr, ROWS: tl.constexpr, HPR: tl.constexpr,
                         REPS: tl.constexpr, TP: tl.constexpr, RB: tl.constexpr, D: tl.constexpr):
    """Representative query r of segment r // TP: the mean of HPR query heads over ROWS rows.
    Rows j = r % TP >= REPS of a segment are padding (the scores kernel masks them)."""
    r = tl.program_id(0)
    bhk = tl.program_id(1)
    b = bhk // H_KV
    hk = bhk % H_KV
    g = r // TP
    j = r % TP
    slots = GROUP // HPR  # head slots per query tile
    t = j // slots
    r0 = g * SEG + t * ROWS
    r1 = tl.minimum(tl.minimum(r0 + ROWS, N), (g + 1) * SEG)
    r1 = tl.where(j < REPS, r1, r0)
    offs_d = tl.arange(0, D)
    acc = tl.zeros([D], dtype=tl.float32)
    for hh in range(0, HPR):
        head = hk * GROUP + (j % slots) * HPR + hh
        base = Q + b.to(tl.int64) * stride_qb + head.to(tl.int64) * stride_qh
        for row in range(r0, r1, RB):
            rows = row + tl.arange(0, RB)
            x = tl.load(base + rows[:, None].to(tl.int64) * stride_qn + offs_d[None, :],
                        mask=(rows < r1)[:, None], other=0.0)
            acc += tl.sum(x.to(tl.float32), axis=0)
    cnt = tl.maximum(HPR * (r1 - r0), 1).to(tl.float32)
    tl.store(REP + (bhk.to(tl.int64) * N_REP + r) * D + offs_d, acc / cnt)


@triton.jit
def _prefix_scores_kernel(K, REP, SCORES, SEGMAX, OFFSETS, stride_kb, stride_kh, stride_kn,
                          N, H_KV, GROUP, N_SEG, TOTAL, scale, SINK, LOCAL,
                          SEG: tl.constexpr, ROWS: tl.constexpr, HPR: tl.constexpr,
                          REPS: tl.constexpr, TP: tl.constexpr, RB: tl.constexpr,
                          BK: tl.constexpr, D: tl.constexpr, IEEE: tl.constexpr):
    scale = tl.cast(scale, tl.float32)
    c0 = tl.program_id(0) * BK
    bhk = tl.program_id(1)
    b = bhk // H_KV
    hk = bhk % H_KV
    cols = c0 + tl.arange(0, BK)
    offs_d = tl.arange(0, D)
    kc = tl.load(K + b.to(tl.int64) * stride_kb + hk.to(tl.int64) * stride_kh
                 + cols[:, None].to(tl.int64) * stride_kn + offs_d[None, :],
                 mask=(cols < N)[:, None], other=0.0)
    SB: tl.constexpr = RB // TP
    n_rep = N_SEG * TP
    # A key j is in segment g's prefix iff sink_end(g) <= j < g * SEG - LOCAL.
    g_first = (c0 + LOCAL + SINK) // SEG
    rep_base = REP + bhk.to(tl.int64) * n_rep * D
    for rb in range((g_first * TP) // RB * RB, n_rep, RB):
        rows = rb + tl.arange(0, RB)
        j = rows % TP
        row_ok = (rows < n_rep) & (j < REPS) \
            & ((rows // TP) * SEG + (j // (GROUP // HPR)) * ROWS < N)
        rep = tl.load(rep_base + rows[:, None] * D + offs_d[None, :],
                      mask=row_ok[:, None], other=0.0)
        if IEEE:
            s = tl.dot(rep, tl.trans(kc), input_precision="ieee") * scale
        else:
            s = tl.dot(rep.to(kc.dtype), tl.trans(kc)) * scale
        s = tl.where(row_ok[:, None], s, float("-inf"))
        smax = tl.max(tl.reshape(s, (SB, TP, BK)), axis=1)
        # max is maxnum (drops NaN): keep a NaN key NaN, so that it ranks first (priority_of)
        nan_key = tl.max(tl.reshape((s != s).to(tl.int32), (SB, TP, BK)), axis=1) > 0
        smax = tl.where(nan_key, float("nan"), smax)
        segs = rb // TP + tl.arange(0, SB)
        s0 = segs * SEG
        sink_end = tl.minimum(s0, SINK)
        lo = tl.maximum(s0 - LOCAL, sink_end)
        valid = (cols[None, :] >= sink_end[:, None]) & (cols[None, :] < lo[:, None]) \
            & (segs < N_SEG)[:, None]
        off = tl.load(OFFSETS + segs, mask=segs < N_SEG, other=0)
        dst = SCORES + bhk.to(tl.int64) * TOTAL + off[:, None] + (cols[None, :] - sink_end[:, None])
        tl.store(dst, smax, mask=valid)
        rowmax = tl.max(tl.where(valid & (smax == smax), smax, float("-inf")), axis=1)
        has = tl.max(valid.to(tl.int32), axis=1) > 0
        tl.atomic_max(SEGMAX + bhk * N_SEG + segs, rowmax, mask=has)


@triton.jit
def _tier_table_kernel(SCORES, SEGMAX, OFFSETS, TABLE, N_SEG, TOTAL, SINK, tier_width,
                       SEG: tl.constexpr, NT: tl.constexpr, TP: tl.constexpr, CH: tl.constexpr):
    tier_width = tl.cast(tier_width, tl.float32)
    g = tl.program_id(0)
    bhk = tl.program_id(1)
    off = tl.load(OFFSETS + g)
    P = tl.load(OFFSETS + g + 1) - off
    sink_end = tl.minimum(g * SEG, SINK)
    best = tl.load(SEGMAX + bhk * N_SEG + g)
    src = SCORES + bhk.to(tl.int64) * TOTAL + off
    dst = TABLE + bhk.to(tl.int64) * TOTAL + off
    tiers = tl.arange(0, TP)
    hist = tl.zeros([TP], dtype=tl.int32)
    for c in range(0, P, CH):
        j = c + tl.arange(0, CH)
        tier = _tier(tl.load(src + j, mask=j < P, other=0.0), best, tier_width, NT)
        hist += tl.sum(((tier[:, None] == tiers[None, :]) & (j < P)[:, None]).to(tl.int32), axis=0)
    base = tl.cumsum(hist, axis=0) - hist  # exclusive: first position of each tier
    for c in range(0, P, CH):
        j = c + tl.arange(0, CH)
        tier = _tier(tl.load(src + j, mask=j < P, other=0.0), best, tier_width, NT)
        onehot = ((tier[:, None] == tiers[None, :]) & (j < P)[:, None]).to(tl.int32)
        rank = tl.cumsum(onehot, axis=0) - 1 + base[None, :]
        pos = tl.sum(onehot * rank, axis=1)
        tl.store(dst + pos, sink_end + j, mask=j < P)
        base += tl.sum(onehot, axis=0)


@triton.jit
def _tier(s, best, tier_width, NT: tl.constexpr):
    """reference.priority_of: 1 + the tier, capped at NT; a NaN score 0 (visited first)."""
    t = tl.floor((best - s) / tier_width)
    t = tl.where(t == t, t, NT - 1.0)
    t = tl.minimum(tl.maximum(t, 0.0), NT - 1.0) + 1.0
    return tl.where(s == s, t, 0.0).to(tl.int32)


@triton.jit
def _attend_tile(q, k, v, cols_ok, m_i, l_i, acc, qk_scale, IEEE: tl.constexpr):
    """One online-softmax step over a key tile; cols_ok masks (row, key) pairs. Returns gain."""
    if IEEE:
        s = tl.dot(q, tl.trans(k), input_precision="ieee")
    else:
        s = tl.dot(q, tl.trans(k))
    s = tl.where(cols_ok, s * qk_scale, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, axis=1))
    alpha = tl.math.exp2(m_i - m_new)
    p = tl.math.exp2(s - m_new[:, None])
    gain = tl.sum(p, axis=1)
    l_i = l_i * alpha + gain
    if IEEE:
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision="ieee")
    else:
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
    return m_new, l_i, acc, gain


@triton.jit
def _keep_walking(gain, l_i, row_ok, tau, t, P, BN: tl.constexpr, REMAINING: tl.constexpr):
    """The stop rule after a tile: walk on while some valid row's gain (times the tiles left,
    for stop_rule="remaining") is still >= tau of its accumulated mass."""
    if REMAINING:
        left = (tl.maximum(P - t, 0) + BN - 1) // BN
    else:
        left = 1
    keep = (~(gain * left < tau * l_i)) & row_ok
    return (t < P) & (tl.max(keep.to(tl.int32), axis=0) > 0)


@triton.jit
def _s2o_attention_kernel(Q, K, V, O, TABLE, OFFSETS, VISITED,
                          stride_qb, stride_qh, stride_qn, stride_kb, stride_kh, stride_kn,
                          stride_vb, stride_vh, stride_vn,
                          N, H_Q, GROUP, N_MT, TOTAL, qk_scale, tau, SINK, LOCAL,
                          SEG: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr,
                          D: tl.constexpr, IEEE: tl.constexpr, REMAINING: tl.constexpr,
                          CHUNK: tl.constexpr, NUM_STAGES: tl.constexpr):
    qk_scale = tl.cast(qk_scale, tl.float32)  # Inductor passes Python floats as fp64
    tau = tl.cast(tau, tl.float32)
    mt = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // H_Q
    h = bh % H_Q
    hk = h // GROUP
    m0 = mt * BM
    g = m0 // SEG
    s0 = g * SEG
    sink_end = tl.minimum(s0, SINK)
    lo = tl.maximum(s0 - LOCAL, sink_end)
    hi = tl.minimum(m0 + BM, N)

    offs_m = m0 + tl.arange(0, BM)
    offs_n = tl.arange(0, BN)
    offs_d = tl.arange(0, D)
    row_ok = offs_m < N
    q = tl.load(Q + b.to(tl.int64) * stride_qb + h.to(tl.int64) * stride_qh
                + offs_m[:, None].to(tl.int64) * stride_qn + offs_d[None, :],
                mask=row_ok[:, None], other=0.0)
    k_base = K + b.to(tl.int64) * stride_kb + hk.to(tl.int64) * stride_kh + offs_d[None, :]
    v_base = V + b.to(tl.int64) * stride_vb + hk.to(tl.int64) * stride_vh + offs_d[None, :]
    m_i = tl.full([BM], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BM], dtype=tl.float32)
    acc = tl.zeros([BM, D], dtype=tl.float32)

    # Pass 1a: sink keys [0, sink_end), all before the segment.
    for start in range(0, sink_end, BN):
        cols = start + offs_n
        ok = cols < sink_end
        k = tl.load(k_base + cols[:, None].to(tl.int64) * stride_kn, mask=ok[:, None], other=0.0)
        v = tl.load(v_base + cols[:, None].to(tl.int64) * stride_vn, mask=ok[:, None], other=0.0)
        m_i, l_i, acc, gain = _attend_tile(q, k, v, ok[None, :], m_i, l_i, acc, qk_scale, IEEE)
    # Pass 1b: local window and own keys [lo, hi), causal by original position.
    for start in range(lo, hi, BN):
        cols = start + offs_n
        ok = cols < hi
        k = tl.load(k_base + cols[:, None].to(tl.int64) * stride_kn, mask=ok[:, None], other=0.0)
        v = tl.load(v_base + cols[:, None].to(tl.int64) * stride_vn, mask=ok[:, None], other=0.0)
        causal = ok[None, :] & (cols[None, :] <= offs_m[:, None])
        m_i, l_i, acc, gain = _attend_tile(q, k, v, causal, m_i, l_i, acc, qk_scale, IEEE)

    # Pass 2: the ranked prefix through the index table, most important tile first.
    off = tl.load(OFFSETS + g)
    P = (tl.load(OFFSETS + g + 1) - off).to(tl.int32)
    t_base = TABLE + (b * (H_Q // GROUP) + hk).to(tl.int64) * TOTAL + off
    t = 0
    n_vis = 0
    go = P > 0
    if CHUNK > 1:
        # The early stop needs a while loop, which Triton does not software-pipeline; an inner
        # for loop over CHUNK tiles is pipelined. Its loads do not depend on the stop flag (so
        # they can be issued ahead); tiles after a stop inside a chunk are masked out of the
        # math, which keeps the result and the visit count equal to the plain walk.
        live = go
        while go:
            for c in tl.range(0, CHUNK, num_stages=NUM_STAGES):
                pos = t + c * BN + offs_n
                ok = pos < P
                idx = tl.load(t_base + pos, mask=ok, other=0).to(tl.int64)
                k = tl.load(k_base + idx[:, None] * stride_kn, mask=ok[:, None], other=0.0)
                v = tl.load(v_base + idx[:, None] * stride_vn, mask=ok[:, None], other=0.0)
                # tiles after a stop are loaded (loads run ahead) and masked to p = 0. Zeroing v
                # as well (so that a NaN value there, times 0, stays out of acc) cost 26% at 128K
                # on the H100: such a NaN reaches the output as it would in SDPA.
                use = ok & live
                m_i, l_i, acc, gain = _attend_tile(q, k, v, use[None, :], m_i, l_i, acc, qk_scale,
                                                   IEEE)
                n_vis += live.to(tl.int32)
                live = live & _keep_walking(gain, l_i, row_ok, tau, t + (c + 1) * BN, P, BN,
                                            REMAINING)
            t += CHUNK * BN
            go = live & (t < P)
    else:
        while go:
            pos = t + offs_n
            ok = pos < P
            idx = tl.load(t_base + pos, mask=ok, other=0).to(tl.int64)
            k = tl.load(k_base + idx[:, None] * stride_kn, mask=ok[:, None], other=0.0)
            v = tl.load(v_base + idx[:, None] * stride_vn, mask=ok[:, None], other=0.0)
            m_i, l_i, acc, gain = _attend_tile(q, k, v, ok[None, :], m_i, l_i, acc, qk_scale, IEEE)
            t += BN
            n_vis += 1
            go = _keep_walking(gain, l_i, row_ok, tau, t, P, BN, REMAINING)

    out = acc / l_i[:, None]
    tl.store(O + (bh.to(tl.int64) * N + offs_m[:, None]) * D + offs_d[None, :],
             out.to(O.dtype.element_ty), mask=row_ok[:, None])
    tl.store(VISITED + bh * N_MT + mt, n_vis)


def _launch(kernel, grid, *args, **kwargs):
    wrap_triton(kernel)[grid](*args, **kwargs)


def build_index_table(q: torch.Tensor, k: torch.Tensor, scale: float, cfg: S2OConfig):
    """Flat int32 index table [B, Hkv, total] and offsets [G + 1] (layout.py), on the device."""
    B, Hq, N, D = q.shape
    Hkv = k.shape[1]
    S, BM = cfg.segment_size, cfg.block_m
    G = num_segments(N, S)
    offsets = table_offsets(N, S, cfg.sink_tokens, cfg.local_window, q.device)
    total = table_size(N, S, cfg.sink_tokens, cfg.local_window)
    table = torch.empty(B, Hkv, total, dtype=torch.int32, device=q.device)
    if total == 0:
        return table, offsets

    group = Hq // Hkv
    if cfg.pooling == "max":  # one rep per (query tile, query head)
        rows, hpr, reps = BM, 1, (S // BM) * group
    else:  # one rep per segment, pooled over the group's heads
        rows, hpr, reps = S, group, 1
    TP = triton.next_power_of_2(reps)
    rep = torch.empty(B, Hkv, G * TP, D, dtype=torch.float32, device=q.device)
    meta = dict(SEG=S, ROWS=rows, HPR=hpr, REPS=reps, TP=TP, D=D)
    _launch(_pool_queries_kernel, (G * TP, B * Hkv), q, rep, q.stride(0), q.stride(1),
            q.stride(2), N, Hkv, group, G * TP, RB=32, **meta)

    scores = torch.empty(B, Hkv, total, dtype=torch.float32, device=q.device)
    segmax = torch.full((B, Hkv, G), float("-inf"), dtype=torch.float32, device=q.device)
    RB, BK, warps = SCORE_TILES
    _launch(_prefix_scores_kernel, (triton.cdiv(N, BK), B * Hkv), k, rep, scores, segmax, offsets,
            k.stride(0), k.stride(1), k.stride(2), N, Hkv, group, G, total, scale,
            cfg.sink_tokens, cfg.local_window, RB=max(RB, TP), BK=BK,
            IEEE=k.dtype == torch.float32, num_warps=warps, **meta)

    if cfg.ordering == "tiers":
        _launch(_tier_table_kernel, (G, B * Hkv), scores, segmax, offsets, table, G, total,
                cfg.sink_tokens, float(cfg.tier_width), SEG=S, NT=cfg.num_tiers,
                TP=triton.next_power_of_2(cfg.num_tiers + 1), CH=256)
    else:
        table.copy_(_sorted_table(scores, segmax, offsets, N, cfg))
    return table, offsets


def _sorted_table(scores, segmax, offsets, N, cfg):
    """ordering="sort": a stable sort per segment of the 16-bit priority (reference.priority_of)
    on a padded [B, Hkv, G, Pmax] copy; padding takes the last key and sorts after real keys."""
    B, Hkv, total = scores.shape
    S = cfg.segment_size
    G = num_segments(N, S)
    p_max = max(0, (G - 1) * S - cfg.local_window - cfg.sink_tokens)
    e = torch.arange(total, device=scores.device)
    seg = torch.searchsorted(offsets, e, right=True) - 1
    col = e - offsets[seg]
    gap = torch.floor((segmax[:, :, seg] - scores) * SORT_STEPS_PER_LOGIT)
    last = SORT_MAX_KEY - 1
    prio = torch.nan_to_num(gap, nan=last, posinf=last).clamp(0, last) + 1
    prio = torch.where(torch.isnan(scores), 0, prio)  # NaN first, as reference.priority_of
    padded = torch.full((B, Hkv, G, p_max), SORT_MAX_KEY, dtype=torch.int16, device=scores.device)
    padded[:, :, seg, col] = prio.to(torch.int16)
    order = torch.sort(padded, dim=-1, stable=True).indices
    sink_end = torch.clamp(seg * S, max=cfg.sink_tokens)
    return (order[:, :, seg, col] + sink_end).to(torch.int32)


def attention_with_table(q, k, v, table, offsets, scale: float, cfg: S2OConfig, num_warps=None,
                         num_stages=3, chunk=None):
    """Runs the attention kernel: (out contiguous [B, Hq, N, D], visited int32 [B, Hq, n_mt])."""
    B, Hq, N, D = q.shape
    Hkv = k.shape[1]
    BM = cfg.block_m
    n_mt = triton.cdiv(N, BM)
    out = torch.empty(B, Hq, N, D, dtype=q.dtype, device=q.device)
    visited = torch.empty(B, Hq, n_mt, dtype=torch.int32, device=q.device)
    chunk = WALK_CHUNK if chunk is None else chunk
    _launch(_s2o_attention_kernel, (n_mt, B * Hq), q, k, v, out, table, offsets, visited,
            q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
            v.stride(0), v.stride(1), v.stride(2), N, Hq, Hq // Hkv, n_mt, table.shape[-1],
            scale * 1.4426950408889634, float(cfg.threshold), cfg.sink_tokens, cfg.local_window,
            SEG=cfg.segment_size, BM=BM, BN=cfg.block_n, D=D, IEEE=q.dtype == torch.float32,
            REMAINING=cfg.stop_rule == "remaining", CHUNK=chunk, NUM_STAGES=num_stages,
            num_warps=num_warps or (8 if BM * D >= 128 * 128 else 4), num_stages=num_stages)
    return out, visited


def pairs_from_visited(visited: torch.Tensor, N: int, cfg: S2OConfig) -> torch.Tensor:
    """QK pairs computed per (batch, query head), from the visited tiles: int64 [B, Hq]."""
    BM, S = cfg.block_m, cfg.segment_size
    dev = visited.device
    # pass 1 (sink, local, own keys) depends on shapes only: counted on the host, no kernels
    dense = sum((sg.end - sg.start) * (sg.sink_end - sg.lo + 1)
                + (sg.start + sg.end - 1) * (sg.end - sg.start) // 2
                for sg in segments(N, S, cfg.sink_tokens, cfg.local_window))
    m0 = torch.arange(visited.shape[-1], device=dev) * BM
    rows = torch.clamp(N - m0, max=BM)
    g0 = (m0 // S) * S
    prefix = torch.clamp(g0 - cfg.local_window - cfg.sink_tokens, min=0)
    sparse = rows * torch.minimum(visited.to(torch.int64) * cfg.block_n, prefix)
    return dense + sparse.sum(-1)


def s2o_attention(q, k, v, scale: float, cfg: S2OConfig):
    """Full S2O on the GPU: (out, density float32 [B, Hq])."""
    q, k, v = (x if x.stride(-1) == 1 else x.contiguous() for x in (q, k, v))
    table, offsets = build_index_table(q, k, scale, cfg)
    out, visited = attention_with_table(q, k, v, table, offsets, scale, cfg)
    N = q.shape[2]
    density = pairs_from_visited(visited, N, cfg).double() / (N * (N + 1) // 2)
    return out, density.float()
