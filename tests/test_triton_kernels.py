"""The Triton kernels against the reference and dense SDPA.

Without a GPU they run in Triton's interpreter (TRITON_INTERPRET=1, set by conftest) on CPU
tensors at small sizes; on a GPU the same tests run compiled on CUDA tensors.
"""
import pytest
import torch

from conftest import SMALL, dense, qkv, rel_err
from s2o_compile.kernels import reference as R
from s2o_compile.kernels import triton_s2o as T
import stop_rule_case as case

DEV = "cuda" if torch.cuda.is_available() else "cpu"
WHOLE = SMALL.replace(sink_tokens=16, local_window=32)
CONFIGS = [
    SMALL,
    SMALL.replace(stop_rule="remaining"),
    SMALL.replace(pooling="mean", ordering="sort"),
    SMALL.replace(sink_tokens=0, local_window=0, block_m=64),
    SMALL.replace(sink_tokens=100, local_window=7, segment_size=32),
    SMALL.replace(ordering="sort"),  # 5 (N 333) and 3 (N 200) ranked segments: a lone middle row
    SMALL.replace(ordering="sort", local_window=70, segment_size=32),  # even segment counts
    SMALL.replace(pack_gqa=True, rank_per_head=False, pool_rows=16),  # heads share a query tile
    SMALL.replace(stop_rule="mean", ordering="sort"),
    SMALL.replace(rank_per_head=False, ordering="sort"),  # one ranking per kv head (its group)
    WHOLE,  # sink, local window, segments and query tiles are whole key tiles: the unmasked path
]
SHAPES = [(2, 4, 2, 333, 64), (1, 6, 2, 200, 32)]  # batch 2, GQA (group 2 and 3), odd N


def assert_same_table(table, expected):
    if DEV == "cpu":  # the interpreter computes the scores exactly as the reference
        assert torch.equal(table.cpu(), expected)
    else:  # summation order may move a score across a priority boundary
        assert (table.cpu() == expected).float().mean() > 0.99


@pytest.mark.parametrize("block", [16, 64])
@pytest.mark.parametrize("cfg", [SMALL.replace(ordering="sort", segment_size=32),
                                 SMALL.replace(ordering="sort", local_window=70, segment_size=32)])
def test_sorted_table_in_blocks(monkeypatch, block, cfg):
    """The counting sort runs over blocks of SORT_BLOCK keys: with many blocks per row, the table
    is still the reference's stable sort, also where most keys tie (repeated key rows)."""
    monkeypatch.setattr(T, "SORT_BLOCK", block)
    q, k, _ = qkv(2, 4, 2, 333, 64, device=DEV, seed=5)
    k[:, :, 100:300] = k[:, :, 7:8]  # 200 equal keys: one priority, ties across blocks
    table, _ = T.build_index_table(q, k, 0.125, cfg)
    assert_same_table(table, R.build_index_table(q.cpu(), k.cpu(), 0.125, cfg))


@pytest.mark.parametrize("block,per_program,one_warp", [
    (16, 1, False), (64, 3, False), (512, 1, False), (512, 2, False),
    (16, 1, True), (64, 1, True), (512, 1, True)])  # one_warp: the keys kernel's ballots
def test_sort_from_scores_is_the_reference_stable_sort(monkeypatch, block, per_program,
                                                       one_warp):
    """The sort kernels alone, from scores laid out as the table (no rounding before them, so
    exact on the GPU too): each segment's entries by priority (reference.priority_of), ties in
    key order. Scores on a 1/4-logit grid tie often, within and across blocks and across the
    rank kernel's rounds of 32 keys; the best scores of some segments are NaN-free maxima of
    rows that hold a NaN (priority 0, first). per_program: blocks per program of the keys and
    rank kernels (the last program's share cut short); one_warp: _warp_keys_kernel."""
    monkeypatch.setattr(T, "SORT_BLOCK", block)
    monkeypatch.setattr(T, "KEYS_ONE_WARP", one_warp)
    monkeypatch.setattr(T, "KEYS_BLOCKS_PER_PROGRAM", per_program)
    monkeypatch.setattr(T, "RANK_BLOCKS_PER_PROGRAM", per_program)
    cfg = SMALL.replace(ordering="sort", segment_size=64, sink_tokens=5, local_window=3)
    N, B, rows = 700, 2, 3
    offsets = T._offsets(N, 0, cfg, DEV)
    offs = offsets.tolist()
    g = torch.Generator().manual_seed(block)
    scores = torch.randint(-60, 4, (B, rows, offs[-1]), generator=g) / 4.0
    scores[0, 1, offs[5] + 7] = scores[1, 2, offs[-2] + 100] = float("nan")
    segs = T.segments(N, cfg.segment_size, cfg.sink_tokens, cfg.local_window)
    segmax = torch.full((B, rows, len(segs)), float("-inf"))
    expected = torch.empty(B, rows, offs[-1], dtype=torch.int32)
    for i, seg in enumerate(segs):
        part = scores[..., offs[i]:offs[i + 1]]
        if part.shape[-1]:
            segmax[..., i] = torch.nan_to_num(part, nan=float("-inf")).amax(-1)
            order = torch.sort(R.priority_of(part, cfg), dim=-1, stable=True).indices
            expected[..., offs[i]:offs[i + 1]] = (seg.sink_end + order).int()
    table = scores.to(DEV).contiguous().view(torch.int32)  # the scores kernel's output, in place
    T._sorted_table(table, segmax.to(DEV), offsets, N, 0, cfg)
    assert torch.equal(table.cpu(), expected)


