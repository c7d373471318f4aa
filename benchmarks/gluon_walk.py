"""EXPERIMENT (session 9; not used by the op, except the pair kernel that moved there): the S2O
attention kernel in Gluon, Triton's lower-level dialect, for Hopper (sm_90). Kernels with
triton_s2o._s2o_attention_kernel's semantics on its common path (whole tiles, head dim 64/128,
fp16/bf16, one query head per tile, stop rule not "mean", tau > 0; gluon_unsupported says why a
call is not taken):

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
  The tile pair (sessions 12-13; variant "pp" in gluon_ab.py): two query tiles of one segment
    per CTA sharing one gathering producer. It moved into the op as
    s2o_compile/kernels/gluon_pair.py (session 13), which these kernels share their helpers
    with. Session 12 also tried, in it, FA3's order (P @ V issued with the next step's Q K^T)
    and ping-pong between the consumers: no gain at 32K (H200), so the op's kernel has neither
    (their code: benchmarks/gluon_walk.py at commit a2b9712; their protocol:
    benchmarks/pp_protocol_sim.py). Session 14 tried both again at 128-key steps: correct, no
    faster (BENCHMARKS.md session 14; their code: this file at commit 04e54ea).
  A persistent tile pair (sessions 13-14: one CTA per SM over many pairs, the next pair's steps
    gathered while the current one ends): correct, and 8-15% slower than the pair kernel
    (BENCHMARKS.md session 14; its code: this file at commit 950c888; its protocol:
    benchmarks/pp_protocol_sim.py --items).

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

from s2o_compile.kernels import gluon_pair as GP
from s2o_compile.kernels.gluon_pair import HAVE_GLUON

if HAVE_GLUON:  # Gluon, and the helpers these kernels share with the op's pair kernel
    from s2o_compile.kernels.gluon_pair import (  # noqa: F401
        cp, fence_async_shared, gl, gluon, mbarrier, warpgroup_mma, warpgroup_mma_wait,
        _claim_slot, _copy_kv, _load_q, _mma, _online_softmax, _post_stop,
        _scores_async, _softmax_state, _stop_step, _store_out, _table_rows, _walk_test)

NBUF = 3  # K/V buffers: tiles issued NBUF - 1 steps ahead (Q + 3 x 32 KiB: two CTAs per SM)
BLOCK = 64  # query rows per tile and keys per step (wgmma M = 64 per warpgroup)


if HAVE_GLUON:
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
    def _store_tile(O, VISITED, o, l_i, s, n_dense, bh, mt, m0, N, N_MT, BM: gl.constexpr,
                    D: gl.constexpr, STOP_EVERY: gl.constexpr):
        """The tile's output rows (gluon_pair._store_out) and its walked tiles (block_n)."""
        _store_out(O, o, l_i, bh, m0, N, 0, BM, D, False)
        n_vis = gl.maximum(s - n_dense, 0)
        gl.store(VISITED + bh * N_MT + mt, (n_vis + STOP_EVERY - 1) // STOP_EVERY)

    @gluon.jit
    def _gather_index(BN: gl.constexpr, D: gl.constexpr, TPW_ROWS: gl.constexpr,
                      WARPS: gl.constexpr):
        """Row and column indices of a [BN, D] tile in the gathered copies' layout (columns
        int64: a row's pieces are constant offsets from its address)."""
        gather: gl.constexpr = gl.BlockedLayout([1, 8], [TPW_ROWS, 32 // TPW_ROWS], [WARPS, 1],
                                                [1, 0])
        return (gl.arange(0, BN, layout=gl.SliceLayout(1, gather)),
                gl.arange(0, D, layout=gl.SliceLayout(0, gather)).to(gl.int64))

    @gluon.jit
    def _issue_diagonal(k_bufs, v_bufs, k_base, v_base, stride_kn, stride_vn, m0, N, rows_g,
                        cols_g):
        """Step 0's copies into buffer 0: keys [m0, m0 + BN), past N zero-filled."""
        _copy_kv(k_bufs, v_bufs, 0, m0 + rows_g, N, k_base, v_base, stride_kn, stride_vn, cols_g,
                 cols_g.shape[0], False)

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
        _load_q(Q, q_smem, bh, m0, N, 0, stride_qb, stride_qh, stride_qn, rows_g,
                cols_g.to(gl.int32), H_Q, False)

        offs_m, row_ok, m_i, l_i, o, gsum, flags = _softmax_state(m0, N, 0, BM, BN, D, False)
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
                                                STOP_EVERY, False)
            # P @ V ran under the stop test only: kept in flight across the loop's back edge,
            # ptxas serializes every wgmma (C7515)
            o = warpgroup_mma_wait(0, deps=(o, ))
            s += 1
        cp.wait_group(0)  # copies issued ahead of a stop
        _store_tile(O, VISITED, o, l_i, s, n_dense, bh, mt, m0, N, N_MT, BM, D, STOP_EVERY)

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
        offs_m, row_ok, m_i, l_i, o, gsum, flags = _softmax_state(m0, N, 0, BM, BN, D, False)
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
                                                STOP_EVERY, False)
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
        _load_q(Q, q_smem, bh, m0, N, 0, stride_qb, stride_qh, stride_qn, rows_g, cols_g, H_Q,
                False)
        gl.thread_barrier()  # the barriers and stop_smem, before either partition starts

        o, l_i, s = gl.warp_specialize([
            (_ws_consumer, (q_smem, k_bufs, v_bufs, ready, empty, stop_smem, m0, N, P, n_dense,
                            n_total, qk_scale, tau, BM, BN, D, REMAINING, CHUNK, STOP_EVERY,
                            NBUF)),
            (_ws_producer, (k_bufs, v_bufs, ready, empty, stop_smem, seen, k_base, v_base, t_base,
                            stride_kn, stride_vn, m0, N, P, n_sink, n_dense, sink_gap,
                            n_total, BN, D, NBUF, TPW_ROWS, PW)),
        ], [PW], [PRODUCER_REGS])
        _store_tile(O, VISITED, o, l_i, s, n_dense, bh, mt, m0, N, N_MT, BM, D, STOP_EVERY)

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
        _load_q(Q, q_smem, bh, m0, N, 0, stride_qb, stride_qh, stride_qn, rows_g,
                cols_g.to(gl.int32), H_Q, False)
        offs_m, row_ok, m_i, l_i, o, gsum, flags = _softmax_state(m0, N, 0, BM, BN, D, False)
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
                                                STOP_EVERY, False)
            sc, o = warpgroup_mma_wait(0, deps=(sc_next, o))
            s += 1
        cp.wait_group(0)  # copies issued ahead of a stop
        _store_tile(O, VISITED, o, l_i, s, n_dense, bh, mt, m0, N, N_MT, BM, D, STOP_EVERY)


