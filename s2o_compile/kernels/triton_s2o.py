"""S2O on the GPU: Triton kernels for ranking and for gathered-load attention with early stopping.

Pipeline (all on the device, no host sync, CUDA-graph safe):
  1. _pool_queries_kernel: representative queries: per (query head, pool_rows positions) for
     pooling="max", per segment averaged over the table row's query heads for pooling="mean".
     A table row is a query head (rank_per_head, its own ranking) or a kv head (its group's).
  2. _prefix_scores_kernel: estimated logits of every prefix key for every segment, written to a
     flat float32 buffer laid out like the index table; a program streams a run of key chunks
     (pipelined loads) as the rows of a matrix product against a block of segments'
     representative queries, keeping each segment's best score in registers, merged across
     programs by one atomic max.
  3. ordering="sort" (default): a stable counting sort of 7-bit priorities over blocks, each
     block's keys placed by one warp, 32 a round (_sorted_table); ordering="tiers":
     _tier_table_kernel, a stable counting sort by tier (two passes: histogram, then scatter).
     Both follow reference.priority_of.
  4. _s2o_attention_kernel: per (query tile, batch * query head), longest prefixes first: pass 1
     dense over the sink and [lo, tile end), masked on the causal diagonal only; pass 2 walks the
     index table, gathering K/V rows by index in steps of sub_tile keys (an inner for loop over
     a chunk of walk_chunk keys, which Triton pipelines), tests the stop rule after every
     block_n tile and ends with the chunk in which it held. tau <= 0 walks every prefix in key
     order (s2o_attention builds no table then) in one pipelined loop, no stop test.
     Where the tiles are whole (whole_tiles) no logit is masked off the diagonal and the scale
     is folded into the exponent; K/V offsets are int32 where they fit (fewer address
     instructions per step; SASS counts in BENCHMARKS.md, benchmarks/sass_loops.py).
Chunked prefill (q shorter than k: the queries are the last positions, layout.py): the kernels
take the first query's position Q0; a CHUNKED constexpr keeps it out of a whole prefill's build.
Semantics equal kernels/reference.py tile for tile; layout.py defines the table. A head dim
that is not a power of two is padded (padded_head_dim) and masked on every user-tensor access.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch.library import wrap_triton

from ..config import S2OConfig
from .layout import (causal_pairs, heads_per_tile, num_segments, query_tiles, segments,
                     table_heads, table_offsets, table_size)
from .reference import SORT_MAX_KEY, SORT_STEPS_PER_LOGIT

# Keys per attention step. A 64 x 128 fp32 score tile per 4 warps ran 30-50% slower than two
# 64-key steps on the H100 (BENCHMARKS.md), so block_n 128 runs as two steps, one stop test.
SUB_TILE_N = 64
# prefix-score kernel: segments per program, keys per step, warps; about this many programs
# (_score_split); K chunks in flight (Triton's software pipelining). SCORE_WIDE: twice the
# segments a program where that leaves at least two blocks of them (128K: 64 segments, 32 a
# program), so each K chunk is read half as often. H200, session 22: (16, 64, 4) the fastest at
# 32K and 64K (16, 128 and 32 segments with 128 keys, 8 warps, 4 stages, 4,096 programs slower
# or no faster), 32 segments at 128K (0.383 ms against 0.417)
SCORE_TILES = (16, 64, 4)
SCORE_WIDE = True
# rep rows (segments x rep slots) per product: fewer segments a program where pool_rows gives a
# segment many slots; a segment of more slots than this takes them this many at a time
SCORE_REP_ROWS = 64
SCORE_PROGRAMS = 2048
SCORE_STAGES = 3
# query-pooling kernel: rows per step, warps; (16, 4) ties, (32, 8), (64, 4), (64, 8) and (128, 8)
# were slower (H200, 128K, BENCHMARKS.md session 15)
POOL_TILES = (32, 4)


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
                 D_IN: tl.constexpr, D: tl.constexpr, KEY_ORDER: tl.constexpr = False,
                 first=0):
    """One walk step: the table entries at positions pos (ok: inside the prefix P; past it key 0
    is read) and the K/V rows they index. KEY_ORDER (tau 0, no table): the prefix's keys in
    position order, from key `first` (its sink_end)."""
    ok = pos < P
    if KEY_ORDER:
        idx = tl.where(ok, first + pos, 0)
    else:
        idx = tl.load(t_base + pos, mask=ok, other=0)
    k, v = _gather_rows(idx, k_base, v_base, stride_kn, stride_vn, offs_d, OFF32, D_IN, D)
    return ok, k, v


@triton.jit
def _gather_rows(idx, k_base, v_base, stride_kn, stride_vn, offs_d, OFF32: tl.constexpr,
                 D_IN: tl.constexpr, D: tl.constexpr):
    """The K and V rows idx (all in bounds)."""
    k = _load_rows(k_base + _row_offsets(idx, stride_kn, offs_d, OFF32), offs_d, D_IN, D)
    v = _load_rows(v_base + _row_offsets(idx, stride_vn, offs_d, OFF32), offs_d, D_IN, D)
    return k, v


@triton.jit
def _load_kv(k_base, v_base, cols, ok, stride_kn, stride_vn, offs_d, OFF32: tl.constexpr,
             D_IN: tl.constexpr, D: tl.constexpr):
    """K and V rows cols of a contiguous key range, rows past it (not ok) read as 0."""
    mask = _row_col_mask(ok, offs_d, D_IN, D)
    k = tl.load(k_base + _row_offsets(cols, stride_kn, offs_d, OFF32), mask=mask, other=0.0)
    v = tl.load(v_base + _row_offsets(cols, stride_vn, offs_d, OFF32), mask=mask, other=0.0)
    return k, v


@triton.jit
def _load_rows(ptrs, offs_d, D_IN: tl.constexpr, D: tl.constexpr):
    """A [rows, D] tile of K or V rows that are all in bounds, so need no row mask: whole tiles
    before the query tile, and gathered rows (an index past the segment's prefix was loaded as
    0, key 0, and its scores are masked out)."""
    if D_IN < D:
        return tl.load(ptrs, mask=(offs_d < D_IN)[None, :], other=0.0)
    return tl.load(ptrs)


@triton.jit
def _pool_queries_kernel(Q, REP, stride_qb, stride_qh, stride_qn, N, Q0, H_KV, GROUP, N_REP,
                         SEG: tl.constexpr, ROWS: tl.constexpr, HPR: tl.constexpr,
                         REPS: tl.constexpr, TP: tl.constexpr, RB: tl.constexpr, D: tl.constexpr,
                         D_IN: tl.constexpr):
    """Representative query r of segment r // TP: the mean of HPR query heads over ROWS rows.
    Rows j = r % TP >= REPS of a segment are padding (the scores kernel masks them). Chunked
    prefill: the queries are positions [Q0, N) (row p of Q is position Q0 + p); the grid starts
    at the segment holding Q0, and the rows before Q0 are not there (a group of ROWS positions
    without queries is masked by the scores kernel too)."""
    r = tl.program_id(0) + (Q0 // SEG) * TP
    bhk = tl.program_id(1)
    b = bhk // H_KV
    hk = bhk % H_KV
    g = r // TP
    j = r % TP
    slots = GROUP // HPR  # head slots per query tile
    t = j // slots
    r0 = g * SEG + t * ROWS
    r1 = tl.minimum(tl.minimum(r0 + ROWS, N), (g + 1) * SEG)
    r0 = tl.maximum(r0, Q0)
    r1 = tl.where(j < REPS, r1, r0)
    offs_d = tl.arange(0, D)
    acc = tl.zeros([RB, D], dtype=tl.float32)  # summed over rows once, after the loop
    for hh in range(0, HPR):
        head = hk * GROUP + (j % slots) * HPR + hh
        base = Q + b.to(tl.int64) * stride_qb + head.to(tl.int64) * stride_qh
        for row in range(r0, r1, RB):
            rows = row + tl.arange(0, RB)
            x = tl.load(base + (rows - Q0)[:, None].to(tl.int64) * stride_qn + offs_d[None, :],
                        mask=_row_col_mask(rows < r1, offs_d, D_IN, D), other=0.0)
            acc += x.to(tl.float32)
    cnt = tl.maximum(HPR * (r1 - r0), 1).to(tl.float32)  # r1 < r0: no rows
    tl.store(REP + (bhk.to(tl.int64) * N_REP + r) * D + offs_d,
             (tl.sum(acc, axis=0) / cnt).to(REP.dtype.element_ty))


@triton.jit
def _max_keep_nan(a, b):
    return tl.maximum(a, b, propagate_nan=tl.PropagateNan.ALL)


@triton.jit
def _rep_rows(rep_base, r0, N, Q0, N_SEG, GROUP, SEG: tl.constexpr, ROWS: tl.constexpr,
              HPR: tl.constexpr, REPS: tl.constexpr, TP: tl.constexpr, RC: tl.constexpr,
              D: tl.constexpr, CHUNKED: tl.constexpr):
    """Rep rows r0 .. r0 + RC - 1 of a table row (row r: segment r // TP, slot r % TP),
    transposed for the product [D, RC], and which hold a rep: a slot below REPS whose group of
    ROWS positions starts before N (and, CHUNKED, ends after Q0) in a segment that has one."""
    r = r0 + tl.arange(0, RC)
    seg_r = r // TP
    j_r = r % TP
    first_row = seg_r * SEG + (j_r // (GROUP // HPR)) * ROWS
    row_ok = (seg_r < N_SEG) & (j_r < REPS) & (first_row < N)
    if CHUNKED:  # no rep before the first query's segment or for a group of rows before Q0
        row_ok = row_ok & (seg_r >= Q0 // SEG) & (first_row + ROWS > Q0)
    offs_d = tl.arange(0, D)
    reps = tl.load(rep_base + r[:, None] * D + offs_d[None, :], mask=row_ok[:, None], other=0.0)
    return tl.trans(reps), row_ok


@triton.jit
def _rep_scores(kc, reps_t, row_ok, scale, IEEE: tl.constexpr):
    """Scores [keys, rep rows] of a K chunk against reps (transposed), -inf where no rep."""
    if IEEE:
        s = tl.dot(kc, reps_t, input_precision="ieee") * scale
    else:
        s = tl.dot(kc, reps_t) * scale
    return tl.where(row_ok[None, :], s, float("-inf"))


@triton.jit
def _prefix_scores_kernel(K, REP, SCORES, SEGMAX, OFFSETS, stride_kb, stride_kh, stride_kn,
                          N, Q0, H_KV, GROUP, KV_DIV, N_SEG, TOTAL, KEYS_PER_PROGRAM, scale,
                          SINK, LOCAL, SEG: tl.constexpr, ROWS: tl.constexpr, HPR: tl.constexpr,
                          REPS: tl.constexpr, TP: tl.constexpr, SB: tl.constexpr,
                          BK: tl.constexpr, D: tl.constexpr, D_IN: tl.constexpr,
                          IEEE: tl.constexpr, CHUNKED: tl.constexpr, RC: tl.constexpr):
    """Scores of SB segments (program 1) against KEYS_PER_PROGRAM keys (program 2) of a table
    row (program 0), BK keys a step: each step's K chunk is streamed (the loop's loads are
    pipelined) as the rows of one product K_chunk @ reps^T [BK, SB * TP] against the segments'
    representative queries (loaded once, before the loop), the scores stored where the table's
    slot of each (segment, key) is. A segment's score of a key: the max over its TP rep slots
    (adjacent columns; a NaN stays NaN, tl.max would drop it, so that the key ranks first:
    priority_of). Its running max is kept per element, reduced once after the loop (one atomic
    max per segment). RC: rep rows per product, SB * TP but for a segment with more rep slots
    than SCORE_REP_ROWS (small pool_rows), whose slots then go RC at a time.
    Keys as the rows give Hopper's wgmma (M >= 64) and stores of a segment's consecutive keys
    from consecutive lanes; session 22 (H200, the same tables): 0.180 -> 0.127 ms at 64K and
    0.561 -> 0.383 at 128K against the segments as the rows (mma.sync with M 16, a cross-warp
    max every step; code at 14178db), and a mask per segment on whole chunks (SCORES_WHOLE
    there) was slower. Session 18: one K chunk a program with a loop over the segments (4 warps
    waiting on one 32 KiB load) took 0.76 ms at 128K, a run of chunks 0.56. CHUNKED: chunked
    prefill, the queries are positions [Q0, N) (see the attention kernel)."""
    scale = tl.cast(scale, tl.float32)
    bhk = tl.program_id(0)  # fastest: the heads of a GQA group stream the same K chunks together
    hk = bhk % H_KV  # the table row: a kv head, or a query head (rank_per_head: KV_DIV = group)
    b = bhk // H_KV
    RP: tl.constexpr = SB * TP  # the program's rep rows, segment-major
    rep_base = REP + bhk.to(tl.int64) * (N_SEG * TP) * D
    offs_d = tl.arange(0, D)
    if RC == RP:  # every rep row in one product: loaded once
        reps_t, row_ok = _rep_rows(rep_base, tl.program_id(1) * RP, N, Q0, N_SEG, GROUP, SEG,
                                   ROWS, HPR, REPS, TP, RC, D, CHUNKED)
    # A key j is in segment g's prefix iff sink_end(g) <= j < lo(g) = g * SEG - LOCAL (at least
    # sink_end); chunked prefill: the segments before the one holding the first query have none.
    segs = tl.program_id(1) * SB + tl.arange(0, SB)
    seg_ok = segs < N_SEG
    if CHUNKED:
        seg_ok = seg_ok & (segs >= Q0 // SEG)
    s0 = segs * SEG
    sink_end = tl.minimum(s0, SINK)
    lo = tl.where(seg_ok, tl.maximum(s0 - LOCAL, sink_end), 0)
    c_lo = tl.program_id(2) * KEYS_PER_PROGRAM
    c_hi = tl.minimum(c_lo + KEYS_PER_PROGRAM, tl.max(lo, axis=0))  # past every prefix: none
    off = tl.load(OFFSETS + segs, mask=seg_ok, other=0)
    dst_col = SCORES + bhk.to(tl.int64) * TOTAL + off - sink_end  # + key: the table's slot
    k_head = K + b.to(tl.int64) * stride_kb + (hk // KV_DIV).to(tl.int64) * stride_kh
    best = tl.full([BK, SB], float("-inf"), dtype=tl.float32)
    k_ptrs = k_head + (c_lo + tl.arange(0, BK))[:, None].to(tl.int64) * stride_kn + offs_d[None, :]
    for c0 in range(c_lo, c_hi, BK):
        keys = c0 + tl.arange(0, BK)
        kc = tl.load(k_ptrs, mask=_row_col_mask(keys < N, offs_d, D_IN, D), other=0.0)
        k_ptrs += BK * stride_kn
        if RC == RP:
            s = _rep_scores(kc, reps_t, row_ok, scale, IEEE)
            if TP == 1:
                smax = s
            else:
                smax = tl.reduce(tl.reshape(s, [BK, SB, TP]), 2, _max_keep_nan)
        else:  # one segment (SB 1) of more rep slots than a product takes: RC at a time
            # (a loop, not unrolled: hoisted out of the K loop, every chunk's reps would stay)
            smax = tl.full([BK, 1], float("-inf"), dtype=tl.float32)
            for c in range(0, RP // RC):
                reps_t, row_ok = _rep_rows(rep_base, tl.program_id(1) * RP + c * RC, N, Q0,
                                           N_SEG, GROUP, SEG, ROWS, HPR, REPS, TP, RC, D,
                                           CHUNKED)
                s = _rep_scores(kc, reps_t, row_ok, scale, IEEE)
                smax = _max_keep_nan(smax, tl.reduce(s, 1, _max_keep_nan)[:, None])
        valid = (keys[:, None] >= sink_end[None, :]) & (keys[:, None] < lo[None, :])
        tl.store(dst_col[None, :] + keys[:, None], smax, mask=valid)
        # tl.maximum drops a NaN (maxnum), as the best must: a NaN score ranks first anyway
        best = tl.maximum(best, tl.where(valid, smax, float("-inf")))
    has = seg_ok & (sink_end < c_hi) & (c_lo < lo) & (sink_end < lo)
    tl.atomic_max(SEGMAX + bhk * N_SEG + segs, tl.max(best, axis=0), mask=has)


def _score_split(N: int, rows: int, seg_blocks: int, BK: int) -> int:
    """Keys per program of _prefix_scores_kernel (a multiple of BK): ~SCORE_PROGRAMS programs
    in all (32K: 512 keys a program, 128K: 8192, with 32 table rows), so that short sequences
    still fill the card and long ones stream long runs of chunks."""
    chunks = triton.cdiv(N, BK)
    splits = max(1, min(chunks, SCORE_PROGRAMS // max(1, rows * seg_blocks)))
    return triton.cdiv(chunks, splits) * BK


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
def _attend_tile(q, k, v, cols_ok, m_i, l_i, acc, qk_scale, MASKED: tl.constexpr,
                 IEEE: tl.constexpr):
    """One online-softmax step over a key tile. Returns (m, l, acc, gain).
    MASKED: cols_ok masks (row, key) pairs (causal diagonal, a partial tile). Else every pair
    counts and the scale is folded into the exponent (one FFMA per logit, as in the Triton
    tutorial; needs qk_scale >= 0)."""
    if IEEE:
        s = tl.dot(q, tl.trans(k), input_precision="ieee")
    else:
        s = tl.dot(q, tl.trans(k))
    if MASKED:
        s = tl.where(cols_ok, s * qk_scale, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        p = tl.math.exp2(s - m_new[:, None])
    else:
        m_new = tl.maximum(m_i, tl.max(s, axis=1) * qk_scale)
        p = tl.math.exp2(s * qk_scale - m_new[:, None])
    alpha = tl.math.exp2(m_i - m_new)
    gain = tl.sum(p, axis=1)
    l_i = l_i * alpha + gain
    if IEEE:
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision="ieee")
    else:
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
    return m_new, l_i, acc, gain


@triton.jit
def _stop_bound(gain, l_i, row_ok, tau, t, P, BN: tl.constexpr, REMAINING: tl.constexpr,
                MEAN: tl.constexpr):
    """Per row, after a tile (t: keys walked so far): the bound of the stop rule, the gain times
    the tiles left (stop_rule="remaining" and "mean") or the gain alone, over the row's mass.
    MEAN: that ratio for a valid row, 0 for a row past the sequence; else 1.0 where a valid row
    walks on (ratio >= tau, or NaN), 0.0 where it would stop."""
    if REMAINING:
        left = (tl.maximum(P - t, 0) + BN - 1) // BN
    else:
        left = 1
    if MEAN:
        return tl.where(row_ok, gain * left / l_i, 0.0)
    return ((~(gain * left < tau * l_i)) & row_ok).to(tl.float32)


@triton.jit
def _rule_held(bound, row_ok, tau, MEAN: tl.constexpr):
    """Whether the stop rule held after some tile of a chunk, from its [BM, TESTS] bounds
    (_stop_bound): for "mean" the rows' mean ratio below tau, else no row walking on."""
    if MEAN:
        held = tl.sum(bound, axis=0) < tau * tl.sum(row_ok.to(tl.float32), axis=0)
    else:
        held = tl.max(bound, axis=0) == 0.0
    return tl.max(held.to(tl.int32), axis=0) > 0


