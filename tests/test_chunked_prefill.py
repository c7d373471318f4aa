"""Chunked prefill: q_len < kv_len, the queries are the last positions (causal to the lower right).

The reference, the Triton kernels (interpreter on CPU, compiled on a GPU) and the front end
against dense SDPA with the lower-right causal mask, and against a whole prefill: a chunk that
starts on a segment boundary computes exactly the whole prefill's rows (same segments, tables,
tiles and stops).
"""
import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention.bias import CausalVariant, causal_lower_right

from conftest import PASS_CFG, SMALL, qkv, rel_err
from s2o_compile import S2OConfig, make_backend, sparse_attention
from s2o_compile.kernels import layout
from s2o_compile.kernels import reference as R
from s2o_compile.kernels import triton_s2o as T
from s2o_compile.ops import config_args, dense_attention
from s2o_compile.workload import structured_qkv

DEV = "cuda" if torch.cuda.is_available() else "cpu"


def dense_lower_right(q, k, v, scale=None):
    L, N = q.shape[2], k.shape[2]
    mask = torch.ones(L, N, dtype=torch.bool, device=q.device).tril(N - L)
    return F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask,
                                          scale=scale, enable_gqa=q.shape[1] != k.shape[1])


@pytest.mark.parametrize("n,S,sink,W", [(333, 64, 8, 20), (1000, 128, 0, 0), (517, 32, 100, 7)])
def test_table_layout_starts_at_the_first_querys_segment(n, S, sink, W):
    for q0 in (0, 1, S - 1, S, 3 * S + 5, n - 1):
        segs = layout.segments(n, S, sink, W, q0)
        assert segs[0].start == q0 and segs[0].index == q0 // S and segs[-1].end == n
        lens = layout.prefix_lengths(n, S, sink, W, q_start=q0)
        assert (lens[:q0 // S] == 0).all()
        assert lens.sum().item() == layout.table_size(n, S, sink, W, q0)
        assert layout.table_size(n, S, sink, W, q0) == sum(s.prefix_len for s in segs)


CFGS = [SMALL, SMALL.replace(pooling="mean", ordering="sort"),
        SMALL.replace(pack_gqa=True, rank_per_head=False, pool_rows=16)]


@pytest.mark.parametrize("cfg", CFGS)
@pytest.mark.parametrize("q0", [1, 57, 100, 331])
def test_reference_tau0_equals_dense_lower_right(cfg, q0):
    q, k, v = qkv(2, 4, 2, 333, 64, seed=q0)
    q = q[:, :, q0:]
    out, visited, pairs = R.s2o_attention_reference(q, k, v, 0.125, cfg)
    assert rel_err(out, dense_lower_right(q, k, v, 0.125)) < 1e-5
    assert (pairs == layout.causal_pairs(333 - q0, 333)).all()  # every causal pair, once
    bm = cfg.block_m // layout.heads_per_tile(2, cfg.block_m, cfg.pack_gqa)  # positions per tile
    assert visited.shape[-1] == -(-333 // bm) - q0 // bm


@pytest.mark.parametrize("cfg", CFGS)
@pytest.mark.parametrize("q0", [64, 128, 256])
def test_reference_chunk_on_a_segment_boundary_equals_the_whole_prefill(cfg, q0):
    cfg = cfg.replace(threshold=0.3)
    q, k, v = qkv(2, 4, 2, 333, 64, seed=q0)
    whole, w_visited, _ = R.s2o_attention_reference(q, k, v, 0.125, cfg)
    chunk, c_visited, _ = R.s2o_attention_reference(q[:, :, q0:], k, v, 0.125, cfg)
    assert torch.equal(chunk, whole[:, :, q0:])
    tiles_before = q0 // (cfg.block_m // layout.heads_per_tile(2, cfg.block_m, cfg.pack_gqa))
    assert torch.equal(c_visited, w_visited[..., tiles_before:])
    assert c_visited.sum() > 0 and rel_err(chunk, dense_lower_right(q[:, :, q0:], k, v, 0.125)) > 0


@pytest.mark.parametrize("cfg,q0", [(SMALL.replace(ordering="sort"), 100),
                                    (SMALL.replace(sink_tokens=16, local_window=32), 57),
                                    (SMALL.replace(pooling="mean", rank_per_head=False), 331)])
def test_kernels_equal_reference_on_a_chunk(cfg, q0):
    """Same table, same visits, same output and density as the reference; tau 0 equals dense."""
    q, k, v = qkv(2, 4, 2, 333, 64, device=DEV, seed=q0)
    q = q[:, :, q0:]
    c = cfg.replace(threshold=0.3)
    expected = R.build_index_table(q.cpu(), k.cpu(), 0.125, c)
    table, offsets = T.build_index_table(q, k, 0.125, c)
    if DEV == "cpu":  # the interpreter scores exactly as the reference
        assert torch.equal(table.cpu(), expected)
    out, visited = T.attention_with_table(q, k, v, table, offsets, 0.125, c)
    ref_out, ref_visited, ref_pairs = R.attention_with_table(q.cpu(), k.cpu(), v.cpu(),
                                                             table.cpu(), 0.125, c)
    assert torch.equal(visited.cpu().long(), ref_visited)
    assert rel_err(out.cpu(), ref_out) < 1e-5
    pairs = T.pairs_from_visited(visited, 333, c, 2, q_start=q0)
    assert torch.equal(pairs.cpu(), ref_pairs)
    out0, density0 = T.s2o_attention(q, k, v, 0.125, cfg)
    assert rel_err(out0.cpu(), dense_lower_right(q, k, v, 0.125).cpu()) < 1e-5
    assert torch.allclose(density0, torch.ones_like(density0))


@pytest.mark.parametrize("variant", ["lower_right", CausalVariant.LOWER_RIGHT])
@pytest.mark.parametrize("min_seq_len", [0, 10_000])  # S2O, and the dense fallback
def test_front_end_lower_right(variant, min_seq_len):
    q, k, v = qkv(1, 4, 2, 300, 32, seed=3)
    q = q[:, :, 200:]
    cfg = SMALL.replace(min_seq_len=min_seq_len)
    out, density = sparse_attention(q, k, v, enable_gqa=True, config=cfg, return_stats=True,
                                    causal_variant=variant)
    assert out.shape == q.shape
    assert rel_err(out, dense_lower_right(q, k, v)) < 1e-5
    assert torch.allclose(density, torch.ones_like(density))
    raw, _ = torch.ops.s2o.sparse_attention(q, k, v, 32 ** -0.5, *config_args(cfg))
    assert rel_err(raw, out) < 1e-6  # the op itself aligns a shorter q to the lower right


def test_front_end_upper_left_is_sdpas_is_causal():
    """The default (SDPA's is_causal=True): with more keys than queries, query i sees keys
    0..i, so the keys past q_len are unused."""
    q, k, v = qkv(1, 4, 2, 300, 32, seed=4)
    q = q[:, :, :120]
    out = sparse_attention(q, k, v, enable_gqa=True, config=SMALL)
    sdpa = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    assert rel_err(out, sdpa) < 1e-5


def test_front_end_rejects_an_unknown_variant_and_fewer_keys_than_queries():
    q, k, v = qkv(1, 4, 2, 100, 32, seed=5)
    with pytest.raises(ValueError, match="causal_variant"):
        sparse_attention(q, k, v, enable_gqa=True, config=SMALL, causal_variant="diagonal")
    with pytest.raises(ValueError, match="at least as many keys as queries"):
        sparse_attention(q, k[:, :, :50], v[:, :, :50], enable_gqa=True, config=SMALL,
                         causal_variant="lower_right")


@pytest.mark.parametrize("tau", [0.0, 0.2])
def test_compiled_front_end_on_a_chunk_matches_eager(tau):
    """On a GPU, Inductor schedules the traced kernels (the chunked builds); on CPU the op's
    opaque reference branch runs."""
    q, k, v = qkv(1, 4, 2, 300, 32, device=DEV, seed=6)
    q = q[:, :, 130:]
    cfg = SMALL.replace(threshold=tau)
    fn = torch.compile(lambda q, k, v: sparse_attention(q, k, v, enable_gqa=True, config=cfg,
                                                        causal_variant="lower_right"))
    eager = sparse_attention(q, k, v, enable_gqa=True, config=cfg, causal_variant="lower_right")
    assert rel_err(fn(q, k, v), eager) < 1e-5
    if tau == 0:
        assert rel_err(eager.cpu(), dense_lower_right(q, k, v).cpu()) < 1e-5


@pytest.mark.parametrize("q_len", [40, 10])  # below min_seq_len keys; a chunk below 64 queries
def test_compiled_dense_fallback_on_a_chunk(q_len):
    """The op's dense branch under torch.compile: CausalBias cannot be built over FakeTensors,
    so the traced branch materializes the lower-right mask."""
    q, k, v = qkv(1, 4, 2, 100, 32, seed=8)
    q = q[:, :, -q_len:]
    cfg = SMALL.replace(min_seq_len=1000 if q_len == 40 else 0)
    args = config_args(cfg)
    fn = torch.compile(lambda q, k, v: torch.ops.s2o.sparse_attention(q, k, v, 0.2, *args)[0])
    assert rel_err(fn(q, k, v), dense_lower_right(q, k, v, 0.2)) < 1e-5


def test_dense_fallback_lower_right_with_gqa_matches_causal_lower_right():
    q, k, v = qkv(1, 4, 2, 64, 32, seed=7)
    q = q[:, :, 40:]
    out, _ = dense_attention(q, k, v, 0.2)
    kk, vv = (x.repeat_interleave(2, dim=1) for x in (k, v))
    expect = F.scaled_dot_product_attention(q, kk, vv, scale=0.2,
                                            attn_mask=causal_lower_right(24, 64))
    assert rel_err(out, expect) < 1e-6


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("N,L", [(16384, 4096), (16384 + 77, 3000), (32768, 513)])
def test_gpu_chunk_tau0_equals_dense_and_tau_matches_reference(N, L):
    q, k, v = structured_qkv(1, 8, 2, N, 128, device="cuda", seed=N + L)
    q = q[:, :, N - L:]
    cfg = S2OConfig(threshold=0.0, min_seq_len=0)
    out, density = T.s2o_attention(q, k, v, 128 ** -0.5, cfg)
    ref = dense_lower_right(q, k, v, 128 ** -0.5)
    assert rel_err(out, ref) < 1e-2
    assert torch.allclose(density, torch.ones_like(density))
    c = cfg.replace(threshold=0.1)
    table, offsets = T.build_index_table(q, k, 128 ** -0.5, c)
    out, visited = T.attention_with_table(q, k, v, table, offsets, 128 ** -0.5, c)
    ref_out, ref_visited, _ = R.attention_with_table(q, k, v, table, 128 ** -0.5, c)
    assert (visited.long() == ref_visited).float().mean().item() > 0.97
    assert rel_err(out, ref_out) < 2e-2
    assert rel_err(out, ref) < 0.2


# --- the graph pass --------------------------------------------------------------------------

def _pass_run(fn, *args):
    backend = make_backend(PASS_CFG.replace(threshold=0.0), inner="eager")
    out = torch.compile(fn, backend=backend)(*args)
    nodes = [n for r in backend.reports for n in r.nodes]
    assert len(nodes) == 1, backend.reports
    return out, nodes[0]


def _attend_lower_right(q, k, v):
    L, N = q.shape[2], k.shape[2]
    kpos = torch.arange(N, device=q.device)
    qpos = torch.arange(N - L, N, device=q.device)
    mask = (kpos[None, :] <= qpos[:, None])[None, None].expand(q.shape[0], 1, L, N)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)


def test_pass_rewrites_a_lower_right_causal_mask():
    q, k, v = qkv(2, 4, 2, 200, 16, seed=8)
    q = q[:, :, 120:]
    out, node = _pass_run(_attend_lower_right, q, k, v)
    assert node.decision == "rewritten", node
    assert rel_err(out, dense_lower_right(q, k, v)) < 1e-5


@pytest.mark.parametrize("kind,reason", [
    ("is_causal", "aligns to the upper left"),
    ("upper_left_mask", "not the causal lower triangle at size 80 x 200 (lower right)"),
    ("short", "a decode step or a chunk of fewer than 64 queries")])
def test_pass_keeps_what_is_no_chunked_prefill(kind, reason):
    q, k, v = qkv(2, 4, 2, 200, 16, seed=9)
    q = q[:, :, -(30 if kind == "short" else 80):]

    def attend(q, k, v):
        if kind == "is_causal":
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        if kind == "short":
            return _attend_lower_right(q, k, v)
        mask = torch.ones(q.shape[2], k.shape[2], dtype=torch.bool).tril()
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)

    out, node = _pass_run(attend, q, k, v)
    assert node.decision == "skipped" and node.check in ("seq_len", "causal"), node
    assert reason in node.reason, node.reason
    assert torch.equal(out, attend(q, k, v))


def test_hf_model_continuing_from_its_kv_cache_rewrites_the_chunk():
    """A second prompt chunk over an HF DynamicCache (model(x, past_key_values=cache), as a
    chat continuation does): the positions come from the cache length, so the lower-right mask
    is built from shapes and proven; logits equal eager at tau 0. The first prefill is a whole
    one; both are rewritten."""
    transformers = pytest.importorskip("transformers")
    from transformers import masking_utils
    config = transformers.LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2,
                                      vocab_size=128, max_position_embeddings=512,
                                      attn_implementation="sdpa")
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).eval()
    g = torch.Generator().manual_seed(1)
    first, second = (torch.randint(0, 128, (1, n), generator=g) for n in (90, 70))
    backend = make_backend(PASS_CFG, inner="aot_eager")
    compiled = torch.compile(model, backend=backend)
    with pytest.MonkeyPatch.context() as mp, torch.no_grad():
        if hasattr(masking_utils, "_ignore_causal_mask_sdpa"):  # a mask for the first one too
            mp.setattr(masking_utils, "_ignore_causal_mask_sdpa", lambda *a, **k: False)
        out = compiled(first, use_cache=True)
        got = compiled(second, past_key_values=out.past_key_values, use_cache=True).logits
        ref = model(first, use_cache=True)
        expected = model(second, past_key_values=ref.past_key_values, use_cache=True).logits
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    chunk = backend.reports[-1]
    assert chunk.num_rewritten == 2, chunk
    q_shape, k_shape = chunk.nodes[0].shapes.split(" k")[:2]  # 70 queries over 90 + 70 keys
    assert ("70" in q_shape and "160" in k_shape) or "+ 90" in k_shape, chunk
