"""EXPERIMENT (sessions 16-17; not used by the op): the pair kernel, persistent, with a dynamic
work queue.

Session 17 (v2): the pair kernel's CTAs were stamped (pair_ramp.py): a pair's start (its first
copies issued ~1.7 us after the CTA's, its Q ~1.8 us) and end (the output's stores, ~2 us in
the accumulator layout) cost ~3.4 steps a pair at 32K, on top of the CTA's exit and the next's
launch. v1 below removed only the launch: its consumers stored the output, then loaded the next
pair's geometry and Q, one after the other. v2: the producer takes the next pair from the queue
when it starts a pair and tags each step with both; the consumers load the next pair's Q into
registers before they store the current output (through shared memory, as the op's kernel now
does), and its bounds during the current pair.

Why: at 32K the pair walk costs 1.34x cuDNN per computed pair at tau 0.8 (~21 steps per CTA)
but 1.17x when it walks the whole prefix (tau 1e-6, ~130 steps per CTA; H200,
results/session16/probe16_dense.log). The difference fits a fixed cost of ~3.5-4.3 steps per
CTA: with one CTA per SM nothing overlaps a CTA's start (geometry, Q, the first gathers) and
end (the drain, the exit, the next launch). The persistent kernel of sessions 13-14
(gluon_walk.py at 950c888) walked pairs pid, pid + grid, ...: a static split of pairs whose
walks differ in length by 10x and more, so its CTAs did not end together (likely why it was
8-15% slower). Here the producer takes the next pair from a global counter (atomic) when it
has issued the current one's last step, in the pair kernel's order (a head's pairs one after
another, longest first), so the tail is as the hardware's block scheduler would make it.

Protocol (the old one's, benchmarks/pp_protocol_sim.py --items, with the pair carried by the
tag): every buffer is tagged with the pair whose step it holds; a pair's end is posted as a
global step, negated, so that gluon_pair._stop_step's minimum over the warps' copies is the
newest end; the producer may issue up to NBUF - 1 steps past an end, which the consumers
release unread (their tag is the pair they just ended); a tag of -1 ends the CTA. Block_m 64
and 128 (JOINT), whole prefill only (no chunks). Measured at commit 9e2fe04 (with its own
maximum in place of the negated posts; this form is compiled for sm_90, not rerun).
"""
from __future__ import annotations

import torch
import triton

from s2o_compile.kernels import gluon_pair as GP
from s2o_compile.kernels.gluon_pair import BLOCK, HAVE_GLUON

