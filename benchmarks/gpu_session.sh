#!/usr/bin/env bash
# Everything the GPU checks and times, in stages, for one device call each:
#   bash benchmarks/gpu_session.sh STAGE [STAGE ...]    (results under $OUT, default ./gpu_out)
# Stages: check24, tma24, final25, final23, lazy23, lean23, poly23, phase23, turns23, drift22, reps22, l2_22, final22, scores22, op22, op21k, keys21, scatter21, op21, rank21, kfirst21, share21, early21, waits21, final20, lone22, op20, whole21, ahead21, lone21, lone20, last19, sb19b, sb19, op19, pf19, pro19, ramp19, op18, last18, sort18, final18, tiles18, pre18, drift18, split17, l2_17, confirm17, final17, persist17, store17, pf17, start17, ramp17, fit16, tpw16, off16, joint16, final16, lean16, pad16, persist16, probe16, lazy16, softmax16, soak15, chunk15, bench15, sort15, overlap15, final15, pair15, joint15, sort14, sort14b, bench14, timeline, tests, chunked, pairop, bench13, pairop2, why, final13, h200, pair, ncu, bm128, overhead, bench08, sort, ab14, ab15, ab16, ab17, sweep, ab, ab2, ab3, ab4, ab8, ab9, ab10, ab11, ab12, local, bench128, profile, mean, gain, pad, segments, perhead, perhead2, headn,
# oracle, bench, memory, demo, flex, e2e, eager, fallback, hf.
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=${PYTHONPATH:-}:$PWD
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/card.txt"
python -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$OUT/card.txt"
# the index table's tests (scores, tables, sort, NaN/inf) with test_nan_inf.py (session 22)
SCORE_TESTS="prefix_scores or equals_reference or stable_sort or sorted_table or nan or permutation"
for stage in "$@"; do
  echo "=== $stage $(date +%T)"
  case $stage in
    # session 24 (ran in session 25): the GPU tests added without a GPU, multi-query shapes
    # (tau 0 vs dense, the pair kernel vs the Triton kernel) and the op replayed from a CUDA
    # graph
    check24) timeout 200 python -m pytest -q -p no:cacheprovider tests/test_gpu.py 2>&1 \
              | tail -4 | tee "$OUT/check24_tests.log"
            timeout 200 python -m pytest -q -p no:cacheprovider tests/test_gluon_pair.py \
              -k "matches_the_triton_kernel" 2>&1 | tail -4 | tee -a "$OUT/check24_tests.log" ;;
    # session 25, final: the op with tma_dense removed (the kernel of final23 again), 3 paired
    # rounds; the GPU tests of the pair kernel, the op and the Triton kernels
    final25) timeout 270 python -m s2o_compile bench --seq-lens 131072 32768 65536 --taus 0.8 \
              --rounds 3 --out "$OUT/final25_bench.json" 2>&1 | grep -v "it/s\]" \
              | tee "$OUT/final25_bench.log"
            timeout 240 python -m pytest -q -p no:cacheprovider tests/test_gluon_pair.py 2>&1 \
              | tail -3 | tee "$OUT/final25_tests.log" ;;
    final25b) timeout 300 python -m pytest -q -p no:cacheprovider tests/test_gpu.py \
              tests/test_op.py tests/test_chunked_prefill.py 2>&1 | tail -3 \
              | tee "$OUT/final25b_tests.log"
            timeout 200 python -m pytest -q -p no:cacheprovider tests/test_triton_kernels.py \
              tests/test_nan_inf.py -k "$SCORE_TESTS" 2>&1 | tail -3 \
              | tee -a "$OUT/final25b_tests.log" ;;
    # session 24 (ran in session 25 at f56553c; tma_dense removed since, not kept): the dense
    # steps whose keys are one contiguous run copied by TMA (tma_dense=1: one copy a step instead of the producer's
    # ~200 instructions; 2: and the consumers' proxy fence dropped on those steps), A/B with
    # every check, both block_ms; the bit-for-bit switch tests first
    tma24) timeout 120 python -m pytest -q -p no:cacheprovider tests/test_gluon_pair.py \
              -k "launch_switches" 2>&1 | tail -3 | tee "$OUT/tma24_tests.log"
            timeout 240 python benchmarks/pair_ab.py --seq-lens 32768 65536 131072 --rounds 3 \
              --block-ms 64 128 --variants base tma_dense=1 tma_dense=2 \
              --out "$OUT/tma24_ab.json" 2>&1 | grep -v Warning | tee "$OUT/tma24_ab.log" ;;
    # session 23, final: the op on the kept kernel (the rescale's skip), 3 paired rounds; the
    # pair kernel's GPU tests (chunked prefill, NaN/inf, the skip's bits), the op's
    final23) timeout 260 python -m s2o_compile bench --seq-lens 131072 32768 65536 --taus 0.8 \
              --rounds 3 --out "$OUT/final23_bench.json" 2>&1 | grep -v "it/s\]" \
              | tee "$OUT/final23_bench.log"
            timeout 230 python -m pytest -q -p no:cacheprovider tests/test_gluon_pair.py 2>&1 \
              | tail -3 | tee "$OUT/final23_tests.log"
            timeout 150 python -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_op.py \
              2>&1 | tail -3 | tee -a "$OUT/final23_tests.log" ;;
    # session 23: the rescale's skip now the default (rescale_skip=1) against none (0) and a
    # lazy maximum (2: a row's maximum moves only by more than 8, so the skip holds more often;
    # ran at 56a24fc, removed since)
    lazy23) timeout 240 python benchmarks/pair_ab.py --seq-lens 32768 65536 131072 --rounds 3 \
              --block-ms 64 128 --variants base rescale_skip=0 rescale_skip=2 \
              --out "$OUT/lazy23_ab.json" 2>&1 | grep -v Warning | tee "$OUT/lazy23_ab.log" ;;
    # session 23: fewer consumer instructions a step (poly23: adding them costs ~1 clock
    # each): the warp's o rescale skipped where no row's maximum moved (rescale_skip=1, same
    # bits) and the row sums of P on the tensor cores against a ones tile (ones_sum=1), A/B
    # with every check (ran at 13fc584; the skip kept, ones_sum removed)
    lean23) timeout 300 python benchmarks/pair_ab.py --seq-lens 32768 65536 131072 --rounds 3 \
              --block-ms 64 --variants base rescale_skip=1 ones_sum=1 rescale_skip=1,ones_sum=1 \
              --out "$OUT/lean23_ab.json" 2>&1 | grep -v Warning | tee "$OUT/lean23_ab.log" ;;
    # session 23: a share of the softmax's exponentials on the FMA pipe (exp_poly=k: one in k
    # by a polynomial, the rest by MUFU.EX2), A/B with every check; the step's phases with 4
    # (ran at f0a726f; removed since, not kept)
    poly23) timeout 300 python benchmarks/pair_ab.py --seq-lens 32768 65536 131072 --rounds 3 \
              --block-ms 64 --variants base exp_poly=8 exp_poly=4 exp_poly=2 exp_poly=4,turns=1 \
              --out "$OUT/poly23_ab.json" 2>&1 | grep -v Warning | tee "$OUT/poly23_ab.log"
            timeout 60 python benchmarks/pair_ramp.py --seq-lens 65536 --block-ms 64 \
              --kw exp_poly=4 --out "$OUT/poly23_phases.json" 2>&1 | grep -v Warning \
              | tee "$OUT/poly23_phases.log" ;;
    # session 23: where a walk step goes (stamps 32-45: the fence, Q K^T, softmax, P @ V, the
    # whole step, while both tiles walk), with and without turns; the first step alone on the
    # SM's bandwidth (ramp_gate=1: step 1's copies wait for step 0 to land; 2: step 2's), A/B
    # (ran at 3fd0535; turns and the ramp gate removed since, not kept)
    phase23) for kw in "" turns=1 ramp_gate=1; do
              timeout 100 python benchmarks/pair_ramp.py --seq-lens 65536 131072 --block-ms 64 \
                --kw "$kw" --out "$OUT/phase23_$(echo ${kw:-base} | tr = -).json" 2>&1 | grep -v Warning \
                | tee -a "$OUT/phase23_ramp.log"; done
            timeout 240 python benchmarks/pair_ab.py --seq-lens 32768 65536 131072 --rounds 3 \
              --block-ms 64 --variants base ramp_gate=1 ramp_gate=2 \
              --out "$OUT/gate23_ab.json" 2>&1 | grep -v Warning | tee "$OUT/gate23_ab.log" ;;
    # session 23: the consumers taking turns at Q K^T (turns=1: their Q K^T reach the tensor
    # cores one after the other, so one's softmax runs under the other's wgmma) and row
    # maxima/sums as trees (tree=1), each against the kept kernel, with every check (ran at
    # d87695f; both removed since, not kept)
    turns23) timeout 330 python benchmarks/pair_ab.py --seq-lens 32768 65536 131072 --rounds 3 \
              --block-ms 64 --variants base turns=1 tree=1 turns=1,tree=1 \
              --out "$OUT/turns23_ab.json" 2>&1 | grep -v Warning | tee "$OUT/turns23_ab.log" ;;
    # session 22: the clocks of the paired readings (the op, its parts, cuDNN; nvidia-smi sampled
    # during each reading) at 32K, 64K and 128K
    drift22) timeout 420 python benchmarks/timing_drift.py --seq-lens 32768 65536 131072 \
              --rounds 2 --out "$OUT/drift22.json" 2>&1 | grep -v Warning | tee "$OUT/drift22.log" ;;
    # session 22: the scores and table tests on the GPU after the rep-rows cap (SCORE_REP_ROWS)
    reps22) timeout 200 python -m pytest -q -p no:cacheprovider tests/test_triton_kernels.py \
              tests/test_nan_inf.py -k "$SCORE_TESTS" 2>&1 | tail -3 | tee "$OUT/reps22_tests.log" ;;
    # session 22: Nsight Compute's memory and speed-of-light counters of the pair walk and of
    # cuDNN at 64K and 128K (why cuDNN's cost per block is lower at 64K; the SM clock)
    l2_22)  for n in 65536 131072; do timeout 280 bash benchmarks/profile_l2.sh $n; done ;;
    # session 22, final: the preprocessing against session 21's module (copy b50a58e's
    # triton_s2o.py to s2o_compile/kernels/_ab_prev.py first), the GPU tests, the op
    final22) timeout 120 python benchmarks/pre_ab.py --seq-lens 32768 65536 131072 --rounds 3 \
              --variants base --out "$OUT/final22_pre.json" 2>&1 | grep -v Warning \
              | tee "$OUT/final22_pre.log"
            timeout 150 python -m pytest -q -p no:cacheprovider tests/test_triton_kernels.py \
              tests/test_nan_inf.py -k "$SCORE_TESTS" 2>&1 | tail -3 | tee "$OUT/final22_tests.log"
            timeout 180 python -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_op.py \
              2>&1 | tail -3 | tee -a "$OUT/final22_tests.log"
            timeout 240 python -m s2o_compile bench --seq-lens 131072 32768 65536 --taus 0.8 \
              --rounds 3 --out "$OUT/final22_bench.json" 2>&1 | grep -v "it/s\]" \
              | tee "$OUT/final22_bench.log" ;;
    # session 22 (ran at 14178db, where both kernels and SCORES_KEY_ROWS / SCORES_WHOLE were
    # there): the prefix scores with the keys as the product's rows (_key_scores_kernel) against
    # _prefix_scores_kernel, tiles (segments, keys, warps), the per-segment masks; the scores
    # and table tests on the GPU
    scores22) timeout 240 python -m pytest -q -p no:cacheprovider tests/test_triton_kernels.py \
              -k "prefix_scores or equals_reference or stable_sort or sorted_table" 2>&1 \
              | tail -3 | tee "$OUT/scores22_tests.log"
            timeout 300 python benchmarks/pre_ab.py --seq-lens 32768 65536 131072 --rounds 3 \
              --prev "" --variants "SCORES_KEY_ROWS=0;SCORE_TILES=16,128,4" base \
              "SCORE_TILES=16,128,4" "SCORE_TILES=32,64,4" "SCORE_TILES=16,128,8" \
              "SCORE_TILES=32,128,8" "SCORE_TILES=16,64,4;SCORES_WHOLE=1" \
              "SCORE_TILES=16,64,4;SCORE_STAGES=4" "SCORE_TILES=16,64,4;SCORE_PROGRAMS=4096" \
              --out "$OUT/scores22_ab.json" 2>&1 | grep -v Warning | tee "$OUT/scores22_ab.log" ;;
    # session 22: the op, 3 paired rounds (ran at 14178db as op22a: the key-rows kernel with
    # tiles (16, 64, 4) everywhere)
    op22) timeout 300 python -m s2o_compile bench --seq-lens 131072 32768 65536 --taus 0.8 \
              --rounds 3 --out "$OUT/op22_bench.json" 2>&1 | grep -v "it/s\]" \
              | tee "$OUT/op22_bench.log"
            timeout 200 python -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_op.py \
              2>&1 | tail -3 | tee "$OUT/op22_tests.log" ;;
    # session 21: the op with KEYS_ONE_WARP the default, 3 paired rounds; the op's GPU tests
    op21k) timeout 300 python -m s2o_compile bench --seq-lens 131072 32768 65536 --taus 0.8 \
              --rounds 3 --out "$OUT/op21k_bench.json" 2>&1 | grep -v "it/s\]" \
              | tee "$OUT/op21k_bench.log"
            timeout 200 python -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_op.py \
              2>&1 | tail -3 | tee "$OUT/op21k_tests.log" ;;
    # session 21: the keys kernel on one warp a block, its histogram from ballots
    # (KEYS_ONE_WARP): the tables against tl.histogram's, the sort tests on the GPU
    keys21) timeout 150 python benchmarks/pre_ab.py --seq-lens 32768 65536 131072 --rounds 3 \
              --prev "" --variants base KEYS_ONE_WARP=1 --out "$OUT/keys21_ab.json" 2>&1 \
              | grep -v Warning | tee "$OUT/keys21_ab.log"
            timeout 200 python -m pytest -q -p no:cacheprovider tests/test_triton_kernels.py \
              -k "stable_sort or sorted_table or equals_reference" 2>&1 | tail -3 \
              | tee "$OUT/keys21_tests.log" ;;
    # session 21: every Nsight Compute section of the rank scatter and the keys kernel at 128K
    # (the scatter runs at 79% of the L2's throughput: how many sectors its stores write)
    scatter21) KERNELS="_block_rank_scatter|_block_keys" FULL=1 timeout 400 \
              bash benchmarks/profile_pre.sh 131072 ;;
    # session 21: the op as kept (the kernels of session 20, unchanged), 3 paired rounds, at
    # tau 0.8 and tau 0 (every key: the target is 1.5x cuDNN)
    op21) timeout 420 python -m s2o_compile bench --seq-lens 131072 32768 65536 --taus 0.8 0 \
              --rounds 3 --out "$OUT/op21_bench.json" 2>&1 | grep -v "it/s\]" \
              | tee "$OUT/op21_bench.log" ;;
    # session 21: the rank scatter one block a warp, 2-8 warps a program (RANK_WARPS; one-warp
    # programs reach only 32 warps an SM; not kept: the code is at a247732): the tables against
    # the one-warp kernel's, the sort tests on the GPU (PTX ballots and shuffles), then the op
    # with RANK_WARPS=4
    rank21) timeout 200 python benchmarks/pre_ab.py --seq-lens 32768 65536 131072 --rounds 3 \
              --prev "" --variants base RANK_WARPS=2 RANK_WARPS=4 RANK_WARPS=8 \
              "RANK_WARPS=4;SORT_BLOCK=256" "RANK_WARPS=4;SORT_BLOCK=1024" \
              --out "$OUT/rank21_ab.json" 2>&1 | grep -v Warning | tee "$OUT/rank21_ab.log"
            timeout 200 python -m pytest -q -p no:cacheprovider tests/test_triton_kernels.py \
              -k "stable_sort or sorted_table or equals_reference" 2>&1 | tail -3 \
              | tee "$OUT/rank21_tests.log"
            timeout 200 python -c "import s2o_compile.kernels.triton_s2o as T; T.RANK_WARPS = 4
