"""NaN and inf in q, k, v: S2O propagates them as causal attention does; fully masked rows.

The ground truth is causal attention in float32 with the future masked out by masked_fill (so a
NaN/inf logit of a future key is replaced, not added to): row i is non-finite iff q[i] or some
k[j <= i] makes one of its logits NaN/inf-inf. SDPA's math backend is not that: it adds a -inf
bias, so a NaN in k[j] turns every row NaN. SDPA's CPU flash kernel (the default) masks like the
ground truth for q and k, and deviates in two places, which these tests pin down so that a change
in torch shows up:
  - a NaN/inf in v[j] reaches every row of SDPA's CPU output (0 * NaN = NaN in p @ v, including
    rows before j, for which p = 0), not only the rows >= j that attend to it. S2O's kernels have
    the same leak, bounded by their tiles: the reference by the query segment, the Triton kernel
    by the query tile. So for v: rows >= j are NaN, S2O's NaN rows are a subset of SDPA's, and
    rows before the segment of j are exact.
  - SDPA's CPU flash kernel in float16/bfloat16 returns 0 (not NaN) for a row whose logits
    contain +inf; the math backend and float32 return NaN, as S2O does.
With tau > 0 S2O skips keys: a NaN/inf key or value it never visits cannot reach the output.
What must hold there: S2O never produces a NaN (or inf) where dense attention has none.
"""
import math

import pytest
import torch
import torch.nn.functional as F

from conftest import qkv
from s2o_compile import S2OConfig, make_backend, sparse_attention
from s2o_compile.kernels import reference as R
from s2o_compile.kernels import triton_s2o as T

CFG = S2OConfig(threshold=0.0, segment_size=64, block_m=32, block_n=16, walk_chunk=32,
                sink_tokens=8, local_window=16, min_seq_len=0, stop_rule="gain")
N, D = 150, 32  # 3 segments; segment 2 (rows 128..149) has a ranked prefix [8, 112)
SCALE = D ** -0.5

# key positions by the role they play for the last segment's queries (rows 128..149)
POSITIONS = {"sink": 3, "prefix": 40, "local": 120, "own": 135, "first": 0, "last": N - 1}


def truth(q, k, v, scale=SCALE):
    """Causal attention in float32, the future replaced by -inf (not added to)."""
    group = q.shape[1] // k.shape[1]
    k, v = (x.float().repeat_interleave(group, dim=1) for x in (k, v))
    s = (q.float() @ k.transpose(-1, -2)) * scale
    n = q.shape[2]
    future = torch.ones(n, n, dtype=torch.bool).triu(1)
    return torch.softmax(s.masked_fill(future, -math.inf), dim=-1) @ v


def s2o_reference(q, k, v, cfg=CFG):
    return sparse_attention(q, k, v, scale=SCALE, config=cfg, enable_gqa=q.shape[1] != k.shape[1])


def s2o_triton(q, k, v, cfg=CFG):
    dev = "cuda" if torch.cuda.is_available() else "cpu"  # CPU: Triton's interpreter
    return T.s2o_attention(q.to(dev), k.to(dev), v.to(dev), SCALE, cfg)[0].cpu()


IMPLS = {"reference": s2o_reference, "triton": s2o_triton}


def rows(mask4d):
    """[B, H, N, D] bool -> [B, H, N]: rows with any such element."""
    return mask4d.any(-1)


def poisoned(tensor_name, pos, value, dtype, col=None, seed=0):
    q, k, v = qkv(1, 4, 2, N, D, dtype=dtype, seed=seed)
    t = {"q": q, "k": k, "v": v}[tensor_name]
    if col is None:
        t[:, :, pos] = value
    else:
        t[:, :, pos, col] = value
    return q, k, v


