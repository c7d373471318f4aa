"""The PyTorch reference against dense SDPA and against the contract's stop rule."""
import subprocess
import sys

import pytest
import torch

from conftest import SMALL, dense, qkv, rel_err
from s2o_compile import S2OConfig
from s2o_compile.kernels import reference as R
from s2o_compile.kernels.layout import segments, table_offsets, table_size
from s2o_compile.kernels.triton_s2o import pairs_from_visited
from s2o_compile.workload import structured_qkv
import stop_rule_case as case

CONFIGS = [
    SMALL,
    SMALL.replace(stop_rule="remaining"),
    SMALL.replace(pooling="mean", ordering="sort"),
    SMALL.replace(sink_tokens=0, local_window=0, block_m=64),
    SMALL.replace(sink_tokens=100, local_window=7, block_n=32, segment_size=32),
]


@pytest.mark.parametrize("cfg", CONFIGS)
@pytest.mark.parametrize("B,Hq,Hkv,N,D", [(2, 4, 2, 333, 64), (1, 6, 2, 129, 128), (1, 2, 2, 70, 64)])
def test_tau0_equals_dense_fp32(cfg, B, Hq, Hkv, N, D):
    q, k, v = qkv(B, Hq, Hkv, N, D, seed=N + D)
    out, visited, pairs = R.s2o_attention_reference(q, k, v, D ** -0.5, cfg)
    assert rel_err(out, dense(q, k, v)) < 1e-5
    assert torch.all(pairs == N * (N + 1) // 2)  # every causal pair computed


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_tau0_equals_dense_half(dtype):
    q, k, v = qkv(2, 8, 2, 301, 128, dtype=dtype, seed=3)
    out, _, _ = R.s2o_attention_reference(q, k, v, 128 ** -0.5, SMALL)
    assert out.dtype == dtype
    assert rel_err(out, dense(q, k, v)) < 1e-2


def test_index_table_is_a_permutation_of_each_prefix():
    q, k, v = qkv(1, 4, 2, 300, 64, seed=1)
    cfg = SMALL
    table = R.build_index_table(q, k, 0.125, cfg)
    offsets = table_offsets(300, cfg.segment_size, cfg.sink_tokens, cfg.local_window).tolist()
    assert table.shape[-1] == offsets[-1] == table_size(300, cfg.segment_size, cfg.sink_tokens,
                                                        cfg.local_window)
    for g, seg in enumerate(R.segments(300, cfg.segment_size, cfg.sink_tokens, cfg.local_window)):
        part = table[..., offsets[g]:offsets[g + 1]]
        expect = torch.arange(seg.sink_end, seg.lo)
        assert torch.equal(torch.sort(part.long(), dim=-1).values,
                           expect.expand_as(part))


def test_tiers_visit_in_non_increasing_estimated_importance():
    q, k, v = qkv(1, 4, 2, 300, 64, seed=2)
    cfg = SMALL.replace(tier_width=0.25)
    seg = R.segments(300, 64, cfg.sink_tokens, cfg.local_window)[-1]
    scores = R.segment_scores(q[:, :, seg.start:seg.end], k[:, :, seg.sink_end:seg.lo], 0.125, cfg)
    order = R.order_prefix(scores, cfg)
    tiers = torch.gather(R.priority_of(scores, cfg), -1, order)
    assert torch.all(tiers[..., 1:] >= tiers[..., :-1])
    assert tiers.min() == 1 and tiers.max() > 2  # several tiers used (0 is reserved for NaN)


@pytest.mark.parametrize("tau,visits", sorted(case.EXPECTED_VISITS.items()))
def test_stop_rule_visits_exactly(tau, visits):
    assert [round(r, 4) for r in case.ratios()] == [0.9989, 0.1191, 0.0159, 0.0021]
    q, k, v, expected_order = case.build()
    cfg = case.CFG.replace(threshold=tau)
    table = R.build_index_table(q, k, 1.0, cfg)
    assert torch.equal(table[0, 0].long(), expected_order)
    out, visited, pairs = R.attention_with_table(q, k, v, table, 1.0, cfg)
    assert visited.tolist() == [[[0, visits]]]
    own = sum(range(1, 65)) * 2  # both segments' own causal pairs
    assert pairs.item() == own + 64 * 16 * visits


def test_tau_sweep_is_monotone_on_structured_input():
    q, k, v = structured_qkv(1, 4, 1, 2048, 64 + 64, dtype=torch.float32, seed=5)
    ref = dense(q, k, v)
    cfg = S2OConfig(segment_size=128, block_m=64, block_n=32, walk_chunk=64, local_window=128,
                    min_seq_len=0)
    densities, errors = [], []
    for tau in [0.0, 1e-4, 1e-3, 1e-2, 5e-2, 0.2, 0.6]:
        out, _, pairs = R.s2o_attention_reference(q, k, v, 128 ** -0.5, cfg.replace(threshold=tau))
        densities.append(pairs.sum().item() / (4 * 2048 * 2049 / 2))
        errors.append(rel_err(out, ref))
    assert densities[0] == 1.0 and errors[0] < 1e-5
    assert all(a >= b for a, b in zip(densities, densities[1:])), densities
    assert all(a <= b + 1e-6 for a, b in zip(errors, errors[1:])), errors
    assert densities[-1] < 0.6 * densities[0], densities


@pytest.mark.parametrize("cfg", CONFIGS)
def test_pair_count_formula_matches_reference(cfg):
    q, k, v = qkv(1, 4, 2, 333, 64, seed=9)
    cfg = cfg.replace(threshold=0.05)
    _, visited, pairs = R.s2o_attention_reference(q, k, v, 0.125, cfg)
    assert torch.equal(pairs_from_visited(visited, 333, cfg, group=2), pairs)


def test_no_n_by_n_memory():
    """16K tokens, one head: an N x N float32 score matrix would take 1 GiB; peak RSS stays far below."""
    code = (
        "import resource, torch\n"
        "from s2o_compile import S2OConfig\n"
        "from s2o_compile.kernels.reference import s2o_attention_reference\n"
        "q, k, v = (torch.randn(1, 1, 16384, 64) for _ in range(3))\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "out, _, _ = s2o_attention_reference(q, k, v, 0.125, S2OConfig(threshold=0.05))\n"
        "assert torch.isfinite(out).all()\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert int(res.stdout.strip().splitlines()[-1]) < 256  # MiB


def test_table_size_closed_form_equals_the_sum_over_segments():
    import itertools
    for n, S, sink, W in itertools.product([1, 63, 64, 65, 300, 4097], [32, 64, 512], [0, 8, 100],
                                           [0, 7, 20, 512]):
        expect = sum(s.prefix_len for s in R.segments(n, S, sink, W))
        assert table_size(n, S, sink, W) == expect, (n, S, sink, W)


@pytest.mark.parametrize("tau", [0.05, 0.3])
def test_mean_stop_rule_stops_no_later_than_every_row(tau):
    """"mean" averages the bound that "remaining" requires of every row: given the same table it
    visits at most as many tiles, and more error is the price."""
    q, k, v = qkv(1, 4, 2, 333, 64, seed=4)
    cfg = SMALL.replace(threshold=tau, stop_rule="remaining")
    table = R.build_index_table(q, k, 0.125, cfg)
    _, vis_all, pairs_all = R.attention_with_table(q, k, v, table, 0.125, cfg)
    _, vis_mean, pairs_mean = R.attention_with_table(q, k, v, table, 0.125,
                                                     cfg.replace(stop_rule="mean"))
    assert (vis_mean <= vis_all).all()
    assert pairs_mean.sum() < pairs_all.sum()


def test_rank_per_head_lets_each_head_of_a_group_walk_its_own_keys():
    """Two query heads of one kv head, each attending to its own tile's worth of far keys: one
    ranking per kv head puts both heads' keys first for both heads; with rank_per_head each
    head's own keys lead its row, and at the same tau no head walks further and the head whose
    keys the shared ranking put second walks one tile less."""
    g = torch.Generator().manual_seed(4)
    N, D, BN = 256, 64, 16
    q = 0.1 * torch.randn(1, 2, N, D, generator=g)
    k = 0.1 * torch.randn(1, 1, N, D, generator=g)
    v = torch.randn(1, 1, N, D, generator=g)
    far = [list(range(40, 40 + BN)), list(range(90, 90 + BN))]  # in the last segment's prefix
    for h, keys in enumerate(far):
        k[0, 0, keys, h] = 3.0
        q[0, h, 192:, h] = 3.0
    cfg = S2OConfig(threshold=0.05, segment_size=64, block_m=64, block_n=BN, walk_chunk=BN,
                    sink_tokens=8, local_window=16, min_seq_len=0, stop_rule="gain",
                    rank_per_head=False)
    last = table_offsets(N, 64, 8, 16)[-2].item()
    shared = R.build_index_table(q, k, 1.0, cfg)
    own = R.build_index_table(q, k, 1.0, cfg.replace(rank_per_head=True))
    assert shared.shape[1] == 1 and own.shape[1] == 2
    assert set(shared[0, 0, last:last + 2 * BN].tolist()) == set(far[0] + far[1])
    for h in range(2):
        assert set(own[0, h, last:last + BN].tolist()) == set(far[h])
    out_s, vis_s, _ = R.attention_with_table(q, k, v, shared, 1.0, cfg)
    out_o, vis_o, _ = R.attention_with_table(q, k, v, own, 1.0, cfg.replace(rank_per_head=True))
    assert vis_o[0, :, -1].tolist() == [2, 2]
    assert (vis_s[0, :, -1] >= vis_o[0, :, -1]).all() and vis_s[0, :, -1].max().item() == 3
    ref = dense(q, k, v, scale=1.0)[:, :, 192:]
    assert rel_err(out_o[:, :, 192:], ref) < 0.02 and rel_err(out_s[:, :, 192:], ref) < 0.02


@pytest.mark.parametrize("chunk", [32, 64, 128])
@pytest.mark.parametrize("rule", ["gain", "remaining", "mean"])
def test_walk_ends_with_the_chunk_in_which_the_rule_held(chunk, rule):
    """walk_chunk only rounds the walk up: the rule's first hold is the exact walk's (the same
    tiles before it), and the walk then finishes that chunk (or the prefix), so its visits are
    the exact walk's rounded up to whole chunks of tiles, capped at the prefix's tiles."""
    q, k, v = structured_qkv(1, 4, 2, 1024, 64, dtype=torch.float32, seed=11)
    cfg = S2OConfig(threshold=0.3, segment_size=128, block_m=32, block_n=16, walk_chunk=16,
                    sink_tokens=16, local_window=16, min_seq_len=0, stop_rule=rule)
    table = R.build_index_table(q, k, 0.125, cfg)
    _, exact, _ = R.attention_with_table(q, k, v, table, 0.125, cfg)
    out, visited, pairs = R.attention_with_table(q, k, v, table, 0.125,
                                                 cfg.replace(walk_chunk=chunk))
    per_chunk = chunk // 16
    tiles = torch.tensor([-(-(sg.prefix_len) // 16) for sg in segments(1024, 128, 16, 16)
                          for _ in range(128 // 32)])
    want = torch.minimum(-(-exact // per_chunk) * per_chunk, tiles)
    assert torch.equal(visited, want)
    assert (exact < tiles).sum() > 10 and (visited > exact).any()  # the rule cut and rounded
    assert torch.equal(pairs, pairs_from_visited(visited, 1024, cfg, group=2))
    assert rel_err(out, dense(q, k, v, scale=0.125)) < 0.05
