"""S2O on the GPU: Triton kernels for ranking and for gathered-load attention with early stopping.

Pipeline (all on the device, no host sync, CUDA-graph safe):
  1. _pool_queries_kernel: representative queries: per (query head, pool_rows positions) for
     pooling="max", per segment averaged over the table row's query heads for pooling="mean".
     A table row is a query head (rank_per_head, its own ranking) or a kv head (its group's).
  2. _prefix_scores_kernel: estimated logits of every prefix key for every segment, written to a
     flat float32 buffer laid out like the index table; a key chunk is loaded once and scored
     against all segments (a real matrix product), with the segment's best score by atomic max.
  3. ordering="sort" (default): a stable counting sort of 7-bit priorities in two kernels
     (_sorted_table: histograms per chunk, then ranks through a bitonic sort per 1024 keys);
     ordering="tiers": _tier_table_kernel, a stable counting sort by tier in one program per
     segment. Both follow reference.priority_of.
  4. _s2o_attention_kernel: per (query tile, batch * query head), longest prefixes first: pass 1
     dense over the sink and [lo, tile end), masked on the causal diagonal only; pass 2 walks the
     index table, gathering K/V rows by index in steps of sub_tile keys (an inner for loop over
     WALK_CHUNK steps, which Triton pipelines), and stops after a block_n tile on which the stop
     rule holds for every row. tau <= 0 walks everything in one pipelined loop, no stop test.
     Where the tiles are whole (whole_tiles) no logit is masked off the diagonal and the scale
     is folded into the exponent; K/V offsets are int32 where they fit (fewer address
     instructions per step; SASS counts in BENCHMARKS.md, benchmarks/sass_loops.py).
Semantics equal kernels/reference.py tile for tile; layout.py defines the table. A head dim
that is not a power of two is padded (padded_head_dim) and masked on every user-tensor access.
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl
from torch.library import wrap_triton

from ..config import S2OConfig
from .layout import (heads_per_tile, num_segments, segments, table_heads,
                     table_offsets, table_size)
from .reference import SORT_MAX_KEY, SORT_STEPS_PER_LOGIT

WALK_CHUNK = 8  # steps per pipelined chunk of the gathered walk
# Keys per attention step. A 64 x 128 fp32 score tile per 4 warps ran 30-50% slower than two
# 64-key steps on the H100 (BENCHMARKS.md), so block_n 128 runs as two steps, one stop test.
SUB_TILE_N = 64
SCORE_TILES = (64, 128, 8)  # prefix-score kernel: rep rows, keys per program, warps


def padded_head_dim(d: int) -> int:
    """The kernels' tile width for head dim d: a power of two, at least 16 (tl.dot's minimum);
    columns past d are masked on load and store."""
    return max(16, triton.next_power_of_2(d))


@triton.jit
def _row_col_mask(ok, offs_d, D_IN: tl.constexpr, D: tl.constexpr):
    """Mask of a [rows, D] load from a user tensor: rows by ok and, when D (a power of two)
    pads the real head dim D_IN, the columns below D_IN."""
    m = ok[:, None]
    if D_IN < D:
        m = m & (offs_d < D_IN)[None, :]
    return m


@triton.jit
def _row_offsets(rows, stride, offs_d, OFF32: tl.constexpr):
    """Element offsets [rows, D] of K or V rows from their (batch, head) base: int32 where the
    host proved that every offset fits (OFF32: fewer address instructions per tile), else int64."""
    if OFF32:
        off = (rows * stride)[:, None] + offs_d[None, :]
    else:
        off = rows.to(tl.int64)[:, None] * stride + offs_d[None, :]
    return off


@triton.jit
def _gather_step(t_base, pos, P, k_base, v_base, stride_kn, stride_vn, offs_d, OFF32: tl.constexpr,
                 D_IN: tl.constexpr, D: tl.constexpr):
    """One walk step: the table entries at positions pos (ok: inside the prefix P; past it key 0
    is read) and the K/V rows they index."""
    ok = pos < P
    idx = tl.load(t_base + pos, mask=ok, other=0)
    k = _load_rows(k_base + _row_offsets(idx, stride_kn, offs_d, OFF32), offs_d, D_IN, D)
    v = _load_rows(v_base + _row_offsets(idx, stride_vn, offs_d, OFF32), offs_d, D_IN, D)
    return ok, k, v


@triton.jit
def _load_rows(ptrs, offs_d, D_IN: tl.constexpr, D: tl.constexpr):
    """A [rows, D] tile of K or V rows that are all in bounds, so need no row mask: whole tiles
    before the query tile, and gathered rows (an index past the segment's prefix was loaded as
    0, key 0, and its scores are masked out or its tile dropped)."""
    if D_IN < D:
        return tl.load(ptrs, mask=(offs_d < D_IN)[None, :], other=0.0)
    return tl.load(ptrs)


@triton.jit
def _pool_queries_kernel(Q, REP, stride_qb, stride_qh, stride_qn, N, H_KV, GROUP, N_REP,
                         SEG: tl.constexpr, ROWS: tl.constexpr, HPR: tl.constexpr,
                         REPS: tl.constexpr, TP: tl.constexpr, RB: tl.constexpr, D: tl.constexpr,
                         D_IN: tl.constexpr):
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
    acc = tl.zeros([RB, D], dtype=tl.float32)  # summed over rows once, after the loop
    for hh in range(0, HPR):
        head = hk * GROUP + (j % slots) * HPR + hh
        base = Q + b.to(tl.int64) * stride_qb + head.to(tl.int64) * stride_qh
        for row in range(r0, r1, RB):
            rows = row + tl.arange(0, RB)
            x = tl.load(base + rows[:, None].to(tl.int64) * stride_qn + offs_d[None, :],
                        mask=_row_col_mask(rows < r1, offs_d, D_IN, D), other=0.0)
            acc += x.to(tl.float32)
    cnt = tl.maximum(HPR * (r1 - r0), 1).to(tl.float32)
    tl.store(REP + (bhk.to(tl.int64) * N_REP + r) * D + offs_d, tl.sum(acc, axis=0) / cnt)


@triton.jit
def _prefix_scores_kernel(K, REP, SCORES, SEGMAX, OFFSETS, stride_kb, stride_kh, stride_kn,
                          N, H_KV, GROUP, KV_DIV, N_SEG, TOTAL, scale, SINK, LOCAL,
                          SEG: tl.constexpr, ROWS: tl.constexpr, HPR: tl.constexpr,
                          REPS: tl.constexpr, TP: tl.constexpr, RB: tl.constexpr,
                          BK: tl.constexpr, D: tl.constexpr, D_IN: tl.constexpr,
                          IEEE: tl.constexpr):
    """A chunk of BK keys of one kv head against the representative queries of every segment of
    the KV_DIV table rows that read this kv head (its query heads with rank_per_head): the keys
    are loaded once for all of them."""
    scale = tl.cast(scale, tl.float32)
    c0 = tl.program_id(0) * BK
    bkv = tl.program_id(1)  # (batch, kv head)
    b = bkv // (H_KV // KV_DIV)
    cols = c0 + tl.arange(0, BK)
    offs_d = tl.arange(0, D)
    kc = tl.load(K + b.to(tl.int64) * stride_kb + (bkv % (H_KV // KV_DIV)).to(tl.int64) * stride_kh
                 + cols[:, None].to(tl.int64) * stride_kn + offs_d[None, :],
                 mask=_row_col_mask(cols < N, offs_d, D_IN, D), other=0.0)
    SB: tl.constexpr = RB // TP
    n_rep = N_SEG * TP
    # A key j is in segment g's prefix iff sink_end(g) <= j < g * SEG - LOCAL.
    g_first = (c0 + LOCAL + SINK) // SEG
    for row in range(0, KV_DIV):
        bhk = bkv * KV_DIV + row  # the table row: a kv head, or a query head (rank_per_head)
        _score_rows(kc, cols, bhk, REP, SCORES, SEGMAX, OFFSETS, g_first, n_rep, N, GROUP, N_SEG,
                    TOTAL, scale, SINK, LOCAL, SEG, ROWS, HPR, REPS, TP, RB, SB, BK, D, IEEE)


@triton.jit
def _score_rows(kc, cols, bhk, REP, SCORES, SEGMAX, OFFSETS, g_first, n_rep, N, GROUP, N_SEG,
                TOTAL, scale, SINK, LOCAL, SEG: tl.constexpr, ROWS: tl.constexpr,
                HPR: tl.constexpr, REPS: tl.constexpr, TP: tl.constexpr, RB: tl.constexpr,
                SB: tl.constexpr, BK: tl.constexpr, D: tl.constexpr, IEEE: tl.constexpr):
    """Scores of keys kc against table row bhk's representatives, segments from g_first on."""
    offs_d = tl.arange(0, D)
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
def _attend_tile(q, k, v, cols_ok, use, m_i, l_i, acc, qk_scale, MASKED: tl.constexpr,
                 IEEE: tl.constexpr):
    """One online-softmax step over a key tile. Returns (m, l, acc, gain).
    MASKED: cols_ok masks (row, key) pairs (causal diagonal, a partial tile). Else every pair
    counts and the scale is folded into the exponent (one FFMA per logit, as in the Triton
    tutorial; needs qk_scale >= 0); the scalar `use` drops the whole tile (a walk tile after the
    stop): its row max is not taken and its p is exp2(-inf) = 0."""
    if IEEE:
        s = tl.dot(q, tl.trans(k), input_precision="ieee")
    else:
        s = tl.dot(q, tl.trans(k))
    if MASKED:
        s = tl.where(cols_ok, s * qk_scale, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        p = tl.math.exp2(s - m_new[:, None])
    else:
        m_new = tl.where(use, tl.maximum(m_i, tl.max(s, axis=1) * qk_scale), m_i)
        p = tl.math.exp2(s * qk_scale - tl.where(use, m_new, float("inf"))[:, None])
    alpha = tl.math.exp2(m_i - m_new)
    gain = tl.sum(p, axis=1)
    l_i = l_i * alpha + gain
    if IEEE:
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision="ieee")
    else:
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
    return m_new, l_i, acc, gain