@pytest.mark.parametrize("cfg", CONFIGS)
@pytest.mark.parametrize("B,Hq,Hkv,N,D", SHAPES)
def test_index_table_equals_reference(cfg, B, Hq, Hkv, N, D):
    q, k, _ = qkv(B, Hq, Hkv, N, D, device=DEV, seed=N)
    expected = R.build_index_table(q.cpu(), k.cpu(), D ** -0.5, cfg)
    table, offsets = T.build_index_table(q, k, D ** -0.5, cfg)
    assert offsets[-1].item() == table.shape[-1] == expected.shape[-1]
    assert_same_table(table, expected)


def assert_scores_table_is_the_reference(qkv_, pool_rows, first_query):
    """The sorted table of max pooling over pool_rows positions, segments of 32, is the
    reference's, for the whole prefill and for a chunked prefill's queries from first_query
    (the segments before its own have no prefix)."""
    cfg = SMALL.replace(ordering="sort", segment_size=32, pooling="max", pool_rows=pool_rows,
                        sink_tokens=5, local_window=9)
    q, k, _ = qkv_
    for q in (q, q[:, :, first_query:]):
        table, _ = T.build_index_table(q, k, 0.125, cfg)
        assert_same_table(table, R.build_index_table(q.cpu(), k.cpu(), 0.125, cfg))


@pytest.mark.parametrize("programs,tiles,pool_rows", [
    (1, None, 16), (40, None, 16), (10 ** 6, None, 16),  # the default tiles
    (40, (16, 16, 4), 16), (40, (32, 32, 4), 16),  # chunks shorter than a segment
    (40, (4, 32, 4), 8)])  # four rep slots a segment; SCORE_WIDE doubles 4 segments to 8
def test_prefix_scores_split_over_segment_blocks_and_key_runs(monkeypatch, programs, tiles,
                                                              pool_rows):
    """The prefix-score kernel's programs each take a block of segments and a run of key
    chunks: one run per row (programs 1), a few, or one chunk each; with more than one block of
    segments (G 21) and two or four rep slots per segment (max pooling), the table is the
    reference's, also for a chunked prefill's queries."""
    monkeypatch.setattr(T, "SCORE_PROGRAMS", programs)
    if tiles is not None:
        monkeypatch.setattr(T, "SCORE_TILES", tiles)
    assert_scores_table_is_the_reference(qkv(1, 4, 2, 650, 64, device=DEV, seed=1), pool_rows,
                                         first_query=301)


@pytest.mark.parametrize("rep_rows", [64, 16])
def test_prefix_scores_of_many_rep_slots(monkeypatch, rep_rows):
    """pool_rows 1: 32 rep slots a segment. With 64 rep rows a product a program takes 2
    segments; with 16 one segment, its slots 16 at a time (SCORE_REP_ROWS). The table is the
    reference's, also for a chunked prefill's queries."""
    monkeypatch.setattr(T, "SCORE_REP_ROWS", rep_rows)
    assert_scores_table_is_the_reference(qkv(1, 2, 1, 150, 32, device=DEV, seed=4), 1,
                                         first_query=70)