@triton.jit
def _s2o_attention_kernel(Q, K, V, O, TABLE, OFFSETS, VISITED,
                          stride_qb, stride_qh, stride_qn, stride_kb, stride_kh, stride_kn,
                          stride_vb, stride_vh, stride_vn,
                          N, Q0, H_Q, GROUP, T_DIV, N_MT, TOTAL, qk_scale, tau, SINK, LOCAL,
                          SEG: tl.constexpr, BM: tl.constexpr, HPT: tl.constexpr,
                          BN: tl.constexpr, D: tl.constexpr, D_IN: tl.constexpr,
                          IEEE: tl.constexpr, REMAINING: tl.constexpr, MEAN: tl.constexpr,
                          CHUNK: tl.constexpr, NUM_STAGES: tl.constexpr, WHOLE_TILES: tl.constexpr,
                          STOP: tl.constexpr, LONGEST_FIRST: tl.constexpr, OFF32: tl.constexpr,
                          STOP_EVERY: tl.constexpr, KEY_ORDER: tl.constexpr,
                          CHUNKED: tl.constexpr):
    """One query tile: BM rows = BM // HPT positions x HPT query heads of one GQA group.
    CHUNKED (chunked prefill): the queries are positions [Q0, N) (row p of Q and O is position
    Q0 + p); the N_MT tiles start at the one holding Q0, whose rows before it are masked. Off,
    Q0 is 0 and unused: a whole prefill compiles as it did before chunks (the same code was
    17% slower at 128K with Q0 = 0 in its address and mask arithmetic, H100 A/B, session 10)."""
    qk_scale = tl.cast(qk_scale, tl.float32)  # Inductor passes Python floats as fp64
    tau = tl.cast(tau, tl.float32)
    BMP: tl.constexpr = BM // HPT  # positions per tile
    mt_out = tl.program_id(0)  # the tile's slot in VISITED
    if LONGEST_FIRST:  # the last query tiles walk the longest prefixes: start them first
        mt_out = N_MT - 1 - mt_out
    mt = mt_out
    if CHUNKED:
        mt += Q0 // BMP
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
    q_row = offs_m  # the row of Q and O
    n_rows = N
    if CHUNKED:
        row_ok = row_ok & (offs_m >= Q0)
        q_row = offs_m - Q0
        n_rows = N - Q0
    q = tl.load(Q + b.to(tl.int64) * stride_qb + head[:, None].to(tl.int64) * stride_qh
                + q_row[:, None].to(tl.int64) * stride_qn + offs_d[None, :],
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
        k, v = _load_kv(k_base, v_base, cols, ok, stride_kn, stride_vn, offs_d, OFF32, D_IN, D)
        m_i, l_i, acc, gain = _attend_tile(q, k, v, ok[None, :], m_i, l_i, acc, qk_scale,
                                           not WHOLE_TILES, IEEE)
    # Pass 1b: local window and own keys [lo, hi), causal by original position. WHOLE_TILES: the
    # tiles before the query tile's first row are whole and all before it (no mask).
    if WHOLE_TILES:
        for start in range(lo, m0, BN):
            cols = start + offs_n
            k = _load_rows(k_base + _row_offsets(cols, stride_kn, offs_d, OFF32), offs_d, D_IN, D)
            v = _load_rows(v_base + _row_offsets(cols, stride_vn, offs_d, OFF32), offs_d, D_IN, D)
            m_i, l_i, acc, gain = _attend_tile(q, k, v, None, m_i, l_i, acc, qk_scale,
                                               False, IEEE)
        diag = m0
    else:
        diag = lo
    for start in range(diag, hi, BN):
        cols = start + offs_n
        ok = cols < hi
        k, v = _load_kv(k_base, v_base, cols, ok, stride_kn, stride_vn, offs_d, OFF32, D_IN, D)
        causal = ok[None, :] & (cols[None, :] <= offs_m[:, None])
        m_i, l_i, acc, gain = _attend_tile(q, k, v, causal, m_i, l_i, acc, qk_scale, True,
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
                                    offs_d, OFF32, D_IN, D, KEY_ORDER, sink_end)
            m_i, l_i, acc, gain = _attend_tile(q, k, v, ok[None, :], m_i, l_i, acc, qk_scale,
                                               not WHOLE_TILES, IEEE)
        n_vis = (P + BN - 1) // BN
    else:
        # The early stop needs a while loop, which Triton does not software-pipeline; an inner
        # for loop over a chunk of CHUNK steps (walk_chunk keys) is pipelined, and its loads do
        # not depend on the stop flag. The stop rule is tested after every STOP_EVERY steps (a
        # block_n tile, its gain summed over the steps and rescaled to the running max) into a
        # [BM, TESTS] matrix, elementwise; one reduction over the rows after the chunk decides
        # whether the rule held after any of its tiles, and then the walk ends there. So every
        # step that is loaded is also used (none is computed and dropped), and the CTA-wide
        # reduction with its barrier runs once per chunk instead of once per tile.
        # A step's table entries are loaded one step ahead and carried through the loop, so no
        # load inside the step feeds its K/V addresses: Triton still issues the K/V tiles two
        # steps ahead (three cp.async buffers), and the entries stay in the K/V address layout
        # (a chunk's entries loaded before its loop and picked by a masked sum moved them through
        # shared memory: 7 barriers per step instead of 2; 5-6% slower at 128K, BENCHMARKS.md
        # session 8). Two steps ahead made Triton 3.6 drop cp.async for the K/V tiles.
        TESTS: tl.constexpr = CHUNK // STOP_EVERY
        tests = tl.arange(0, TESTS)
        while go:
            idx_next = tl.load(t_base + t + offs_n, mask=t + offs_n < P, other=0)
            n_steps = tl.minimum((P - t + BN - 1) // BN, CHUNK)
            # column j: each row's _stop_bound after test j; inf where untested (walks on under
            # either reduction of _rule_held)
            bound = tl.full([BM, TESTS], float("inf"), dtype=tl.float32)
            gsum = tl.zeros([BM], dtype=tl.float32)
            for c in tl.range(0, n_steps, num_stages=NUM_STAGES):
                ok = t + c * BN + offs_n < P
                idx = idx_next
                nxt = t + (c + 1) * BN + offs_n
                idx_next = tl.load(t_base + nxt, mask=nxt < P, other=0)
                k, v = _gather_rows(idx, k_base, v_base, stride_kn, stride_vn, offs_d, OFF32, D_IN,
                                    D)
                m_prev = m_i
                m_i, l_i, acc, gain = _attend_tile(q, k, v, ok[None, :], m_i, l_i, acc,
                                                   qk_scale, not WHOLE_TILES, IEEE)
                gsum = gsum * tl.math.exp2(m_prev - m_i) + gain
                if (c % STOP_EVERY) == STOP_EVERY - 1:
                    b_row = _stop_bound(gsum, l_i, row_ok, tau, t + (c + 1) * BN, P,
                                        BN * STOP_EVERY, REMAINING, MEAN)
                    bound = tl.where((tests == c // STOP_EVERY)[None, :], b_row[:, None], bound)
                    gsum = tl.zeros([BM], dtype=tl.float32)
            n_vis += n_steps
            t += CHUNK * BN
            go = (t < P) & ~_rule_held(bound, row_ok, tau, MEAN)

    out = acc / l_i[:, None]
    tl.store(O + ((b * H_Q + head[:, None]).to(tl.int64) * n_rows + q_row[:, None]) * D_IN
             + offs_d[None, :], out.to(O.dtype.element_ty),
             mask=_row_col_mask(row_ok, offs_d, D_IN, D))
    n_vis = (n_vis + STOP_EVERY - 1) // STOP_EVERY  # in block_n tiles
    for i in tl.static_range(HPT):
        tl.store(VISITED + (b * H_Q + h0 + i) * N_MT + mt_out, n_vis)


def tracing() -> bool:
    """A compiler traces the op: Dynamo, or a dispatch mode such as make_fx's (FakeTensors)."""
    return torch.compiler.is_compiling() or torch._C._len_torch_dispatch_stack() > 0


# Shape-only tensors (table offsets, sort-block bounds, per-tile row counts) per shapes, config,
# device and stream: in eager mode an op call launched 47 small torch kernels, 37 of them to build
# these (host time, BENCHMARKS.md session 11). Read-only once built.
_SHAPE_CACHE: dict = {}
_SHAPE_CACHE_SIZE = 256


def _shape_tensors(key: tuple, device: torch.device, build):
    """build() once per (key, device, current stream) in eager mode. Built afresh while a
    compiler traces (FakeTensors must not be kept) or a CUDA graph captures (graph memory);
    the stream is part of the key, so no stream reads what another is still writing."""
    cuda = device.type == "cuda"
    if tracing() or (cuda and torch.cuda.is_current_stream_capturing()):
        return build()
    key = (*key, device, torch.cuda.current_stream(device).cuda_stream if cuda else None)
    value = _SHAPE_CACHE.get(key)
    if value is None:
        if len(_SHAPE_CACHE) >= _SHAPE_CACHE_SIZE:
            _SHAPE_CACHE.clear()
        value = _SHAPE_CACHE[key] = build()
    return value


def _offsets(N: int, q0: int, cfg: S2OConfig, device) -> torch.Tensor:
    """table_offsets of this call's shapes (cached: _shape_tensors)."""
    S, sink, local = cfg.segment_size, cfg.sink_tokens, cfg.local_window
    return _shape_tensors(("offsets", N, q0, S, sink, local), torch.device(device),
                          lambda: table_offsets(N, S, sink, local, device, q0))


def _launch(kernel, grid, *args, **kwargs):
    """Launches a Triton kernel: through wrap_triton while a compiler traces the op (Dynamo, or
    a dispatch mode such as make_fx's: the graph then holds the kernel for Inductor to
    schedule), directly otherwise. wrap_triton's eager dispatch costs ~0.2 ms of host time per
    launch (32K: 1.5 vs 0.5 ms per index table, H100, BENCHMARKS.md session 8), which the GPU
    would wait for whenever its work is shorter."""
    if tracing():
        wrap_triton(kernel)[grid](*args, **kwargs)
    else:
        kernel[grid](*args, **kwargs)


def build_index_table(q: torch.Tensor, k: torch.Tensor, scale: float, cfg: S2OConfig):
    """Flat int32 index table [B, R, total] and offsets [G + 1] (layout.py), on the device;
    offsets is shared by every call of these shapes (_shape_tensors): read it, never write it.
    R = Hkv, or Hq with rank_per_head: the kernels then rank per query head (a group of 1)
    and read K of kv head h // group. q may be shorter than k (chunked prefill: the last
    positions); the segments before the first query's get empty prefixes."""
    B, Hq, L, D = q.shape
    N = k.shape[2]
    q0 = N - L  # the first query's position
    R = table_heads(Hq, k.shape[1], cfg.rank_per_head)  # table rows per batch
    group = Hq // R  # query heads pooled per table row (1 with rank_per_head)
    kv_div = R // k.shape[1]  # table rows per kv head (the GQA group with rank_per_head, else 1)
    S = cfg.segment_size
    G = num_segments(N, S)
    offsets = _offsets(N, q0, cfg, q.device)
    total = table_size(N, S, cfg.sink_tokens, cfg.local_window, q0)
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
    # the scores kernel multiplies in k's dtype: reps stored in it are half the bytes it reads
    rep = torch.empty(B, R, G * TP, DP, dtype=k.dtype, device=q.device)
    meta = dict(SEG=S, ROWS=rows, HPR=hpr, REPS=reps, TP=TP, D=DP, D_IN=D)
    _launch(_pool_queries_kernel, ((G - q0 // S) * TP, B * R), q, rep, q.stride(0), q.stride(1),
            q.stride(2), N, q0, R, group, G * TP, RB=POOL_TILES[0], num_warps=POOL_TILES[1],
            **meta)

    # "sort" scores in place in the table (same layout, same 4 bytes) to save its size in memory
    scores = (torch.empty(B, R, total, dtype=torch.float32, device=q.device)
              if cfg.ordering == "tiers" else table.view(torch.float32))
    segmax = torch.full((B, R, G), float("-inf"), dtype=torch.float32, device=q.device)
    SB, BK, warps = SCORE_TILES
    if SCORE_WIDE and G >= 4 * SB:
        SB *= 2
    SB = min(SB, max(1, SCORE_REP_ROWS // TP))  # at most SCORE_REP_ROWS rep rows a product
    RC = min(SB * TP, SCORE_REP_ROWS)
    seg_blocks = triton.cdiv(G, SB)
    per_program = _score_split(N, B * R, seg_blocks, BK)
    _launch(_prefix_scores_kernel, (B * R, seg_blocks, triton.cdiv(N, per_program)), k, rep,
            scores, segmax, offsets, k.stride(0), k.stride(1), k.stride(2), N, q0, R, group,
            kv_div, G, total, per_program, scale, cfg.sink_tokens, cfg.local_window, SB=SB, BK=BK,
            IEEE=k.dtype == torch.float32, CHUNKED=q0 > 0, RC=RC, num_warps=warps,
            num_stages=SCORE_STAGES, **meta)

    if cfg.ordering == "tiers":
        _launch(_tier_table_kernel, (G, B * R), scores, segmax, offsets, table, G, total,
                cfg.sink_tokens, float(cfg.tier_width), SEG=S, NT=cfg.num_tiers,
                TP=triton.next_power_of_2(cfg.num_tiers + 1), CH=256)
    else:
        _sorted_table(table, segmax, offsets, N, q0, cfg)
    return table, offsets


SORT_BLOCK = 512  # keys per block of the counting sort (a power of two; BENCHMARKS.md session 7)
SORT_BINS = triton.next_power_of_2(SORT_MAX_KEY + 2)  # priorities 0 .. SORT_MAX_KEY, padding
# blocks per step of _block_starts_kernel's loops, its warps, and the warps of _block_keys_kernel:
# 128 blocks with 8 warps held 255 registers (one program an SM); 16 with 2 warps took 0.104
# against 0.206 ms at 128K, and the keys kernel with 2 warps 0.449 against 0.518 with 4
# (H200, BENCHMARKS.md session 18; 64 / 8, 32 / 4 and 8 keys warps were slower)
SORT_STARTS_ROWS = 16
SORT_STARTS_WARPS = 2
SORT_KEYS_WARPS = 2
# (SORT_KEYS_WARPS and KEYS_BLOCKS_PER_PROGRAM: the two-warp keys kernel, KEYS_ONE_WARP off)
# blocks per program of the keys and rank kernels (~262K programs each at 128K with one): 4, 16
# and 64 were slower or no faster (H200, BENCHMARKS.md session 14)
KEYS_BLOCKS_PER_PROGRAM = 1
RANK_BLOCKS_PER_PROGRAM = 1
# the keys kernel on one warp a block with a histogram from ballots (_warp_keys_kernel): 0.448
# -> 0.269 ms at 128K, 0.113 -> 0.070 at 64K, same tables (H200, BENCHMARKS.md session 21)
KEYS_ONE_WARP = True


def _sorted_table(table, segmax, offsets, N, q0, cfg):
    """ordering="sort": a stable sort per segment of the 7-bit priority (reference.priority_of),
    as a counting sort over blocks of SORT_BLOCK keys.

    table holds the float32 scores on entry (same layout) and the index table on return.
    _warp_keys_kernel (or _block_keys_kernel, KEYS_ONE_WARP off) writes each key's priority
    (uint8, laid out like the table) and each block's histogram; _block_starts_kernel turns a
    segment's histograms into where each (block, priority) run starts in the sorted segment;
    _block_rank_scatter_kernel writes each key's index entry at its run's start plus its rank
    among the block's keys of its priority.
    Stable: ties keep key order, within and across blocks. No int64 indices and no second pass
    over the keys: 2 bytes of scratch per table entry. At 128K the three kernels took 1.9 ms
    with a bitonic sort per block where torch.sort (cub's segmented radix sort with int64
    indices, plus keys and scatter) took 4.2 (H100, BENCHMARKS.md session 7); the rank scatter
    takes 0.93 ms at 128K where the bitonic sort took 1.21 (H200, session 14)."""
    B, R, total = table.shape
    S, BLK = cfg.segment_size, SORT_BLOCK
    G = offsets.numel() - 1  # every segment's, empty before the first query's

    def blocks():
        per_segment = (offsets[1:] - offsets[:-1] + BLK - 1) // BLK  # blocks per segment
        n_blocks = sum(triton.cdiv(sg.prefix_len, BLK)  # from shapes: no sync
                       for sg in segments(N, S, cfg.sink_tokens, cfg.local_window, q0))
        return (torch.nn.functional.pad(torch.cumsum(per_segment, 0), (1, 0)),
                torch.repeat_interleave(torch.arange(G, device=table.device), per_segment,
                                        output_size=n_blocks))
    block_offsets, block_segment = _shape_tensors(
        ("blocks", N, q0, S, cfg.sink_tokens, cfg.local_window, BLK), table.device, blocks)
    n_blocks = block_segment.numel()
    keys = torch.empty(B, R, total, dtype=torch.uint8, device=table.device)
    counts = torch.empty(B, R, n_blocks, SORT_BINS, dtype=torch.int32, device=table.device)
    meta = dict(BLK=BLK, NB=SORT_BINS)
    # PTX (match.any, ballots), so CUDA only; the interpreter compares keys instead, and other
    # GPUs keep the two-warp keys kernel (the comparisons would be slow there)
    asm = table.is_cuda and torch.version.hip is None
    if KEYS_ONE_WARP and (asm or not table.is_cuda):
        _launch(_warp_keys_kernel, (n_blocks, B * R), table.view(torch.float32), segmax,
                offsets, block_offsets, block_segment, keys, counts, total, G, n_blocks,
                STEPS=SORT_STEPS_PER_LOGIT, LAST=SORT_MAX_KEY - 1, ASM=asm, num_warps=1,
                **meta)
    else:
        bpp = KEYS_BLOCKS_PER_PROGRAM
        _launch(_block_keys_kernel, (triton.cdiv(n_blocks, bpp), B * R),
                table.view(torch.float32), segmax, offsets, block_offsets, block_segment, keys,
                counts, total, G, n_blocks, STEPS=SORT_STEPS_PER_LOGIT, LAST=SORT_MAX_KEY - 1,
                BPP=bpp, num_warps=SORT_KEYS_WARPS, **meta)
    _launch(_block_starts_kernel, (G, B * R), counts, block_offsets, n_blocks,
            NB=SORT_BINS, BB=SORT_STARTS_ROWS, num_warps=SORT_STARTS_WARPS)
    # one warp: _equal_before's match.any takes the 32 keys of a round one per lane
    bpp = RANK_BLOCKS_PER_PROGRAM
    _launch(_block_rank_scatter_kernel, (triton.cdiv(n_blocks, bpp), B * R), keys, counts, table,
            offsets, block_offsets, block_segment, total, cfg.sink_tokens, n_blocks, SEG=S,
            ASM=asm, BPP=bpp, num_warps=1, **meta)


@triton.jit
def _block_bounds(blk, OFFSETS, BLOCK_OFFSETS, BLOCK_SEGMENT, BLK: tl.constexpr):
    """Block blk of a table row (of all its segments' blocks): its segment g, the segment's
    table offset and prefix length, and the block's first prefix position."""
    g = tl.load(BLOCK_SEGMENT + blk)
    off = tl.load(OFFSETS + g)
    P = tl.load(OFFSETS + g + 1) - off
    return g, off, P, (blk - tl.load(BLOCK_OFFSETS + g)) * BLK


@triton.jit
def _block_keys_kernel(SCORES, SEGMAX, OFFSETS, BLOCK_OFFSETS, BLOCK_SEGMENT, KEYS, COUNTS, TOTAL,
                       G, N_BLOCKS, BLK: tl.constexpr, NB: tl.constexpr, STEPS: tl.constexpr,
                       LAST: tl.constexpr, BPP: tl.constexpr):
    """The priority (uint8) of each key of BPP blocks of a table row, and each block's
    histogram."""
    bh = tl.program_id(1)
    for i in range(BPP):
        blk = tl.program_id(0) * BPP + i
        if blk < N_BLOCKS:
            g, off, P, c0 = _block_bounds(blk, OFFSETS, BLOCK_OFFSETS, BLOCK_SEGMENT, BLK)
            c = c0 + tl.arange(0, BLK)
            real = c < P
            s = tl.load(SCORES + bh.to(tl.int64) * TOTAL + off + c, mask=real, other=0.0)
            prio = _priority(s, tl.load(SEGMAX + bh * G + g), STEPS, LAST)
            tl.store(KEYS + bh.to(tl.int64) * TOTAL + off + c, prio.to(tl.uint8), mask=real)
            tl.store(COUNTS + (bh.to(tl.int64) * N_BLOCKS + blk) * NB + tl.arange(0, NB),
                     tl.histogram(prio, NB, mask=real))


@triton.jit
def _priority(s, best, STEPS: tl.constexpr, LAST: tl.constexpr):
    """reference.priority_of of scores s against their segment's best (int32), as _tier but
    multiplying by STEPS: exact, where Triton's float division compiles to the approximate
    div.full.f32."""
    gap = tl.floor((best - s) * STEPS)
    gap = tl.where(gap == gap, gap, LAST)  # NaN (inf - inf) -> last
    prio = tl.minimum(tl.maximum(gap, 0.0), LAST) + 1.0
    return tl.where(s == s, prio, 0.0).to(tl.int32)  # a NaN score first


@triton.jit
def _hist4(key, ASM: tl.constexpr):
    """key [S, 32] on one warp, a row's 32 keys (0 .. 127) one a lane (Triton's layout for
    [S, 32] on one warp: the 32 columns on the lanes; checked in the sm_90 TTGIR): for each
    (row, lane l) the counts of bins 4 l + 0 .. 3 among the row's keys, as two int32 of two
    16-bit counts ($0: bins 4 l, 4 l + 1; $1: 4 l + 2, 4 l + 3). ASM: PTX (CUDA only), a bin's
    lanes the AND of each key bit's ballot or its complement, which ptxas takes with one R2P
    where tl.histogram shifts and tests each bit; a literal, as _equal_before's, not a module
    global. Else (the interpreter) the same counts by comparison."""
    if ASM:
        lo, hi = tl.inline_asm_elementwise(
            "{ .reg .pred p; .reg .b32 t, l, b0, b1, b2, b3, b4, b5, b6, n0, n1, hi, m, c;"
            " mov.u32 l, %laneid;"
            " and.b32 t, $2, 1; setp.ne.u32 p, t, 0; vote.sync.ballot.b32 b0, p, -1;"
            " and.b32 t, $2, 2; setp.ne.u32 p, t, 0; vote.sync.ballot.b32 b1, p, -1;"
            " and.b32 t, $2, 4; setp.ne.u32 p, t, 0; vote.sync.ballot.b32 b2, p, -1;"
            " and.b32 t, $2, 8; setp.ne.u32 p, t, 0; vote.sync.ballot.b32 b3, p, -1;"
            " and.b32 t, $2, 16; setp.ne.u32 p, t, 0; vote.sync.ballot.b32 b4, p, -1;"
            " and.b32 t, $2, 32; setp.ne.u32 p, t, 0; vote.sync.ballot.b32 b5, p, -1;"
            " and.b32 t, $2, 64; setp.ne.u32 p, t, 0; vote.sync.ballot.b32 b6, p, -1;"
            # hi: the lanes whose key's bits 2-6 are this lane's bits 0-4
            " bfe.u32 t, l, 0, 1; sub.u32 t, t, 1; xor.b32 hi, b2, t;"
            " bfe.u32 t, l, 1, 1; sub.u32 t, t, 1; xor.b32 m, b3, t; and.b32 hi, hi, m;"
            " bfe.u32 t, l, 2, 1; sub.u32 t, t, 1; xor.b32 m, b4, t; and.b32 hi, hi, m;"
            " bfe.u32 t, l, 3, 1; sub.u32 t, t, 1; xor.b32 m, b5, t; and.b32 hi, hi, m;"
            " bfe.u32 t, l, 4, 1; sub.u32 t, t, 1; xor.b32 m, b6, t; and.b32 hi, hi, m;"
            " not.b32 n0, b0; not.b32 n1, b1;"  # then bits 0-1: j = 0, 1 in $0, 2, 3 in $1
            " and.b32 m, hi, n0; and.b32 m, m, n1; popc.b32 $0, m;"
            " and.b32 m, hi, b0; and.b32 m, m, n1; popc.b32 c, m;"
            " shl.b32 c, c, 16; or.b32 $0, $0, c;"
            " and.b32 m, hi, n0; and.b32 m, m, b1; popc.b32 $1, m;"
            " and.b32 m, hi, b0; and.b32 m, m, b1; popc.b32 c, m;"
            " shl.b32 c, c, 16; or.b32 $1, $1, c; }",
            "=r,=r,r", [key], dtype=(tl.int32, tl.int32), is_pure=True, pack=1)
    else:
        bins = 4 * tl.arange(0, 32)[:, None] + tl.arange(0, 4)[None, :]  # [lane, j]
        cnt = tl.sum((key[:, None, None, :] == bins[None, :, :, None]).to(tl.int32), axis=3)
        shift = 16 * (tl.arange(0, 4) % 2)[None, None, :]
        lo = tl.sum(tl.where(tl.arange(0, 4)[None, None, :] < 2, cnt << shift, 0), axis=2)
        hi = tl.sum(tl.where(tl.arange(0, 4)[None, None, :] >= 2, cnt << shift, 0), axis=2)
    return lo, hi


@triton.jit
def _keys_rows(src, dst, best, n, BLK: tl.constexpr, NB: tl.constexpr, STEPS: tl.constexpr,
               LAST: tl.constexpr, ASM: tl.constexpr, MASKED: tl.constexpr):
    """_warp_keys_kernel's block as rows of 32 keys: the scores at src (n of them, MASKED),
    their priorities stored at dst, and the block's histogram (_hist4, summed over rows)."""
    c = tl.arange(0, (BLK + 31) // 32)[:, None] * 32 + tl.arange(0, 32)[None, :]  # [row, lane]
    if MASKED:
        real = (c < n) & (c < BLK)
        prio = _priority(tl.load(src + c, mask=real, other=0.0), best, STEPS, LAST)
        tl.store(dst + c, prio.to(tl.uint8), mask=real)
        prio = tl.where(real, prio, NB - 1)  # padding in bin NB - 1 (no key has it)
    else:
        prio = _priority(tl.load(src + c), best, STEPS, LAST)
        tl.store(dst + c, prio.to(tl.uint8))
    lo, hi = _hist4(prio, ASM)
    return tl.sum(lo, axis=0), tl.sum(hi, axis=0)


@triton.jit
def _warp_keys_kernel(SCORES, SEGMAX, OFFSETS, BLOCK_OFFSETS, BLOCK_SEGMENT, KEYS, COUNTS,
                      TOTAL, G, N_BLOCKS, BLK: tl.constexpr, NB: tl.constexpr,
                      STEPS: tl.constexpr, LAST: tl.constexpr, ASM: tl.constexpr):
    """_block_keys_kernel for one block on one warp, its histogram from _hist4 (a row of 32
    keys at a time, 16-bit counts summed over the rows) instead of tl.histogram. Same keys,
    same counts. NB = 128 (4 bins a lane)."""
    tl.static_assert(NB == 128, "4 bins a lane")
    tl.static_assert(LAST + 1 < NB - 1, "bin NB - 1 holds the padding")
    bh = tl.program_id(1)
    blk = tl.program_id(0)
    g, off, P, c0 = _block_bounds(blk, OFFSETS, BLOCK_OFFSETS, BLOCK_SEGMENT, BLK)
    best = tl.load(SEGMAX + bh * G + g)
    src = SCORES + bh.to(tl.int64) * TOTAL + off + c0
    dst = KEYS + bh.to(tl.int64) * TOTAL + off + c0
    if BLK % 32 == 0:
        if c0 + BLK <= P:  # a whole block (all but a segment's last): no masks
            lo, hi = _keys_rows(src, dst, best, P - c0, BLK, NB, STEPS, LAST, ASM, False)
        else:
            lo, hi = _keys_rows(src, dst, best, P - c0, BLK, NB, STEPS, LAST, ASM, True)
    else:
        lo, hi = _keys_rows(src, dst, best, P - c0, BLK, NB, STEPS, LAST, ASM, True)
    lane = tl.arange(0, 32)
    counts = COUNTS + (bh.to(tl.int64) * N_BLOCKS + blk) * NB + 4 * lane
    tl.store(counts, lo & 0xFFFF)
    tl.store(counts + 1, lo >> 16)
    tl.store(counts + 2, hi & 0xFFFF)
    tl.store(counts + 3, tl.where(lane == 31, 0, hi >> 16))  # bin NB - 1: no key has it


@triton.jit
def _block_starts_kernel(COUNTS, BLOCK_OFFSETS, N_BLOCKS, NB: tl.constexpr, BB: tl.constexpr):
    """A segment's block histograms, in place -> for each (block, priority), the first sorted
    position of the block's run of that priority: the segment's keys of smaller priority and
    the earlier blocks' keys of the same priority."""
    g = tl.program_id(0)
    bh = tl.program_id(1)
    b0 = tl.load(BLOCK_OFFSETS + g)
    b1 = tl.load(BLOCK_OFFSETS + g + 1)
    base = COUNTS + bh.to(tl.int64) * N_BLOCKS * NB
    bins = tl.arange(0, NB)
    total = tl.zeros([NB], dtype=tl.int32)
    for b in range(b0, b1, BB):
        blks = b + tl.arange(0, BB)
        m = (blks < b1)[:, None]
        total += tl.sum(tl.load(base + blks[:, None] * NB + bins[None, :], mask=m, other=0), axis=0)
    before = tl.cumsum(total, axis=0) - total  # keys of smaller priority in the segment
    for b in range(b0, b1, BB):
        blks = b + tl.arange(0, BB)
        m = (blks < b1)[:, None]
        cnt = tl.load(base + blks[:, None] * NB + bins[None, :], mask=m, other=0)
        tl.store(base + blks[:, None] * NB + bins[None, :],
                 before[None, :] + tl.cumsum(cnt, axis=0) - cnt, mask=m)
        before += tl.sum(cnt, axis=0)


@triton.jit
def _equal_before(key, ASM: tl.constexpr):
    """For 32 keys, one per lane of a one-warp program in lane order: how many earlier lanes
    hold the same key. ASM: one match.any.sync (sm_70+) per lane; else (the interpreter) a
    32 x 32 comparison."""
    if ASM:
        return tl.inline_asm_elementwise(
            "{ .reg .b32 m, lt; match.any.sync.b32 m, $1, -1; mov.u32 lt, %lanemask_lt; "
            "and.b32 m, m, lt; popc.b32 $0, m; }",
            "=r,r", [key], dtype=tl.int32, is_pure=True, pack=1)
    i = tl.arange(0, 32)
    same = (key[None, :] == key[:, None]) & (i[None, :] < i[:, None])
    return tl.sum(same.to(tl.int32), axis=1)


@triton.jit
def _block_rank_scatter_kernel(KEYS, STARTS, TABLE, OFFSETS, BLOCK_OFFSETS, BLOCK_SEGMENT, TOTAL,
                               SINK, N_BLOCKS, SEG: tl.constexpr, BLK: tl.constexpr,
                               NB: tl.constexpr, ASM: tl.constexpr, BPP: tl.constexpr):
    """Writes each key of a block (BPP blocks of a table row a program) at its sorted position
    in the segment, without sorting the block: its run's first position (_block_starts_kernel)
    plus the number of the block's earlier keys of the same priority, 32 keys (one per lane) a
    round: those before the round from a per-priority count carried over the rounds, those in
    it by match.any; the next round's keys are loaded a round ahead. Stable, as the bitonic
    sort of (priority, position) it replaces (session 14), with half its instructions (~93 a
    round, 16 rounds a block, against 2,984; Triton 3.6, sm_90) and 23% less time at 128K
    (H200). Fewer instructions still, two blocks interleaved, and coalesced stores each gained
    little or nothing (BENCHMARKS.md session 14)."""
    bh = tl.program_id(1)
    lane = tl.arange(0, 32)
    for i in range(BPP):
        blk = tl.program_id(0) * BPP + i
        if blk < N_BLOCKS:
            g, off, P, c0 = _block_bounds(blk, OFFSETS, BLOCK_OFFSETS, BLOCK_SEGMENT, BLK)
            run = tl.load(STARTS + (bh.to(tl.int64) * N_BLOCKS + blk) * NB + tl.arange(0, NB))
            first = tl.minimum(g * SEG, SINK) + c0  # the block's first key position
            src = KEYS + bh.to(tl.int64) * TOTAL + off + c0
            dst = TABLE + bh.to(tl.int64) * TOTAL + off
            # the next round's keys are loaded one round ahead (padding: no priority)
            key_next = tl.load(src + lane, mask=(lane < BLK) & (c0 + lane < P), other=NB - 1)
            for r in range(0, tl.minimum(BLK, P - c0), 32):
                c = r + lane
                real = (c < BLK) & (c0 + c < P)
                key = key_next.to(tl.int32)
                key_next = tl.load(src + c + 32, mask=(c + 32 < BLK) & (c0 + c + 32 < P),
                                   other=NB - 1)
                tl.store(dst + tl.gather(run, key, 0) + _equal_before(key, ASM), first + c,
                         mask=real)
                run += tl.histogram(key, NB, mask=real)


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
                         num_stages=3, **launch_options):
    """Runs the attention kernel: (out contiguous [B, Hq, L, D], visited int32 [B, Hq, n_mt]).
    q [B, Hq, L, D] may be shorter than k and v [B, Hkv, N, D] (chunked prefill: positions
    N - L .. N - 1; offsets from table_offsets(..., q_start=N - L)); n_mt counts the query tiles
    from the one holding the first query.
    table None (threshold 0 only): the walk takes every prefix in key order (walks_in_key_order).
    launch_options: A/B runs: Triton options (maxnreg), the kernel's switches (LONGEST_FIRST) or
    SUB_TILE_N (keys per step, a divisor of block_n)."""
    B, Hq, L, D = q.shape
    Hkv, N = k.shape[1], k.shape[2]
    q0 = N - L
    BM = cfg.block_m
    hpt = heads_per_tile(Hq // Hkv, BM, cfg.pack_gqa)
    n_mt = query_tiles(L, N, BM // hpt)
    out = torch.empty(B, Hq, L, D, dtype=q.dtype, device=q.device)
    visited = torch.empty(B, Hq, n_mt, dtype=torch.int32, device=q.device)
    bn = launch_options.pop("SUB_TILE_N", None) or sub_tile(cfg)  # A/B runs: another step width
    stop_every = cfg.block_n // bn
    chunk = cfg.walk_chunk // bn  # steps per chunk: a power of two, a multiple of stop_every
    key_order = table is None
    if key_order and cfg.threshold > 0:
        raise ValueError("attention_with_table: a walk with a stop rule needs the index table")
    # key order: offsets stand in for the table pointer (the kernel reads no table)
    table_arg, t_div, total = ((offsets, 1, 0) if key_order
                               else (table, Hq // table.shape[1], table.shape[-1]))
    switches = dict(WHOLE_TILES=whole_tiles(cfg, BM // hpt, scale), STOP=cfg.threshold > 0,
                    LONGEST_FIRST=True, STOP_EVERY=stop_every, KEY_ORDER=key_order,
                    CHUNKED=q0 > 0,
                    OFF32=(N - 1) * max(k.stride(2), v.stride(2)) + padded_head_dim(D) < 2 ** 31,
                    num_warps=num_warps or (8 if BM * padded_head_dim(D) >= 128 * 128 else 4),
                    num_stages=num_stages)
    switches.update(launch_options)  # A/B runs override any of them
    _launch(_s2o_attention_kernel, (n_mt, B * Hq // hpt), q, k, v, out, table_arg, offsets, visited,
            q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
            v.stride(0), v.stride(1), v.stride(2), N, q0, Hq, Hq // Hkv, t_div, n_mt, total,
            scale * 1.4426950408889634, float(cfg.threshold), cfg.sink_tokens, cfg.local_window,
            SEG=cfg.segment_size, BM=BM, HPT=hpt, BN=bn, D=padded_head_dim(D), D_IN=D,
            IEEE=q.dtype == torch.float32,
            REMAINING=cfg.stop_rule != "gain", MEAN=cfg.stop_rule == "mean", CHUNK=chunk,
            NUM_STAGES=num_stages, **switches)
    return out, visited


def pairs_from_visited(visited: torch.Tensor, N: int, cfg: S2OConfig,
                       group: int = 1, q_start: int = 0) -> torch.Tensor:
    """QK pairs computed per (batch, query head), from the visited tiles: int64 [B, Hq]
    (group: query heads per kv head, which sets the positions per query tile; q_start: the
    first query's position, > 0 in a chunked prefill)."""
    S = cfg.segment_size
    BM = cfg.block_m // heads_per_tile(group, cfg.block_m, cfg.pack_gqa)
    dev = visited.device

    def tiles():
        # pass 1 (sink, local, own keys) depends on shapes only: counted on the host
        dense = sum((sg.end - sg.start) * (sg.sink_end - sg.lo + 1)
                    + (sg.start + sg.end - 1) * (sg.end - sg.start) // 2
                    for sg in segments(N, S, cfg.sink_tokens, cfg.local_window, q_start))
        # per query tile: its query rows, and its ranked prefix's length
        m0 = (torch.arange(visited.shape[-1], device=dev) + q_start // BM) * BM
        rows = torch.clamp(N - m0, max=BM) - torch.clamp(q_start - m0, min=0)
        g0 = (m0 // S) * S
        return dense, rows, torch.clamp(g0 - cfg.local_window - cfg.sink_tokens, min=0)
    dense, rows, prefix = _shape_tensors(("tiles", N, q_start, S, BM, cfg.sink_tokens,
                                          cfg.local_window, visited.shape[-1]), dev, tiles)
    sparse = rows * torch.minimum(visited.to(torch.int64) * cfg.block_n, prefix)
    return dense + sparse.sum(-1)


def walks_in_key_order(cfg: S2OConfig) -> bool:
    """threshold 0 visits every key, so the order of the walk changes only the rounding: it
    takes each prefix in key order, with no ranking and no index table (time and memory)."""
    return cfg.threshold <= 0


def walk_table(q, k, scale: float, cfg: S2OConfig):
    """What the walk reads: (index table, offsets), or (None, offsets) where it walks in key
    order (no ranking)."""
    if walks_in_key_order(cfg):
        N = k.shape[2]
        return None, _offsets(N, N - q.shape[2], cfg, q.device)
    return build_index_table(q, k, scale, cfg)


def s2o_attention(q, k, v, scale: float, cfg: S2OConfig, attend=attention_with_table):
    """Full S2O on the GPU: (out, density float32 [B, Hq]). q may be shorter than k and v
    (chunked prefill: the last positions). attend: the walk kernel (the op passes
    walk.attention, which takes the Gluon pair kernel where it can)."""
    q, k, v = (x if x.stride(-1) == 1 else x.contiguous() for x in (q, k, v))
    table, offsets = walk_table(q, k, scale, cfg)
    out, visited = attend(q, k, v, table, offsets, scale, cfg)
    L, N = q.shape[2], k.shape[2]
    pairs = pairs_from_visited(visited, N, cfg, q.shape[1] // k.shape[1], q_start=N - L)
    return out, (pairs.double() / causal_pairs(L, N)).float()