from s2o_compile.__main__ import main
main('bench --seq-lens 131072 32768 65536 --taus 0.8 --rounds 3 --out $OUT/rank21_op_bench.json'.split())" \
              2>&1 | grep -v "it/s\]" | tee "$OUT/rank21_op_bench.log" ;;
    # session 21: the first Q K^T waits for step 0's K only (k_first=1, K_FIRST; not kept: the
    # code is at da27682): the pair tests with and without it, the walk's A/B with every check,
    # and the ramp's stamps with it
    kfirst21) timeout 300 python -m pytest -q -p no:cacheprovider tests/test_gluon_pair.py -x \
              2>&1 | tail -5 | tee "$OUT/kfirst21_tests.log"
             timeout 240 python benchmarks/pair_ab.py --seq-lens 32768 65536 131072 --rounds 3 \
              --block-ms 64 128 --variants base k_first=1 --out "$OUT/kfirst21_ab.json" 2>&1 \
              | grep -v Warning | tee "$OUT/kfirst21_ab.log"
             timeout 100 python benchmarks/pair_ramp.py --seq-lens 32768 65536 --block-ms 64 \
              --kw k_first=1 --out "$OUT/kfirst21_ramp.json" 2>&1 | grep -v Warning \
              | tee "$OUT/kfirst21_ramp.log" ;;
    # session 21: a stopped tile helps the other with the rest of its walk (share=1, SHARE;
    # not kept: the code is at 3fb8243): a smoke call, the pair tests with and without it, then
    # the walk's A/B with every check
    share21) timeout 60 python -c "