def assert_same_nonfinite(out, want):
    assert torch.equal(out.isnan(), want.isnan()), (
        f"NaN rows differ: S2O {rows(out.isnan())[0, 0].nonzero().flatten().tolist()} "
        f"want {rows(want.isnan())[0, 0].nonzero().flatten().tolist()}")
    assert torch.equal(out.isinf(), want.isinf())
    ok = want.isfinite()
    torch.testing.assert_close(out.float()[ok], want[ok], atol=2e-2, rtol=2e-2)


# --- q and k: exactly as dense attention, at tau = 0 --------------------------------------------

@pytest.mark.parametrize("where", sorted(POSITIONS))
@pytest.mark.parametrize("tensor_name", ["q", "k"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_reference_q_k_nonfinite_like_dense(where, tensor_name, value, dtype):
    # inf in one element of a row (a whole row of inf gives NaN everywhere it is used)
    col = None if math.isnan(value) else 5
    q, k, v = poisoned(tensor_name, POSITIONS[where], value, dtype, col)
    assert_same_nonfinite(s2o_reference(q, k, v), truth(q, k, v))


@pytest.mark.parametrize("case", [("q", "own", math.nan), ("k", "prefix", math.nan),
                                  ("k", "sink", math.inf), ("k", "local", -math.inf),
                                  ("q", "last", math.inf)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_triton_q_k_nonfinite_like_dense(case, dtype):
    tensor_name, where, value = case
    col = None if math.isnan(value) else 5
    q, k, v = poisoned(tensor_name, POSITIONS[where], value, dtype, col)
    assert_same_nonfinite(s2o_triton(q, k, v), truth(q, k, v))


def test_sdpa_cpu_matches_truth_for_q_k_nan_in_float32():
    """For NaN in q or k the default CPU SDPA (flash) agrees with the truth, so S2O agrees with
    what the un-rewritten model computes."""
    for name, where in (("q", "own"), ("k", "prefix"), ("k", "sink")):
        q, k, v = poisoned(name, POSITIONS[where], math.nan, torch.float32)
        sdpa = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        assert torch.equal(sdpa.isnan(), truth(q, k, v).isnan())
        assert torch.equal(s2o_reference(q, k, v).isnan(), sdpa.isnan())


def test_sdpa_cpu_flash_half_precision_turns_inf_rows_into_zeros():
    """Pins SDPA's CPU quirk (see module doc); S2O follows the math backend instead."""
    q, k, v = poisoned("q", POSITIONS["own"], math.inf, torch.bfloat16, col=5)
    sdpa = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    want = truth(q, k, v)
    if not rows(sdpa.isnan()).any():  # the quirk as of torch 2.13
        assert rows(want.isnan())[0, :, POSITIONS["own"]].all()
    assert torch.equal(s2o_reference(q, k, v).isnan(), want.isnan())


# --- v: the rows that attend to it, at most as far as SDPA's own leak ---------------------------

@pytest.mark.parametrize("impl,where", [("reference", "sink"), ("reference", "prefix"),
                                        ("reference", "local"), ("reference", "own"),
                                        ("triton", "prefix"), ("triton", "own")])
@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_v_nonfinite_between_dense_and_sdpa(impl, where, value):
    j = POSITIONS[where]
    q, k, v = poisoned("v", j, value, torch.float32, col=3)
    out = IMPLS[impl](q, k, v)
    bad = rows(~out.isfinite())[0]  # [H, N]
    sdpa = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    assert bad[:, j:].all(), "a row attending to the non-finite value is finite"
    assert not (bad & ~rows(~sdpa.isfinite())[0]).any(), "S2O made a row non-finite SDPA keeps"
    # rows before the block that holds j (reference: query segment; Triton: query tile) are exact
    block = CFG.segment_size if impl == "reference" else CFG.block_m
    start = j // block * block
    clean = truth(q, k, v.nan_to_num(0.0, 0.0, 0.0))
    torch.testing.assert_close(out[:, :, :start], clean[:, :, :start], atol=1e-5, rtol=1e-5)


# --- tau > 0: never a NaN that dense attention does not have -------------------------------------

def last_ranked_prefix_key(q, k, cfg):
    """The key the last segment's walk visits last, and whether the walk reached its tile."""
    table = R.build_index_table(q, k, SCALE, cfg)
    _, visited, _ = R.attention_with_table(q, k, q, table, SCALE, cfg)
    key = int(table[0, 0, -1])
    P = table.shape[-1] - int(R.table_offsets(N, cfg.segment_size, cfg.sink_tokens,
                                              cfg.local_window)[-2])
    return key, int(visited[0, 0, -1]), math.ceil(P / cfg.block_n)


@pytest.mark.parametrize("tensor_name", ["q", "k", "v"])
def test_reference_tau_positive_never_invents_nonfinite(tensor_name):
    cfg = CFG.replace(threshold=0.3)
    q, k, v = qkv(1, 4, 2, N, D, seed=3)
    j = {"q": 140, "k": 40, "v": 40}[tensor_name]
    {"q": q, "k": k, "v": v}[tensor_name][:, :, j] = math.nan
    out = s2o_reference(q, k, v, cfg)
    want = truth(q, k, v)
    assert not (out.isnan() & ~want.isnan()).any()
    if tensor_name == "q":  # the row itself, and only it
        assert torch.equal(rows(out.isnan()), rows(want.isnan()))


@pytest.mark.parametrize("impl", ["reference", "triton"])
def test_nan_value_in_a_skipped_tile_does_not_reach_the_output(impl):
    """At tau > 0 the walk of the last segment stops before the tile of its last-ranked key:
    a NaN value there must not reach rows 128.. (the reference's visit counts prove the stop).
    The Triton kernel loads no K/V tile past the chunk in which the walk stops."""
    cfg = CFG.replace(threshold=0.3)
    q, k, v = qkv(1, 1, 1, N, D, seed=4)
    key, visits, tiles = last_ranked_prefix_key(q, k, cfg)
    assert visits < tiles, "the walk must stop early for this test to mean anything"
    v[:, :, key] = math.nan
    out = IMPLS[impl](q, k, v, cfg)
    assert out[:, :, 128:].isfinite().all()


# --- through the compiler: rewritten calls keep the NaN rows, fully masked rows stay SDPA's -----

def test_compiled_rewrite_keeps_nan_rows_of_sdpa():
    torch._dynamo.reset()

    def attend(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)

    q, k, v = poisoned("k", POSITIONS["prefix"], math.nan, torch.float32)
    q[:, :, 100] = math.nan
    backend = make_backend(CFG, inner="aot_eager")
    out = torch.compile(attend, backend=backend)(q, k, v)
    assert backend.reports[0].num_rewritten == 1
    assert torch.equal(out.isnan(), attend(q, k, v).isnan())
    torch._dynamo.reset()


def test_compiled_rewrite_of_an_additive_mask_keeps_nan_to_the_rows_that_see_it():
    """A float causal mask (-inf above the diagonal): SDPA adds it to the logits, so a NaN key
    spreads NaN into rows before it too. The rewrite masks as a boolean mask does: NaN rows
    are those that see the key (a subset of SDPA's), the rest are finite and SDPA's values."""
    torch._dynamo.reset()

    def attend(q, k, v):
        n = q.shape[2]
        i = torch.arange(n)
        bias = torch.zeros(n, n).masked_fill(i[None, :] > i[:, None], -math.inf)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, enable_gqa=True)

    key = POSITIONS["prefix"]
    q, k, v = poisoned("k", key, math.nan, torch.float32)
    backend = make_backend(CFG, inner="aot_eager")
    out = torch.compile(attend, backend=backend)(q, k, v)
    assert backend.reports[0].num_rewritten == 1
    want = attend(q, k, v)
    assert out[:, :, key:].isnan().all() and out[:, :, :key].isfinite().all()
    assert (want.isnan() | ~out.isnan()).all()  # no NaN that SDPA does not have
    torch.testing.assert_close(out[:, :, :key], truth(q, k, v)[:, :, :key], atol=1e-5, rtol=1e-5)
    torch._dynamo.reset()


def fully_masked_calls(q, k, v, attention_mask):
    """Three SDPA calls with fully masked rows: strict causal (row 0 sees nothing), left padding
    (the padded queries see nothing), a float bias with -inf rows."""
    n = q.shape[2]
    i = torch.arange(n)
    strict = i[None, :] < i[:, None]
    padded = (i[None, :] <= i[:, None])[None, None] & attention_mask[:, None, None, :].bool()
    bias = torch.zeros(n, n).masked_fill(~(i[None, :] <= i[:, None]), -math.inf)
    bias[:5] = -math.inf
    return (F.scaled_dot_product_attention(q, k, v, attn_mask=strict, enable_gqa=True),
            F.scaled_dot_product_attention(q, k, v, attn_mask=padded, enable_gqa=True),
            F.scaled_dot_product_attention(q, k, v, attn_mask=bias, enable_gqa=True))


def test_fully_masked_rows_are_left_to_sdpa():
    torch._dynamo.reset()
    q, k, v = qkv(2, 4, 2, 70, D, seed=5)
    attention_mask = torch.ones(2, 70)
    attention_mask[1, :9] = 0
    plain = torch.compile(fully_masked_calls, backend="aot_eager")(q, k, v, attention_mask)
    torch._dynamo.reset()
    backend = make_backend(CFG, inner="aot_eager")
    out = torch.compile(fully_masked_calls, backend=backend)(q, k, v, attention_mask)
    assert [n.decision for r in backend.reports for n in r.nodes] == ["skipped"] * 3
    for a, b in zip(out, plain):
        assert torch.equal(a.nan_to_num(7.0), b.nan_to_num(7.0)) and torch.equal(a.isnan(),
                                                                                   b.isnan())
    torch._dynamo.reset()


def test_the_op_has_no_fully_masked_rows():
    """Causal self-attention: row i always sees key i, so every row has mass; N = 1 included."""
    for n in (1, 2, 65):
        q, k, v = qkv(1, 2, 1, n, D, seed=n)
        k[:, :, :] = -1e4  # logits far below zero everywhere: still a normalized softmax
        out = s2o_reference(q, k, v)
        assert out.isfinite().all()
        torch.testing.assert_close(out, truth(q, k, v), atol=1e-4, rtol=1e-4)


def test_sdpa_cpu_nonpositive_scale_is_nan_s2o_is_not():
    """Pins a torch CPU bug: SDPA's flash kernel returns NaN for scale=0 (and < 0) where the math
    backend returns finite values (scale 0 = uniform attention). S2O follows the math backend;
    the fuzz suite draws positive scales only."""
    q, k, v = qkv(1, 2, 2, 80, D, seed=6)
    for scale in (0.0, -0.5):
        want = truth(q, k, v, scale=scale)
        assert want.isfinite().all()
        out = sparse_attention(q, k, v, scale=scale, config=CFG)
        torch.testing.assert_close(out, want, atol=1e-5, rtol=1e-5)
    cumulative_mean = v.cumsum(2) / torch.arange(1, 81)[:, None]
    torch.testing.assert_close(sparse_attention(q, k, v, scale=0.0, config=CFG), cumulative_mean,
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("impl", ["reference", "triton"])
@pytest.mark.parametrize("ordering", ["sort", "tiers"])
def test_nan_key_in_the_ranked_prefix_propagates_at_tau_positive(impl, ordering):
    """A NaN key ranks first (NaN priority 0), so even a walk that stops early sees it: every
    row whose causal prefix holds it is NaN, as in SDPA."""
    cfg = CFG.replace(threshold=0.3, ordering=ordering)
    q, k, v = qkv(1, 2, 1, N, D, seed=7)
    k[:, :, 40] = math.nan  # in segment 2's ranked prefix [8, 112)
    out = IMPLS[impl](q, k, v, cfg)
    want = truth(q, k, v)
    assert torch.equal(out.isnan(), want.isnan())
