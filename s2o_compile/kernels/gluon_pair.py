"""The S2O walk as a tile pair, in Gluon (Triton's lower-level dialect) for Hopper (sm_90).

Same semantics as triton_s2o._s2o_attention_kernel (same visits, outputs within bf16 rounding)
on its common path; pair_unsupported says which calls it takes, the Triton kernel takes the rest.

One CTA per SM takes two adjacent 64-row query tiles of one segment. They share the segment's
ranked walk, so the K/V rows gathered through the index table are loaded once for both:
  - PW producer warps gather stream step j's K/V rows (cp.async) into ring buffer j % NBUF once
    both consumers released it (mbarriers `ready`, `empty`); their instructions take issue
    slots from the consumers (session 16: +168 a step cost 1.5-3.4%), so the step is kept lean
    (_copy_kv; the walk's rows straight from the table);
  - two consumer warpgroups, one per query tile, each run wgmma + online softmax + its own stop
    rule (block_m 64) or one stop rule for the pair's 128 rows (block_m 128, JOINT); their
    softmax is bound by instruction issue (session 23), so a warp whose rows all kept their
    maximum skips the o rescale (_rescale);
  - at each walk chunk's end the consumers exchange decisions (`sync`, `decide`): with block_m
    64 one that stopped releases buffers unread until the other stops too; the pair's end goes
    to the producer (`stop_smem`, read the same by every producer warp: _stop_step).
A step holds BN keys: 128 (one stop-rule tile, block_n 128) or 64. The stream: the pair's own
2 x 64 rows (causal; with 128-key steps the first tile computes only the step's first half,
_half_diagonal_step), the dense keys (the sink, then the local window) as a gathered list, then
the walk; a partial last dense or walk step is masked. The CTA's first warps issue both Q
tiles and step 0 before the partitions start (_first_copies); each consumer stores its output
through its Q tile's shared memory (whole rows a warp). Chunked prefill (q the last L of N
positions): the pairs from the one holding the first query (CHUNKED; rows before it masked).

Measured (H100, torch 2.11, triton 3.6, Llama shapes, structured workload, tau 0.8, attention
alone on the same table; BENCHMARKS.md session 13): 128K 21.5-21.8 ms against the Triton
kernel's 25.3-29.0 ms; 32K 3.15-3.23 against 3.55-3.62 ms. Built as an experiment in
benchmarks/gluon_walk.py (sessions 9-12), which keeps the other Gluon variants.

Gluon's API moves between Triton releases (3.9 has no gl.thread_barrier), so the pair kernel
runs only on the releases in PAIR_TRITON_VERSIONS; on a compile or launch failure the call runs
the Triton kernel instead and the reason is kept (pair_failures) and warned once.
"""
from __future__ import annotations

import os

import torch
import triton

from .layout import query_tiles

try:  # Gluon ships with Triton >= 3.5
    from triton.experimental import gluon
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon.language.nvidia.hopper import mbarrier
    from triton.runtime.jit import constexpr_function
    from triton.experimental.gluon.language.nvidia.hopper import (async_copy as cp,
                                                                  fence_async_shared,
                                                                  warpgroup_mma,
                                                                  warpgroup_mma_wait)
    HAVE_GLUON = True
except ImportError:  # pragma: no cover - depends on the installed Triton
    HAVE_GLUON = False

BLOCK = 64  # query rows per tile (wgmma M = 64 per warpgroup)
PAIR_TRITON_VERSIONS = ("3.6.",)  # the Triton releases the pair kernel was checked on
PAIR_SWITCH = "S2O_PAIR_KERNEL"  # environment: "0" sends every call to the Triton kernel
PRODUCER_WARPS = 4
TPW_ROWS = 4  # gathered rows per warp-instruction (session 9: 2 and 8 were slower)

