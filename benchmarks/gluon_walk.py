"""EXPERIMENT (session 9, not used by the op): the S2O attention kernel in Gluon, Triton's
lower-level dialect, for Hopper (sm_90). Two kernels with triton_s2o._s2o_attention_kernel's
semantics on its common path (whole tiles, head dim 64/128, fp16/bf16, one query head per tile,
stop rule not "mean", tau > 0; gluon_unsupported says why a call is not taken):

  _s2o_gluon_kernel: one warpgroup. One continuous cp.async pipeline over a query tile's whole
    stream of key tiles (the diagonal tile first, its mask the only one; the sink; the dense
    window; the ranked walk), so the walk has no refill per chunk (the next tiles are issued
    before a stop decision: a stop wastes at most NBUF - 1 loads). A row's address is formed
    once in 64 bits and its 16-byte pieces are immediate offsets (Triton forms one per piece).
  _s2o_gluon_ov_kernel (session 11): one warpgroup with FA3's overlap inside it: Q K^T of the
    next step is issued before this step's softmax; K rows are copied a step ahead of V rows.
    Same visits as Triton on every check; slower at 128K (27.2-30.8 vs Triton 25.3-29.5 and
    the plain Gluon walk 26.5 ms, H100): two CTAs per SM already overlap each other, and its
    loop has 12% more instructions (BENCHMARKS.md session 11).
  _s2o_gluon_ws_kernel: warp-specialized. PW producer warps gather step j's K/V rows into ring
    buffer j % NBUF when the consumer has released it (mbarriers: `ready` completes with the
    producer threads' cp.async arrivals, `empty` with the consumer's release); the consumer
    warpgroup runs wgmma + online softmax + the stop rule and tells the producer where the walk
    stopped through shared memory (read after each `empty` wait, the same for all producer
    warps: _stop_step).
  _s2o_gluon_pp_kernel (session 12): a tile pair. Two query tiles of one segment per CTA (one
    CTA per SM) share the segment's ranked walk: PW producer warps gather each K/V step once
    for two consumer warpgroups, each with its own online softmax and stop rule; at each walk
    chunk's end they exchange decisions (an mbarrier), and one that stopped releases the
    buffers unread until the other stops too. DEFERRED issues a step's P @ V with the next
    step's Q K^T (FA3's order); PINGPONG also makes the two consumers take turns issuing.
    BN, the keys per step: 64, or 128 (one step per block_n tile: half the steps' fixed costs,
    a [64, 128] score tile per consumer, whose registers one CTA per SM allows; the stream's
    dense keys are gathered as a list, so a step may hold the sink and window keys together,
    and a partial last dense or walk step is masked). BN 128 compiled for sm_90 (no spills);
    not yet run on a GPU.
    Same visits as Triton on 36 checks (H100, H200); 4-8% faster than Triton at 128K and 32K in
    the runs that finished (H100), but it hung on both cards (often on the H200), as the WS
    kernel did in sessions 9-10. Cause, found afterwards and fixed in _stop_step, not yet run on
    a GPU: each producer warp read the stop step alone, a consumer's write landed between two
    warps' reads, and the warps' different loop counts broke the producer's partition barriers
    (benchmarks/pp_protocol_sim.py models the protocol and reproduces the hang).

Measured (H100, torch 2.11, triton 3.6; benchmarks/gluon_ab.py, benchmarks/results/session9):
same visits as the Triton kernel on every check (12 shapes x 2 taus), output within bf16
rounding (order: the diagonal first). 128K tau 0.8, attention alone, same table: Triton
25.5 ms, one-warpgroup 26.6 ms (TPW_ROWS 4; 28.5-30.4 at 2/8, 42 at 16: the layout of the
gathered copies into the swizzled buffers matters more than their address arithmetic), WS
24.6 ms (TPW_ROWS 4; 27.9 at 8) - one run each, inside the Triton kernel's own run-to-run
spread (25.5-29.4 ms in one call). 32K: one-warpgroup 3.9-4.4 ms vs Triton 3.6. Open: the WS
kernel with TPW_ROWS 2 did not finish (a hang, not yet understood), so it is not safe to
ship; P @ V kept in flight across the loop's back edge makes ptxas serialize every wgmma
(C7515), so both kernels wait for it inside the step. (The WS hang: see the pair kernel.)
"""
from __future__ import annotations

import torch
import triton

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

NBUF = 3  # K/V buffers: tiles issued NBUF - 1 steps ahead (Q + 3 x 32 KiB: two CTAs per SM)
BLOCK = 64  # query rows per tile and keys per step (wgmma M = 64 per warpgroup)