import torch; from s2o_compile import S2OConfig; from s2o_compile.kernels import gluon_pair as GP, triton_s2o as T
from s2o_compile.workload import structured_qkv
q, k, v = structured_qkv(1, 8, 2, 16384, 128, device='cuda', seed=1); cfg = S2OConfig(threshold=0.8, min_seq_len=0)
t, o = T.build_index_table(q, k, 128 ** -0.5, cfg)
a = GP.attention_pair(q, k, v, t, o, 128 ** -0.5, cfg, share=0); b = GP.attention_pair(q, k, v, t, o, 128 ** -0.5, cfg, share=1)
torch.cuda.synchronize(); print('smoke: visits equal', torch.equal(a[1], b[1]), 'max diff', (a[0].float() - b[0].float()).abs().max().item())
" 2>&1 | grep -v Warning | tee "$OUT/share21_smoke.log"
             timeout 300 python -m pytest -q -p no:cacheprovider tests/test_gluon_pair.py -x \
              2>&1 | tail -5 | tee "$OUT/share21_tests.log"
             timeout 200 python benchmarks/pair_ab.py --seq-lens 32768 65536 131072 --rounds 3 \
              --block-ms 64 --variants base share=1 --out "$OUT/share21_ab.json" 2>&1 \
              | grep -v Warning | tee "$OUT/share21_ab.log" ;;
    # session 21: the producer reading the pair's end before its wait for the step's buffer
    # (early_end=1; pp_protocol_sim.py --early-end: no hang in 13,000 trials) against after it,
    # with every check (not kept: 0.1-3.1% slower; the code is at 4dbc2f5)
    early21) timeout 240 python benchmarks/pair_ab.py --seq-lens 32768 65536 131072 --rounds 3 \
              --block-ms 64 128 --variants base early_end=1 --out "$OUT/early21_ab.json" 2>&1 \
              | grep -v Warning | tee "$OUT/early21_ab.log" ;;
    # session 21: how long a walk step waits for its K/V while both tiles walk and while one
    # walks alone (stamps 22-29): a lone step near its wait is the producer's (then: its chain,
    # NOTES.md), far from it the consumer's (then: sharing the lone tile's keys)
    waits21) timeout 120 python benchmarks/pair_ramp.py --seq-lens 32768 65536 131072 \
              --block-ms 64 --out "$OUT/waits21.json" 2>&1 | grep -v Warning \
              | tee "$OUT/waits21.log" ;;
    # session 20: the kept kernel's pair tests (338199a; LONE_PAIRS removed again)
    final20) timeout 200 python -m pytest -q -p no:cacheprovider tests/test_gluon_pair.py -x \
              2>&1 | tail -3 | tee "$OUT/final20_tests.log" ;;
    # session 20: LONE_PAIRS again (not kept: the code is at f1289cf), now on ROWS_AHEAD (lone21 ran it while the producer's
    # table loads still delayed each step): the A/B, and the stamps' lone-step cost
    lone22) timeout 200 python benchmarks/pair_ab.py --seq-lens 32768 65536 131072 --rounds 3 \
              --block-ms 64 --variants base lone_pairs=0 --out "$OUT/lone22_ab.json" 2>&1 \
              | grep -v Warning | tee "$OUT/lone22_ab.log"
            timeout 80 python benchmarks/pair_ramp.py --seq-lens 65536 131072 \
              --block-ms 64 --out "$OUT/lone22_ramp.json" 2>&1 | grep -v Warning \
              | tee "$OUT/lone22_ramp.log" ;;
    # session 20: the op on the kept kernel (ROWS_AHEAD), 3 paired rounds; then the op's and
    # the Triton kernels' GPU tests (not run since session 18)
    op20) timeout 300 python -m s2o_compile bench --seq-lens 131072 32768 65536 --taus 0.8 \
              --rounds 3 --out "$OUT/op20_bench.json" 2>&1 | grep -v "it/s\]" \
              | tee "$OUT/op20_bench.log"
            timeout 200 python -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_op.py \
              2>&1 | tail -3 | tee "$OUT/op20_tests.log" ;;
    # session 20: whole-row copies (not kept: slower; the code is at 7153e83) (one cp.async call a buffer; ptxas still folds the second
    # half's offset) against two half-row slices, which Triton's membar pass separates with 3
    # producer barriers a step; then the pair kernel's GPU tests on the default build
    whole21) timeout 240 python benchmarks/pair_ab.py --seq-lens 32768 65536 131072 --rounds 3 \
              --block-ms 64 128 --variants base row_halves=1 --out "$OUT/whole21_ab.json" 2>&1 \
              | grep -v Warning | tee "$OUT/whole21_ab.log"
            timeout 320 python -m pytest -q -p no:cacheprovider tests/test_gluon_pair.py \
              tests/test_chunked_prefill.py 2>&1 | tail -3 | tee "$OUT/whole21_tests.log" ;;
    # session 20: the producer loads a walk step's table entries one step ahead (ROWS_AHEAD,
    # under the wait for its buffer) against after the wait; then the stamps
    ahead21) timeout 240 python benchmarks/pair_ab.py --seq-lens 32768 65536 131072 --rounds 3 \
              --block-ms 64 128 --variants base rows_ahead=0 --out "$OUT/ahead21_ab.json" 2>&1 \
              | grep -v Warning | tee "$OUT/ahead21_ab.log"
            timeout 90 python benchmarks/pair_ramp.py --seq-lens 32768 65536 131072 \
              --block-ms 64 --out "$OUT/ahead21_ramp.json" 2>&1 | grep -v Warning \
              | tee "$OUT/ahead21_ramp.log" ;;
    # session 20: a lone tile's walk steps two at a time (LONE_PAIRS: P @ V of one under the
    # next one's softmax) against one at a time; every variant's visits against the first's on
    # the structured workload; the stamps' lone-step cost; the pair kernel's GPU tests
    # (LONE_PAIRS: removed after this run, the code is at a7fa3da)
    lone21) timeout 240 python benchmarks/pair_ab.py --seq-lens 32768 65536 131072 --rounds 3 \
              --block-ms 64 --variants base lone_pairs=0 --out "$OUT/lone21_ab.json" 2>&1 \
              | grep -v Warning | tee "$OUT/lone21_ab.log"
            timeout 90 python benchmarks/pair_ramp.py --seq-lens 32768 65536 131072 \
              --block-ms 64 --out "$OUT/lone21_ramp.json" 2>&1 | grep -v Warning \
              | tee "$OUT/lone21_ramp.log"
            timeout 300 python -m pytest -q -p no:cacheprovider tests/test_gluon_pair.py \
              tests/test_chunked_prefill.py 2>&1 | tail -3 | tee "$OUT/lone21_tests.log" ;;
    # next session: what a step one tile of a pair walks alone costs (stamps 18-21, compiled
    # for sm_90, not run yet), against the steps both walk: whether splitting the lone tile's
    # steps over both consumers would pay
    lone20) timeout 150 python benchmarks/pair_ramp.py --seq-lens 32768 65536 131072 \
              --block-ms 64 --out "$OUT/lone20.json" 2>&1 | grep -v Warning \
              | tee "$OUT/lone20.log" ;;
    # session 19: the final code (the prologue the only start; SASS as measured): the pair
    # kernel against the Triton kernel (pair_ab's checks), and the compiled op on it
    last19) timeout 120 python benchmarks/pair_ab.py --seq-lens 16384 --rounds 1 \
              --out "$OUT/last19_ab.json" 2>&1 | grep -v Warning | tee "$OUT/last19_ab.log"
            timeout 90 python -m pytest -q -p no:cacheprovider tests/test_gluon_pair.py \
              -k "compiled_op or structured or nan" 2>&1 | tail -3 | tee "$OUT/last19_tests.log" ;;
    # session 19: smaller counting-sort blocks (sb19: 1024 and 2048 slowed the rank scatter,
    # 0.95 -> 1.23 / 1.41 ms at 128K)
    sb19b) timeout 150 python benchmarks/pre_ab.py --seq-lens 32768 65536 131072 --rounds 3 \
              --prev "" --variants base SORT_BLOCK=256 SORT_BLOCK=128 \
              --out "$OUT/sb19b_ab.json" 2>&1 | grep -v Warning | tee "$OUT/sb19b_ab.log" ;;
    # session 19: keys per counting-sort block (512 was chosen for the bitonic block sort in
    # session 7; the rank scatter since session 14 is linear in the block, while the 128 counts
    # a block are read and written by three kernels), then the op with 2048 (module constant)
    sb19) timeout 170 python benchmarks/pre_ab.py --seq-lens 32768 65536 131072 --rounds 3 \
              --prev "" --variants base SORT_BLOCK=1024 SORT_BLOCK=2048 \
              --out "$OUT/sb19_ab.json" 2>&1 | grep -v Warning | tee "$OUT/sb19_ab.log"
            timeout 150 python -c "import s2o_compile.kernels.triton_s2o as T; T.SORT_BLOCK = 2048