if HAVE_GLUON:
    NO_STOP = gl.constexpr(2 ** 30)  # the walk's end before a stop is posted (past any stream)
    STAMP_SLOTS = gl.constexpr(48)  # int64 slots a CTA of the stamps (_stamp; 30 + 12 used)

    @constexpr_function
    def _mma(n):
        """wgmma accumulator layout of a [64, n] tile on one warpgroup."""
        return gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                         instr_shape=[16, n, 16])

    @constexpr_function
    def _rescale_asm(n):
        """PTX for a thread's n accumulator values times their rows' alpha, skipped by the
        whole warp (a uniform branch) where the flag operand says no row of the warp changed
        its maximum (alpha 1: the product would be the same bits). Operands: n outputs tied to
        the n values, the n alphas, the n flags (the warp's vote in _rescale, the same in a
        warp). ${:uid} makes the branch's label unique to each asm instance."""
        muls = " ".join(f"mul.f32 ${i}, ${i}, ${2 * n + i};" for i in range(n))
        return ("{ .reg .pred p; " f"setp.ne.u32 p, ${3 * n}, 0; @!p bra.uni RS${{:uid}}; "
                + muls + " RS${:uid}: }")

    @constexpr_function
    def _rescale_operands(n):
        """_rescale_asm's constraints: n outputs, n inputs tied to them, n alphas, n flags."""
        return ",".join(["=f"] * n + [str(i) for i in range(n)] + ["f"] * n + ["r"] * n)

    @constexpr_function
    def _piece_cols(D, TPW_ROWS):
        """The columns _copy_kv addresses per row: half of D where the 32 // TPW_ROWS threads of
        a warp-instruction (8 columns each) cover exactly half a row (the default: D 128,
        TPW_ROWS 4), so the second half is a constant offset; else all of D (a plain copy)."""
        return D // 2 if 8 * (32 // TPW_ROWS) == D // 2 else D

    @gluon.jit
    def _globaltimer():
        """The GPU's nanosecond timer (one clock for all SMs; _stamp)."""
        return gl.inline_asm_elementwise("mov.u64 $0, %globaltimer;", "=l", [], dtype=gl.int64,
                                         is_pure=False, pack=1)

    @gluon.jit
    def _clock():
        """The SM's clock (%clock64)."""
        return gl.inline_asm_elementwise("mov.u64 $0, %clock64;", "=l", [], dtype=gl.int64,
                                         is_pure=False, pack=1)

    @gluon.jit
    def _stamp(STAMP, i: gl.constexpr, value=None):
        """Debug timing (STAMPS, benchmarks/pair_ramp.py): slot i of this CTA's row of STAMP
        [ctas, STAMP_SLOTS] int64 gets value, or the SM's clock (%clock64) where value is
        None."""
        if value is None:
            value = _clock()
        cta = gl.program_id(0) + gl.program_id(1) * gl.num_programs(0)
        gl.store(STAMP + cta.to(gl.int64) * STAMP_SLOTS + i, value.to(gl.int64))

    @gluon.jit
    def _table_rows(t_base, w, P, rows_g, BN: gl.constexpr):
        """Walk step w's table entries (key indices); 0 where w < 0 or past the prefix P."""
        pos = w * BN + rows_g
        return gl.load(t_base + pos, mask=(pos < P) & (w >= 0), other=0)

    @gluon.jit
    def _q_row_starts(Q, bh, m0, N, Q0, stride_qb, stride_qh, stride_qn, rows_g, H_Q,
                      CHUNKED: gl.constexpr):
        """Where the query tile's rows (positions m0 + rows_g) start, and which hold a query:
        CHUNKED, row p of Q is position Q0 + p; rows outside [Q0, N) are not read."""
        pos = m0 + rows_g
        ok = pos < N
        if CHUNKED:
            ok = ok & (pos >= Q0)
            pos = pos - Q0
        head = Q + (bh // H_Q).to(gl.int64) * stride_qb + (bh % H_Q).to(gl.int64) * stride_qh
        return head + pos.to(gl.int64) * stride_qn, ok

    @gluon.jit
    def _q_rows(Q, bh, m0, N, Q0, stride_qb, stride_qh, stride_qn, rows_g, cols_g,
                H_Q: gl.constexpr, CHUNKED: gl.constexpr):
        """The query tile (positions m0 ...), loaded; rows without a query read as 0."""
        start, ok = _q_row_starts(Q, bh, m0, N, Q0, stride_qb, stride_qh, stride_qn, rows_g, H_Q,
                                  CHUNKED)
        return gl.load(start[:, None] + cols_g[None, :], mask=ok[:, None], other=0.0)

    @gluon.jit
    def _load_q(Q, q_smem, bh, m0, N, Q0, stride_qb, stride_qh, stride_qn, rows_g, cols_g,
                H_Q: gl.constexpr, CHUNKED: gl.constexpr):
        """The query tile into shared memory, fenced for wgmma (async proxy) reads."""
        q_smem.store(_q_rows(Q, bh, m0, N, Q0, stride_qb, stride_qh, stride_qn, rows_g, cols_g,
                             H_Q, CHUNKED))
        fence_async_shared()

    @gluon.jit
    def _copy_q(q_smem, Q, bh, m0, N, Q0, stride_qb, stride_qh, stride_qn, rows_g, cols_h, H_Q,
                D: gl.constexpr, CHUNKED: gl.constexpr):
        """cp.async of the query tile (positions m0 ...; as _q_rows, rows outside [Q0, N)
        zero-filled) into q_smem, in _copy_kv's layout (cols_h: a row's first half where
        _piece_cols halves it)."""
        start, ok = _q_row_starts(Q, bh, m0, N, Q0, stride_qb, stride_qh, stride_qn, rows_g, H_Q,
                                  CHUNKED)
        ptr = start[:, None] + cols_h[None, :]
        H: gl.constexpr = cols_h.shape[0]
        if H < D:
            cp.async_copy_global_to_shared(q_smem.slice(0, H, dim=1), ptr, mask=ok[:, None])
            cp.async_copy_global_to_shared(q_smem.slice(H, H, dim=1), ptr + H, mask=ok[:, None])
        else:
            cp.async_copy_global_to_shared(q_smem, ptr, mask=ok[:, None])

    @gluon.jit
    def _softmax_state(m0, N, Q0, BM: gl.constexpr, BN: gl.constexpr, D: gl.constexpr,
                       CHUNKED: gl.constexpr):
        """A query tile's rows and its initial online-softmax and stop-rule state:
        (offs_m, row_ok, m, l, o, gain sum, flags); row_ok: positions in [Q0, N)."""
        row_s: gl.constexpr = gl.SliceLayout(1, _mma(BN))
        offs_m = m0 + gl.arange(0, BM, layout=row_s)
        row_ok = offs_m < N
        if CHUNKED:
            row_ok = row_ok & (offs_m >= Q0)
        m_i = gl.full([BM], float("-inf"), gl.float32, layout=row_s)
        l_i = gl.zeros([BM], gl.float32, layout=row_s)
        o = gl.zeros([BM, D], gl.float32, layout=_mma(D))
        gsum = gl.zeros([BM], gl.float32, layout=row_s)
        flags = gl.zeros([BM], gl.int32, layout=row_s)
        return offs_m, row_ok, m_i, l_i, o, gsum, flags

    @gluon.jit
    def _scores_async(q_smem, k_buf, BM: gl.constexpr, BN: gl.constexpr):
        """Q K^T of a landed key tile, issued and not waited for."""
        return warpgroup_mma(q_smem, k_buf.permute((1, 0)),
                             gl.zeros([BM, BN], gl.float32, layout=_mma(BN)), use_acc=False,
                             is_async=True)

    @gluon.jit
    def _rescale(o, alpha, D: gl.constexpr, RESCALE_SKIP: gl.constexpr):
        """o times its rows' alpha. RESCALE_SKIP: a warp whose 16 rows all kept their maximum
        (alpha exactly 1, the usual case once the walk's best keys are behind it) skips the
        thread's D / 2 multiplies: a vote of the warp, then a uniform branch (_rescale_asm).
        The softmax phase of a step is bound by the consumers' instruction issue: in session
        23's A/B, 64 more instructions a warp and step cost ~4% (benchmarks/NOTES.md); this
        skip took 3.0-4.9% off the walk at 32K-128K (lazy23), same bits. Moving a row's maximum
        only when it grows by more than 8 (so that the skip holds more often) gained nothing
        more."""
        a = gl.convert_layout(alpha, gl.SliceLayout(1, _mma(D)))
        if RESCALE_SKIP:
            flag = gl.inline_asm_elementwise(
                "{ .reg .pred p, q; setp.neu.f32 p, $2, 0f3F800000; "
                "setp.neu.f32 q, $3, 0f3F800000; or.pred p, p, q; "
                "vote.sync.any.pred p, p, -1; selp.u32 $0, 1, 0, p; mov.u32 $1, $0; }",
                "=r,=r,f,f", [a], dtype=gl.int32, is_pure=True, pack=2)
            n: gl.constexpr = D // 2  # a thread's values of the [64, D] accumulator
            return gl.inline_asm_elementwise(_rescale_asm(n), _rescale_operands(n),
                                             [o, a[:, None], flag[:, None]], dtype=gl.float32,
                                             is_pure=True, pack=n)
        else:
            return o * a[:, None]

    @gluon.jit
    def _online_softmax(sc, m_i, l_i, o, qk_scale, D: gl.constexpr,
                        RESCALE_SKIP: gl.constexpr = False):
        """One online-softmax update from a step's scores (the scale folded into the exponent):
        (m, l, o rescaled, p, alpha, gain)."""
        m_new = gl.maximum(m_i, gl.max(sc, axis=1) * qk_scale)
        p = gl.exp2(sc * qk_scale - m_new[:, None])
        alpha = gl.exp2(m_i - m_new)
        gain = gl.sum(p, axis=1)
        l_i = l_i * alpha + gain
        o = _rescale(o, alpha, D, RESCALE_SKIP)
        return m_new, l_i, o, p, alpha, gain

    @gluon.jit
    def _walk_test(w, s, n_end, P, gsum, flags, alpha, gain, l_i, row_ok, tau,
                   BN: gl.constexpr, REMAINING: gl.constexpr, CHUNK: gl.constexpr,
                   STOP_EVERY: gl.constexpr, JOINT: gl.constexpr):
        """The stop rule after walk step w (triton_s2o._stop_bound / _rule_held, with a bit per
        test and row instead of a [BM, TESTS] matrix): returns (gsum, flags, n_end), n_end = s + 1
        where the rule held after some tile of the chunk that step w ends. JOINT: the chunk's
        flags are left for the pair's joint decision (_pair_consumer)."""
        gsum = gsum * alpha + gain
        if (w + 1) % STOP_EVERY == 0:
            if REMAINING:
                left = (gl.maximum(P - (w + 1) * BN, 0) + BN * STOP_EVERY - 1) // (BN * STOP_EVERY)
            else:
                left = 1
            on = (~(gsum * left < tau * l_i)) & row_ok  # this row walks on
            flags = flags | (on.to(gl.int32) << ((w % CHUNK) // STOP_EVERY))
            gsum = gl.zeros_like(gsum)
        if ((w + 1) % CHUNK == 0) & (not JOINT):
            # held after some tile of the chunk iff no row walked on after it
            if (~gl.reduce_or(flags, axis=0)) & ((1 << (CHUNK // STOP_EVERY)) - 1):
                n_end = s + 1
            flags = gl.zeros_like(flags)
        return gsum, flags, n_end

    @gluon.jit
    def _out_ptrs(O, bh, m0, N, Q0, BM: gl.constexpr, D: gl.constexpr, LAY: gl.constexpr,
                  CHUNKED: gl.constexpr):
        """The tile's output addresses and their row mask, in layout LAY: contiguous [B, Hq,
        N - Q0, D], position p at row p - Q0."""
        rows_o = m0 + gl.arange(0, BM, layout=gl.SliceLayout(1, LAY))
        ok = rows_o < N
        if CHUNKED:
            ok = ok & (rows_o >= Q0)
            rows_o = rows_o - Q0
        cols_o = gl.arange(0, D, layout=gl.SliceLayout(0, LAY))
        return (O + (bh.to(gl.int64) * (N - Q0) + rows_o.to(gl.int64))[:, None] * D
                + cols_o[None, :]), ok[:, None]

    @gluon.jit
    def _store_out(O, o, l_i, bh, m0, N, Q0, BM: gl.constexpr, D: gl.constexpr,
                   CHUNKED: gl.constexpr):
        """The tile's output rows (_out_ptrs), stored from the accumulator layout."""
        row_o: gl.constexpr = gl.SliceLayout(1, _mma(D))
        out = o / gl.convert_layout(l_i, row_o)[:, None]
        ptrs, ok = _out_ptrs(O, bh, m0, N, Q0, BM, D, _mma(D), CHUNKED)
        gl.store(ptrs, out.to(O.dtype.element_ty), mask=ok)

    @gluon.jit
    def _store_out_staged(O, o, l_i, stage, bh, m0, N, Q0, BM: gl.constexpr, D: gl.constexpr,
                          CHUNKED: gl.constexpr):
        """_store_out through shared memory (stage: the tile's Q buffer, free after its last
        Q K^T): from the accumulator layout a thread makes 32 stores of 4 bytes, a warp
        instruction over 8 rows, which kept a CTA's end waiting ~2 us (H100, session 17
        stamps); from a row-major layout a thread stores 16 bytes and a warp whole rows."""
        row_o: gl.constexpr = gl.SliceLayout(1, _mma(D))
        stage.store((o * (1.0 / gl.convert_layout(l_i, row_o))[:, None]).to(stage.dtype))
        gl.thread_barrier()  # the warpgroup's rows, before any thread reads them back
        TPR: gl.constexpr = D // 8  # threads a row, 8 elements (16 bytes) each
        rows_l: gl.constexpr = gl.BlockedLayout([1, 8], [32 // TPR, TPR], [4, 1], [1, 0])
        out = stage.load(rows_l)
        ptrs, ok = _out_ptrs(O, bh, m0, N, Q0, BM, D, rows_l, CHUNKED)
        gl.store(ptrs, out, mask=ok)

    @gluon.jit
    def _gather_index(BN: gl.constexpr, D: gl.constexpr, TPW_ROWS: gl.constexpr,
                      WARPS: gl.constexpr):
        """Row indices of a [BN, D] tile in the gathered copies' layout, and the columns of one
        warp-instruction's piece of a row (_piece_cols): a thread copies 8 columns, TPW_ROWS
        rows per warp-instruction, WARPS warps."""
        gather: gl.constexpr = gl.BlockedLayout([1, 8], [TPW_ROWS, 32 // TPW_ROWS], [WARPS, 1],
                                                [1, 0])
        return (gl.arange(0, BN, layout=gl.SliceLayout(1, gather)),
                gl.arange(0, _piece_cols(D, TPW_ROWS), layout=gl.SliceLayout(0, gather)))

    @gluon.jit
    def _post_stop(stop_smem, n_end):
        """Every producer warp's copy of the step where the walk ends (see _stop_step); stored
        by a 4-warp partition (a consumer warpgroup, or the prologue)."""
        four: gl.constexpr = gl.BlockedLayout([1], [32], [4], [0])
        stop_smem.store(gl.full(stop_smem.shape, n_end, gl.int32, layout=four))

    @gluon.jit
    def _stop_step(stop_smem, seen, j, PW: gl.constexpr):
        """The walk's end as all PW producer warps see it at step j: each warp reads its copy
        and writes what it read to its slot of seen[j % 2]; after the partition's barrier every
        warp takes the minimum of the same slots. Read by each warp alone (sessions 9-12), a
        consumer's write could land between two warps' reads, so one warp left the copy loop a
        step early; the loop's partition barriers (bar.sync 3, 128, which Triton's membar pass
        puts there) then paired that warp's exit barrier with the others' loop barrier, and the
        rest hung at the next one (benchmarks/pp_protocol_sim.py reproduces it in a model of the
        protocol). seen is double-buffered: a warp writes seen[j % 2] again at step j + 2, after
        the barrier of step j + 1, which every warp reaches after its read at step j. A minimum
        over warps by gl.min alone is not enough: the compiler lets each warp load every copy.
        Only the copy stored by the consumer's arriving thread is sure to be visible after its
        release; a stale copy here is the initial NO_STOP, so the minimum is the newest end."""
        per_warp: gl.constexpr = gl.BlockedLayout([1], [32], [PW], [0])
        every: gl.constexpr = gl.BlockedLayout([PW], [32], [PW], [0])
        slots = seen.index(j % 2)
        slots.store(stop_smem.load(per_warp))
        gl.thread_barrier()
        return gl.min(slots.load(every), axis=0)

    @gluon.jit
    def _claim_slot(j, n_end, empty, stop_smem, seen, NBUF: gl.constexpr, PW: gl.constexpr):
        """Before the producer's copies of step j: from step NBUF on, wait until the consumers
        released its buffer (step j - NBUF), then take the walk's end as it stands
        (_stop_step). Returns the end. Reading the end before the wait (and waiting only for a
        step copied; benchmarks/pp_protocol_sim.py --early-end: no hang) was 0.1-3.1% slower
        (session 21, code at 4dbc2f5)."""
        if j >= NBUF:
            mbarrier.wait(empty.index(j % NBUF), ((j // NBUF) - 1) & 1)
            n_end = gl.minimum(n_end, _stop_step(stop_smem, seen, j, PW))
        return n_end

    @gluon.jit
    def _pair_rows(s, m0, n_diag, n_dense, sink_end, lo, n_d, rows_g, BN: gl.constexpr):
        """Key rows of the pair's dense step s < n_dense (BN keys a step): the n_diag steps over
        the pair's own 2 x 64 rows (the later first), then the n_d dense keys (the sink
        [0, sink_end), then [lo, m0); row 0 past them, masked). The walk's rows come from the
        table (_table_rows)."""
        i = (s - n_diag) * BN + rows_g
        dense = gl.where(i < n_d, gl.where(i < sink_end, i, lo - sink_end + i), 0)
        return gl.where(s < n_diag, m0 + (n_diag - 1 - s) * BN + rows_g, dense)

    @gluon.jit
    def _pair_mask(sc, s, m0, N, offs_m, n_dense, n_d, P, BM: gl.constexpr, BN: gl.constexpr):
        """A step's scores, masked: a diagonal step causally (and past N), the last dense or
        walk step where it runs past the n_d dense keys or the P ranked ones (a partial step of
        128 keys); other steps unchanged."""
        n_diag: gl.constexpr = 2 * BM // BN
        cols = gl.arange(0, BN, layout=gl.SliceLayout(0, _mma(BN)))
        if s < n_diag:
            keys = m0 + (n_diag - 1 - s) * BN + cols
            sc = gl.where((keys[None, :] <= offs_m[:, None]) & (keys < N)[None, :], sc,
                          float("-inf"))
        else:
            if s < n_dense:
                first = (s - n_diag) * BN
                if first + BN > n_d:
                    sc = gl.where((first + cols < n_d)[None, :], sc, float("-inf"))
            else:
                first = (s - n_dense) * BN
                if first + BN > P:
                    sc = gl.where((first + cols < P)[None, :], sc, float("-inf"))
        return sc

    @gluon.jit
    def _copy_kv(k_bufs, v_bufs, slot, rows, N, k_base, v_base, stride_kn, stride_vn, cols_h,
                 D: gl.constexpr, OFF32: gl.constexpr):
        """cp.async of the K and V rows `rows` into buffer `slot`; rows past N (a diagonal step
        of the last pair) zero-filled. A thread copies one 16-byte piece of a row per cols_h
        columns: with D 128, a row's two halves from one address, the second at a constant
        offset (no address arithmetic of its own); row offsets in 32 bits where they fit
        (OFF32). Session 16: the producer's step 316 -> 166 SASS instructions, the walk 0-4.6%
        faster (its instructions take issue slots from the consumers)."""
        ok = (rows < N)[:, None]
        if OFF32:
            k_rows = k_base + rows * stride_kn
            v_rows = v_base + rows * stride_vn
        else:
            k_rows = k_base + rows.to(gl.int64) * stride_kn
            v_rows = v_base + rows.to(gl.int64) * stride_vn
        k_ptr = k_rows[:, None] + cols_h[None, :]
        v_ptr = v_rows[:, None] + cols_h[None, :]
        H: gl.constexpr = cols_h.shape[0]
        k_buf = k_bufs.index(slot)
        v_buf = v_bufs.index(slot)
        if H < D:
            cp.async_copy_global_to_shared(k_buf.slice(0, H, dim=1), k_ptr, mask=ok)
            cp.async_copy_global_to_shared(k_buf.slice(H, H, dim=1), k_ptr + H, mask=ok)
            cp.async_copy_global_to_shared(v_buf.slice(0, H, dim=1), v_ptr, mask=ok)
            cp.async_copy_global_to_shared(v_buf.slice(H, H, dim=1), v_ptr + H, mask=ok)
        else:
            cp.async_copy_global_to_shared(k_buf, k_ptr, mask=ok)
            cp.async_copy_global_to_shared(v_buf, v_ptr, mask=ok)

    @gluon.jit
    def _copy_step(k_bufs, v_bufs, ready, slot, rows, N, k_base, v_base, stride_kn, stride_vn,
                   cols_h, D: gl.constexpr, OFF32: gl.constexpr):
        """A producer step by cp.async: _copy_kv, then each thread's arrival on ready[slot]
        once its copies land."""
        _copy_kv(k_bufs, v_bufs, slot, rows, N, k_base, v_base, stride_kn, stride_vn, cols_h,
                 D, OFF32)
        cp.mbarrier_arrive(ready.index(slot), increment_count=False)

    @gluon.jit
    def _pair_producer(k_bufs, v_bufs, ready, empty, stop_smem, seen, k_base, v_base,
                       stride_kn, stride_vn, m0, N, n_diag, n_dense, sink_end, lo, n_d, P,
                       n_total, t_base, BN: gl.constexpr, D: gl.constexpr, NBUF: gl.constexpr,
                       TPW_ROWS: gl.constexpr, PW: gl.constexpr, OFF32: gl.constexpr,
                       STAMP, STAMPS: gl.constexpr):
        """Producer warps of a tile pair: gather step j's K/V rows into buffer j % NBUF once
        both consumers released it, up to the step where the pair stopped (stop_smem). Step 0
        was issued by the kernel's prologue (_first_copies), which also loaded the walk's
        bounds (P, n_total, t_base)."""
        if STAMPS:
            _stamp(STAMP, 16)  # the partition's start
        rows_g, cols_h = _gather_index(BN, D, TPW_ROWS, PW)
        j = 1
        n_end = NO_STOP
        while j < n_dense:  # the pair's own rows, the sink and the window (no stop before)
            slot = j % NBUF
            n_end = _claim_slot(j, n_end, empty, stop_smem, seen, NBUF, PW)
            _copy_step(k_bufs, v_bufs, ready, slot, _pair_rows(
                j, m0, n_diag, n_dense, sink_end, lo, n_d, rows_g, BN), N, k_base, v_base,
                stride_kn, stride_vn, cols_h, D, OFF32)
            j += 1
        n_end = gl.minimum(n_end, n_total)
        rows = _table_rows(t_base, j - n_dense, P, rows_g, BN)
        while j < n_end:  # the walk: the rows straight from the table
            slot = j % NBUF
            n_end = _claim_slot(j, n_end, empty, stop_smem, seen, NBUF, PW)
            if j < n_end:
                _copy_step(k_bufs, v_bufs, ready, slot, rows, N, k_base, v_base, stride_kn,
                           stride_vn, cols_h, D, OFF32)
                # the next step's entries load while the consumers hold its buffer (session
                # 20: loaded after the wait, their latency delayed each step's copies; the
                # walk 0.5-3.1% faster, a lone tile's step 1.50 -> 1.40 us)
                rows = _table_rows(t_base, j + 1 - n_dense, P, rows_g, BN)
            j += 1
        if STAMPS:
            _stamp(STAMP, 8)
        cp.commit_group()
        cp.wait_group(0)  # copies issued ahead of a stop land before the CTA exits
        if STAMPS:
            _stamp(STAMP, 9)

    @gluon.jit
    def _exchange(X: gl.constexpr, c, post, decide, sync):
        """At walk chunk c's end: post tile X's decision (whether it stopped, or with JOINT its
        chunk's walk-on bits), wait for the other tile's post, return it. decide is
        double-buffered by chunk parity: a tile posts chunk c + 2 only after the other's post of
        chunk c + 1, which it makes after reading chunk c's."""
        one: gl.constexpr = gl.BlockedLayout([1], [32], [4], [0])
        decide.index((c % 2) * 2 + X).store(gl.full([1], 1, gl.int32, layout=one)
                                            * post.to(gl.int32))
        mbarrier.arrive(sync)
        mbarrier.wait(sync, c & 1)
        return gl.max(decide.index((c % 2) * 2 + 1 - X).load(one), axis=0)

    @gluon.jit
    def _pair_step(q_smem, k_buf, v_buf, t, s, m0, N, offs_m, row_ok, n_dense, n_d, P, m_i, l_i,
                   o, gsum, flags, n_me, qk_scale, tau, BM: gl.constexpr, BN: gl.constexpr,
                   D: gl.constexpr, REMAINING: gl.constexpr, CHUNK: gl.constexpr,
                   STOP_EVERY: gl.constexpr, JOINT: gl.constexpr, RESCALE_SKIP: gl.constexpr,
                   STAMPS: gl.constexpr):
        """A consumer's step t of its pair's stream over the landed K/V tile: Q K^T, the step's
        mask, the online softmax, P @ V, and on a walk step the stop rule (whose end is s + 1:
        s is step t as the producer counts it). Returns (m, l, o, gsum, flags, n_me, phases);
        phases (STAMPS, else zeros): the SM clocks of the fence, Q K^T issued to landed, the
        mask and softmax to P @ V issued, the stop rule and P @ V to landed."""
        p_op: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=_mma(D), k_width=2)
        c0 = _clock() if STAMPS else 0
        fence_async_shared()  # cp.async wrote the tile (generic proxy); wgmma reads it
        c1 = _clock() if STAMPS else 0
        sc = _scores_async(q_smem, k_buf, BM, BN)
        sc = warpgroup_mma_wait(0, deps=(sc, ))
        c2 = _clock() if STAMPS else 0
        sc = _pair_mask(sc, t, m0, N, offs_m, n_dense, n_d, P, BM, BN)
        m_i, l_i, o, p, alpha, gain = _online_softmax(sc, m_i, l_i, o, qk_scale, D,
                                                      RESCALE_SKIP)
        o = warpgroup_mma(gl.convert_layout(p.to(k_buf.dtype), p_op), v_buf, o, is_async=True)
        c3 = _clock() if STAMPS else 0
        if t >= n_dense:
            gsum, flags, n_me = _walk_test(t - n_dense, s, n_me, P, gsum, flags, alpha, gain,
                                           l_i, row_ok, tau, BN, REMAINING, CHUNK, STOP_EVERY,
                                           JOINT)
        o = warpgroup_mma_wait(0, deps=(o, ))
        c4 = _clock() if STAMPS else 0
        return m_i, l_i, o, gsum, flags, n_me, (c1 - c0, c2 - c1, c3 - c2, c4 - c3)

    @gluon.jit
    def _half_diagonal_step(q_smem, k_buf, v_buf, m0, N, offs_m, l_i, o, qk_scale,
                            BM: gl.constexpr, D: gl.constexpr):
        """The first tile's step 0 with 128-key steps: only keys m0 .. m0 + BM - 1 of the
        pair's diagonal step precede some of its rows (the other half follows them all), so
        Q K^T and P @ V run on that half (N = 64). The tile's first step: its softmax state
        starts here. Returns (m, l, o) in the full step's layouts."""
        row_h: gl.constexpr = gl.SliceLayout(1, _mma(BM))
        p_op: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=_mma(D), k_width=2)
        fence_async_shared()
        sc = warpgroup_mma(q_smem, k_buf.slice(0, BM).permute((1, 0)),
                           gl.zeros([BM, BM], gl.float32, layout=_mma(BM)), use_acc=False,
                           is_async=True)
        sc = warpgroup_mma_wait(0, deps=(sc, ))
        keys = m0 + gl.arange(0, BM, layout=gl.SliceLayout(0, _mma(BM)))
        rows = gl.convert_layout(offs_m, row_h)
        sc = gl.where((keys[None, :] <= rows[:, None]) & (keys < N)[None, :], sc, float("-inf"))
        m_h = gl.max(sc, axis=1) * qk_scale
        p = gl.exp2(sc * qk_scale - m_h[:, None])
        l_h = gl.sum(p, axis=1)
        o = warpgroup_mma(gl.convert_layout(p.to(k_buf.dtype), p_op), v_buf.slice(0, BM), o,
                          use_acc=False, is_async=True)
        o = warpgroup_mma_wait(0, deps=(o, ))
        return gl.convert_layout(m_h, l_i.type.layout), gl.convert_layout(l_h, l_i.type.layout), o

    @gluon.jit
    def _pair_consumer(X: gl.constexpr, q_smem, k_bufs, v_bufs, ready, empty, sync, decide,
                       stop_smem, O, VISITED, bh, mt, m0, N, N_VIS, n_dense, n_d, P, n_total,
                       q_bar, qk_scale, tau, BM: gl.constexpr, BN: gl.constexpr,
                       D: gl.constexpr, REMAINING: gl.constexpr, CHUNK: gl.constexpr,
                       STOP_EVERY: gl.constexpr, NBUF: gl.constexpr, JOINT: gl.constexpr, Q0,
                       CHUNKED: gl.constexpr, RESCALE_SKIP: gl.constexpr, STAMP,
                       STAMPS: gl.constexpr):
        """Consumer warpgroup X of a tile pair (query rows m0 + X * BM ...): the pair's stream of
        steps, computing those it needs and releasing every buffer. At each walk chunk's end the
        two exchange decisions. Each tile its own stop rule (block_m 64): a consumer that stopped
        keeps releasing buffers unread until the other stops too. JOINT (block_m 128): one rule
        for the pair's 128 rows, held after a test iff no row of either tile walks on after it,
        so both tiles walk to the same end. The pair's end goes to the producer before the
        release of its last step. Its Q tile comes from the prologue's copies (q_bar), the
        walk's P ranked keys and n_total steps from its loads (_first_copies)."""
        n_diag: gl.constexpr = 2 * BM // BN
        TESTS: gl.constexpr = CHUNK // STOP_EVERY
        HALF: gl.constexpr = X == 0 and n_diag == 1  # _half_diagonal_step
        mx = m0 + X * BM
        if STAMPS and X == 0:
            _stamp(STAMP, 12)  # the partition's start
        mbarrier.wait(q_bar, 0)  # both Q tiles landed (cp.async)
        if STAMPS and X == 0:  # Q landed (15) and ready for wgmma (3): one moment now
            _stamp(STAMP, 15)
            _stamp(STAMP, 3)
        offs_m, row_ok, m_i, l_i, o, gsum, flags = _softmax_state(mx, N, Q0, BM, BN, D, CHUNKED)
        # a tile with no rows in [Q0, N) (a last one past N, or a chunk's first one before Q0)
        # only releases buffers
        active = mx < N
        if CHUNKED:
            active = active & (mx + BM > Q0)
        has_rows = active
        s = 0
        n_end = n_total  # the pair's end
        n_me = n_total  # this tile's end
        if STAMPS:  # this tile's walk steps and their clocks waiting for K/V: both walking, alone
            alone = mx < 0
            wait_both = mx.to(gl.int64) * 0
            wait_alone = wait_both
            steps_both = wait_both
            steps_alone = wait_both
            ph_fence = wait_both  # the phases of the walk steps both tiles walk (_pair_step)
            ph_qk = wait_both
            ph_soft = wait_both
            ph_pv = wait_both
            ph_step = wait_both  # loop top to the next loop top
            ph_steps = wait_both
            ph_counted = mx < 0  # False, as a runtime value the loop can carry
            t_prev = wait_both
        while s < n_end:
            slot = s % NBUF
            if STAMPS:
                t0 = _clock()
                if ph_counted:
                    ph_step += t0 - t_prev
                ph_counted = mx < 0
                t_prev = t0
            mbarrier.wait(ready.index(slot), (s // NBUF) & 1)
            if STAMPS:
                if active & (s >= n_dense):
                    waited = _clock() - t0
                    wait_both += gl.where(alone, 0, waited)
                    wait_alone += gl.where(alone, waited, 0)
                    steps_both += (~alone).to(gl.int64)
                    steps_alone += alone.to(gl.int64)
            if STAMPS and X == 0:
                if s == 0:
                    _stamp(STAMP, 4)
            # a diagonal step whose keys all follow this tile's rows is skipped (64-key steps:
            # the first tile's step 0)
            need = active & ((s >= n_diag) | (m0 + (n_diag - 1 - s) * BN < mx + BM))
            if HALF & (s == 0) & need:
                m_i, l_i, o = _half_diagonal_step(q_smem, k_bufs.index(slot), v_bufs.index(slot),
                                                  m0, N, offs_m, l_i, o, qk_scale, BM, D)
            elif need:
                m_i, l_i, o, gsum, flags, n_me, ph = _pair_step(
                    q_smem, k_bufs.index(slot), v_bufs.index(slot), s, s, m0, N, offs_m, row_ok,
                    n_dense, n_d, P, m_i, l_i, o, gsum, flags, n_me, qk_scale, tau, BM, BN, D,
                    REMAINING, CHUNK, STOP_EVERY, JOINT, RESCALE_SKIP, STAMPS)
                if STAMPS:
                    if (s >= n_dense) & (~alone):  # a walk step both tiles walk
                        ph_fence += ph[0]
                        ph_qk += ph[1]
                        ph_soft += ph[2]
                        ph_pv += ph[3]
                        ph_steps += 1
                        ph_counted = True
            w = s - n_dense
            if (w >= 0) & ((w + 1) % CHUNK == 0) & (s + 1 < n_end):
                c = w // CHUNK  # both tiles decide at the same chunk ends (one walk)
                if JOINT:
                    mine = gl.reduce_or(flags, axis=0)  # the tests after which a row walks on
                    flags = gl.zeros_like(flags)
                    walks_on = mine | _exchange(X, c, mine, decide, sync)
                    if (~walks_on) & ((1 << TESTS) - 1):  # tell the producer, as below
                        n_end = s + 1
                        n_me = n_end
                        _post_stop(stop_smem, n_end)
                else:
                    stopped = (n_me <= s + 1) | (~active)
                    other = _exchange(X, c, stopped, decide, sync)
                    if STAMPS:
                        if stopped & active:  # this tile's own end: its step (18 + X), clock
                            _stamp(STAMP, 18 + X, s + 1)
                            _stamp(STAMP, 20 + X)
                    active = ~stopped
                    if STAMPS:
                        alone = active & (other != 0)
                    if stopped & (other != 0):  # tell the producer, before the release below
                        n_end = s + 1
                        _post_stop(stop_smem, n_end)
            mbarrier.arrive(empty.index(slot))
            s += 1
        if STAMPS:
            _stamp(STAMP, 5 + 8 * X)  # the loop's end: consumer 0's (5), consumer 1's (13)
            _stamp(STAMP, 22 + X, wait_both)
            _stamp(STAMP, 24 + X, wait_alone)
            _stamp(STAMP, 26 + X, steps_both)
            _stamp(STAMP, 28 + X, steps_alone)
            _stamp(STAMP, 32 + 8 * X, ph_fence)  # 32-37, consumer 1: 40-45
            _stamp(STAMP, 33 + 8 * X, ph_qk)
            _stamp(STAMP, 34 + 8 * X, ph_soft)
            _stamp(STAMP, 35 + 8 * X, ph_pv)
            _stamp(STAMP, 36 + 8 * X, ph_step)
            _stamp(STAMP, 37 + 8 * X, ph_steps)
        if has_rows:
            _store_out_staged(O, o, l_i, q_smem, bh, mx, N, Q0, BM, D, CHUNKED)
        if STAMPS:  # clocks: consumer 0's end (6), consumer 1's (11); 7: steps streamed
            _stamp(STAMP, 6 + 5 * X)
            if X == 0:
                _stamp(STAMP, 7, s)
                _stamp(STAMP, 10, _globaltimer())
        # walked tiles (block_n), counted from the query tile holding Q0; JOINT: one count for
        # the pair's 128 rows (both tiles reach the same end), stored by the first tile
        n_vis = gl.maximum(gl.minimum(n_me, n_end) - n_dense, 0)
        n_vis = (n_vis + STOP_EVERY - 1) // STOP_EVERY
        if JOINT:
            if X == 0:
                gl.store(VISITED + bh * N_VIS + mt // 2 - Q0 // (2 * BM), n_vis)
        elif has_rows:
            gl.store(VISITED + bh * N_VIS + mt + X - Q0 // BM, n_vis)

    @gluon.jit
    def _pair_start(rank, bh, N_MT, SINK, LOCAL, SEG: gl.constexpr, BM: gl.constexpr,
                    BN: gl.constexpr):
        """What the stream of the tile pair of rank `rank` (0: the longest prefixes) of head bh
        needs before its walk, without a load: (its first tile mt, first row m0, its segment
        g, the sink's end, the window's start lo, the n_d dense keys, the n_dense steps before
        the walk)."""
        mt = ((N_MT + 1) // 2 - 1 - rank) * 2
        m0 = mt * BM
        g = m0 // SEG
        s0 = g * SEG
        sink_end = gl.minimum(s0, SINK)
        lo = gl.maximum(s0 - LOCAL, sink_end)
        n_d = sink_end + (m0 - lo)  # dense keys before the pair: the sink, then [lo, m0)
        n_dense = 2 * BM // BN + (n_d + BN - 1) // BN
        return mt, m0, g, sink_end, lo, n_d, n_dense

    @gluon.jit
    def _pair_walk(g, bh, n_dense, OFFSETS, TABLE, T_DIV, TOTAL, BN: gl.constexpr):
        """The pair's walk: (its P ranked keys, the stream's n_total steps, the table's base)."""
        off = gl.load(OFFSETS + g)
        P = (gl.load(OFFSETS + g + 1) - off).to(gl.int32)
        t_base = TABLE + (bh // T_DIV).to(gl.int64) * TOTAL + off
        return P, n_dense + (P + BN - 1) // BN, t_base

    @gluon.jit
    def _kv_bases(bh, K, V, stride_kb, stride_kh, stride_vb, stride_vh, H_Q, GROUP: gl.constexpr):
        """Head bh's K and V (its kv head's)."""
        b = bh // H_Q
        hk = (bh % H_Q) // GROUP
        return (K + b.to(gl.int64) * stride_kb + hk.to(gl.int64) * stride_kh,
                V + b.to(gl.int64) * stride_vb + hk.to(gl.int64) * stride_vh)

    @gluon.jit
    def _pair_geometry(rank, bh, OFFSETS, TABLE, K, V, stride_kb, stride_kh, stride_vb, stride_vh,
                       H_Q, T_DIV, N_MT, TOTAL, SINK, LOCAL, SEG: gl.constexpr,
                       BM: gl.constexpr, BN: gl.constexpr, GROUP: gl.constexpr):
        """_pair_start, _pair_walk and _kv_bases at once (benchmarks/gluon_persist.py): (mt, m0,
        sink_end, lo, n_d, n_dense, P, n_total, t_base, k_base, v_base)."""
        mt, m0, g, sink_end, lo, n_d, n_dense = _pair_start(rank, bh, N_MT, SINK, LOCAL, SEG, BM,
                                                            BN)
        P, n_total, t_base = _pair_walk(g, bh, n_dense, OFFSETS, TABLE, T_DIV, TOTAL, BN)
        k_base, v_base = _kv_bases(bh, K, V, stride_kb, stride_kh, stride_vb, stride_vh, H_Q, GROUP)
        return mt, m0, sink_end, lo, n_d, n_dense, P, n_total, t_base, k_base, v_base

    @gluon.jit
    def _pair_buffers(Q, BM: gl.constexpr, BN: gl.constexpr, D: gl.constexpr, NBUF: gl.constexpr,
                      PW: gl.constexpr, READY_ARRIVALS: gl.constexpr, SMEM: gl.constexpr,
                      SMEM_KV: gl.constexpr):
        """A pair kernel's shared memory, its mbarriers initialized: the two Q tiles, NBUF K and
        V buffers, `ready` (READY_ARRIVALS per phase), `empty` (both consumers), `sync` (the
        consumers' exchange), stop_smem (a copy of the walk's end per producer warp), seen (the
        warps' reads, _stop_step), decide (the exchanged decisions) and q_bar (the Q tiles'
        copies, READY_ARRIVALS)."""
        dtype: gl.constexpr = Q.dtype.element_ty
        q_a = gl.allocate_shared_memory(dtype, [BM, D], SMEM)
        q_b = gl.allocate_shared_memory(dtype, [BM, D], SMEM)
        k_bufs = gl.allocate_shared_memory(dtype, [NBUF, BN, D], SMEM_KV)
        v_bufs = gl.allocate_shared_memory(dtype, [NBUF, BN, D], SMEM_KV)
        ready = gl.allocate_shared_memory(gl.int64, [NBUF, 1], mbarrier.MBarrierLayout())
        empty = gl.allocate_shared_memory(gl.int64, [NBUF, 1], mbarrier.MBarrierLayout())
        sync = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
        q_bar = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
        small: gl.constexpr = gl.SwizzledSharedLayout(1, 1, 1, [0])
        stop_smem = gl.allocate_shared_memory(gl.int32, [PW], small)
        seen = gl.allocate_shared_memory(gl.int32, [2, PW], small)
        decide = gl.allocate_shared_memory(gl.int32, [4, 1], small)
        for i in gl.static_range(NBUF):
            mbarrier.init(ready.index(i), count=READY_ARRIVALS)
            mbarrier.init(empty.index(i), count=2)
        mbarrier.init(sync, count=2)
        mbarrier.init(q_bar, count=READY_ARRIVALS)
        return q_a, q_b, k_bufs, v_bufs, ready, empty, sync, stop_smem, seen, decide, q_bar

    @gluon.jit
    def _first_copies(q_a, q_b, k_bufs, v_bufs, q_bar, ready, Q, bh, m0, N, Q0, stride_qb,
                      stride_qh, stride_qn, H_Q, k_base, v_base, stride_kn, stride_vn, g, n_diag,
                      n_dense, sink_end, lo, n_d, OFFSETS, TABLE, T_DIV, TOTAL, BM: gl.constexpr,
                      BN: gl.constexpr, D: gl.constexpr, TPW_ROWS: gl.constexpr,
                      WARPS: gl.constexpr, OFF32: gl.constexpr, CHUNKED: gl.constexpr, STAMP,
                      STAMPS: gl.constexpr):
        """The kernel's prologue, by its first WARPS warps before the partitions start: issue
        both Q tiles (arriving on q_bar) and step 0, the pair's own rows (on ready[0], with the
        producer's count of arrivals), and load the walk's bounds: (P, n_total, t_base).
        Session 19's stamps: issued by the producer, the first copies went out ~1 step after
        the CTA's start (0.4 to its start, the partitions' register hand-over; 0.34 waiting on
        the table offsets, which ptxas moves to uniform registers before the copy loop; 0.25
        to issue); from here at 0.6, and the walk took 1-3.4% less."""
        P, n_total, t_base = _pair_walk(g, bh, n_dense, OFFSETS, TABLE, T_DIV, TOTAL, BN)
        rows_q, cols_q = _gather_index(BM, D, TPW_ROWS, WARPS)
        _copy_q(q_a, Q, bh, m0, N, Q0, stride_qb, stride_qh, stride_qn, rows_q, cols_q, H_Q, D,
                CHUNKED)
        _copy_q(q_b, Q, bh, m0 + BM, N, Q0, stride_qb, stride_qh, stride_qn, rows_q, cols_q, H_Q,
                D, CHUNKED)
        cp.mbarrier_arrive(q_bar, increment_count=False)
        rows_g, cols_h = _gather_index(BN, D, TPW_ROWS, WARPS)
        rows = _pair_rows(0, m0, n_diag, n_dense, sink_end, lo, n_d, rows_g, BN)
        if STAMPS:
            _stamp(STAMP, 17)  # the first copies' rows known, before their issue
        _copy_kv(k_bufs, v_bufs, 0, rows, N, k_base, v_base, stride_kn, stride_vn, cols_h, D,
                 OFF32)
        cp.mbarrier_arrive(ready.index(0), increment_count=False)
        if STAMPS:
            _stamp(STAMP, 14)  # the first copies issued
        return P, n_total, t_base

    @gluon.jit
    def _s2o_pair_kernel(Q, K, V, O, TABLE, OFFSETS, VISITED,
                         stride_qb, stride_qh, stride_qn, stride_kb, stride_kh, stride_kn,
                         stride_vb, stride_vh, stride_vn,
                         N, Q0, H_Q, T_DIV, N_MT, N_VIS, TOTAL, qk_scale, tau, SINK, LOCAL,
                         SEG: gl.constexpr, BM: gl.constexpr, BN: gl.constexpr,
                         D: gl.constexpr, GROUP: gl.constexpr, REMAINING: gl.constexpr,
                         CHUNK: gl.constexpr, STOP_EVERY: gl.constexpr, JOINT: gl.constexpr,
                         CHUNKED: gl.constexpr, OFF32: gl.constexpr,
                         NBUF: gl.constexpr, TPW_ROWS: gl.constexpr, PW: gl.constexpr,
                         CONSUMER_REGS: gl.constexpr, PRODUCER_REGS: gl.constexpr,
                         SMEM: gl.constexpr, SMEM_KV: gl.constexpr, RESCALE_SKIP: gl.constexpr,
                         STAMP,
                         STAMPS: gl.constexpr,
                         num_warps: gl.constexpr):
        """Two query tiles of one segment per CTA (one CTA per SM): they share the segment's
        ranked walk, so PW producer warps gather each K/V step once for two consumer
        warpgroups, each with its own online softmax and stop rule (JOINT: one rule for both,
        block_m 128). The CTA's first warps issue the pair's first copies before the partitions
        start (_first_copies)."""
        if STAMPS:  # 0: the CTA's start (globaltimer), 1: its clock, 2: its SM
            _stamp(STAMP, 0, _globaltimer())
            _stamp(STAMP, 1)
            _stamp(STAMP, 2, gl.inline_asm_elementwise("mov.u32 $0, %smid;", "=r", [],
                                                       dtype=gl.int32, is_pure=True, pack=1))
        qk_scale = qk_scale.to(gl.float32)
        tau = tau.to(gl.float32)
        n_diag: gl.constexpr = 2 * BM // BN  # steps over the pair's own rows
        bh = gl.program_id(1)
        mt, m0, g, sink_end, lo, n_d, n_dense = _pair_start(gl.program_id(0), bh, N_MT, SINK,
                                                            LOCAL, SEG, BM, BN)
        k_base, v_base = _kv_bases(bh, K, V, stride_kb, stride_kh, stride_vb, stride_vh, H_Q,
                                   GROUP)

        q_a, q_b, k_bufs, v_bufs, ready, empty, sync, stop_smem, seen, decide, q_bar = \
            _pair_buffers(Q, BM, BN, D, NBUF, PW, 32 * PW, SMEM, SMEM_KV)
        _post_stop(stop_smem, NO_STOP)
        gl.thread_barrier()  # the barriers and stop_smem, before any partition starts
        gl.static_assert(PW == num_warps, "step 0's copies: as many arrivals as the producer's")
        P, n_total, t_base = _first_copies(
            q_a, q_b, k_bufs, v_bufs, q_bar, ready, Q, bh, m0, N, Q0, stride_qb, stride_qh,
            stride_qn, H_Q, k_base, v_base, stride_kn, stride_vn, g, n_diag, n_dense, sink_end,
            lo, n_d, OFFSETS, TABLE, T_DIV, TOTAL, BM, BN, D, TPW_ROWS, num_warps, OFF32,
            CHUNKED, STAMP, STAMPS)

        gl.warp_specialize([
            (_pair_consumer, (0, q_a, k_bufs, v_bufs, ready, empty, sync, decide, stop_smem,
                              O, VISITED, bh, mt, m0, N, N_VIS, n_dense, n_d, P, n_total, q_bar,
                              qk_scale, tau, BM, BN, D, REMAINING, CHUNK, STOP_EVERY, NBUF,
                              JOINT, Q0, CHUNKED, RESCALE_SKIP, STAMP, STAMPS)),
            (_pair_consumer, (1, q_b, k_bufs, v_bufs, ready, empty, sync, decide, stop_smem,
                              O, VISITED, bh, mt, m0, N, N_VIS, n_dense, n_d, P, n_total, q_bar,
                              qk_scale, tau, BM, BN, D, REMAINING, CHUNK, STOP_EVERY, NBUF,
                              JOINT, Q0, CHUNKED, RESCALE_SKIP, STAMP, STAMPS)),
            (_pair_producer, (k_bufs, v_bufs, ready, empty, stop_smem, seen, k_base, v_base,
                              stride_kn, stride_vn, m0, N, n_diag, n_dense, sink_end, lo, n_d, P,
                              n_total, t_base, BN, D, NBUF, TPW_ROWS, PW, OFF32,
                              STAMP, STAMPS)),
        ], [4, PW], [CONSUMER_REGS, PRODUCER_REGS])


def pair_step(cfg) -> int:
    """Keys per step: 128 where block_n allows (BENCHMARKS.md session 13: 11-15% faster than
    64 at 128K, H100), else 64."""
    return 128 if cfg.block_n % 128 == 0 else BLOCK


def _hopper(t: torch.Tensor) -> bool:
    return t.is_cuda and torch.cuda.get_device_capability(t.device)[0] == 9


def pair_unsupported(q, k, v, table, cfg, scale: float, whole: bool,
                     step: int | None = None) -> str | None:
    """Why the pair kernel does not take this call (None: it does). whole: the tiles are whole
    (triton_s2o.whole_tiles). The Triton kernel takes the rest: other cards, Triton releases,
    dtypes, head dims, tile shapes and stop rules, packed GQA heads, tau 0."""
    if os.environ.get(PAIR_SWITCH, "1") == "0":
        return f"{PAIR_SWITCH}=0"
    if not HAVE_GLUON or not triton.__version__.startswith(PAIR_TRITON_VERSIONS):
        return f"triton {triton.__version__}: checked on {', '.join(PAIR_TRITON_VERSIONS)}x only"
    if not _hopper(q):
        return "not a Hopper card (sm_90)"
    if q.dtype not in (torch.float16, torch.bfloat16):
        return f"dtype {q.dtype}"
    if q.shape[-1] not in (64, 128):
        return f"head dim {q.shape[-1]}"
    if table is None or cfg.threshold <= 0:
        return "tau 0 walks in key order"
    step = step or pair_step(cfg)
    if (cfg.block_m not in (BLOCK, 2 * BLOCK) or cfg.block_n % step or cfg.stop_rule == "mean"
            or cfg.pack_gqa):
        return (f"block_m 64 or 128, block_n a multiple of {step}, stop rule not 'mean', "
                "no pack_gqa")
    if cfg.segment_size % (2 * BLOCK):
        return "segment_size not a multiple of 128 (the pair's two tiles share a segment)"
    if cfg.walk_chunk // cfg.block_n > 31:
        return "more than 31 stop tests per walk chunk"
    if not whole:
        return "tiles not whole"
    if any(x.stride(-1) != 1 or any(st % 8 for st in x.stride()[:3]) for x in (q, k, v)):
        return "rows not 16-byte aligned (a stride not a multiple of 8 elements)"
    return None


def fits_32_bits(N: int, k: torch.Tensor, v: torch.Tensor) -> bool:
    """Whether every gathered row's offset (rows up to a pair past N) fits in 32 bits."""
    return (N + 2 * BLOCK) * max(k.stride(2), v.stride(2)) < 2 ** 31


def attention_pair(q, k, v, table, offsets, scale: float, cfg, step: int | None = None,
                   nbuf: int | None = None, tpw_rows: int = TPW_ROWS,
                   producer_warps: int = PRODUCER_WARPS, producer_regs: int = 56,
                   consumer_regs: int = 224, off32: bool | None = None,
                   stamps: torch.Tensor | None = None, rescale_skip: bool = True):
    """Launches the pair kernel (pair_unsupported must be None): (out contiguous [B, Hq, L, D],
    visited int32 [B, Hq, n_mt]) as triton_s2o.attention_with_table: q [B, Hq, L, D] may be
    shorter than k and v (chunked prefill: positions N - L ...), n_mt counts the block_m-row
    tiles from the one holding the first query. block_m 128: the pair's two 64-row tiles are one
    128-row tile (one stop rule). The keyword arguments other than cfg's are for A/B runs
    (benchmarks/pair_ab.py) and tests (off32: the row offsets' width, default fits_32_bits;
    producer_warps: 4, the kernel prologue's warps, which issue the first step; rescale_skip:
    False multiplies o by alpha at every step, as before session 23, for the A/B);
    stamps: an int64 [ctas, STAMP_SLOTS] tensor that gets each CTA's timings
    (benchmarks/pair_ramp.py)."""
    if producer_warps != 4:
        raise ValueError("producer_warps must be 4: the kernel's 4 prologue warps issue step 0 "
                         "for the producer, with its count of arrivals")
    B, Hq, L, D = q.shape
    N = k.shape[2]
    q0 = N - L  # the first query's position
    step = step or pair_step(cfg)
    nbuf = nbuf or (3 if step == 128 else 4)  # 2 Q + 2 x NBUF K/V tiles: 224 / 160 KiB at D 128
    n_mt = triton.cdiv(N, BLOCK)
    n_vis = query_tiles(L, N, cfg.block_m)
    out = torch.empty(B, Hq, L, D, dtype=q.dtype, device=q.device)
    visited = torch.empty(B, Hq, n_vis, dtype=torch.int32, device=q.device)
    # the pairs from the one holding the first query (128-row aligned), longest first
    _s2o_pair_kernel[(query_tiles(L, N, 2 * BLOCK), B * Hq)](
        q, k, v, out, table, offsets, visited,
        q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2),
        N, q0, Hq, Hq // table.shape[1], n_mt, n_vis, table.shape[-1],
        scale * 1.4426950408889634,
        float(cfg.threshold), cfg.sink_tokens, cfg.local_window,
        SEG=cfg.segment_size, BM=BLOCK, BN=step, D=D, GROUP=Hq // k.shape[1],
        REMAINING=cfg.stop_rule != "gain", CHUNK=cfg.walk_chunk // step,
        STOP_EVERY=cfg.block_n // step, JOINT=cfg.block_m == 2 * BLOCK, CHUNKED=q0 > 0,
        OFF32=fits_32_bits(N, k, v) if off32 is None else off32,
        NBUF=nbuf,
        TPW_ROWS=tpw_rows, PW=producer_warps,
        CONSUMER_REGS=consumer_regs, PRODUCER_REGS=producer_regs,
        SMEM=gl.NVMMASharedLayout.get_default_for([BLOCK, D], gl.bfloat16),
        SMEM_KV=gl.NVMMASharedLayout.get_default_for([step, D], gl.bfloat16),
        RESCALE_SKIP=bool(rescale_skip),
        STAMP=visited if stamps is None else stamps, STAMPS=stamps is not None,
        num_warps=4,
        # one CTA per SM: 64K registers over both consumer warpgroups and the producer warps
        maxnreg=65536 // (32 * (8 + producer_warps)) // 8 * 8)
    return out, visited