if HAVE_GLUON:
    @gluon.jit
    def _table_rows(t_base, w, P, rows_g, BN: gl.constexpr):
        """Walk step w's table entries (key indices); 0 where w < 0 or past the prefix P."""
        pos = w * BN + rows_g
        return gl.load(t_base + pos, mask=(pos < P) & (w >= 0), other=0)

    @gluon.jit
    def _step_rows(s, n_sink, n_dense, sink_gap, idx, rows_g, BN: gl.constexpr):
        """Key rows of stream step s >= 1: the sink's tiles (steps 1..n_sink), then the dense
        window's from lo (sink_gap = lo - sink_end further), then the walk's table entries idx."""
        start = (s - 1) * BN + (s > n_sink).to(gl.int32) * sink_gap
        return gl.where(s < n_dense, start + rows_g, idx)

    @gluon.jit
    def _copy_rows(bufs, slot, rows, base, stride_n, cols_g):
        """cp.async of the rows `rows` of K or V into buffer `slot` (no mask: rows in bounds).
        A row's address is formed once in 64 bits and its pieces are constant offsets from it
        (cols_g is int64), so each 16-byte copy needs no address arithmetic of its own."""
        cp.async_copy_global_to_shared(
            bufs.index(slot), (base + rows.to(gl.int64) * stride_n)[:, None] + cols_g[None, :])

    @gluon.jit
    def _issue(k_bufs, v_bufs, slot, rows, k_base, v_base, stride_kn, stride_vn, cols_g):
        """cp.async of the K and V rows `rows` into buffer `slot`."""
        _copy_rows(k_bufs, slot, rows, k_base, stride_kn, cols_g)
        _copy_rows(v_bufs, slot, rows, v_base, stride_vn, cols_g)

    @gluon.jit
    def _issue_ahead(s, n_end, n_sink, n_dense, sink_gap, idx, t_base, P, k_bufs, v_bufs, k_base,
                     v_base, stride_kn, stride_vn, rows_g, cols_g, BN: gl.constexpr,
                     NBUF: gl.constexpr):
        """At step s: the copies of step s + NBUF - 1 (its table entries idx were loaded a step
        earlier), committed as one group (empty past the end), and the next step's entries."""
        nxt = s + NBUF - 1
        if nxt < n_end:
            _issue(k_bufs, v_bufs, nxt % NBUF,
                   _step_rows(nxt, n_sink, n_dense, sink_gap, idx, rows_g, BN),
                   k_base, v_base, stride_kn, stride_vn, cols_g)
        cp.commit_group()
        return _table_rows(t_base, nxt + 1 - n_dense, P, rows_g, BN)


    @constexpr_function
    def _mma(n):
        """wgmma accumulator layout of a [64, n] tile on one warpgroup."""
        return gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                         instr_shape=[16, n, 16])

    @gluon.jit
    def _tile_of_program(OFFSETS, TABLE, K, V, stride_kb, stride_kh, stride_vb, stride_vh,
                         H_Q, T_DIV, N_MT, TOTAL, SINK, LOCAL, SEG: gl.constexpr,
                         BM: gl.constexpr, BN: gl.constexpr, GROUP: gl.constexpr):
        """This program's query tile (longest prefixes first) and its stream of key tiles:
        step 0 the diagonal, steps 1..n_sink the sink, then the window up to n_dense, then
        the walk over the segment's P ranked keys (n_total steps in all)."""
        mt = N_MT - 1 - gl.program_id(0)
        bh = gl.program_id(1)
        b = bh // H_Q
        hk = (bh % H_Q) // GROUP
        m0 = mt * BM
        g = m0 // SEG
        s0 = g * SEG
        sink_end = gl.minimum(s0, SINK)
        lo = gl.maximum(s0 - LOCAL, sink_end)
        n_sink = sink_end // BN
        n_dense = 1 + n_sink + (m0 - lo) // BN
        off = gl.load(OFFSETS + g)
        P = (gl.load(OFFSETS + g + 1) - off).to(gl.int32)
        n_total = n_dense + (P + BN - 1) // BN
        t_base = TABLE + (bh // T_DIV).to(gl.int64) * TOTAL + off
        k_base = K + b.to(gl.int64) * stride_kb + hk.to(gl.int64) * stride_kh
        v_base = V + b.to(gl.int64) * stride_vb + hk.to(gl.int64) * stride_vh
        return mt, bh, m0, n_sink, n_dense, lo - sink_end, P, n_total, t_base, k_base, v_base

    @gluon.jit
    def _issue_diagonal(k_bufs, v_bufs, k_base, v_base, stride_kn, stride_vn, m0, N, rows_g,
                        cols_g):
        """Step 0's copies into buffer 0: keys [m0, m0 + BN), past N zero-filled."""
        rows = m0 + rows_g
        ok = (rows < N)[:, None]
        cp.async_copy_global_to_shared(
            k_bufs.index(0), (k_base + rows.to(gl.int64) * stride_kn)[:, None] + cols_g[None, :],
            mask=ok)
        cp.async_copy_global_to_shared(
            v_bufs.index(0), (v_base + rows.to(gl.int64) * stride_vn)[:, None] + cols_g[None, :],
            mask=ok)

    @gluon.jit
    def _load_q(Q, q_smem, bh, m0, N, stride_qb, stride_qh, stride_qn, rows_g, cols_g,
                H_Q: gl.constexpr):
        """The query tile into shared memory, fenced for wgmma (async proxy) reads."""
        q = gl.load(Q + (bh // H_Q).to(gl.int64) * stride_qb + (bh % H_Q).to(gl.int64) * stride_qh
                    + (m0 + rows_g).to(gl.int64)[:, None] * stride_qn + cols_g[None, :],
                    mask=((m0 + rows_g) < N)[:, None], other=0.0)
        q_smem.store(q)
        fence_async_shared()

    @gluon.jit
    def _softmax_state(m0, N, BM: gl.constexpr, BN: gl.constexpr, D: gl.constexpr):
        """A query tile's rows and its initial online-softmax and stop-rule state:
        (offs_m, row_ok, m, l, o, gain sum, flags)."""
        row_s: gl.constexpr = gl.SliceLayout(1, _mma(BN))
        offs_m = m0 + gl.arange(0, BM, layout=row_s)
        row_ok = offs_m < N
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
    def _online_softmax(sc, m_i, l_i, o, qk_scale, D: gl.constexpr):
        """One online-softmax update from a step's scores (the scale folded into the exponent):
        (m, l, o rescaled, p, alpha, gain)."""
        m_new = gl.maximum(m_i, gl.max(sc, axis=1) * qk_scale)
        p = gl.exp2(sc * qk_scale - m_new[:, None])
        alpha = gl.exp2(m_i - m_new)
        gain = gl.sum(p, axis=1)
        l_i = l_i * alpha + gain
        o = o * gl.convert_layout(alpha, gl.SliceLayout(1, _mma(D)))[:, None]
        return m_new, l_i, o, p, alpha, gain

    @gluon.jit
    def _softmax_pv(sc, v_buf, s, m0, N, offs_m, m_i, l_i, o, qk_scale, BM: gl.constexpr,
                    BN: gl.constexpr, D: gl.constexpr):
        """_attend from the step's waited scores sc on: softmax, then P @ V issued, not waited."""
        mma_s: gl.constexpr = _mma(BN)
        mma_o: gl.constexpr = _mma(D)
        if s == 0:
            cols = m0 + gl.arange(0, BN, layout=gl.SliceLayout(0, mma_s))
            ok = (cols[None, :] <= offs_m[:, None]) & (cols < N)[None, :]
            sc = gl.where(ok, sc, float("-inf"))
        m_new, l_i, o, p, alpha, gain = _online_softmax(sc, m_i, l_i, o, qk_scale, D)
        p_op: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=mma_o, k_width=2)
        o = warpgroup_mma(gl.convert_layout(p.to(v_buf.dtype), p_op), v_buf, o, is_async=True)
        return m_new, l_i, o, alpha, gain

    @gluon.jit
    def _attend(q_smem, k_buf, v_buf, s, m0, N, offs_m, m_i, l_i, o, qk_scale,
                BM: gl.constexpr, BN: gl.constexpr, D: gl.constexpr):
        """One online-softmax step over the landed tile (step 0: the causal diagonal, keys past
        N masked; the scale is folded into the exponent, qk_scale > 0). Issues P @ V without
        waiting: returns (m, l, o in flight, alpha, gain)."""
        sc = warpgroup_mma_wait(0, deps=(_scores_async(q_smem, k_buf, BM, BN), ))
        return _softmax_pv(sc, v_buf, s, m0, N, offs_m, m_i, l_i, o, qk_scale, BM, BN, D)

    @gluon.jit
    def _walk_test(w, s, n_end, P, gsum, flags, alpha, gain, l_i, row_ok, tau,
                   BN: gl.constexpr, REMAINING: gl.constexpr, CHUNK: gl.constexpr,
                   STOP_EVERY: gl.constexpr):
        """The stop rule after walk step w (triton_s2o._stop_bound / _rule_held, with a bit per
        test and row instead of a [BM, TESTS] matrix): returns (gsum, flags, n_end), n_end = s + 1
        where the rule held after some tile of the chunk that step w ends."""
        gsum = gsum * alpha + gain
        if (w + 1) % STOP_EVERY == 0:
            if REMAINING:
                left = (gl.maximum(P - (w + 1) * BN, 0) + BN * STOP_EVERY - 1) // (BN * STOP_EVERY)
            else:
                left = 1
            on = (~(gsum * left < tau * l_i)) & row_ok  # this row walks on
            flags = flags | (on.to(gl.int32) << ((w % CHUNK) // STOP_EVERY))
            gsum = gl.zeros_like(gsum)
        if (w + 1) % CHUNK == 0:
            # held after some tile of the chunk iff no row walked on after it
            if (~gl.reduce_or(flags, axis=0)) & ((1 << (CHUNK // STOP_EVERY)) - 1):
                n_end = s + 1
            flags = gl.zeros_like(flags)
        return gsum, flags, n_end

    @gluon.jit
    def _store_out(O, VISITED, o, l_i, s, n_dense, bh, mt, m0, N, N_MT, BM: gl.constexpr,
                   D: gl.constexpr, STOP_EVERY: gl.constexpr):
        """The tile's output rows (contiguous [B, Hq, N, D]) and its walked tiles (block_n)."""
        row_o: gl.constexpr = gl.SliceLayout(1, _mma(D))
        out = o / gl.convert_layout(l_i, row_o)[:, None]
        rows_o = m0 + gl.arange(0, BM, layout=row_o)
        cols_o = gl.arange(0, D, layout=gl.SliceLayout(0, _mma(D)))
        gl.store(O + (bh.to(gl.int64) * N + rows_o.to(gl.int64))[:, None] * D + cols_o[None, :],
                 out.to(O.dtype.element_ty), mask=(rows_o < N)[:, None])
        n_vis = gl.maximum(s - n_dense, 0)
        gl.store(VISITED + bh * N_MT + mt, (n_vis + STOP_EVERY - 1) // STOP_EVERY)

    @gluon.jit
    def _gather_index(BN: gl.constexpr, D: gl.constexpr, TPW_ROWS: gl.constexpr,
                      WARPS: gl.constexpr):
        """Row and column indices of a [BN, D] tile in the gathered copies' layout: a thread
        copies 8 columns of a row per piece, TPW_ROWS rows per warp-instruction, WARPS warps
        (columns int64: a row's pieces are constant offsets from its address)."""
        gather: gl.constexpr = gl.BlockedLayout([1, 8], [TPW_ROWS, 32 // TPW_ROWS], [WARPS, 1],
                                                [1, 0])
        return (gl.arange(0, BN, layout=gl.SliceLayout(1, gather)),
                gl.arange(0, D, layout=gl.SliceLayout(0, gather)).to(gl.int64))

    @gluon.jit
    def _tile_buffers(Q, BM: gl.constexpr, BN: gl.constexpr, D: gl.constexpr,
                      NBUF: gl.constexpr, SMEM: gl.constexpr):
        """Shared memory of a query tile and NBUF K and V tiles."""
        dtype: gl.constexpr = Q.dtype.element_ty
        return (gl.allocate_shared_memory(dtype, [BM, D], SMEM),
                gl.allocate_shared_memory(dtype, [NBUF, BN, D], SMEM),
                gl.allocate_shared_memory(dtype, [NBUF, BN, D], SMEM))

    @gluon.jit
    def _s2o_gluon_kernel(Q, K, V, O, TABLE, OFFSETS, VISITED,
                          stride_qb, stride_qh, stride_qn, stride_kb, stride_kh, stride_kn,
                          stride_vb, stride_vh, stride_vn,
                          N, H_Q, T_DIV, N_MT, TOTAL, qk_scale, tau, SINK, LOCAL,
                          SEG: gl.constexpr, BM: gl.constexpr, BN: gl.constexpr,
                          D: gl.constexpr, GROUP: gl.constexpr, REMAINING: gl.constexpr,
                          CHUNK: gl.constexpr, STOP_EVERY: gl.constexpr,
                          NBUF: gl.constexpr, TPW_ROWS: gl.constexpr, SMEM: gl.constexpr,
                          num_warps: gl.constexpr):
        """One warpgroup: issues the copies NBUF - 1 steps ahead, computes each step."""
        qk_scale = qk_scale.to(gl.float32)
        tau = tau.to(gl.float32)
        rows_g, cols_g = _gather_index(BN, D, TPW_ROWS, 4)
        mt, bh, m0, n_sink, n_dense, sink_gap, P, n_total, t_base, k_base, v_base = \
            _tile_of_program(OFFSETS, TABLE, K, V, stride_kb, stride_kh, stride_vb, stride_vh,
                             H_Q, T_DIV, N_MT, TOTAL, SINK, LOCAL, SEG, BM, BN, GROUP)
        q_smem, k_bufs, v_bufs = _tile_buffers(Q, BM, BN, D, NBUF, SMEM)

        _issue_diagonal(k_bufs, v_bufs, k_base, v_base, stride_kn, stride_vn, m0, N, rows_g,
                        cols_g)
        cp.commit_group()
        for j in gl.static_range(1, NBUF - 1):
            if j < n_total:
                idx = _table_rows(t_base, j - n_dense, P, rows_g, BN)
                _issue(k_bufs, v_bufs, j, _step_rows(j, n_sink, n_dense, sink_gap, idx, rows_g, BN),
                       k_base, v_base, stride_kn, stride_vn, cols_g)
            cp.commit_group()
        idx = _table_rows(t_base, NBUF - 1 - n_dense, P, rows_g, BN)  # carried one step ahead
        _load_q(Q, q_smem, bh, m0, N, stride_qb, stride_qh, stride_qn, rows_g,
                cols_g.to(gl.int32), H_Q)

        offs_m, row_ok, m_i, l_i, o, gsum, flags = _softmax_state(m0, N, BM, BN, D)
        s = 0
        n_end = n_total
        while s < n_end:
            slot = s % NBUF
            # this step's tile has landed (the later ones may not); Gluon's barrier after the
            # wait makes every thread's copies visible (as in Triton's own cp.async + wgmma
            # pipelines) and frees the previous step's buffers (its wgmmas were waited for)
            cp.wait_group(NBUF - 2)
            idx = _issue_ahead(s, n_end, n_sink, n_dense, sink_gap, idx, t_base, P, k_bufs,
                               v_bufs, k_base, v_base, stride_kn, stride_vn, rows_g, cols_g,
                               BN, NBUF)
            m_i, l_i, o, alpha, gain = _attend(q_smem, k_bufs.index(slot), v_bufs.index(slot), s,
                                               m0, N, offs_m, m_i, l_i, o, qk_scale, BM, BN, D)
            if s >= n_dense:
                gsum, flags, n_end = _walk_test(s - n_dense, s, n_end, P, gsum, flags, alpha,
                                                gain, l_i, row_ok, tau, BN, REMAINING, CHUNK,
                                                STOP_EVERY)
            # P @ V ran under the stop test only: kept in flight across the loop's back edge,
            # ptxas serializes every wgmma (C7515)
            o = warpgroup_mma_wait(0, deps=(o, ))
            s += 1
        cp.wait_group(0)  # copies issued ahead of a stop
        _store_out(O, VISITED, o, l_i, s, n_dense, bh, mt, m0, N, N_MT, BM, D, STOP_EVERY)

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
        rest hung at the next one: the rare hang of the WS and pair kernels on H100 and H200
        (benchmarks/pp_protocol_sim.py reproduces it in a model of the protocol). seen is
        double-buffered: a warp writes seen[j % 2] again at step j + 2, after the barrier of
        step j + 1, which every warp reaches after its read at step j. A minimum over warps
        by gl.min alone is not enough: the compiler lets each warp load every copy itself."""
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
        (_stop_step). Returns the end."""
        if j >= NBUF:
            mbarrier.wait(empty.index(j % NBUF), ((j // NBUF) - 1) & 1)
            n_end = gl.minimum(n_end, _stop_step(stop_smem, seen, j, PW))
        return n_end

    @gluon.jit
    def _ws_producer(k_bufs, v_bufs, ready, empty, stop_smem, seen, k_base, v_base, t_base,
                     stride_kn, stride_vn, m0, N, P, n_sink, n_dense, sink_gap, n_total,
                     BN: gl.constexpr, D: gl.constexpr, NBUF: gl.constexpr,
                     TPW_ROWS: gl.constexpr, PW: gl.constexpr):
        """Producer warps: gather step j's K/V rows into buffer j % NBUF once the consumer has
        released it, up to the step where the consumer stopped (stop_smem)."""
        rows_g, cols_g = _gather_index(BN, D, TPW_ROWS, PW)
        j = 0
        n_end = n_total
        while j < n_end:
            slot = j % NBUF
            n_end = _claim_slot(j, n_end, empty, stop_smem, seen, NBUF, PW)
            if j < n_end:
                if j == 0:
                    _issue_diagonal(k_bufs, v_bufs, k_base, v_base, stride_kn, stride_vn, m0, N,
                                    rows_g, cols_g)
                else:
                    idx = _table_rows(t_base, j - n_dense, P, rows_g, BN)
                    _issue(k_bufs, v_bufs, slot,
                           _step_rows(j, n_sink, n_dense, sink_gap, idx, rows_g, BN),
                           k_base, v_base, stride_kn, stride_vn, cols_g)
                cp.mbarrier_arrive(ready.index(slot), increment_count=False)
            j += 1
        cp.commit_group()
        cp.wait_group(0)  # copies issued ahead of a stop land before the CTA exits

    @gluon.jit
    def _ws_consumer(q_smem, k_bufs, v_bufs, ready, empty, stop_smem, m0, N, P, n_dense,
                     n_total, qk_scale, tau, BM: gl.constexpr, BN: gl.constexpr,
                     D: gl.constexpr, REMAINING: gl.constexpr, CHUNK: gl.constexpr,
                     STOP_EVERY: gl.constexpr, NBUF: gl.constexpr):
        """Consumer warpgroup: online softmax over the steps as they land, the stop rule;
        releases each buffer after its P @ V. Returns (o, l, steps done)."""
        offs_m, row_ok, m_i, l_i, o, gsum, flags = _softmax_state(m0, N, BM, BN, D)
        s = 0
        n_end = n_total
        while s < n_end:
            slot = s % NBUF
            mbarrier.wait(ready.index(slot), (s // NBUF) & 1)
            fence_async_shared()  # cp.async wrote the tile (generic proxy); wgmma reads it
            m_i, l_i, o, alpha, gain = _attend(q_smem, k_bufs.index(slot), v_bufs.index(slot), s,
                                               m0, N, offs_m, m_i, l_i, o, qk_scale, BM, BN, D)
            if s >= n_dense:
                gsum, flags, n_end = _walk_test(s - n_dense, s, n_end, P, gsum, flags, alpha,
                                                gain, l_i, row_ok, tau, BN, REMAINING, CHUNK,
                                                STOP_EVERY)
                if n_end == s + 1:  # tell the producer, before the release below
                    _post_stop(stop_smem, n_end)
            o = warpgroup_mma_wait(0, deps=(o, ))
            mbarrier.arrive(empty.index(slot))
            s += 1
        return o, l_i, s

    @gluon.jit
    def _s2o_gluon_ws_kernel(Q, K, V, O, TABLE, OFFSETS, VISITED,
                             stride_qb, stride_qh, stride_qn, stride_kb, stride_kh, stride_kn,
                             stride_vb, stride_vh, stride_vn,
                             N, H_Q, T_DIV, N_MT, TOTAL, qk_scale, tau, SINK, LOCAL,
                             SEG: gl.constexpr, BM: gl.constexpr, BN: gl.constexpr,
                             D: gl.constexpr, GROUP: gl.constexpr, REMAINING: gl.constexpr,
                             CHUNK: gl.constexpr, STOP_EVERY: gl.constexpr,
                             NBUF: gl.constexpr, TPW_ROWS: gl.constexpr, PW: gl.constexpr,
                             PRODUCER_REGS: gl.constexpr, SMEM: gl.constexpr,
                             num_warps: gl.constexpr):
        """Warp-specialized: PW producer warps gather, one consumer warpgroup computes."""
        qk_scale = qk_scale.to(gl.float32)
        tau = tau.to(gl.float32)
        gather: gl.constexpr = gl.BlockedLayout([1, 8], [TPW_ROWS, 32 // TPW_ROWS], [4, 1], [1, 0])
        rows_g = gl.arange(0, BN, layout=gl.SliceLayout(1, gather))
        cols_g = gl.arange(0, D, layout=gl.SliceLayout(0, gather))
        mt, bh, m0, n_sink, n_dense, sink_gap, P, n_total, t_base, k_base, v_base = \
            _tile_of_program(OFFSETS, TABLE, K, V, stride_kb, stride_kh, stride_vb, stride_vh,
                             H_Q, T_DIV, N_MT, TOTAL, SINK, LOCAL, SEG, BM, BN, GROUP)
        dtype: gl.constexpr = Q.dtype.element_ty
        q_smem = gl.allocate_shared_memory(dtype, [BM, D], SMEM)
        k_bufs = gl.allocate_shared_memory(dtype, [NBUF, BN, D], SMEM)
        v_bufs = gl.allocate_shared_memory(dtype, [NBUF, BN, D], SMEM)
        ready = gl.allocate_shared_memory(gl.int64, [NBUF, 1], mbarrier.MBarrierLayout())
        empty = gl.allocate_shared_memory(gl.int64, [NBUF, 1], mbarrier.MBarrierLayout())
        stop_smem = gl.allocate_shared_memory(gl.int32, [PW], gl.SwizzledSharedLayout(1, 1, 1, [0]))
        seen = gl.allocate_shared_memory(gl.int32, [2, PW], gl.SwizzledSharedLayout(1, 1, 1, [0]))
        for i in gl.static_range(NBUF):
            mbarrier.init(ready.index(i), count=32 * PW)  # every producer thread's copies
            mbarrier.init(empty.index(i), count=1)
        _post_stop(stop_smem, n_total)
        _load_q(Q, q_smem, bh, m0, N, stride_qb, stride_qh, stride_qn, rows_g, cols_g, H_Q)
        gl.thread_barrier()  # the barriers and stop_smem, before either partition starts

        o, l_i, s = gl.warp_specialize([
            (_ws_consumer, (q_smem, k_bufs, v_bufs, ready, empty, stop_smem, m0, N, P, n_dense,
                            n_total, qk_scale, tau, BM, BN, D, REMAINING, CHUNK, STOP_EVERY,
                            NBUF)),
            (_ws_producer, (k_bufs, v_bufs, ready, empty, stop_smem, seen, k_base, v_base, t_base,
                            stride_kn, stride_vn, m0, N, P, n_sink, n_dense, sink_gap,
                            n_total, BN, D, NBUF, TPW_ROWS, PW)),
        ], [PW], [PRODUCER_REGS])
        _store_out(O, VISITED, o, l_i, s, n_dense, bh, mt, m0, N, N_MT, BM, D, STOP_EVERY)

    @gluon.jit
    def _pp_rows(s, m0, n_diag, n_dense, sink_end, lo, n_d, idx, rows_g, BN: gl.constexpr):
        """Key rows of the pair's stream step s (BN keys a step): the n_diag steps over the pair's
        own 2 x 64 rows (the later first), then the n_d dense keys (the sink [0, sink_end), then
        [lo, m0); row 0 past them, masked), then the walk's table entries idx."""
        i = (s - n_diag) * BN + rows_g
        dense = gl.where(i < n_d, gl.where(i < sink_end, i, lo - sink_end + i), 0)
        return gl.where(s < n_diag, m0 + (n_diag - 1 - s) * BN + rows_g,
                        gl.where(s < n_dense, dense, idx))

    @gluon.jit
    def _pp_mask(sc, s, m0, N, offs_m, n_dense, n_d, P, BM: gl.constexpr, BN: gl.constexpr):
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
    def _pp_producer(k_bufs, v_bufs, ready, empty, stop_smem, seen, k_base, v_base, t_base,
                     stride_kn, stride_vn, m0, N, P, n_diag, n_dense, sink_end, lo, n_d, n_total,
                     BN: gl.constexpr, D: gl.constexpr, NBUF: gl.constexpr,
                     TPW_ROWS: gl.constexpr, PW: gl.constexpr):
        """Producer warps of a tile pair: gather step j's K/V rows into buffer j % NBUF once
        both consumers released it, up to the step where the pair stopped (stop_smem)."""
        rows_g, cols_g = _gather_index(BN, D, TPW_ROWS, PW)
        j = 0
        n_end = n_total
        while j < n_end:
            slot = j % NBUF
            n_end = _claim_slot(j, n_end, empty, stop_smem, seen, NBUF, PW)
            if j < n_end:
                idx = _table_rows(t_base, j - n_dense, P, rows_g, BN)
                rows = _pp_rows(j, m0, n_diag, n_dense, sink_end, lo, n_d, idx, rows_g, BN)
                ok = (rows < N)[:, None]  # the diagonals past N: zero-filled
                cp.async_copy_global_to_shared(
                    k_bufs.index(slot),
                    (k_base + rows.to(gl.int64) * stride_kn)[:, None] + cols_g[None, :], mask=ok)
                cp.async_copy_global_to_shared(
                    v_bufs.index(slot),
                    (v_base + rows.to(gl.int64) * stride_vn)[:, None] + cols_g[None, :], mask=ok)
                cp.mbarrier_arrive(ready.index(slot), increment_count=False)
            j += 1
        cp.commit_group()
        cp.wait_group(0)  # copies issued ahead of a stop land before the CTA exits

    @gluon.jit
    def _exchange(X: gl.constexpr, c, stopped, decide, sync):
        """At walk chunk c's end: post whether tile X stopped, wait for the other tile's post,
        return it (nonzero: stopped). decide is double-buffered by chunk parity: a tile posts
        chunk c + 2 only after the other's post of chunk c + 1, which it makes after reading
        chunk c's."""
        one: gl.constexpr = gl.BlockedLayout([1], [32], [4], [0])
        decide.index((c % 2) * 2 + X).store(gl.full([1], 1, gl.int32, layout=one)
                                            * stopped.to(gl.int32))
        mbarrier.arrive(sync)
        mbarrier.wait(sync, c & 1)
        return gl.max(decide.index((c % 2) * 2 + 1 - X).load(one), axis=0)

    @gluon.jit
    def _pp_flush(o, p_prev, v_prev, empty_prev):
        """DEFERRED: the pending P @ V of the last computed step, then its buffer's release."""
        o = warpgroup_mma(p_prev, v_prev, o, is_async=True)
        o = warpgroup_mma_wait(0, deps=(o, ))
        mbarrier.arrive(empty_prev)
        return o

    @gluon.jit
    def _pp_consumer(X: gl.constexpr, q_smem, k_bufs, v_bufs, ready, empty, sync, decide,
                     stop_smem, turn, O, VISITED, bh, mt, m0, N, N_MT, P, n_dense, n_d, n_total,
                     qk_scale, tau, BM: gl.constexpr, BN: gl.constexpr, D: gl.constexpr,
                     REMAINING: gl.constexpr, CHUNK: gl.constexpr, STOP_EVERY: gl.constexpr,
                     NBUF: gl.constexpr, DEFERRED: gl.constexpr, PINGPONG: gl.constexpr):
        """Consumer warpgroup X of a tile pair (query rows m0 + X * BM ...), the partition of
        warpgroup X: the pair's stream of steps, computing those it needs and releasing every
        buffer; its own stop rule. At each walk chunk's end the two exchange decisions
        (decide, sync): a consumer that stopped keeps releasing buffers unread until the other
        stops too; the pair's end goes to the producer before the release of its last step.
        DEFERRED (FA3's order): a step issues the previous step's P @ V together with its own
        Q K^T and waits for both, so the softmax runs with nothing of its own in flight; a
        computed step's buffer is released after the P @ V that read it (a computed step
        later, or the flush when the tile stops). PINGPONG: while both tiles walk, the
        consumers take turns issuing their wgmmas (turn[X]: an mbarrier the other arrives on
        once it issued; the first tile goes first), so one's softmax runs under the other's."""
        p_op: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=_mma(D), k_width=2)
        n_diag: gl.constexpr = 2 * BM // BN
        mx = m0 + X * BM
        offs_m, row_ok, m_i, l_i, o, gsum, flags = _softmax_state(mx, N, BM, BN, D)
        active = mx < N  # a last tile past N only releases buffers
        both = m0 + BM < N  # PINGPONG: both tiles walk (updated at chunk ends)
        p_prev = gl.zeros([BM, BN], k_bufs.dtype, layout=p_op)  # DEFERRED: P @ V pending
        prev = 0  # DEFERRED: the buffer the pending P @ V reads
        has_prev = False
        turns = 0
        s = 0
        n_end = n_total  # the pair's end
        n_me = n_total  # this tile's end
        while s < n_end:
            slot = s % NBUF
            mbarrier.wait(ready.index(slot), (s // NBUF) & 1)
            # a diagonal step whose keys all follow this tile's rows is skipped (64-key steps:
            # the first tile's step 0)
            need = active & ((s >= n_diag) | (m0 + (n_diag - 1 - s) * BN < mx + BM))
            if need:
                fence_async_shared()  # cp.async wrote the tile (generic proxy); wgmma reads it
                if DEFERRED:
                    if PINGPONG:
                        if both & (s >= n_diag - 1):  # the steps both compute
                            mbarrier.wait(turn.index(X), turns & 1)
                            turns += 1
                    # a first step: P = 0 against this step's landed V (nothing to release)
                    o = warpgroup_mma(p_prev, v_bufs.index(gl.where(has_prev, prev, slot)), o,
                                      is_async=True)
                    sc = _scores_async(q_smem, k_bufs.index(slot), BM, BN)
                    if PINGPONG:
                        if both & (s >= n_diag - 1):
                            mbarrier.arrive(turn.index(1 - X))
                    sc, o = warpgroup_mma_wait(0, deps=(sc, o))
                    mbarrier.arrive(empty.index(prev), pred=has_prev)
                else:
                    sc = _scores_async(q_smem, k_bufs.index(slot), BM, BN)
                    sc = warpgroup_mma_wait(0, deps=(sc, ))
                sc = _pp_mask(sc, s, m0, N, offs_m, n_dense, n_d, P, BM, BN)
                m_i, l_i, o, p, alpha, gain = _online_softmax(sc, m_i, l_i, o, qk_scale, D)
                if DEFERRED:
                    p_prev = gl.convert_layout(p.to(k_bufs.dtype), p_op)
                    prev = slot
                    has_prev = True
                else:
                    o = warpgroup_mma(gl.convert_layout(p.to(k_bufs.dtype), p_op),
                                      v_bufs.index(slot), o, is_async=True)
                if s >= n_dense:
                    gsum, flags, n_me = _walk_test(s - n_dense, s, n_me, P, gsum, flags, alpha,
                                                   gain, l_i, row_ok, tau, BN, REMAINING, CHUNK,
                                                   STOP_EVERY)
                if not DEFERRED:
                    o = warpgroup_mma_wait(0, deps=(o, ))
            w = s - n_dense
            if (w >= 0) & ((w + 1) % CHUNK == 0) & (s + 1 < n_end):
                c = w // CHUNK  # both tiles decide at the same chunk ends (one walk)
                stopped = (n_me <= s + 1) | (~active)
                other = _exchange(X, c, stopped, decide, sync)
                active = ~stopped
                if stopped & (other != 0):  # tell the producer, before the releases below
                    n_end = s + 1
                    _post_stop(stop_smem, n_end)
                if DEFERRED:
                    if PINGPONG:
                        both = both & (~stopped) & (other == 0)
                    if stopped & has_prev:  # this tile's last P @ V, then it only releases
                        o = _pp_flush(o, p_prev, v_bufs.index(prev), empty.index(prev))
                        has_prev = False
            if DEFERRED:
                mbarrier.arrive(empty.index(slot), pred=~need)  # computed: released later
            else:
                mbarrier.arrive(empty.index(slot))
            s += 1
        if DEFERRED:
            if has_prev:
                o = _pp_flush(o, p_prev, v_bufs.index(prev), empty.index(prev))
        if mx < N:
            _store_out(O, VISITED, o, l_i, gl.minimum(n_me, n_end), n_dense, bh, mt + X, mx, N,
                       N_MT, BM, D, STOP_EVERY)

    @gluon.jit
    def _s2o_gluon_pp_kernel(Q, K, V, O, TABLE, OFFSETS, VISITED,
                             stride_qb, stride_qh, stride_qn, stride_kb, stride_kh, stride_kn,
                             stride_vb, stride_vh, stride_vn,
                             N, H_Q, T_DIV, N_MT, TOTAL, qk_scale, tau, SINK, LOCAL,
                             SEG: gl.constexpr, BM: gl.constexpr, BN: gl.constexpr,
                             D: gl.constexpr, GROUP: gl.constexpr, REMAINING: gl.constexpr,
                             CHUNK: gl.constexpr, STOP_EVERY: gl.constexpr,
                             NBUF: gl.constexpr, TPW_ROWS: gl.constexpr, PW: gl.constexpr,
                             CONSUMER_REGS: gl.constexpr, PRODUCER_REGS: gl.constexpr,
                             SMEM: gl.constexpr, SMEM_KV: gl.constexpr, DEFERRED: gl.constexpr,
                             PINGPONG: gl.constexpr, num_warps: gl.constexpr):
        """Two query tiles of one segment per CTA (one CTA per SM): they share the segment's
        ranked walk, so PW producer warps gather each K/V step once for two consumer
        warpgroups, each with its own online softmax and stop rule (session 12)."""
        qk_scale = qk_scale.to(gl.float32)
        tau = tau.to(gl.float32)
        gather: gl.constexpr = gl.BlockedLayout([1, 8], [TPW_ROWS, 32 // TPW_ROWS], [4, 1], [1, 0])
        rows_q = gl.arange(0, BM, layout=gl.SliceLayout(1, gather))
        cols_g = gl.arange(0, D, layout=gl.SliceLayout(0, gather))
        n_pt = (N_MT + 1) // 2
        mt = (n_pt - 1 - gl.program_id(0)) * 2  # the pair's first tile, longest prefixes first
        bh = gl.program_id(1)
        b = bh // H_Q
        hk = (bh % H_Q) // GROUP
        m0 = mt * BM
        g = m0 // SEG
        s0 = g * SEG
        sink_end = gl.minimum(s0, SINK)
        lo = gl.maximum(s0 - LOCAL, sink_end)
        n_diag: gl.constexpr = 2 * BM // BN  # steps over the pair's own rows
        n_d = sink_end + (m0 - lo)  # dense keys before the pair: the sink, then [lo, m0)
        n_dense = n_diag + (n_d + BN - 1) // BN
        off = gl.load(OFFSETS + g)
        P = (gl.load(OFFSETS + g + 1) - off).to(gl.int32)
        n_total = n_dense + (P + BN - 1) // BN
        t_base = TABLE + (bh // T_DIV).to(gl.int64) * TOTAL + off
        k_base = K + b.to(gl.int64) * stride_kb + hk.to(gl.int64) * stride_kh
        v_base = V + b.to(gl.int64) * stride_vb + hk.to(gl.int64) * stride_vh

        dtype: gl.constexpr = Q.dtype.element_ty
        q_a = gl.allocate_shared_memory(dtype, [BM, D], SMEM)
        q_b = gl.allocate_shared_memory(dtype, [BM, D], SMEM)
        k_bufs = gl.allocate_shared_memory(dtype, [NBUF, BN, D], SMEM_KV)
        v_bufs = gl.allocate_shared_memory(dtype, [NBUF, BN, D], SMEM_KV)
        ready = gl.allocate_shared_memory(gl.int64, [NBUF, 1], mbarrier.MBarrierLayout())
        empty = gl.allocate_shared_memory(gl.int64, [NBUF, 1], mbarrier.MBarrierLayout())
        sync = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
        small: gl.constexpr = gl.SwizzledSharedLayout(1, 1, 1, [0])
        stop_smem = gl.allocate_shared_memory(gl.int32, [PW], small)  # a copy per producer warp
        seen = gl.allocate_shared_memory(gl.int32, [2, PW], small)  # the warps' reads (_stop_step)
        decide = gl.allocate_shared_memory(gl.int32, [4, 1], small)
        for i in gl.static_range(NBUF):
            mbarrier.init(ready.index(i), count=32 * PW)  # every producer thread's copies
            mbarrier.init(empty.index(i), count=2)  # both consumers
        mbarrier.init(sync, count=2)
        turn = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
        if PINGPONG:  # else unused: its memory may hold the partitions' captures (live range)
            mbarrier.init(turn.index(0), count=1)
            mbarrier.init(turn.index(1), count=1)
            mbarrier.arrive(turn.index(0))  # the first tile issues first
        _post_stop(stop_smem, n_total)
        _load_q(Q, q_a, bh, m0, N, stride_qb, stride_qh, stride_qn, rows_q, cols_g, H_Q)
        _load_q(Q, q_b, bh, m0 + BM, N, stride_qb, stride_qh, stride_qn, rows_q, cols_g, H_Q)
        gl.thread_barrier()  # the barriers and stop_smem, before any partition starts

        gl.warp_specialize([
            (_pp_consumer, (0, q_a, k_bufs, v_bufs, ready, empty, sync, decide, stop_smem, turn,
                              O, VISITED, bh, mt, m0, N, N_MT, P, n_dense, n_d, n_total,
                              qk_scale, tau,
                              BM, BN, D, REMAINING, CHUNK, STOP_EVERY, NBUF, DEFERRED, PINGPONG)),
            (_pp_consumer, (1, q_b, k_bufs, v_bufs, ready, empty, sync, decide, stop_smem, turn,
                              O, VISITED, bh, mt, m0, N, N_MT, P, n_dense, n_d, n_total,
                              qk_scale, tau,
                              BM, BN, D, REMAINING, CHUNK, STOP_EVERY, NBUF, DEFERRED, PINGPONG)),
            (_pp_producer, (k_bufs, v_bufs, ready, empty, stop_smem, seen, k_base, v_base, t_base,
                            stride_kn, stride_vn, m0, N, P, n_diag, n_dense, sink_end, lo,
                            n_d, n_total, BN, D, NBUF, TPW_ROWS, PW)),
        ], [4, PW], [CONSUMER_REGS, PRODUCER_REGS])

    @gluon.jit
    def _s2o_gluon_ov_kernel(Q, K, V, O, TABLE, OFFSETS, VISITED,
                             stride_qb, stride_qh, stride_qn, stride_kb, stride_kh, stride_kn,
                             stride_vb, stride_vh, stride_vn,
                             N, H_Q, T_DIV, N_MT, TOTAL, qk_scale, tau, SINK, LOCAL,
                             SEG: gl.constexpr, BM: gl.constexpr, BN: gl.constexpr,
                             D: gl.constexpr, GROUP: gl.constexpr, REMAINING: gl.constexpr,
                             CHUNK: gl.constexpr, STOP_EVERY: gl.constexpr,
                             NBUF: gl.constexpr, TPW_ROWS: gl.constexpr, SMEM: gl.constexpr,
                             num_warps: gl.constexpr):
        """One warpgroup, FA3's overlap inside it (session 11): step s issues Q K^T of step
        s + 1 before its own softmax, so the tensor core computes the next scores while the
        warps exponentiate; P @ V is waited for at the end of the step (kept in flight across
        the back edge, ptxas serialized every wgmma in session 9). K runs a step ahead of V:
        step s copies K rows of step s + 3 and V rows of step s + 2 (three buffers each, each
        slot reused after its wgmma was waited for); it waits for K(s + 1) and V(s)."""
        qk_scale = qk_scale.to(gl.float32)
        tau = tau.to(gl.float32)
        rows_g, cols_g = _gather_index(BN, D, TPW_ROWS, 4)
        mt, bh, m0, n_sink, n_dense, sink_gap, P, n_total, t_base, k_base, v_base = \
            _tile_of_program(OFFSETS, TABLE, K, V, stride_kb, stride_kh, stride_vb, stride_vh,
                             H_Q, T_DIV, N_MT, TOTAL, SINK, LOCAL, SEG, BM, BN, GROUP)
        q_smem, k_bufs, v_bufs = _tile_buffers(Q, BM, BN, D, NBUF, SMEM)

        # group -2: K(0), V(0) (the diagonal) and K(1); group -1: K(2) and V(1)
        _issue_diagonal(k_bufs, v_bufs, k_base, v_base, stride_kn, stride_vn, m0, N, rows_g,
                        cols_g)
        rows1 = _step_rows(1, n_sink, n_dense, sink_gap,
                           _table_rows(t_base, 1 - n_dense, P, rows_g, BN), rows_g, BN)
        if 1 < n_total:
            _copy_rows(k_bufs, 1, rows1, k_base, stride_kn, cols_g)
        cp.commit_group()
        rows_v = _step_rows(2, n_sink, n_dense, sink_gap,
                            _table_rows(t_base, 2 - n_dense, P, rows_g, BN), rows_g, BN)
        if 2 < n_total:
            _copy_rows(k_bufs, 2, rows_v, k_base, stride_kn, cols_g)
        if 1 < n_total:
            _copy_rows(v_bufs, 1, rows1, v_base, stride_vn, cols_g)
        cp.commit_group()
        idx = _table_rows(t_base, 3 - n_dense, P, rows_g, BN)  # K rows of step 3
        _load_q(Q, q_smem, bh, m0, N, stride_qb, stride_qh, stride_qn, rows_g,
                cols_g.to(gl.int32), H_Q)
        offs_m, row_ok, m_i, l_i, o, gsum, flags = _softmax_state(m0, N, BM, BN, D)
        cp.wait_group(1)
        sc = _scores_async(q_smem, k_bufs.index(0), BM, BN)
        sc = warpgroup_mma_wait(0, deps=(sc, ))
        s = 0
        n_end = n_total
        while s < n_end:
            cp.wait_group(1)  # the group of step s - 2: K(s + 1), V(s)
            fence_async_shared()
            gl.thread_barrier()  # every thread's copies landed before the wgmmas read them
            if s + 3 < n_end:
                rows_k = _step_rows(s + 3, n_sink, n_dense, sink_gap, idx, rows_g, BN)
                _copy_rows(k_bufs, (s + 3) % NBUF, rows_k, k_base, stride_kn, cols_g)
            else:
                rows_k = rows_v
            if s + 2 < n_end:
                _copy_rows(v_bufs, (s + 2) % NBUF, rows_v, v_base, stride_vn, cols_g)
            cp.commit_group()
            rows_v = rows_k
            idx = _table_rows(t_base, s + 4 - n_dense, P, rows_g, BN)
            # the next step's scores (past the end: a stale buffer, no copy in flight into it)
            sc_next = _scores_async(q_smem, k_bufs.index((s + 1) % NBUF), BM, BN)
            m_i, l_i, o, alpha, gain = _softmax_pv(sc, v_bufs.index(s % NBUF), s, m0, N, offs_m,
                                                   m_i, l_i, o, qk_scale, BM, BN, D)
            if s >= n_dense:
                gsum, flags, n_end = _walk_test(s - n_dense, s, n_end, P, gsum, flags, alpha,
                                                gain, l_i, row_ok, tau, BN, REMAINING, CHUNK,
                                                STOP_EVERY)
            sc, o = warpgroup_mma_wait(0, deps=(sc_next, o))
            s += 1
        cp.wait_group(0)  # copies issued ahead of a stop
        _store_out(O, VISITED, o, l_i, s, n_dense, bh, mt, m0, N, N_MT, BM, D, STOP_EVERY)


def gluon_unsupported(q, k, v, table, cfg, scale: float, whole: bool,
                      step: int = BLOCK) -> str | None:
    """Why the Gluon kernel cannot take this call (None: it can). The Triton kernel takes the
    rest: other dtypes, head dims, tile shapes, stop rules, packed GQA heads, tau 0. step: the
    pair kernel's keys per step."""
    if not HAVE_GLUON:
        return "this Triton has no Gluon"
    if not q.is_cuda or torch.cuda.get_device_capability(q.device)[0] != 9:
        return "Gluon kernel is for Hopper (sm_90)"
    if q.dtype not in (torch.float16, torch.bfloat16):
        return f"dtype {q.dtype}"
    if q.shape[-1] not in (64, 128):
        return f"head dim {q.shape[-1]}"
    if table is None or cfg.threshold <= 0:
        return "tau 0 walks in key order"
    if cfg.block_m != BLOCK or cfg.block_n % BLOCK or cfg.stop_rule == "mean" or cfg.pack_gqa:
        return "block_m 64, block_n a multiple of 64, stop rule not 'mean', no pack_gqa"
    if cfg.block_n % step:
        return f"block_n not a multiple of the pair kernel's {step}-key steps"
    if cfg.segment_size % (2 * BLOCK):
        return "segment_size not a multiple of 128 (the pair kernel's two tiles share a segment)"
    if cfg.walk_chunk // cfg.block_n > 31:
        return "more than 31 stop tests per walk chunk"
    if not whole:
        return "tiles not whole"
    if any(x.stride(-1) != 1 or x.stride(2) % 8 for x in (q, k, v)):
        return "rows not 16-byte aligned"
    return None


def attention_gluon(q, k, v, table, offsets, scale: float, cfg, tpw_rows: int = 8,
                    ws: bool = False, producer_warps: int = 4, producer_regs: int = 56,
                    ov: bool = False, pp: bool = False, nbuf: int = 4, consumer_regs: int = 224,
                    deferred: bool = False, pingpong: bool = False, step: int = BLOCK):
    """The Gluon kernel (gluon_unsupported must be None): (out, visited) as
    triton_s2o.attention_with_table."""
    B, Hq, N, D = q.shape
    n_mt = triton.cdiv(N, BLOCK)
    out = torch.empty(B, Hq, N, D, dtype=q.dtype, device=q.device)
    visited = torch.empty(B, Hq, n_mt, dtype=torch.int32, device=q.device)
    smem = gl.NVMMASharedLayout.get_default_for([BLOCK, D], gl.bfloat16)
    stop_every = cfg.block_n // BLOCK
    kernel, extra = (_s2o_gluon_ov_kernel if ov else _s2o_gluon_kernel), dict(num_warps=4)
    grid = (n_mt, B * Hq)
    if pp:
        kernel = _s2o_gluon_pp_kernel
        extra = dict(PW=producer_warps, PRODUCER_REGS=producer_regs, NBUF=nbuf,
                     CONSUMER_REGS=consumer_regs, DEFERRED=deferred, PINGPONG=pingpong,
                     BN=step, CHUNK=cfg.walk_chunk // step, STOP_EVERY=cfg.block_n // step,
                     SMEM_KV=gl.NVMMASharedLayout.get_default_for([step, D], gl.bfloat16),
                     num_warps=4,
                     # one CTA per SM: 64K registers over both consumers and the producer
                     maxnreg=65536 // (32 * (8 + producer_warps)) // 8 * 8)
        grid = (triton.cdiv(n_mt, 2), B * Hq)
    elif ws:
        kernel = _s2o_gluon_ws_kernel
        extra = dict(PW=producer_warps, PRODUCER_REGS=producer_regs, num_warps=4,
                     # two CTAs per SM: 32K registers each, spread over all the CTA's warps
                     maxnreg=32768 // (32 * (4 + producer_warps)) // 8 * 8)
    args = (q, k, v, out, table, offsets, visited,
            q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
            v.stride(0), v.stride(1), v.stride(2),
            N, Hq, Hq // table.shape[1], n_mt, table.shape[-1], scale * 1.4426950408889634,
            float(cfg.threshold), cfg.sink_tokens, cfg.local_window)
    meta = dict(SEG=cfg.segment_size, BM=BLOCK, BN=BLOCK, D=D, GROUP=Hq // k.shape[1],
                REMAINING=cfg.stop_rule != "gain", CHUNK=cfg.walk_chunk // BLOCK,
                STOP_EVERY=stop_every, TPW_ROWS=tpw_rows, SMEM=smem)
    meta.update({"NBUF": NBUF, **extra})
    if ws or pp:  # kept until the _stop_step fix has run: the hangs of sessions 9-10 had spills
        compiled = kernel.warmup(*args, grid=grid, **meta)
        compiled._init_handles()
        if compiled.n_spills:
            raise RuntimeError(
                f"gluon WS/pair walk: the compiled kernel spills {compiled.n_spills} registers "
                f"(TPW_ROWS {tpw_rows}, {producer_regs} producer registers); every such "
                "configuration hung on the H100 (BENCHMARKS.md session 10), so it does not run")
    kernel[grid](*args, **meta)
    return out, visited