def test_sorted_table_is_a_permutation_of_each_prefix():
    """Every segment's slice of the sorted table holds each of its prefix keys once."""
    cfg = SMALL.replace(ordering="sort", segment_size=32)
    q, k, _ = qkv(2, 4, 2, 333, 64, device=DEV, seed=3)
    table, _ = T.build_index_table(q, k, 0.125, cfg)
    # every segment's slice is a permutation of its prefix keys
    for g, seg in enumerate(T.segments(333, 32, cfg.sink_tokens, cfg.local_window)):
        offsets = T.table_offsets(333, 32, cfg.sink_tokens, cfg.local_window).tolist()
        part = table[..., offsets[g]:offsets[g + 1]].sort(-1).values.cpu()
        assert torch.equal(part, torch.arange(seg.sink_end, seg.lo).expand_as(part).int())


@pytest.mark.parametrize("cfg", CONFIGS)
@pytest.mark.parametrize("B,Hq,Hkv,N,D", SHAPES)
def test_attention_tau0_equals_dense_and_reference(cfg, B, Hq, Hkv, N, D):
    q, k, v = qkv(B, Hq, Hkv, N, D, device=DEV, seed=N + 1)
    out, density = T.s2o_attention(q, k, v, D ** -0.5, cfg)
    assert rel_err(out, dense(q, k, v)) < 1e-5
    assert torch.allclose(density.cpu(), torch.ones(B, Hq))


@pytest.mark.parametrize("cfg", [SMALL, WHOLE, SMALL.replace(pack_gqa=True, rank_per_head=False)])
def test_tau0_walks_in_key_order_without_a_table(cfg):
    """tau 0 skips the ranking: the walk takes each prefix in key order. Same visits as the walk
    through the index table, the same output up to rounding, and dense SDPA's."""
    q, k, v = qkv(2, 4, 2, 333, 64, device=DEV, seed=5)
    assert T.walks_in_key_order(cfg) and not T.walks_in_key_order(cfg.replace(threshold=0.1))
    table, offsets = T.build_index_table(q, k, 0.125, cfg)
    ranked, ranked_visits = T.attention_with_table(q, k, v, table, offsets, 0.125, cfg)
    keyed, keyed_visits = T.attention_with_table(q, k, v, None, offsets, 0.125, cfg)
    assert torch.equal(keyed_visits, ranked_visits)
    assert rel_err(keyed, ranked) < 1e-5 and rel_err(keyed, dense(q, k, v)) < 1e-5
    with pytest.raises(ValueError, match="needs the index table"):
        T.attention_with_table(q, k, v, None, offsets, 0.125, cfg.replace(threshold=0.1))


@pytest.mark.parametrize("rule,per_head,base", [("gain", True, SMALL), ("mean", True, SMALL),
                                                ("gain", False, SMALL), ("remaining", True, WHOLE),
                                                ("gain", True, WHOLE)])