if HAVE_GLUON:
    from s2o_compile.kernels.gluon_pair import (
        cp, gl, gluon, mbarrier, fence_async_shared, _copy_kv, _exchange, _gather_index,
        _half_diagonal_step, _pair_buffers, _pair_geometry, _pair_rows, _pair_start, _pair_step,
        _pair_walk, _post_stop, _q_rows, _softmax_state, _stop_step, _store_out_staged,
        _table_rows)

    @gluon.jit
    def _next_pair(COUNTER, PW: gl.constexpr):
        """The next pair from the queue (one atomic; the same value in every producer warp)."""
        one: gl.constexpr = gl.BlockedLayout([1], [32], [PW], [0])
        w = gl.atomic_add(COUNTER + gl.zeros([1], gl.int32, layout=one),
                          gl.full([1], 1, gl.int32, layout=one))
        return gl.max(w, axis=0)

    @gluon.jit
    def _tag_of(tags, slot):
        one: gl.constexpr = gl.BlockedLayout([1], [32], [4], [0])
        return gl.max(tags.index(slot).load(one), axis=0)

    @gluon.jit
    def _publish(tags, nexts, ready, slot, w, w_next, PW: gl.constexpr):
        """Tag buffer `slot` with pair w (-1: no more pairs) and the pair after it, and make it
        ready: the tag's own arrival after every producer warp stored it (ready: 32 PW
        cp.async arrivals + 1)."""
        every: gl.constexpr = gl.BlockedLayout([1], [32], [PW], [0])
        cp.mbarrier_arrive(ready.index(slot), increment_count=False)
        tags.index(slot).store(gl.full([1], 1, gl.int32, layout=every) * w)
        nexts.index(slot).store(gl.full([1], 1, gl.int32, layout=every) * w_next)
        gl.thread_barrier()
        mbarrier.arrive(ready.index(slot))

    @gluon.jit
    def _persist_producer(k_bufs, v_bufs, ready, empty, tags, nexts, stop_smem, seen, COUNTER,
                          OFFSETS,
                          TABLE, K, V, stride_kb, stride_kh, stride_kn, stride_vb, stride_vh,
                          stride_vn, N, H_Q, T_DIV, N_MT, TOTAL, SINK, LOCAL, n_items,
                          SEG: gl.constexpr, BM: gl.constexpr, BN: gl.constexpr,
                          D: gl.constexpr, GROUP: gl.constexpr, NBUF: gl.constexpr,
                          TPW_ROWS: gl.constexpr, PW: gl.constexpr):
        rows_g, cols_h = _gather_index(BN, D, TPW_ROWS, PW)
        n_diag: gl.constexpr = 2 * BM // BN
        n_pt = (N_MT + 1) // 2
        j = 0  # steps issued, across pairs
        w = _next_pair(COUNTER, PW)
        while w < n_items:
            w_next = _next_pair(COUNTER, PW)  # now: the consumers prefetch its Q
            w_next = gl.where(w_next < n_items, w_next, -1)
            mt, m0, sink_end, lo, n_d, n_dense, P, n_total, t_base, k_base, v_base = \
                _pair_geometry(w % n_pt, w // n_pt, OFFSETS, TABLE, K, V, stride_kb, stride_kh,
                               stride_vb, stride_vh, H_Q, T_DIV, N_MT, TOTAL, SINK, LOCAL, SEG,
                               BM, BN, GROUP)
            base = j
            n_end = j + n_total
            while j < n_end:
                slot = j % NBUF
                if j >= NBUF:
                    mbarrier.wait(empty.index(slot), ((j // NBUF) - 1) & 1)
                    # ends are posted negated: the newest (largest) is the smallest copy, as
                    # _stop_step takes it; the initial 0 is above every post
                    posted = -_stop_step(stop_smem, seen, j, PW)
                    if posted > base:
                        n_end = gl.minimum(n_end, posted)
                if j < n_end:
                    local = j - base
                    if local < n_dense:
                        rows = _pair_rows(local, m0, n_diag, n_dense, sink_end, lo, n_d, rows_g,
                                          BN)
                    else:
                        rows = _table_rows(t_base, local - n_dense, P, rows_g, BN)
                    _copy_kv(k_bufs, v_bufs, slot, rows, N, k_base, v_base, stride_kn,
                             stride_vn, cols_h, D, False)
                    _publish(tags, nexts, ready, slot, w, w_next, PW)
                    j += 1
            w = gl.where(w_next >= 0, w_next, n_items)
            gl.thread_barrier()  # every warp's last read of `seen` before its next store
        slot = j % NBUF  # the end: a buffer tagged -1
        if j >= NBUF:
            mbarrier.wait(empty.index(slot), ((j // NBUF) - 1) & 1)
        _publish(tags, nexts, ready, slot, -1, -1, PW)
        cp.commit_group()
        cp.wait_group(0)

    @gluon.jit
    def _persist_consumer(X: gl.constexpr, q_smem, k_bufs, v_bufs, ready, empty, tags, nexts,
                          sync, decide, stop_smem, O, VISITED, OFFSETS, TABLE, K, V, Q,
                          stride_qb, stride_qh, stride_qn, stride_kb, stride_kh, stride_vb,
                          stride_vh, N, H_Q, T_DIV, N_MT, N_VIS, TOTAL, SINK, LOCAL, qk_scale,
                          tau, SEG: gl.constexpr, BM: gl.constexpr, BN: gl.constexpr,
                          D: gl.constexpr, GROUP: gl.constexpr, REMAINING: gl.constexpr,
                          CHUNK: gl.constexpr, STOP_EVERY: gl.constexpr, NBUF: gl.constexpr,
                          JOINT: gl.constexpr):
        """gluon_pair._pair_consumer over the pairs the tags name, with the step (s), phase
        and exchange (n_ex) counts carried across pairs. v2: a pair's bounds are loaded during
        the pair before it, and its Q (into registers) before the pair before it stores its
        output."""
        n_diag: gl.constexpr = 2 * BM // BN
        TESTS: gl.constexpr = CHUNK // STOP_EVERY
        HALF: gl.constexpr = X == 0 and n_diag == 1
        gather: gl.constexpr = gl.BlockedLayout([1, 8], [4, 8], [4, 1], [1, 0])
        rows_q = gl.arange(0, BM, layout=gl.SliceLayout(1, gather))
        cols_q = gl.arange(0, D, layout=gl.SliceLayout(0, gather))
        n_pt = (N_MT + 1) // 2
        s = 0
        n_ex = 0
        mbarrier.wait(ready.index(0), 0)
        w = _tag_of(tags, 0)
        # the first pair's Q and bounds (w < 0: no pair; the values go unused)
        wq = gl.maximum(w, 0)
        mt, m0, g, sink_end, lo, n_d, n_dense = _pair_start(wq % n_pt, wq // n_pt, N_MT, SINK,
                                                            LOCAL, SEG, BM, BN)
        P, n_total, t_base = _pair_walk(g, wq // n_pt, n_dense, OFFSETS, TABLE, T_DIV, TOTAL,
                                        BN)
        q_smem.store(_q_rows(Q, wq // n_pt, m0 + X * BM, gl.where(w >= 0, N, 0), 0, stride_qb,
                             stride_qh, stride_qn, rows_q, cols_q, H_Q, False))
        fence_async_shared()
        gl.thread_barrier()
        while w >= 0:
            w_next = _tag_of(nexts, s % NBUF)  # the pair after this one (-1: none)
            bh = w // n_pt
            mt, m0, g, sink_end, lo, n_d, n_dense = _pair_start(w % n_pt, bh, N_MT, SINK, LOCAL,
                                                                SEG, BM, BN)
            base = s
            mx = m0 + X * BM
            offs_m, row_ok, m_i, l_i, o, gsum, flags = _softmax_state(mx, N, 0, BM, BN, D, False)
            active = mx < N
            has_rows = active
            n_end = base + n_total
            n_me = n_end
            # the next pair's bounds, loaded under this pair's steps
            wn = gl.maximum(w_next, 0)
            mt_n, m0_n, g_n, se_n, lo_n, nd_n, ndense_n = _pair_start(wn % n_pt, wn // n_pt,
                                                                      N_MT, SINK, LOCAL, SEG,
                                                                      BM, BN)
            P_n, n_total_n, t_base_n = _pair_walk(g_n, wn // n_pt, ndense_n, OFFSETS, TABLE,
                                                  T_DIV, TOTAL, BN)
            while s < n_end:
                slot = s % NBUF
                t = s - base
                mbarrier.wait(ready.index(slot), (s // NBUF) & 1)
                need = active & ((t >= n_diag) | (m0 + (n_diag - 1 - t) * BN < mx + BM))
                if HALF & (t == 0) & need:
                    m_i, l_i, o = _half_diagonal_step(q_smem, k_bufs.index(slot),
                                                      v_bufs.index(slot), m0, N, offs_m, l_i, o,
                                                      qk_scale, BM, D)
                elif need:
                    m_i, l_i, o, gsum, flags, n_me = _pair_step(
                        q_smem, k_bufs.index(slot), v_bufs.index(slot), t, s, m0, N, offs_m,
                        row_ok, n_dense, n_d, P, m_i, l_i, o, gsum, flags, n_me, qk_scale, tau,
                        BM, BN, D, REMAINING, CHUNK, STOP_EVERY, JOINT)
                wk = t - n_dense
                if (wk >= 0) & ((wk + 1) % CHUNK == 0) & (s + 1 < n_end):
                    if JOINT:
                        mine = gl.reduce_or(flags, axis=0)
                        flags = gl.zeros_like(flags)
                        walks_on = mine | _exchange(X, n_ex, mine, decide, sync)
                        if (~walks_on) & ((1 << TESTS) - 1):
                            n_end = s + 1
                            n_me = n_end
                            _post_stop(stop_smem, -n_end)
                    else:
                        stopped = (n_me <= s + 1) | (~active)
                        other = _exchange(X, n_ex, stopped, decide, sync)
                        active = ~stopped
                        if stopped & (other != 0):
                            n_end = s + 1
                            _post_stop(stop_smem, -n_end)
                    n_ex += 1
                mbarrier.arrive(empty.index(slot))
                s += 1
            # the next pair's Q into registers, under this pair's output
            q_next = _q_rows(Q, wn // n_pt, m0_n + X * BM, gl.where(w_next >= 0, N, 0), 0,
                             stride_qb, stride_qh, stride_qn, rows_q, cols_q, H_Q, False)
            if has_rows:
                _store_out_staged(O, o, l_i, q_smem, bh, mx, N, 0, BM, D, False)
            n_vis = gl.maximum(gl.minimum(n_me, n_end) - base - n_dense, 0)
            n_vis = (n_vis + STOP_EVERY - 1) // STOP_EVERY
            if JOINT:
                if X == 0:
                    gl.store(VISITED + bh * N_VIS + mt // 2, n_vis)
            elif has_rows:
                gl.store(VISITED + bh * N_VIS + mt + X, n_vis)
            gl.thread_barrier()  # every thread's read of the staged output, before Q lands
            q_smem.store(q_next)
            fence_async_shared()
            gl.thread_barrier()
            P = P_n
            n_total = n_total_n
            # the next pair: release the steps issued past this one's end, unread
            w_prev = w
            mbarrier.wait(ready.index(s % NBUF), (s // NBUF) & 1)
            w = _tag_of(tags, s % NBUF)
            while w == w_prev:
                mbarrier.arrive(empty.index(s % NBUF))
                s += 1
                mbarrier.wait(ready.index(s % NBUF), (s // NBUF) & 1)
                w = _tag_of(tags, s % NBUF)

    @gluon.jit
    def _s2o_persist_kernel(Q, K, V, O, TABLE, OFFSETS, VISITED, COUNTER,
                            stride_qb, stride_qh, stride_qn, stride_kb, stride_kh, stride_kn,
                            stride_vb, stride_vh, stride_vn,
                            N, H_Q, T_DIV, N_MT, N_VIS, TOTAL, qk_scale, tau, SINK, LOCAL,
                            n_items, SEG: gl.constexpr, BM: gl.constexpr, BN: gl.constexpr,
                            D: gl.constexpr, GROUP: gl.constexpr, REMAINING: gl.constexpr,
                            CHUNK: gl.constexpr, STOP_EVERY: gl.constexpr, JOINT: gl.constexpr,
                            NBUF: gl.constexpr, TPW_ROWS: gl.constexpr, PW: gl.constexpr,
                            CONSUMER_REGS: gl.constexpr, PRODUCER_REGS: gl.constexpr,
                            SMEM: gl.constexpr, SMEM_KV: gl.constexpr, num_warps: gl.constexpr):
        qk_scale = qk_scale.to(gl.float32)
        tau = tau.to(gl.float32)
        q_a, q_b, k_bufs, v_bufs, ready, empty, sync, stop_smem, seen, decide, _ = _pair_buffers(
            Q, BM, BN, D, NBUF, PW, 32 * PW + 1, SMEM, SMEM_KV)
        tags = gl.allocate_shared_memory(gl.int32, [NBUF, 1],
                                         gl.SwizzledSharedLayout(1, 1, 1, [0]))
        nexts = gl.allocate_shared_memory(gl.int32, [NBUF, 1],
                                          gl.SwizzledSharedLayout(1, 1, 1, [0]))
        _post_stop(stop_smem, 0)  # no end posted: every pair's steps are > 0
        gl.thread_barrier()
        gl.warp_specialize([
            (_persist_consumer, (0, q_a, k_bufs, v_bufs, ready, empty, tags, nexts, sync, decide,
                                 stop_smem, O, VISITED, OFFSETS, TABLE, K, V, Q, stride_qb,
                                 stride_qh, stride_qn, stride_kb, stride_kh, stride_vb,
                                 stride_vh, N, H_Q, T_DIV, N_MT, N_VIS, TOTAL, SINK, LOCAL,
                                 qk_scale, tau, SEG, BM, BN, D, GROUP, REMAINING, CHUNK,
                                 STOP_EVERY, NBUF, JOINT)),
            (_persist_consumer, (1, q_b, k_bufs, v_bufs, ready, empty, tags, nexts, sync, decide,
                                 stop_smem, O, VISITED, OFFSETS, TABLE, K, V, Q, stride_qb,
                                 stride_qh, stride_qn, stride_kb, stride_kh, stride_vb,
                                 stride_vh, N, H_Q, T_DIV, N_MT, N_VIS, TOTAL, SINK, LOCAL,
                                 qk_scale, tau, SEG, BM, BN, D, GROUP, REMAINING, CHUNK,
                                 STOP_EVERY, NBUF, JOINT)),
            (_persist_producer, (k_bufs, v_bufs, ready, empty, tags, nexts, stop_smem, seen,
                                 COUNTER, OFFSETS, TABLE, K, V, stride_kb, stride_kh, stride_kn,
                                 stride_vb, stride_vh, stride_vn, N, H_Q, T_DIV, N_MT, TOTAL,
                                 SINK, LOCAL, n_items, SEG, BM, BN, D, GROUP, NBUF, TPW_ROWS,
                                 PW)),
        ], [4, PW], [CONSUMER_REGS, PRODUCER_REGS])


def attention_persist(q, k, v, table, offsets, scale: float, cfg, ctas: int | None = None,
                      nbuf: int | None = None, producer_regs: int = 56,
                      consumer_regs: int = 224):
    """As gluon_pair.attention_pair (whole prefill only: q as long as k), persistent: ctas
    CTAs (default one per SM) take the pairs from a queue."""
    B, Hq, N, D = q.shape
    assert k.shape[2] == N, "whole prefill only"
    step = GP.pair_step(cfg)
    nbuf = nbuf or 3
    n_mt = triton.cdiv(N, BLOCK)
    n_pairs = triton.cdiv(n_mt, 2)
    n_vis = n_pairs if cfg.block_m == 2 * BLOCK else n_mt
    n_items = n_pairs * B * Hq
    ctas = min(ctas or torch.cuda.get_device_properties(q.device).multi_processor_count, n_items)
    out = torch.empty(B, Hq, N, D, dtype=q.dtype, device=q.device)
    visited = torch.empty(B, Hq, n_vis, dtype=torch.int32, device=q.device)
    counter = torch.zeros(1, dtype=torch.int32, device=q.device)
    pw = GP.PRODUCER_WARPS
    _s2o_persist_kernel[(ctas, )](
        q, k, v, out, table, offsets, visited, counter,
        q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2),
        N, Hq, Hq // table.shape[1], n_mt, n_vis, table.shape[-1], scale * 1.4426950408889634,
        float(cfg.threshold), cfg.sink_tokens, cfg.local_window, n_items,
        SEG=cfg.segment_size, BM=BLOCK, BN=step, D=D, GROUP=Hq // k.shape[1],
        REMAINING=cfg.stop_rule != "gain", CHUNK=cfg.walk_chunk // step,
        STOP_EVERY=cfg.block_n // step, JOINT=cfg.block_m == 2 * BLOCK, NBUF=nbuf,
        TPW_ROWS=GP.TPW_ROWS, PW=pw, CONSUMER_REGS=consumer_regs, PRODUCER_REGS=producer_regs,
        SMEM=gl.NVMMASharedLayout.get_default_for([BLOCK, D], gl.bfloat16),
        SMEM_KV=gl.NVMMASharedLayout.get_default_for([step, D], gl.bfloat16),
        num_warps=4, maxnreg=65536 // (32 * (8 + pw)) // 8 * 8)
    return out, visited