from s2o_compile.__main__ import main
main('bench --seq-lens 131072 32768 65536 --taus 0.8 --rounds 3 --out $OUT/sb19_op_bench.json'.split())" \
              2>&1 | grep -v "it/s\]" | tee "$OUT/sb19_op_bench.log" ;;
    # session 19: the op as kept (PROLOGUE), 3 paired rounds
    op19) timeout 330 python -m s2o_compile bench --seq-lens 131072 32768 65536 --taus 0.8 \
              --rounds 3 --out "$OUT/op19_bench.json" 2>&1 | grep -v "it/s\]" \
              | tee "$OUT/op19_bench.log" ;;
    # session 19: the producer prefetches into L2 the first copies (Q, diagonal K/V) of the CTA
    # one or two waves later (132 SMs), on top of PROLOGUE; then the pair kernel's GPU tests
    # (prefetch=k: code at 3c0a929, removed: 1-3% slower)
    pf19) timeout 200 python benchmarks/pair_ab.py --seq-lens 32768 65536 131072 --rounds 3 \
              --block-ms 64 --variants base prefetch=132 prefetch=264 --out "$OUT/pf19_ab.json" \
              2>&1 | grep -v Warning | tee "$OUT/pf19_ab.log"
            timeout 330 python -m pytest -q -p no:cacheprovider tests/test_gluon_pair.py \
              tests/test_chunked_prefill.py 2>&1 | tail -3 | tee "$OUT/pf19_tests.log" ;;
    # session 19: the pair's first copies (both Q tiles, step 0) and the walk's bounds from the
    # prologue's warps (PROLOGUE, the new default) against the partitions' (prologue=0): checks
    # and the walk paired with cuDNN, the stamps, then the pair kernel's GPU tests (the
    # prologue=0 switch was removed after this A/B: code at ba96693)
    pro19) timeout 240 python benchmarks/pair_ab.py --seq-lens 32768 65536 131072 --rounds 3 \
              --variants base prologue=0 --out "$OUT/pro19_ab.json" 2>&1 | grep -v Warning \
              | tee "$OUT/pro19_ab.log"
            timeout 90 python benchmarks/pair_ramp.py --seq-lens 32768 65536 131072 \
              --block-ms 64 --out "$OUT/pro19_ramp.json" 2>&1 | grep -v Warning \
              | tee "$OUT/pro19_ramp.log"
            timeout 240 python -m pytest -q -p no:cacheprovider tests/test_gluon_pair.py \
              tests/test_chunked_prefill.py 2>&1 | tail -3 | tee "$OUT/pro19_tests.log" ;;
    # next session: where the producer's first copies wait (session 17: issued ~0.85 steps after
    # the partitions start): stamps at the producer's start and before its first copies'
    # issue (slots 16, 17; compiled for sm_90, not run yet), then the walk paired with cuDNN
    ramp19) timeout 120 python benchmarks/pair_ramp.py --seq-lens 32768 65536 131072 \
              --out "$OUT/ramp19.json" 2>&1 | grep -v Warning | tee "$OUT/ramp19.log"
            timeout 300 python benchmarks/pair_ab.py --seq-lens 32768 65536 131072 --rounds 3 \
              --skip-checks --out "$OUT/ramp19_ab.json" 2>&1 | grep -v Warning \
              | tee "$OUT/ramp19_ab.log" ;;
    # session 18: the op as kept (all of the session's preprocessing changes), 3 paired rounds
    op18) timeout 270 python -m s2o_compile bench --seq-lens 131072 32768 65536 --taus 0.8 \
              --rounds 3 --out "$OUT/op18_bench.json" 2>&1 | grep -v "it/s\]" \
              | tee "$OUT/op18_bench.log" ;;
    # session 18: the preprocessing as kept (streaming scores, starts 16 blocks / 2 warps, keys 2
    # warps) against the session's start (_ab_prev.py: triton_s2o.py at 28faa5a, uncommitted),
    # with one warp for the keys kernel and 8 blocks / 1 warp for the starts kernel beside it
    last18) timeout 150 python benchmarks/pre_ab.py --seq-lens 32768 65536 131072 --rounds 3 \
              --variants base SORT_KEYS_WARPS=1 "SORT_STARTS_ROWS=8;SORT_STARTS_WARPS=1" \
              --out "$OUT/last18_ab.json" 2>&1 | grep -v Warning | tee "$OUT/last18_ab.log" ;;
    # session 18: launch shapes of the run-starts and keys kernels (the starts kernel held 255
    # registers, one program an SM), then the GPU tests of the op and the pair kernel in full
    # (final18's were cut by their timeout)
    sort18) timeout 150 python benchmarks/pre_ab.py --seq-lens 32768 65536 131072 --rounds 3 \
              --prev "" --variants base "SORT_STARTS_ROWS=32;SORT_STARTS_WARPS=4" \
              "SORT_STARTS_ROWS=64;SORT_STARTS_WARPS=8" "SORT_STARTS_ROWS=16;SORT_STARTS_WARPS=2" \
              SORT_KEYS_WARPS=2 SORT_KEYS_WARPS=8 --out "$OUT/sort18_ab.json" 2>&1 \
              | grep -v Warning | tee "$OUT/sort18_ab.log"
            timeout 420 python -m pytest -q -p no:cacheprovider tests/test_gluon_pair.py \
              tests/test_gpu.py tests/test_op.py 2>&1 | tail -3 | tee "$OUT/sort18_tests.log" ;;
    # session 18: the op with the streaming prefix-score kernel, 5 paired rounds (each round's
    # efficiency from its own dense reading), then the GPU tests of the op and the pair kernel
    final18) timeout 330 python -m s2o_compile bench --seq-lens 131072 65536 32768 --taus 0.8 \
              --rounds 5 --out "$OUT/final18_bench.json" 2>&1 | grep -v "it/s\]" \
              | tee "$OUT/final18_bench.log"
            timeout 240 python -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_op.py \
              tests/test_gluon_pair.py 2>&1 | tail -3 | tee "$OUT/final18_tests.log" ;;
    # session 18: the streaming prefix-score kernel's tiles (64-key steps: 128 registers, four
    # programs an SM, against 255 and two) against its 128-key steps and the earlier kernel
    tiles18) timeout 200 python benchmarks/pre_ab.py --seq-lens 32768 65536 131072 --rounds 3 \
              --variants base "SCORE_TILES=16,64,4" "SCORE_TILES=16,64,4;SCORE_STAGES=4" \
              "SCORE_TILES=16,64,8" "SCORE_TILES=16,64,4;SCORE_PROGRAMS=4096" \
              --out "$OUT/tiles18_ab.json" 2>&1 | grep -v Warning | tee "$OUT/tiles18_ab.log" ;;
    # session 18: the prefix-score kernel streaming runs of key chunks per block of segments
    # (pipelined) against the earlier one (_ab_prev.py: triton_s2o.py at 28faa5a, uncommitted):
    # GPU tests of the Triton kernels, the preprocessing A/B with variants, Nsight Compute
    pre18) timeout 300 python -m pytest -q -p no:cacheprovider tests/test_triton_kernels.py \
              tests/test_chunked_prefill.py 2>&1 | tail -3 | tee "$OUT/pre18_tests.log"
            timeout 240 python benchmarks/pre_ab.py --seq-lens 32768 65536 131072 --rounds 3 \
              --variants base SCORE_STAGES=2 SCORE_STAGES=4 SCORE_PROGRAMS=1024 \
              SCORE_PROGRAMS=4096 "SCORE_TILES=16,128,8" --out "$OUT/pre18_ab.json" 2>&1 \
              | grep -v Warning | tee "$OUT/pre18_ab.log"
            PREV=_ab_prev timeout 200 bash benchmarks/profile_pre.sh 131072 ;;
    # session 18: why the op's time moves between readings: the op, its parts, the Triton walk
    # and cuDNN in rotating rounds, each beside the SM clock, power and temperature
    drift18) timeout 420 python benchmarks/timing_drift.py --seq-lens 32768 131072 --rounds 5 \
              --out "$OUT/drift18.json" 2>&1 | grep -v Warning | tee "$OUT/drift18.log" ;;
    # session 17: K and V of a step on separate mbarriers (Q K^T starts on K alone): the stamps,
    # then checks and the walk against e3f3f36 (old_pair.py) in 2 rounds, then the GPU tests.
    # Not kept (no ramp gain; the tests were cut by the device budget): code at 52e127a
    split17) timeout 60 python benchmarks/pair_ramp.py --seq-lens 32768 131072 \
              --out "$OUT/split17_ramp.json" 2>&1 | grep -v Warning | tee "$OUT/split17_ramp.log"
            timeout 150 python benchmarks/pair_ab.py --seq-lens 32768 131072 --rounds 2 \
              --variants base old=1 --out "$OUT/split17_ab.json" 2>&1 | grep -v Warning \
              | grep -v "visits equal True" | tee "$OUT/split17_ab.log"
            timeout 170 python -m pytest -q -p no:cacheprovider tests/test_gluon_pair.py 2>&1 \
              | tail -3 | tee "$OUT/split17_tests.log" ;;
    # session 17: L2 and memory counters of the pair walk and cuDNN at 32K and 128K
    l2_17)  for n in 32768 131072; do timeout 240 bash benchmarks/profile_l2.sh $n; done ;;
    # session 17: the kept kernel against the session's start (old_pair.py: gluon_pair.py at
    # ce7f7a8, uncommitted), the walk in 5 rounds (checked in store17), then the op again
    confirm17) timeout 330 python benchmarks/pair_ab.py --seq-lens 32768 65536 131072 --rounds 5 \
              --skip-checks --variants base old=1 --out "$OUT/confirm17_ab.json" 2>&1 \
              | grep -v Warning | tee "$OUT/confirm17_ab.log"
            timeout 200 python -m s2o_compile bench --seq-lens 131072 65536 32768 --taus 0.8 \
              --rounds 2 --out "$OUT/confirm17_bench.json" 2>&1 | grep -v "it/s\]" \
              | tee "$OUT/confirm17_bench.log" ;;
    # session 17: the pair kernel as kept (output through shared memory, table offsets loaded
    # in the partitions): its GPU tests, then the op benchmark in two rounds
    final17) timeout 330 python -m pytest -q -p no:cacheprovider tests/test_gluon_pair.py \
              tests/test_nan_inf.py 2>&1 | tail -4 | tee "$OUT/final17_tests.log"
            timeout 230 python -m s2o_compile bench --seq-lens 131072 65536 32768 --taus 0.8 \
              --rounds 2 --out "$OUT/final17_bench.json" 2>&1 | grep -v "it/s\]" \
              | tee "$OUT/final17_bench.log" ;;
    # session 17: the persistent pair kernel v2 (benchmarks/gluon_persist.py: the next pair's
    # bounds and Q loaded under the current pair, the output through shared memory): checks,
    # the walk against the op's pair kernel in 3 rounds, then a short soak (block_m 64 and 128)
    persist17) timeout 330 python benchmarks/pair_ab.py --seq-lens 32768 131072 65536 --rounds 3 \
              --variants base persist=1 --out "$OUT/persist17_ab.json" 2>&1 | grep -v Warning \
              | grep -v "visits equal True" | tee "$OUT/persist17_ab.log"
            for bm in 64 128; do timeout 200 python benchmarks/gluon_soak.py --variants persist \
              --seq-lens 32768 --reps 100 --timeout 90 --block-m $bm 2>&1 \
              | tee -a "$OUT/persist17_soak.log"; done ;;
    # session 17: the output stored through shared memory (16 bytes a thread, whole rows a
    # warp) and the producer's table offsets used only after its dense copies: GPU tests,
    # checks, the walk against the session's start (old_pair.py) in 3 rounds, the stamps
    store17) timeout 200 python -m pytest -q -p no:cacheprovider tests/test_gluon_pair.py 2>&1 \
              | tail -3 | tee "$OUT/store17_tests.log"
            timeout 300 python benchmarks/pair_ab.py --seq-lens 32768 131072 65536 --rounds 3 \
              --variants base prefetch=132 old=1 --out "$OUT/store17_ab.json" 2>&1 \
              | grep -v Warning | grep -v "visits equal True" | tee "$OUT/store17_ab.log"
            for pf in 0 132; do timeout 100 python benchmarks/pair_ramp.py \
              --seq-lens 32768 131072 --kw "prefetch=$pf" --out "$OUT/store17_ramp_$pf.json" \
              2>&1 | grep -v Warning | tee -a "$OUT/store17_ramp.log"; done ;;
    # session 17: the CTAs' start and end split finer (stamps), and an L2 prefetch of a later
    # CTA's Q and diagonal K/V rows (prefetch=132: the CTA 132 later, about where the next
    # wave starts): the walk in 3 rounds, then the stamps of both
    pf17)   timeout 300 python benchmarks/pair_ab.py --seq-lens 32768 131072 65536 --rounds 3 \
              --skip-checks --variants base prefetch=132 prefetch=264 --out "$OUT/pf17_ab.json" \
              2>&1 | grep -v Warning | tee "$OUT/pf17_ab.log"
            for pf in 0 132; do timeout 100 python benchmarks/pair_ramp.py \
              --seq-lens 32768 131072 --kw "prefetch=$pf" --out "$OUT/pf17_ramp_$pf.json" 2>&1 \
              | grep -v Warning | tee -a "$OUT/pf17_ramp.log"; done ;;
    # session 17: the pair kernel's walk bounds loaded under its first copies and Q (its CTAs
    # started their first copies ~2 us after their start) against the kernel before
    # (benchmarks/old_pair.py, an uncommitted copy): checks, the walk in 3 rounds, the stamps
    start17) timeout 400 python benchmarks/pair_ab.py --seq-lens 32768 131072 65536 --rounds 3 \
              --variants base old=1 --out "$OUT/start17_ab.json" 2>&1 | grep -v Warning \
              | grep -v "visits equal True" | tee "$OUT/start17_ab.log"
            for m in gluon_pair old_pair; do timeout 100 python benchmarks/pair_ramp.py \
              --seq-lens 32768 131072 --module $m --out "$OUT/start17_ramp_$m.json" 2>&1 \
              | grep -v Warning | tee -a "$OUT/start17_ramp.log"; done ;;
    # session 17: where a pair's fixed cost goes - the pair kernel's CTAs time-stamped
    # (benchmarks/pair_ramp.py), and the preprocessing kernels' timeline at 32K and 64K
    ramp17) timeout 300 python benchmarks/pair_ramp.py --seq-lens 32768 65536 131072 \
              --out "$OUT/ramp17.json" 2>&1 | grep -v Warning | tee "$OUT/ramp17.log"
            timeout 200 python benchmarks/gpu_timeline.py 32768 65536 2>&1 | grep -v Warn \
              | tee "$OUT/timeline17.log" ;;
    # session 16: the pair walk's time as a fixed cost per pair plus a cost per step, fitted
    # over taus (benchmarks/walk_cost_fit.py), 32K and 128K
    fit16)  timeout 200 python benchmarks/walk_cost_fit.py --seq-len 32768 --out "$OUT/fit16_32k.json" \
              2>&1 | grep -v Warning | tee "$OUT/fit16_32k.log"
            timeout 200 python benchmarks/walk_cost_fit.py --seq-len 131072 --taus 0.01 0.3 0.6 0.8 0.9 \
              --out "$OUT/fit16_128k.json" 2>&1 | grep -v Warning | tee "$OUT/fit16_128k.log" ;;
    # session 16: the leaner producer's other gather layouts (tpw_rows 2 and 8: a plain copy of
    # the row, no halves) checked against the Triton kernel, and timed at 32K
    tpw16)  timeout 240 python benchmarks/pair_ab.py --seq-lens 32768 --block-ms 64 --rounds 2 \
              --variants base tpw_rows=8 tpw_rows=2 --out "$OUT/tpw16_ab.json" 2>&1 \
              | grep -v Warning | grep -v "visits equal True" | tee "$OUT/tpw16_ab.log" ;;
    # session 16: the producer's 64-bit row offsets against the 32-bit ones (same result)
    off16)  timeout 150 python -m pytest -q -p no:cacheprovider tests/test_gluon_pair.py \
              -k "64_bit or test_pair_kernel_declines" 2>&1 | tail -3 | tee "$OUT/off16_tests.log" ;;
    # session 16: block_m 64 against 128 through the op after the leaner producer
    joint16) timeout 330 python benchmarks/joint_ab.py --seq-lens 131072 65536 32768 \
              --configs bm64 bm128 --taus 0.8 0.98 --rounds 2 --out "$OUT/joint16_ab.json" 2>&1 \
              | grep -v Warning | tee "$OUT/joint16_ab.log" ;;
    # session 16: the pair kernel with the leaner producer (now the op's): its GPU
    # tests, a soak (block_m 64 and 128), then the op benchmark in two rounds
    final16) timeout 220 python -m pytest -q -p no:cacheprovider tests/test_gluon_pair.py \
              tests/test_nan_inf.py 2>&1 | tail -4 | tee "$OUT/final16_tests.log"
            for bm in 64 128; do timeout 120 python benchmarks/gluon_soak.py --variants pp:tpw=4 \
              --seq-lens 131072 32768 --reps 50 --timeout 60 --block-m $bm 2>&1 \
              | tee "$OUT/final16_soak_bm$bm.log"; done
            timeout 240 python -m s2o_compile bench --seq-lens 131072 65536 32768 --taus 0.8 \
              --rounds 2 --out "$OUT/final16_bench.json" 2>&1 | grep -v "it/s\]" \
              | tee "$OUT/final16_bench.log" ;;
    # session 16: a leaner producer in the pair kernel (lean=1: dense steps and walk in two loops,
    # 32-bit row offsets, a row's halves from one address; walk step 316 -> 166 SASS
    # instructions): checks against the Triton kernel, then the walk, five rounds. Kept: the
    # op's producer since de336f2 (the switch, at 4b10b44, is removed)
    lean16) timeout 420 python benchmarks/pair_ab.py --seq-lens 32768 131072 65536 --rounds 5 \
              --variants base lean=1 --out "$OUT/lean16_ab.json" 2>&1 | grep -v Warning \
              | grep -v "visits equal True" | tee "$OUT/lean16_ab.log" ;;
    # session 16: probe: dummy integer work in the pair kernel's producer after each step's
    # copies (pad=8: +168, pad=16: +301 SASS instructions per step) - do the producer's
    # instructions slow the consumers (shared issue slots)? Yes (switch at 8ccae90, removed)
    pad16)  timeout 300 python benchmarks/pair_ab.py --seq-lens 32768 131072 --block-ms 64 \
              --rounds 3 --skip-checks --variants base pad=8 pad=16 --out "$OUT/pad16_ab.json" \
              2>&1 | grep -v Warning | tee "$OUT/pad16_ab.log" ;;
    # session 16: the persistent pair kernel with a dynamic queue (benchmarks/gluon_persist.py):
    # checks against the Triton kernel, then the walk against the pair kernel
    persist16) timeout 420 python benchmarks/pair_ab.py --seq-lens 32768 131072 65536 --rounds 3 \
              --variants base persist=1 --out "$OUT/persist16_ab.json" 2>&1 | grep -v Warning \
              | tee "$OUT/persist16_ab.log" ;;
    # session 16: probes of the pair kernel's step: without the proxy fence before Q K^T
    # (nofence=1, a race in principle: timing only; switch at 59c0001, removed), and the walk at
    # density ~1 (tau 1e-6; lazy=1 is 4dd9045's switch)
    probe16) timeout 300 python benchmarks/pair_ab.py --seq-lens 131072 32768 --block-ms 64 \
              --rounds 3 --variants base nofence=1 --out "$OUT/probe16_fence.json" 2>&1 \
              | grep -v Warning | grep -v "visits equal True" | tee "$OUT/probe16_fence.log"
            timeout 240 python benchmarks/pair_ab.py --seq-lens 32768 --block-ms 64 128 --tau 1e-6 \
              --rounds 3 --skip-checks --variants base lazy=1 --out "$OUT/probe16_dense.json" 2>&1 \
              | grep -v Warning | tee "$OUT/probe16_dense.log" ;;
    # session 16: the pair kernel with exponents against the running max as it stands (lazy=1:
    # no row max and no rescale of o on a step, unless some row's gain passes 2^20): no gain
    # (the switch is removed; its code is at commit 4dd9045)
    lazy16) timeout 560 python benchmarks/pair_ab.py --seq-lens 131072 32768 65536 --rounds 3 \
              --variants base lazy=1 --out "$OUT/lazy16_ab.json" 2>&1 \
              | grep -v Warning | tee "$OUT/lazy16_ab.log" ;;
    # session 16: the pair kernel's softmax: a tree row max (softmax=1, same results) and exp2
    # of every second (2) or fourth (4) score on the FMA pipe (a degree-3 polynomial): no gain
    # or slower (the switch is removed; its code is at commit 91706dc)
    softmax16) timeout 560 python benchmarks/pair_ab.py --seq-lens 131072 32768 65536 --rounds 3 \
              --variants base softmax=1 softmax=3 softmax=5 --out "$OUT/softmax16_ab.json" 2>&1 \
              | grep -v Warning | tee "$OUT/softmax16_ab.log" ;;
    # session 15: a soak of the op's pair kernel after this session's changes, block_m 64 and 128
    soak15) for bm in 64 128; do timeout 280 python benchmarks/gluon_soak.py --variants pp:tpw=4 \
              --seq-lens 131072 32768 --reps 200 --timeout 60 --block-m $bm 2>&1 \
              | tee "$OUT/soak15_bm$bm.log"; done ;;
    # session 15: chunked prefill in the pair kernel: the GPU tests of the op's path, then the
    # chunks of a 128K context through the op (the pair kernel) and the Triton walk
    chunk15) timeout 330 python -m pytest -q -p no:cacheprovider tests/test_gluon_pair.py \
              tests/test_chunked_prefill.py tests/test_op.py tests/test_gpu.py tests/test_nan_inf.py \
              2>&1 | tail -8 | tee "$OUT/chunk15_tests.log"
            timeout 240 python benchmarks/chunked_prefill.py --kv-lens 131072 \
              --q-lens 32768 8192 2048 512 --taus 0.8 --out "$OUT/chunk15.json" 2>&1 \
              | grep -v Warning | tee "$OUT/chunk15.log" ;;
    # session 15, last call: the op benchmark in three alternating rounds (medians), tau 0 too
    bench15) timeout 580 python -m s2o_compile bench --seq-lens 131072 65536 32768 \
              --taus 0.8 0.9 0 --rounds 3 --out "$OUT/bench15_rounds.json" 2>&1 \
              | grep -v "it/s\]" | tee "$OUT/bench15_rounds.log" ;;
    # session 15: the keys and rank kernels with several blocks side by side a program (the rank
    # kernel a warp each), and the pooling kernel's tiles, against the previous module
    # (s2o_compile/kernels/_ab_prev.py, a copy of HEAD~ placed there, untracked): every
    # variant slower (the side-by-side blocks' code is at commit c9f9a48, removed)
    sort15) timeout 200 python -m pytest -q -p no:cacheprovider tests/test_triton_kernels.py \
              -k "sort or table" 2>&1 | tail -4 | tee "$OUT/sort15_tests.log"
            v=(base)  # ran as sort_ab.py (folded into pre_ab.py in session 18)
            for p in 2,1 4,1 8,1 1,2 1,4 1,8 4,4; do
              v+=("KEYS_BLOCKS_PER_PROGRAM=${p%,*};RANK_BLOCKS_PER_PROGRAM=${p#*,}"); done
            for t in 64,4 32,8 64,8 128,8 16,4; do v+=("POOL_TILES=$t"); done
            timeout 380 python benchmarks/pre_ab.py --seq-lens 131072 32768 --variants "${v[@]}" \
              2>&1 | grep -v Warning | tee "$OUT/sort15_ab.log" ;;
    # session 15: the pair kernel in FA3's order (overlap=1: a step's softmax under the previous
    # step's P @ V), checked and timed against the op's kernel (pair_ab.py): 5-9% slower, its
    # code removed (gluon_pair.py at commit 8fb6ed0 has it)
    overlap15) timeout 500 python benchmarks/pair_ab.py --seq-lens 131072 32768 65536 --rounds 5 \
              --variants base overlap=1 --out "$OUT/overlap15_ab.json" 2>&1 | grep -v Warning \
              | tee "$OUT/overlap15_ab.log" ;;
    # session 15: the GPU tests after the pair kernel's half diagonal step and consumer-loaded
    # Q (both now unconditional), then block_m 64 against 128 through the op (joint_ab.py)
    final15) timeout 260 python -m pytest -q -p no:cacheprovider tests/test_gluon_pair.py \
              tests/test_gpu.py tests/test_nan_inf.py tests/test_op.py 2>&1 | tail -8 \
              | tee "$OUT/final15_tests.log"
            timeout 320 python benchmarks/joint_ab.py --seq-lens 131072 65536 32768 \
              --configs bm64 bm128 --taus 0.8 0.9 0.95 0.98 --rounds 3 \
              --out "$OUT/final15_ab.json" 2>&1 | grep -v Warning | tee "$OUT/final15_ab.log" ;;
    # session 15: the pair kernel's Q loaded by its consumers (under the producer's first
    # gathers) and the first tile's half-width diagonal step, checked and timed (pair_ab.py)
    pair15) timeout 560 python benchmarks/pair_ab.py --seq-lens 131072 32768 65536 --rounds 5 \
              --variants base q_by_consumer=1 half_diag=1 q_by_consumer=1,half_diag=1 \
              --out "$OUT/pair15_ab.json" 2>&1 | grep -v Warning | tee "$OUT/pair15_ab.log" ;;
    # session 15: block_m 128 in the pair kernel (one stop rule for its two tiles): the pair
    # tests, then block_m 64 against 128 on the same inputs (benchmarks/joint_ab.py)
    joint15) timeout 180 python -m pytest -q -p no:cacheprovider tests/test_gluon_pair.py 2>&1 \
              | tail -6 | tee "$OUT/joint15_tests.log"
            timeout 390 python benchmarks/joint_ab.py --seq-lens 131072 65536 32768 \
              --taus 0.8 0.9 0.95 0.98 --rounds 3 --out "$OUT/joint15_ab.json" 2>&1 \
              | grep -v Warning | tee "$OUT/joint15_ab.log" ;;
    tests)  python -m pytest -q -p no:cacheprovider tests/test_triton_kernels.py tests/test_gpu.py \
              tests/test_nan_inf.py tests/test_op.py tests/test_opcheck.py 2>&1 | tail -5 | tee "$OUT/tests.log" ;;
    # session 13: the pair kernel in the op (kernels/gluon_pair.py, kernels/walk.py): the GPU
    # tests, a soak of the op's launch (128-key steps, 3 buffers), then the op benchmark
    pairop) timeout 330 python -m pytest -q -p no:cacheprovider tests/test_gluon_pair.py \
              tests/test_gpu.py tests/test_op.py tests/test_nan_inf.py tests/test_chunked_prefill.py \
              2>&1 | tail -15 | tee "$OUT/pairop_tests.log"
            timeout 200 python benchmarks/gluon_soak.py --variants pp:tpw=4 --seq-lens 131072 32768 \
              --reps 200 --timeout 60 2>&1 | tee "$OUT/pairop_soak.log" ;;
    bench13) timeout 560 python -m s2o_compile bench --seq-lens 131072 65536 32768 --taus 0 0.8 0.9 \
              --out "$OUT/bench13.json" 2>&1 | grep -v "it/s\]" | tee "$OUT/bench13.log" ;;
    # session 13, second call: the GPU tests after their fixes, the op compiled against eager
    # with either walk, and a second round of the op bench at 128K and 32K
    pairop2) timeout 240 python -m pytest -q -p no:cacheprovider tests/test_gluon_pair.py \
              tests/test_gpu.py 2>&1 | tail -6 | tee "$OUT/pairop2_tests.log"
            timeout 200 python benchmarks/compiled_walk.py --seq-lens 131072 32768 --tau 0.8 2>&1 \
              | grep -v Warning | tee "$OUT/compiled_walk.log"
            timeout 150 python -m s2o_compile bench --seq-lens 131072 32768 --taus 0.8 \
              --out "$OUT/bench13b.json" 2>&1 | grep -v "it/s\]" | tee "$OUT/bench13b.log" ;;
    # session 13, third call: the failing GPU test in full, and the Triton walk eager against
    # Inductor's re-emitted kernel (the Triton cache entries of both come back in tcache.tgz)
    why)    timeout 150 python -m pytest -q -p no:cacheprovider -x tests/test_gluon_pair.py \
              -k "test_pair_kernel_matches_the_triton_kernel and 16448" 2>&1 | tail -40 | tee "$OUT/fields6.log"
            mkdir -p /tmp/tc; TRITON_CACHE_DIR=/tmp/tc timeout 300 python benchmarks/compiled_kernel_ab.py \
              2>&1 | grep -v Warning | tee "$OUT/compiled_kernel_ab.log"
            (cd /tmp/tc && find . -name "*attention_kernel*" | xargs -n1 dirname | sort -u \
              | xargs tar czf "$OUT/tcache.tgz") ;;
    # session 13, final call: the pair tests after the dense reference's size fix, and the op
    # bench in three alternating rounds (medians; every reading in the JSON)
    final13) timeout 150 python -m pytest -q -p no:cacheprovider tests/test_gluon_pair.py 2>&1 \
              | tail -4 | tee "$OUT/final13_tests.log"
            timeout 420 python -m s2o_compile bench --seq-lens 131072 65536 32768 --taus 0.8 0.9 \
              --rounds 3 --out "$OUT/bench13_rounds.json" 2>&1 | grep -v "it/s\]" \
              | tee "$OUT/bench13_rounds.log" ;;
    # session 13 on the H200 (where session 12's hang was frequent): the pair tests, a soak of
    # the op's pair kernel, and the op bench at 128K and 32K
    h200)   timeout 120 python -m pytest -q -p no:cacheprovider tests/test_gluon_pair.py 2>&1 \
              | tail -4 | tee "$OUT/h200_tests.log"
            timeout 150 python benchmarks/gluon_soak.py --variants pp:tpw=4 --seq-lens 131072 32768 \
              --reps 200 --timeout 40 2>&1 | tee "$OUT/h200_soak.log"
            timeout 110 python -m s2o_compile bench --seq-lens 131072 32768 --taus 0.8 \
              --out "$OUT/h200_bench.json" 2>&1 | grep -v "it/s\]" | tee "$OUT/h200_bench.log" ;;
    # session 14: the rank scatter in place of the bitonic block sort: the kernel tests on the GPU
    # (the sort from scores exactly as the reference), the tables and times against the previous
    # module (s2o_compile/kernels/_ab_prev.py, a copy of HEAD~ placed there, untracked), then the op
    sort14) timeout 300 python -m pytest -q -p no:cacheprovider tests/test_triton_kernels.py \
              tests/test_gpu.py 2>&1 | tail -6 | tee "$OUT/sort14_tests.log"
            timeout 200 python benchmarks/pre_ab.py --seq-lens 32768 131072 2>&1 \
              | tee "$OUT/sort14_ab.log" ;;  # ran as sort_ab.py (folded into pre_ab.py)
    # blocks per program of the keys and rank kernels (one: ~262K programs each at 128K)
    sort14b) timeout 100 python -m pytest -q -p no:cacheprovider tests/test_triton_kernels.py \
              -k "sort or permutation" 2>&1 | tail -3 | tee "$OUT/sort14b_tests.log"
            v=(base); for p in 4 16 64; do
              v+=("KEYS_BLOCKS_PER_PROGRAM=$p;RANK_BLOCKS_PER_PROGRAM=$p"); done
            timeout 300 python benchmarks/pre_ab.py --seq-lens 32768 131072 --variants "${v[@]}" \
              2>&1 | tee "$OUT/sort14b_ab.log" ;;  # ran as sort_ab.py (folded into pre_ab.py)
    # fa314 (the pair kernel in FA3's order and with ping-pong, variant fa3[:ping=1]) ran the
    # code of commit 04e54ea (benchmarks/gluon_walk.py _s2o_pair_fa3_kernel), removed since
    bench14) timeout 400 python -m s2o_compile bench --seq-lens 131072 65536 32768 --taus 0.8 \
              --rounds 2 --out "$OUT/bench14.json" 2>&1 | grep -v "it/s\]" | tee "$OUT/bench14.log" ;;
    # session 14: each kernel's time in one op call (the op's walk) at 128K and 32K
    timeline) timeout 200 python benchmarks/gpu_timeline.py 131072 32768 2>&1 | tee "$OUT/timeline.log" ;;
    # persist (sessions 13-14): the persistent pair kernel, removed since (gluon_walk.py at
    # commit 950c888 has it and this stage)
    # session 12/13: the Gluon pair walk (two query tiles per CTA, one gathering producer) after
    # its hang's fix, with 64- and 128-key steps: timings first (128K and 32K against the Triton
    # kernel, alternating twice), then Triton's visits on the checks, then a soak (each case in
    # its own process under a timeout, hangs counted); each part under a timeout
    pair)   timeout 300 python benchmarks/gluon_ab.py --skip-checks --seq-lens 131072 32768 --taus 0.8 \
              --variants triton pp:tpw=4 pp:tpw=4,step=128,nbuf=2 pp:tpw=4,step=128,nbuf=3 2>&1 \
              | tee "$OUT/pair_time.log"
            timeout 120 python benchmarks/gluon_ab.py --check-variants pp:tpw=4,step=128,nbuf=2 pp:tpw=4 \
              --seq-lens --taus 0.8 --variants triton 2>&1 | tee "$OUT/pair_checks.log"
            timeout 150 python benchmarks/gluon_soak.py --variants pp:tpw=4,step=128,nbuf=2 \
              --seq-lens 131072 --reps 200 --timeout 60 2>&1 | tee "$OUT/pair_soak.log" ;;
    # session 11: hardware counters of the walk and of cuDNN (Nsight Compute; summarize a source
    # page with benchmarks/ncu_stalls.py), 128-row tiles against 64 at equal error, and where the
    # op's time goes beyond its two parts
    ncu)    bash benchmarks/profile_walk.sh ;;
    bm128)  python benchmarks/kernel_ab.py --seq-lens 131072 32768 --taus 0.8 0.9 0.95 0.98 --preprocess \
              --variants 64,128,4,8,3,0 128,128,8,8,3,0 128,128,8,16,3,0 128,128,8,8,4,0 2>&1 | tee "$OUT/ab_bm128.log" ;;
    overhead) python benchmarks/op_overhead.py --seq-lens 32768 65536 131072 2>&1 | tee "$OUT/op_overhead.log"
            python benchmarks/blocking_calls.py 65536 2>&1 | tee "$OUT/blocking.log"
            python benchmarks/gpu_timeline.py 65536 2>&1 | tee "$OUT/gaps.log" ;;
    ab)     python benchmarks/kernel_ab.py --seq-lens 131072 --taus 0.1 0.3 --preprocess \
              --variants 64,64,4,8,3,0 64,128,4,4,3,0 64,128,8,4,3,0 64,64,8,8,3,0 64,64,4,8,4,0 \
              2>&1 | tee "$OUT/ab.log" ;;
    ab2)    python benchmarks/kernel_ab.py --seq-lens 131072 --taus 0 0.3 --preprocess \
              --variants 64,64,4,8,3,0 64,64,4,16,3,0 128,64,8,8,3,0 128,128,8,4,3,0 \
              2>&1 | tee "$OUT/ab2.log" ;;
    ab3)    python benchmarks/kernel_ab.py --seq-lens 131072 --taus 0 0.6 --preprocess sort,128 tiers,128 \
              --variants 64,64,4,8,3,0 128,128,8,4,3,0 64,64,4,8,3,1 2>&1 | tee "$OUT/ab3.log" ;;
    ab4)    python benchmarks/kernel_ab.py --seq-lens 131072 --taus 0.6 --key-order \
              --preprocess sort,128 sort,256 sort,512 --variants 64,64,4,8,3,0 2>&1 | tee "$OUT/ab4.log" ;;
    # ab5-ab7 (session 4) compared against copies of earlier kernels placed in s2o_compile/kernels/
    # (not committed: their logs are in results/session4/); kernel_ab's "module:" variants rerun such
    # an A/B once a copy is there.
    ab8)    python benchmarks/kernel_ab.py --seq-lens 131072 --taus 0.3 0.6 0.8 0.9 --preprocess \
              --variants 64,64,4,8,3,0 64,128,4,8,3,0 2>&1 | tee "$OUT/ab8.log" ;;
    ab9)    python benchmarks/kernel_ab.py --seq-lens 131072 --taus 0.8 --preprocess sort,1024 \
              --variants 64,128,4,8,3,0 2>&1 | tee "$OUT/ab9.log" ;;
    # ab10 (session 5): preprocessing, session 4's against the current; needs
    # git show 0691c7e:s2o_compile/kernels/triton_s2o.py > s2o_compile/kernels/_ab_prev.py
    ab10)   python benchmarks/kernel_ab.py --seq-lens 131072 --taus 0.75 --variants 64,128,4,8,3,0 \
              --preprocess _ab_prev:sort,1024 sort,1024 _ab_prev:sort,1024 sort,1024 2>&1 | tee "$OUT/ab10.log" ;;
    # ab11 (session 5) also timed SKIP_DROPPED=1, a switch since removed (an if around the math of
    # the steps after a stop: 32-38% slower; results/session5/preprocess/ab11.log)
    ab11)   python benchmarks/kernel_ab.py --seq-lens 131072 --taus 0.6 0.75 --preprocess \
              --variants 64,128,4,8,3,0 64,128,4,4,3,0 64,128,4,16,3,0 64,128,4,8,3,0 2>&1 | tee "$OUT/ab11.log" ;;
    # ab12 (session 5) timed a fixed softmax reference (switches FIXED_MAX, ROUNDED_L of commits
    # a358c62 and 5be4c76, since taken back out): results/session5/fixed_max/ and BENCHMARKS.md
    # ab12 (session 6): 32-key steps (161 registers, 64 KB of shared memory: 3 CTAs per SM
    # instead of 2) against 64-key steps
    ab12)   python benchmarks/kernel_ab.py --seq-lens 131072 --taus 0 0.75 --preprocess \
              --variants 64,128,4,8,3,0 64,128,4,16,3,0,SUB_TILE_N=32 64,128,4,8,3,0,SUB_TILE_N=32 \
              64,128,4,8,3,0 2>&1 | tee "$OUT/ab12.log" ;;
    # ab13 (session 6) timed a PREFETCH_IDX switch (the chunk's table indices loaded before its
    # loop: K/V pipelined two steps ahead), since taken out: results/session6/ab13/, BENCHMARKS.md
    # local (session 6): the dense local window against a ranked one, the same run and card
    local)  for W in 512 0 64 128; do
              python -m s2o_compile bench --seq-lens 32768 65536 131072 --taus 0 0.6 0.75 0.9 \
                --local-window $W --out "$OUT/bench_local$W.json" 2>&1 | grep -v "it/s\]" | tee "$OUT/bench_local$W.log"; done ;;
    # sort (session 7): the counting sort's block size, sort warps and prefix-score tiles against
    # session 6's torch.sort; needs git show ea96fcd:s2o_compile/kernels/triton_s2o.py > s2o_compile/kernels/_ab_prev.py
    # (ran as sort_ab.py with its sort-warps variants, which the rank scatter no longer has)
    sort)   python benchmarks/pre_ab.py --seq-lens 131072 32768 --variants base SORT_BLOCK=256 \
              SORT_BLOCK=1024 "SCORE_TILES=32,128,8" 2>&1 | tee "$OUT/sort_ab.log" ;;
    # ab14 (session 8): the walk ends with the walk_chunk-key chunk in which the stop rule held
    # (every loaded step used, one row reduction per chunk), against session 7's walk, which tested
    # every tile and dropped the steps after a stop; needs
    # git show 211aa31:s2o_compile/kernels/triton_s2o.py > s2o_compile/kernels/_ab_prev.py
    ab14)   python benchmarks/kernel_ab.py --seq-lens 131072 32768 --taus 0.6 0.75 0.8 0.9 0.95 --preprocess \
              --variants _ab_prev:64,128,4,8,3,0 64,128,4,8,3,0 64,128,4,16,3,0 64,128,4,4,3,0 \
              64,128,4,2,3,0 2>&1 | tee "$OUT/ab14.log" ;;
    # ab15 (session 8): the walk's next step indices carried through the loop (a plain load one
    # step ahead) instead of a chunk's indices picked by a masked sum (7 barriers per step in SASS
    # instead of 2). It ran with the pick as the current module (9afd3ff) and the carried variant,
    # now the current code, as _ab_exp; to rerun, the pick is
    # git show 9afd3ff:s2o_compile/kernels/triton_s2o.py > s2o_compile/kernels/_ab_exp.py
    # Then tau 0 through the chunked early-stopping walk (STOP=1, never stops) against the plain
    # loop, ranked and key order
    ab15)   python benchmarks/kernel_ab.py --seq-lens 131072 32768 --taus 0.75 0.8 0.9 --preprocess \
              --variants 64,128,4,8,3,0 _ab_exp:64,128,4,8,3,0 64,128,4,8,3,0 _ab_exp:64,128,4,8,3,0 \
              2>&1 | tee "$OUT/ab15.log"
            python benchmarks/kernel_ab.py --seq-lens 131072 --taus 0 --preprocess --key-order \
              --variants 64,128,4,8,3,0 64,128,4,8,3,0,STOP=1 _ab_exp:64,128,4,8,3,0,STOP=1 \
              64,128,4,32,3,0,STOP=1 2>&1 | tee "$OUT/ab15_tau0.log" ;;
    # ab16 (session 8): session 7's walk (_ab_prev = 211aa31) against the final one, alternating
    ab16)   python benchmarks/kernel_ab.py --seq-lens 131072 32768 --taus 0.75 0.8 0.9 --preprocess \
              --variants _ab_prev:64,128,4,8,3,0 64,128,4,8,3,0 _ab_prev:64,128,4,8,3,0 64,128,4,8,3,0 \
              2>&1 | tee "$OUT/ab16.log" ;;
    # ab17 (session 8): walk_chunk 512 against 1024 on the final code, alternating
    ab17)   python benchmarks/kernel_ab.py --seq-lens 131072 32768 --taus 0.8 0.9 0.95 0.98 --preprocess \
              --variants 64,128,4,8,3,0 64,128,4,16,3,0 64,128,4,8,3,0 64,128,4,16,3,0 \
              2>&1 | tee "$OUT/ab17.log" ;;
    bench128) python -m s2o_compile bench --seq-lens 131072 --taus 0 0.6 0.75 0.8 0.9 0.95 \
              --out "$OUT/bench128${RUN:-}.json" 2>&1 | grep -v "it/s\]" | tee "$OUT/bench128${RUN:-}.log" ;;
    profile) OUT=$OUT python benchmarks/profile_attention.py 32768 0.6 2>&1 | tee "$OUT/profile.log"
            ncu -k regex:_s2o_attention_kernel -c 1 -s 1 --section SpeedOfLight --section Occupancy \
              --section LaunchStats --section WarpStateStats --section ComputeWorkloadAnalysis \
              python benchmarks/profile_attention.py 32768 0.6 2>&1 | grep -v "^==" | tee "$OUT/ncu.log" | tail -60 ;;
    short)  for P in 512 1024; do
              python -m s2o_compile bench --seq-lens 12288 16384 24576 32768 --taus 0.1 0.6 --pool-rows $P \
                --out "$OUT/bench_short_pool$P.json" 2>&1 | grep -v "it/s\]" | tee "$OUT/bench_short_pool$P.log"; done ;;
    mean)   python -m s2o_compile bench --seq-lens 32768 131072 --taus 0.05 0.1 0.2 0.3 0.5 \
              --stop-rule mean --out "$OUT/bench_mean.json" 2>&1 | grep -v "it/s\]" | tee "$OUT/bench_mean.log" ;;
    gain)   python -m s2o_compile bench --seq-lens 131072 --taus 1e-4 3e-4 1e-3 3e-3 --stop-rule gain \
              --out "$OUT/bench_gain.json" 2>&1 | grep -v "it/s\]" | tee "$OUT/bench_gain.log" ;;
    pad)    python -m s2o_compile bench --seq-lens 32768 131072 --taus 0 0.3 --head-dim 96 \
              --out "$OUT/bench_d96.json" 2>&1 | grep -v "it/s\]" | tee "$OUT/bench_d96.log"
            python -m s2o_compile bench --seq-lens 131072 --taus 0.3 \
              --out "$OUT/bench_d128_check.json" 2>&1 | grep -v "it/s\]" | tee "$OUT/bench_d128_check.log" ;;
    segments) for S in 256 1024; do
              python -m s2o_compile bench --seq-lens 131072 --taus 0.1 0.3 0.6 --segment-size $S \
                --out "$OUT/bench_seg$S.json" 2>&1 | grep -v "it/s\]" | tee "$OUT/bench_seg$S.log"; done ;;
    perhead) for S in 512 1024 2048; do
              python -m s2o_compile bench --seq-lens 131072 --taus 0.1 0.3 0.6 --segment-size $S \
                --rank-per-head true --out "$OUT/bench_head_seg$S.json" 2>&1 | grep -v "it/s\]" \
                | tee "$OUT/bench_head_seg$S.log"; done
            python -m s2o_compile bench --seq-lens 131072 --taus 0.3 \
              --out "$OUT/bench_kv_check.json" 2>&1 | grep -v "it/s\]" | tee "$OUT/bench_kv_check.log" ;;
    perhead2) for spec in 2048,128 2048,64 4096,128; do S=${spec%,*}; P=${spec#*,}
              python -m s2o_compile bench --seq-lens 131072 --taus 0.6 0.7 0.8 0.9 --segment-size $S \
                --pool-rows $P --rank-per-head true --out "$OUT/bench_head_seg${S}_pool$P.json" 2>&1 \
                | grep -v "it/s\]" | tee "$OUT/bench_head_seg${S}_pool$P.log"; done ;;
    headn)  python -m s2o_compile bench --seq-lens 32768 65536 --taus 0 0.1 0.3 0.6 --segment-size ${SEG:-1024} \
              --rank-per-head true --out "$OUT/bench_head_n.json" 2>&1 | grep -v "it/s\]" | tee "$OUT/bench_head_n.log" ;;
    oracle) python benchmarks/oracle_density.py --seq-len 131072 --out "$OUT/oracle.json" 2>&1 | tee "$OUT/oracle.log" ;;
    # chunked (session 10): chunked prefill, the last q_len queries of a kv_len context
    chunked) python -m pytest -q -p no:cacheprovider tests/test_chunked_prefill.py 2>&1 | tail -5 | tee "$OUT/chunked_tests.log"
            python benchmarks/chunked_prefill.py --kv-lens 131072 32768 --q-lens 32768 8192 2048 512 \
              --taus 0 0.8 --out "$OUT/chunked.json" 2>&1 | tee "$OUT/chunked.log" ;;
    bench08) python -m s2o_compile bench --seq-lens 131072 32768 --taus 0.8 0.9 \
              --out "$OUT/bench08.json" 2>&1 | grep -v "it/s\]" | tee "$OUT/bench08.log" ;;
    sweep)  python -m s2o_compile bench --seq-lens 32768 65536 --taus 0 0.6 0.75 0.8 0.9 0.95 \
              --out "$OUT/sweep.json" 2>&1 | grep -v "it/s\]" | tee "$OUT/sweep.log" ;;
    bench)  python -m s2o_compile bench --seq-lens 8192 16384 32768 65536 131072 \
              --taus 0 0.1 0.3 0.6 0.8 0.9 --out "$OUT/bench.json" 2>&1 | grep -v "it/s\]" | tee "$OUT/bench.log" ;;
    memory) python benchmarks/memory.py --seq-lens 131072 262144 --out "$OUT/memory.json" 2>&1 | tee "$OUT/memory.log" ;;
    demo)   python -m s2o_compile demo 2>&1 | tee "$OUT/demo.log" | tail -40 ;;
    flex)   python benchmarks/flex_peer.py --seq-len 131072 --densities 0.05 0.1 0.2 0.4 --device cuda \
              --out "$OUT/flex_peer.json" 2>&1 | grep -v "it/s\]" | tee "$OUT/flex.log" ;;
    e2e)    timeout 540 python benchmarks/e2e_prefill.py --seq-lens 32768 65536 131072 --layers 32 --threshold 0.3 \
              --out "$OUT/e2e.json" 2>&1 | tee "$OUT/e2e.log" ;;
    eager)  python benchmarks/e2e_prefill.py --seq-lens 32768 65536 131072 --layers 32 --threshold 0.3 --modes density eager \
              --out "$OUT/e2e_eager.json" 2>&1 | tee "$OUT/e2e_eager.log" ;;
    fallback) python benchmarks/fallback.py --out "$OUT/fallback.json" 2>&1 | tee "$OUT/fallback.log" ;;
    hf)     python benchmarks/gpu_hf_check.py --seq-len 32768 --layers 2 2>&1 | tee "$OUT/hf.log" | tail -20 ;;
    *)      echo "unknown stage $stage" ;;
  esac
done
echo "=== done $(date +%T)"