@pytest.mark.parametrize("tau", [0.02, 0.2, 0.4])
def test_attention_tau_positive_equals_reference_given_the_same_table(tau, rule, per_head, base):
    pairs = _kernel_walks_like_the_reference(base.replace(threshold=tau, stop_rule=rule,
                                                          rank_per_head=per_head))
    if tau >= 0.2:
        assert (pairs < 333 * 334 // 2).any()  # the stop rule really cut work


@pytest.mark.parametrize("base", [SMALL, WHOLE])
@pytest.mark.parametrize("chunk", [16, 64])
def test_walk_chunk_ends_the_walk_as_in_the_reference(base, chunk):
    """walk_chunk = block_n (the contract's exact stop, one step per chunk) and 4 tiles per
    chunk (one decision after four tests): the reference's visits and output."""
    pairs = _kernel_walks_like_the_reference(base.replace(threshold=0.2, stop_rule="remaining",
                                                          walk_chunk=chunk))
    assert (pairs < 333 * 334 // 2).any()


def _kernel_walks_like_the_reference(cfg):
    """Triton's attention over the reference's index table (B 2, Hq 4, Hkv 2, N 333): the same
    visits, pairs and output as the reference; returns the pairs per (batch, head)."""
    q, k, v = qkv(2, 4, 2, 333, 64, device=DEV, seed=5)
    table = R.build_index_table(q.cpu(), k.cpu(), 0.125, cfg)
    ref_out, ref_visited, ref_pairs = R.attention_with_table(q.cpu(), k.cpu(), v.cpu(), table, 0.125, cfg)
    offsets = T.table_offsets(333, cfg.segment_size, cfg.sink_tokens, cfg.local_window, DEV)
    out, visited = T.attention_with_table(q, k, v, table.to(DEV), offsets, 0.125, cfg)
    assert torch.equal(visited.cpu().long(), ref_visited)
    assert rel_err(out.cpu(), ref_out) < 1e-5
    assert torch.equal(T.pairs_from_visited(visited, 333, cfg, group=2).cpu(), ref_pairs)
    return ref_pairs


@pytest.mark.parametrize("tau,visits", sorted(case.EXPECTED_VISITS.items()))
def test_stop_rule_visits_exactly(tau, visits):
    q, k, v, expected_order = case.build()
    q, k, v = q.to(DEV), k.to(DEV), v.to(DEV)
    cfg = case.CFG.replace(threshold=tau)
    table, offsets = T.build_index_table(q, k, 1.0, cfg)
    assert torch.equal(table[0, 0].long().cpu(), expected_order)
    _, visited = T.attention_with_table(q, k, v, table, offsets, 1.0, cfg)
    assert visited.cpu().tolist() == [[[0, visits]]]


def test_transposed_inputs_and_half_precision():
    B, Hq, Hkv, N, D = 1, 4, 2, 150, 64
    g = torch.Generator().manual_seed(7)
    mk = lambda h: torch.randn(B, N, h, D, generator=g).to(DEV, torch.float16).transpose(1, 2)  # noqa: E731
    q, k, v = mk(Hq), mk(Hkv), mk(Hkv)
    out, _ = T.s2o_attention(q, k, v, D ** -0.5, SMALL)
    assert out.is_contiguous() and out.dtype == torch.float16
    assert rel_err(out, dense(q, k, v)) < 1e-2


@pytest.mark.parametrize("base", [SMALL, WHOLE])
@pytest.mark.parametrize("tau", [0.0, 0.2, 0.4])
def test_block_n_above_the_sub_tile_runs_as_steps_with_one_stop_test(monkeypatch, base, tau):
    """block_n 32 over 16-key steps (as 128 over 64 on a GPU): the same visits and output as the
    reference's 32-key tiles, whose gain sums both steps."""
    monkeypatch.setattr(T, "SUB_TILE_N", 16)
    cfg = base.replace(block_n=32, walk_chunk=64, threshold=tau, stop_rule="remaining")
    pairs = _kernel_walks_like_the_reference(cfg)
    if tau == 0.4:
        assert (pairs < 333 * 334 // 2).any()


def test_whole_tiles_path_is_taken_where_it_applies():
    """The unmasked path runs for the defaults and WHOLE; the masked one for tiles that straddle
    the sink, window or segment edges, for packed GQA tiles and for a negative scale."""
    from s2o_compile import S2OConfig
    assert T.whole_tiles(S2OConfig(), 64, 0.1) and T.whole_tiles(WHOLE, 32, 0.1)
    assert not T.whole_tiles(SMALL, 32, 0.1)  # sink 8, window 20 with 16-key tiles
    assert not T.whole_tiles(WHOLE, 8, 0.1)  # a packed tile: 8 positions x 4 heads
    assert not T.whole_tiles(WHOLE, 32, -0.1)


@pytest.mark.parametrize("cfg", [SMALL, WHOLE])
@pytest.mark.parametrize("scale", [-0.2, 0.0])
def test_negative_and_zero_scale_equal_dense(cfg, scale):
    """SDPA takes any scale: a negative one flips the ranking and the row max (the masked path),
    zero makes every logit 0 (uniform attention). The truth is spelled out: CPU SDPA returns NaN
    rows for a negative scale (torch 2.13)."""
    q, k, v = qkv(1, 4, 2, 200, 32, device=DEV, seed=3)
    out, density = T.s2o_attention(q, k, v, scale, cfg)
    logits = (q.cpu() @ k.cpu().repeat_interleave(2, 1).transpose(-1, -2)) * scale
    logits = logits.masked_fill(torch.ones(200, 200).triu(1).bool(), float("-inf"))
    want = logits.softmax(-1) @ v.cpu().repeat_interleave(2, 1)
    assert rel_err(out.cpu(), want) < 1e-5


@pytest.mark.parametrize("pack", [True, False])
@pytest.mark.parametrize("tau", [0.0, 0.1])
@pytest.mark.parametrize("Hkv", [2, 1])
def test_gqa_packed_tiles_match_reference(pack, tau, Hkv):
    """Group 4 (8 query heads, 2 kv heads), block_m 64: four heads x 16 positions per tile
    share one walk (or one head x 64 positions without packing); group 8 (one kv head,
    multi-query): four heads x 16 positions again, two tiles a group. The kernel agrees with
    the reference tile for tile."""
    q, k, v = qkv(1, 8, Hkv, 300, 64, device=DEV, seed=11)
    group = 8 // Hkv
    cfg = SMALL.replace(threshold=tau, block_m=64, pack_gqa=pack, rank_per_head=False,
                        stop_rule="remaining")
    hpt = T.heads_per_tile(group, 64, pack)
    assert hpt == (4 if pack else 1)
    table = R.build_index_table(q.cpu(), k.cpu(), 0.125, cfg)
    ref_out, ref_visited, ref_pairs = R.attention_with_table(q.cpu(), k.cpu(), v.cpu(), table, 0.125, cfg)
    offsets = T.table_offsets(300, cfg.segment_size, cfg.sink_tokens, cfg.local_window, DEV)
    out, visited = T.attention_with_table(q, k, v, table.to(DEV), offsets, 0.125, cfg)
    assert visited.shape[-1] == -(-300 // (64 // hpt))
    assert torch.equal(visited.cpu().long(), ref_visited)
    assert rel_err(out.cpu(), ref_out) < 1e-5
    assert torch.equal(T.pairs_from_visited(visited, 300, cfg, group=group).cpu(), ref_pairs)
    if pack:  # the heads of a packed tile walk together
        assert torch.equal(ref_visited[:, 0::4], ref_visited[:, 3::4])
    if tau == 0:
        assert rel_err(out, dense(q, k, v)) < 1e-5


@pytest.mark.parametrize("D", [8, 48, 80, 96])
def test_head_dims_that_are_not_powers_of_two_are_padded(D):
    """Head dims other than 16..256 powers of two run padded to the next power of two (>= 16),
    masked on load and store: tau 0 equals dense SDPA, tau > 0 follows the reference."""
    q, k, v = qkv(1, 4, 2, 200, D, device=DEV, seed=D)
    scale = D ** -0.5
    out, density = T.s2o_attention(q, k, v, scale, SMALL)
    assert out.shape == q.shape and out.is_contiguous()
    assert rel_err(out, dense(q, k, v)) < 1e-5
    cfg = SMALL.replace(threshold=0.2, ordering="sort")
    expected = R.build_index_table(q.cpu(), k.cpu(), scale, cfg)
    table, offsets = T.build_index_table(q, k, scale, cfg)
    assert (table.cpu() == expected).float().mean() > 0.99
    ref_out, ref_visited, _ = R.attention_with_table(q.cpu(), k.cpu(), v.cpu(), expected, scale, cfg)
    out, visited = T.attention_with_table(q, k, v, expected.to(DEV), offsets, scale, cfg)
    assert torch.equal(visited.cpu().long(), ref_visited)
    assert rel_err(out.cpu(), ref_out) < 1e-5


def test_shape_tensors_are_built_once_per_shape_and_afresh_while_tracing(monkeypatch):
    """The offsets and tile bounds depend on shapes only: an eager call reuses them, a call
    that a compiler traces builds its own (FakeTensors must not be cached)."""
    built = []
    build = lambda: built.append(1) or torch.arange(3)  # noqa: E731
    key = ("test", 12345)
    a = T._shape_tensors(key, torch.device("cpu"), build)
    b = T._shape_tensors(key, torch.device("cpu"), build)
    assert a is b and len(built) == 1
    T._shape_tensors(("test", 12346), torch.device("cpu"), build)  # another shape
    assert len(built) == 2
    monkeypatch.setattr(T, "tracing", lambda: True)
    c = T._shape_tensors(key, torch.device("cpu"), build)
    assert c is not a and len(built) == 3


def test_cached_offsets_and_pairs_equal_fresh_ones():
    """Two calls with the same shapes (the second from the cache) give what the layout
    functions and a fresh count give, for a whole prefill and a chunk."""
    from s2o_compile.kernels.layout import table_offsets
    cfg = SMALL.replace(ordering="sort")
    for q0 in (0, 70):
        for _ in range(2):
            off = T._offsets(333, q0, cfg, DEV)
            assert torch.equal(off.cpu(), table_offsets(333, cfg.segment_size, cfg.sink_tokens,
                                                        cfg.local_window, "cpu", q0))
    visited = torch.randint(0, 5, (2, 4, 11), dtype=torch.int32, device=DEV)
    first = T.pairs_from_visited(visited, 333, cfg, 2)
    T._SHAPE_CACHE.clear()
    assert torch.equal(T.pairs_from_visited(visited, 333, cfg, 2), first)
    more = T.pairs_from_visited(visited + 1, 333, cfg, 2)  # the cached bounds, other visits
    assert (more >= first).all() and (more > first).any()