def gluon_unsupported(q, k, v, table, cfg, scale: float, whole: bool,
                      pair_step: int | None = None) -> str | None:
    """Why a Gluon kernel cannot take this call (None: it can); pair_step given: the pair
    kernel's (gluon_pair.pair_unsupported). The Triton kernel takes the rest."""
    if pair_step is not None:
        return GP.pair_unsupported(q, k, v, table, cfg, scale, whole, pair_step)
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
    if cfg.walk_chunk // cfg.block_n > 31:
        return "more than 31 stop tests per walk chunk"
    if not whole:
        return "tiles not whole"
    if any(x.stride(-1) != 1 or x.stride(2) % 8 for x in (q, k, v)):
        return "rows not 16-byte aligned"
    return None


def attention_gluon(q, k, v, table, offsets, scale: float, cfg, tpw_rows: int = 8,
                    ws: bool = False, producer_warps: int = 4, producer_regs: int = 56,
                    ov: bool = False, pp: bool = False, nbuf: int | None = None,
                    consumer_regs: int = 224, step: int | None = None):
    """A Gluon kernel (gluon_unsupported must be None): (out, visited) as
    triton_s2o.attention_with_table. pp: the op's pair kernel (gluon_pair.attention_pair)."""
    if pp:
        return GP.attention_pair(q, k, v, table, offsets, scale, cfg, step=step, nbuf=nbuf,
                                 tpw_rows=tpw_rows, producer_warps=producer_warps,
                                 producer_regs=producer_regs, consumer_regs=consumer_regs)
    B, Hq, N, D = q.shape
    n_mt = triton.cdiv(N, BLOCK)
    out = torch.empty(B, Hq, N, D, dtype=q.dtype, device=q.device)
    visited = torch.empty(B, Hq, n_mt, dtype=torch.int32, device=q.device)
    smem = gl.NVMMASharedLayout.get_default_for([BLOCK, D], gl.bfloat16)
    kernel, extra = (_s2o_gluon_ov_kernel if ov else _s2o_gluon_kernel), dict(num_warps=4)
    if ws:
        kernel = _s2o_gluon_ws_kernel
        extra = dict(PW=producer_warps, PRODUCER_REGS=producer_regs, num_warps=4,
                     # two CTAs per SM: 32K registers each, spread over all the CTA's warps
                     maxnreg=32768 // (32 * (4 + producer_warps)) // 8 * 8)
    grid = (n_mt, B * Hq)
    args = (q, k, v, out, table, offsets, visited,
            q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
            v.stride(0), v.stride(1), v.stride(2),
            N, Hq, Hq // table.shape[1], n_mt, table.shape[-1], scale * 1.4426950408889634,
            float(cfg.threshold), cfg.sink_tokens, cfg.local_window)
    meta = dict(SEG=cfg.segment_size, BM=BLOCK, BN=BLOCK, D=D, GROUP=Hq // k.shape[1],
                REMAINING=cfg.stop_rule != "gain", CHUNK=cfg.walk_chunk // BLOCK,
                STOP_EVERY=cfg.block_n // BLOCK, TPW_ROWS=tpw_rows, SMEM=smem)
    meta.update({"NBUF": NBUF, **extra})
    if ws:  # the WS kernel has not run since the _stop_step fix: its hangs of sessions 9-10 had spills
        compiled = kernel.warmup(*args, grid=grid, **meta)
        compiled._init_handles()
        if compiled.n_spills:
            raise RuntimeError(
                f"gluon WS walk: the compiled kernel spills {compiled.n_spills} registers "
                f"(TPW_ROWS {tpw_rows}, {producer_regs} producer registers); every such "
                "configuration hung on the H100 (BENCHMARKS.md session 10), so it does not run")
    kernel[grid](*args, **meta)
    return out, visited