@triton.jit
def _keep_walking(gain, l_i, row_ok, tau, t, P, BN: tl.constexpr, REMAINING: tl.constexpr,
                  MEAN: tl.constexpr):
    """The stop rule after a tile: walk on while some valid row's gain (times the tiles left,
    for stop_rule="remaining" and "mean") is still >= tau of its accumulated mass; for "mean",
    while the mean of that ratio over the tile's valid rows is."""
    if REMAINING:
        left = (tl.maximum(P - t, 0) + BN - 1) // BN
    else:
        left = 1
    if MEAN:
        ratio = tl.where(row_ok, gain * left / l_i, 0.0)
        keep_any = ~(tl.sum(ratio, axis=0) < tau * tl.sum(row_ok.to(tl.float32), axis=0))
    else:
        keep = (~(gain * left < tau * l_i)) & row_ok
        keep_any = tl.max(keep.to(tl.int32), axis=0) > 0
    return (t < P) & keep_any


@triton.jit
def _s2o_attention_kernel(Q, K, V, O, TABLE, OFFSETS, VISITED,
                          stride_qb, stride_qh, stride_qn, stride_kb, stride_kh, stride_kn,
                          stride_vb, stride_vh, stride_vn,
                          N, H_Q, GROUP, T_DIV, N_MT, TOTAL, qk_scale, tau, SINK, LOCAL,
                          SEG: tl.constexpr, BM: tl.constexpr, HPT: tl.constexpr,
                          BN: tl.constexpr, D: tl.constexpr, D_IN: tl.constexpr,
                          IEEE: tl.constexpr, REMAINING: tl.constexpr, MEAN: tl.constexpr,
                          CHUNK: tl.constexpr, NUM_STAGES: tl.constexpr, WHOLE_TILES: tl.constexpr,
                          STOP: tl.constexpr, LONGEST_FIRST: tl.constexpr, OFF32: tl.constexpr,
                          STOP_EVERY: tl.constexpr):
    """One query tile: BM rows = BM // HPT positions x HPT query heads of one GQA group."""
    qk_scale = tl.cast(qk_scale, tl.float32)  # Inductor passes Python floats as fp64
    tau = tl.cast(tau, tl.float32)
    BMP: tl.constexpr = BM // HPT  # positions per tile
    mt = tl.program_id(0)
    if LONGEST_FIRST:  # the last query tiles walk the longest prefixes: start them first
        mt = N_MT - 1 - mt
    pid = tl.program_id(1)  # (batch, kv head, slot of HPT heads in the group)
    b = pid // (H_Q // HPT)
    h0 = (pid % (H_Q // HPT)) * HPT  # first query head of the tile
    hk = h0 // GROUP
    m0 = mt * BMP
    g = m0 // SEG
    s0 = g * SEG
    sink_end = tl.minimum(s0, SINK)
    lo = tl.maximum(s0 - LOCAL, sink_end)
    hi = tl.minimum(m0 + BMP, N)

    rows = tl.arange(0, BM)
    offs_m = m0 + rows % BMP  # the row's position
    head = h0 + rows // BMP  # the row's query head
    offs_n = tl.arange(0, BN)
    offs_d = tl.arange(0, D)
    row_ok = offs_m < N
    q = tl.load(Q + b.to(tl.int64) * stride_qb + head[:, None].to(tl.int64) * stride_qh
                + offs_m[:, None].to(tl.int64) * stride_qn + offs_d[None, :],
                mask=_row_col_mask(row_ok, offs_d, D_IN, D), other=0.0)
    k_base = K + b.to(tl.int64) * stride_kb + hk.to(tl.int64) * stride_kh
    v_base = V + b.to(tl.int64) * stride_vb + hk.to(tl.int64) * stride_vh
    m_i = tl.full([BM], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BM], dtype=tl.float32)
    acc = tl.zeros([BM, D], dtype=tl.float32)

    # Pass 1a: sink keys [0, sink_end), all before the segment.
    for start in range(0, sink_end, BN):
        cols = start + offs_n
        ok = cols < sink_end
        kv_ok = _row_col_mask(ok, offs_d, D_IN, D)
        k = tl.load(k_base + _row_offsets(cols, stride_kn, offs_d, OFF32), mask=kv_ok, other=0.0)
        v = tl.load(v_base + _row_offsets(cols, stride_vn, offs_d, OFF32), mask=kv_ok, other=0.0)
        m_i, l_i, acc, gain = _attend_tile(q, k, v, ok[None, :], True, m_i, l_i, acc, qk_scale,
                                           not WHOLE_TILES, IEEE)
    # Pass 1b: local window and own keys [lo, hi), causal by original position. WHOLE_TILES: the
    # tiles before the query tile's first row are whole and all before it (no mask).
    if WHOLE_TILES:
        for start in range(lo, m0, BN):
            cols = start + offs_n
            k = _load_rows(k_base + _row_offsets(cols, stride_kn, offs_d, OFF32), offs_d, D_IN, D)
            v = _load_rows(v_base + _row_offsets(cols, stride_vn, offs_d, OFF32), offs_d, D_IN, D)
            m_i, l_i, acc, gain = _attend_tile(q, k, v, None, True, m_i, l_i, acc, qk_scale,
                                               False, IEEE)
        diag = m0
    else:
        diag = lo
    for start in range(diag, hi, BN):
        cols = start + offs_n
        ok = cols < hi
        kv_ok = _row_col_mask(ok, offs_d, D_IN, D)
        k = tl.load(k_base + _row_offsets(cols, stride_kn, offs_d, OFF32), mask=kv_ok, other=0.0)
        v = tl.load(v_base + _row_offsets(cols, stride_vn, offs_d, OFF32), mask=kv_ok, other=0.0)
        causal = ok[None, :] & (cols[None, :] <= offs_m[:, None])
        m_i, l_i, acc, gain = _attend_tile(q, k, v, causal, True, m_i, l_i, acc, qk_scale, True,
                                           IEEE)

    # Pass 2: the ranked prefix through the index table, most important tile first. WHOLE_TILES:
    # the prefix is whole tiles, so a step is in or out as a whole (the scalar `step`).
    off = tl.load(OFFSETS + g)
    P = (tl.load(OFFSETS + g + 1) - off).to(tl.int32)
    # table row: the kv head's (T_DIV = GROUP) or the query head's own (rank_per_head, T_DIV = 1)
    t_base = TABLE + ((b * H_Q + h0) // T_DIV).to(tl.int64) * TOTAL + off
    t = 0
    n_vis = 0
    go = P > 0
    if not STOP:
        # tau <= 0 never stops (gain * left < tau * l is false for gain, l >= 0): walk the
        # whole prefix in a plain for loop, pipelined, with no per-tile stop test.
        for t in tl.range(0, P, BN, num_stages=NUM_STAGES):
            ok, k, v = _gather_step(t_base, t + offs_n, P, k_base, v_base, stride_kn, stride_vn,
                                    offs_d, OFF32, D_IN, D)
            m_i, l_i, acc, gain = _attend_tile(q, k, v, ok[None, :], True, m_i, l_i, acc, qk_scale,
                                               not WHOLE_TILES, IEEE)
        n_vis = (P + BN - 1) // BN
    else:
        # The early stop needs a while loop, which Triton does not software-pipeline; an inner
        # for loop over CHUNK steps is pipelined. Its loads do not depend on the stop flag (so
        # they are issued ahead); steps after a stop inside a chunk are dropped from the math
        # (p = 0), which keeps the result and the visit count equal to the plain walk. Zeroing
        # v as well (so that a NaN value there, times 0, stays out of acc) cost 26% at 128K on
        # the H100: such a NaN reaches the output as it would in SDPA.
        # A stop tile (block_n keys) runs as STOP_EVERY steps of BN keys: its gain is summed over
        # them (rescaled to the running max) and tested once; a step past the prefix inside the
        # last stop tile is dropped.
        live = go
        while go:
            gsum = tl.zeros([BM], dtype=tl.float32)  # CHUNK is a multiple of STOP_EVERY
            for c in tl.range(0, CHUNK, num_stages=NUM_STAGES):
                ok, k, v = _gather_step(t_base, t + c * BN + offs_n, P, k_base, v_base, stride_kn,
                                        stride_vn, offs_d, OFF32, D_IN, D)
                step = live & (t + c * BN < P)
                m_prev = m_i
                m_i, l_i, acc, gain = _attend_tile(q, k, v, (ok & live)[None, :], step, m_i, l_i,
                                                   acc, qk_scale, not WHOLE_TILES, IEEE)
                n_vis += step.to(tl.int32)
                gsum = gsum * tl.math.exp2(m_prev - m_i) + gain
                if (c % STOP_EVERY) == STOP_EVERY - 1:
                    live = live & _keep_walking(gsum, l_i, row_ok, tau, t + (c + 1) * BN, P,
                                                BN * STOP_EVERY, REMAINING, MEAN)
                    gsum = tl.zeros([BM], dtype=tl.float32)
            t += CHUNK * BN
            go = live & (t < P)

    out = acc / l_i[:, None]
    tl.store(O + ((b * H_Q + head[:, None]).to(tl.int64) * N + offs_m[:, None]) * D_IN
             + offs_d[None, :], out.to(O.dtype.element_ty),
             mask=_row_col_mask(row_ok, offs_d, D_IN, D))
    n_vis = (n_vis + STOP_EVERY - 1) // STOP_EVERY  # in block_n tiles
    for i in tl.static_range(HPT):
        tl.store(VISITED + (b * H_Q + h0 + i) * N_MT + mt, n_vis)


def _launch(kernel, grid, *args, **kwargs):
    wrap_triton(kernel)[grid](*args, **kwargs)


def build_index_table(q: torch.Tensor, k: torch.Tensor, scale: float, cfg: S2OConfig):
    """Flat int32 index table [B, R, total] and offsets [G + 1] (layout.py), on the device.
    R = Hkv, or Hq with rank_per_head: the kernels then rank per query head (a group of 1)
    and read K of kv head h // group."""
    B, Hq, N, D = q.shape
    R = table_heads(Hq, k.shape[1], cfg.rank_per_head)  # table rows per batch
    group = Hq // R  # query heads pooled per table row (1 with rank_per_head)
    kv_div = R // k.shape[1]  # table rows per kv head (the GQA group with rank_per_head, else 1)
    S = cfg.segment_size
    G = num_segments(N, S)
    offsets = table_offsets(N, S, cfg.sink_tokens, cfg.local_window, q.device)
    total = table_size(N, S, cfg.sink_tokens, cfg.local_window)
    table = torch.empty(B, R, total, dtype=torch.int32, device=q.device)
    if total == 0:
        return table, offsets

    if cfg.pooling == "max":  # one rep per (pool_rows positions, query head)
        rows = min(cfg.pool_rows, S)
        hpr, reps = 1, (S // rows) * group
    else:  # one rep per segment, pooled over the group's heads
        rows, hpr, reps = S, group, 1
    TP = triton.next_power_of_2(reps)
    DP = padded_head_dim(D)
    rep = torch.empty(B, R, G * TP, DP, dtype=torch.float32, device=q.device)
    meta = dict(SEG=S, ROWS=rows, HPR=hpr, REPS=reps, TP=TP, D=DP, D_IN=D)
    _launch(_pool_queries_kernel, (G * TP, B * R), q, rep, q.stride(0), q.stride(1),
            q.stride(2), N, R, group, G * TP, RB=32, **meta)

    # "sort" scores in place in the table (same layout, same 4 bytes) to save its size in memory
    scores = (torch.empty(B, R, total, dtype=torch.float32, device=q.device)
              if cfg.ordering == "tiers" else table.view(torch.float32))
    segmax = torch.full((B, R, G), float("-inf"), dtype=torch.float32, device=q.device)
    RB, BK, warps = SCORE_TILES
    _launch(_prefix_scores_kernel, (triton.cdiv(N, BK), B * R // kv_div), k, rep, scores, segmax,
            offsets,
            k.stride(0), k.stride(1), k.stride(2), N, R, group, kv_div, G, total, scale,
            cfg.sink_tokens, cfg.local_window, RB=max(RB, TP), BK=BK,
            IEEE=k.dtype == torch.float32, num_warps=warps, **meta)

    if cfg.ordering == "tiers":
        _launch(_tier_table_kernel, (G, B * R), scores, segmax, offsets, table, G, total,
                cfg.sink_tokens, float(cfg.tier_width), SEG=S, NT=cfg.num_tiers,
                TP=triton.next_power_of_2(cfg.num_tiers + 1), CH=256)
    else:
        _sorted_table(table, segmax, offsets, N, cfg)
    return table, offsets


# ordering="sort" as a stable counting sort of 7-bit priorities (reference.priority_of: 0 .. SORT_MAX_KEY)
# into SORT_BUCKETS buckets, the last one holding padding lanes.
SORT_BUCKETS = 128
SORT_CHUNK = 4096  # prefix keys per program of the counting sort
SORT_SUB = 1024  # keys ranked by one bitonic sort inside a program
SORT_BITONIC = None  # rank by a bitonic sort: None = when compiled (tests set it)
assert SORT_MAX_KEY < SORT_BUCKETS - 1, "priorities must leave the last bucket to padding"


def _sorted_table(table, segmax, offsets, N, cfg):
    """ordering="sort": a stable counting sort per segment by the 7-bit priority.

    table holds the float32 scores on entry (same layout) and the index table on return.
    _priority_hist_kernel turns a chunk of a segment's scores into 1-byte priorities and counts
    them per bucket; _counting_scatter_kernel turns the counts into the chunk's first table rank
    per bucket (all keys of lower buckets, then this bucket's keys in earlier chunks) and ranks
    the chunk's keys within a bucket by a bitonic sort of (priority, position), which keeps
    equal priorities in position order: the result is reference.order_prefix exactly. Extra
    memory: 1 byte per table entry and 512 bytes per chunk."""
    B, R, total = table.shape
    S = cfg.segment_size
    G = num_segments(N, S)
    longest = max(0, (G - 1) * S - cfg.local_window - cfg.sink_tokens)
    n_ch = triton.cdiv(longest, SORT_CHUNK)
    prio = torch.empty(B, R, total, dtype=torch.uint8, device=table.device)
    counts = torch.empty(B * R, G, n_ch, SORT_BUCKETS, dtype=torch.int32, device=table.device)
    grid = (n_ch, G, B * R)
    _launch(_priority_hist_kernel, grid, table.view(torch.float32), segmax, offsets, prio, counts,
            G, n_ch, total, STEPS=SORT_STEPS_PER_LOGIT, LAST=SORT_MAX_KEY - 1, NB=SORT_BUCKETS,
            CH=SORT_CHUNK)
    _launch(_counting_scatter_kernel, grid, prio, counts, offsets, table, G, n_ch, total,
            cfg.sink_tokens, SEG=S, NB=SORT_BUCKETS, CH=SORT_CHUNK, SUB=SORT_SUB, CB=16,
            BITONIC=_interpreted() is False if SORT_BITONIC is None else SORT_BITONIC)


def _interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


@triton.jit
def _priority_hist_kernel(SCORES, SEGMAX, OFFSETS, PRIO, COUNTS, G, NCH, TOTAL,
                          STEPS: tl.constexpr, LAST: tl.constexpr, NB: tl.constexpr,
                          CH: tl.constexpr):
    """Chunk c of segment g's prefix: priorities (reference.priority_of) and their histogram.
    Lanes past the prefix count in the last bucket, which no key uses."""
    c = tl.program_id(0)
    g = tl.program_id(1)
    bh = tl.program_id(2)
    off = tl.load(OFFSETS + g)
    P = (tl.load(OFFSETS + g + 1) - off).to(tl.int32)
    j = c * CH + tl.arange(0, CH)
    real = j < P
    base = bh.to(tl.int64) * TOTAL + off
    s = tl.load(SCORES + base + j, mask=real, other=0.0)
    best = tl.load(SEGMAX + bh * G + g)
    # as _tier, but multiplying by STEPS: exact, where Triton's float division compiles to the
    # approximate div.full.f32
    gap = tl.floor((best - s) * STEPS)
    gap = tl.where(gap == gap, gap, LAST)  # NaN (inf - inf) -> last
    prio = tl.minimum(tl.maximum(gap, 0.0), LAST) + 1.0
    prio = tl.where(s == s, prio, 0.0).to(tl.int32)  # a NaN score first
    prio = tl.where(real, prio, NB - 1)
    tl.store(PRIO + base + j, prio.to(tl.uint8), mask=real)
    hist = tl.histogram(prio, NB)
    tl.store(COUNTS + ((bh * G + g) * NCH + c).to(tl.int64) * NB + tl.arange(0, NB), hist)


@triton.jit
def _counting_scatter_kernel(PRIO, COUNTS, OFFSETS, TABLE, G, NCH, TOTAL, SINK,
                             SEG: tl.constexpr, NB: tl.constexpr, CH: tl.constexpr,
                             SUB: tl.constexpr, CB: tl.constexpr, BITONIC: tl.constexpr):
    """Chunk c of segment g: writes the table rank of each of its keys (see _sorted_table).
    BITONIC ranks SUB keys by one sort; else by a [SUB, NB] running count (the interpreter's)."""
    c = tl.program_id(0)
    g = tl.program_id(1)
    bh = tl.program_id(2)
    off = tl.load(OFFSETS + g)
    P = (tl.load(OFFSETS + g + 1) - off).to(tl.int32)
    if c * CH < P:
        buckets = tl.arange(0, NB)
        cnt = COUNTS + (bh * G + g).to(tl.int64) * NCH * NB
        total = tl.zeros([NB], dtype=tl.int32)
        before = tl.zeros([NB], dtype=tl.int32)
        for r0 in range(0, NCH, CB):
            r = r0 + tl.arange(0, CB)
            x = tl.load(cnt + r[:, None] * NB + buckets[None, :], mask=(r < NCH)[:, None], other=0)
            total += tl.sum(x, axis=0)
            before += tl.sum(tl.where((r < c)[:, None], x, 0), axis=0)
        start = tl.cumsum(total, axis=0) - total + before  # first rank of the chunk's keys, per bucket
        sink_end = tl.minimum(g * SEG, SINK)
        base = bh.to(tl.int64) * TOTAL + off
        lanes = tl.arange(0, SUB)
        for s0 in range(c * CH, tl.minimum(c * CH + CH, P), SUB):
            j = s0 + lanes
            prio = tl.load(PRIO + base + j, mask=j < P, other=NB - 1).to(tl.int32)
            hist = tl.histogram(prio, NB)
            if BITONIC:
                key = tl.sort(prio * SUB + lanes)  # by priority, then position: stable
                kp = key // SUB
                first = tl.cumsum(hist, axis=0) - hist  # each bucket's first sorted lane
                dest = tl.gather(start - first, kp, 0) + lanes
                tl.store(TABLE + base + dest, sink_end + s0 + key % SUB, mask=kp < NB - 1)
            else:  # the interpreter's bitonic sort is slow: the rank in a bucket by a running count
                onehot = (prio[:, None] == buckets[None, :]).to(tl.int32)
                rank = tl.sum(tl.cumsum(onehot, axis=0) * onehot, axis=1) - 1
                tl.store(TABLE + base + tl.gather(start, prio, 0) + rank, sink_end + j,
                         mask=prio < NB - 1)
            start += hist


def sub_tile(cfg: S2OConfig) -> int:
    """Keys per step of the attention kernel: block_n up to SUB_TILE_N; a larger block_n (the
    stop rule's tile) runs as block_n // SUB_TILE_N steps with one stop test."""
    return min(cfg.block_n, SUB_TILE_N)


def whole_tiles(cfg: S2OConfig, positions_per_tile: int, scale: float) -> bool:
    """Whether the attention kernel may take its unmasked path: sink, local window, segments and
    query tiles are whole key steps (sub_tile), so that only the causal diagonal needs a mask and
    a walk step is in or out of the prefix as a whole; and scale >= 0, which the folded exponent
    needs."""
    bn = sub_tile(cfg)
    return (scale >= 0 and cfg.sink_tokens % bn == 0 and cfg.local_window % bn == 0
            and cfg.segment_size % bn == 0 and positions_per_tile % bn == 0)


def attention_with_table(q, k, v, table, offsets, scale: float, cfg: S2OConfig, num_warps=None,
                         num_stages=3, chunk=None, **launch_options):
    """Runs the attention kernel: (out contiguous [B, Hq, N, D], visited int32 [B, Hq, n_mt]).
    launch_options: A/B runs: Triton options (maxnreg) or the kernel's switches (LONGEST_FIRST)."""
    B, Hq, N, D = q.shape
    Hkv = k.shape[1]
    BM = cfg.block_m
    hpt = heads_per_tile(Hq // Hkv, BM, cfg.pack_gqa)
    n_mt = triton.cdiv(N, BM // hpt)
    out = torch.empty(B, Hq, N, D, dtype=q.dtype, device=q.device)
    visited = torch.empty(B, Hq, n_mt, dtype=torch.int32, device=q.device)
    chunk = WALK_CHUNK if chunk is None else chunk
    bn = sub_tile(cfg)
    stop_every = cfg.block_n // bn
    if chunk % stop_every:
        raise ValueError(f"walk chunk {chunk} must be a multiple of block_n // {bn} = {stop_every}")
    switches = dict(WHOLE_TILES=whole_tiles(cfg, BM // hpt, scale), STOP=cfg.threshold > 0,
                    LONGEST_FIRST=True, STOP_EVERY=stop_every,
                    OFF32=(N - 1) * max(k.stride(2), v.stride(2)) + padded_head_dim(D) < 2 ** 31,
                    num_warps=num_warps or (8 if BM * padded_head_dim(D) >= 128 * 128 else 4),
                    num_stages=num_stages)
    switches.update(launch_options)  # A/B runs override any of them
    _launch(_s2o_attention_kernel, (n_mt, B * Hq // hpt), q, k, v, out, table, offsets, visited,
            q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
            v.stride(0), v.stride(1), v.stride(2), N, Hq, Hq // Hkv, Hq // table.shape[1], n_mt,
            table.shape[-1],
            scale * 1.4426950408889634, float(cfg.threshold), cfg.sink_tokens, cfg.local_window,
            SEG=cfg.segment_size, BM=BM, HPT=hpt, BN=bn, D=padded_head_dim(D), D_IN=D,
            IEEE=q.dtype == torch.float32,
            REMAINING=cfg.stop_rule != "gain", MEAN=cfg.stop_rule == "mean", CHUNK=chunk,
            NUM_STAGES=num_stages, **switches)
    return out, visited


def pairs_from_visited(visited: torch.Tensor, N: int, cfg: S2OConfig,
                       group: int = 1) -> torch.Tensor:
    """QK pairs computed per (batch, query head), from the visited tiles: int64 [B, Hq]
    (group: query heads per kv head, which sets the positions per query tile)."""
    S = cfg.segment_size
    BM = cfg.block_m // heads_per_tile(group, cfg.block_m, cfg.pack_gqa)
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
    density = pairs_from_visited(visited, N, cfg, q.shape[1] // k.shape[1]).double() / (N * (N + 1) // 2)
    return out, density.float()
