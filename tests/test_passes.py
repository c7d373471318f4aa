"""rewrite_sdpa on Dynamo and torch.export graphs: each eligibility branch, GQA, dead code."""
import logging
import operator

import pytest
import torch
import torch.nn.functional as F
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.export import Dim

from conftest import PASS_CFG
from s2o_compile import make_backend, rewrite_sdpa
from s2o_compile.passes import sdpa_rewrite

CFG = PASS_CFG
S2O = torch.ops.s2o.sparse_attention.default
SDPA = torch._C._nn.scaled_dot_product_attention


def qkv(B=2, Hq=4, Hkv=2, N=100, D=16, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(B, h, N, D, generator=g, dtype=dtype) for h in (Hq, Hkv, Hkv))


def from_hidden(attend, Hq=4, Hkv=2, D=16):
    """attend(q, k, v) fed from one [B, N, (Hq + 2 Hkv) D] tensor, like a real attention layer:
    marked dynamic in N, q, k and v share one length symbol while heads and head dim stay static."""
    def layer(x):
        B, N, _ = x.shape
        q, k, v = x.view(B, N, Hq + 2 * Hkv, D).transpose(1, 2).split([Hq, Hkv, Hkv], dim=1)
        return attend(q, k, v)
    return layer


def from_hidden_with(attend, Hq=4, Hkv=2, D=16):
    """from_hidden for attend(q, k, v, extra)."""
    def layer(x, extra):
        B, N, _ = x.shape
        q, k, v = x.view(B, N, Hq + 2 * Hkv, D).transpose(1, 2).split([Hq, Hkv, Hkv], dim=1)
        return attend(q, k, v, extra)
    return layer


def hidden(N, B=2, seed=0, heads=8, D=16):
    x = torch.randn(B, N, heads * D, generator=torch.Generator().manual_seed(seed))
    torch._dynamo.mark_dynamic(x, 1)
    return x


def rewritten_run(fn, *args):
    """Compile fn with a backend that applies rewrite_sdpa and runs the graph eagerly.

    Returns (output, report of the last graph, the rewritten GraphModule)."""
    reports, graphs = [], []

    def backend(gm, example_inputs):
        reports.append(rewrite_sdpa(gm, CFG))
        graphs.append(gm)
        return gm.forward

    out = torch.compile(fn, backend=backend, fullgraph=True)(*args)
    return out, reports[-1], graphs[-1]


def targets(gm):
    return [n.target for n in gm.graph.nodes if n.op in ("call_function", "call_method")]


def only(report):
    assert len(report.nodes) == 1, report
    return report.nodes[0]


def assert_rewritten(fn, *args, **kw):
    out, report, gm = rewritten_run(fn, *args, **kw)
    node = only(report)
    assert node.rewritten and node.check is None, report
    assert S2O in targets(gm) and SDPA not in targets(gm)
    torch.testing.assert_close(out, fn(*args), rtol=1e-5, atol=1e-5)
    return node, gm


def assert_skipped(fn, *args, check, reason, **kw):
    out, report, gm = rewritten_run(fn, *args, **kw)
    node = only(report)
    assert node.decision == "skipped" and node.check == check, report
    assert reason in node.reason, node.reason
    assert S2O not in targets(gm) and SDPA in targets(gm)
    return node


# --- toy attention calls ------------------------------------------------------------------------

def repeat_kv(x, n_rep):
    """HF's repeat_kv: [B, Hkv, N, D] -> [B, Hkv * n_rep, N, D]."""
    b, h, n, d = x.shape
    return x[:, :, None, :, :].expand(b, h, n_rep, n, d).reshape(b, h * n_rep, n, d)


def causal_bool(n, device):
    i = torch.arange(n, device=device)
    return i[None, :] <= i[:, None]


def is_causal_call(q, k, v):
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


def native_gqa(q, k, v):
    return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)


def hf_compiled_style(q, k, v):
    """What compiled HF Llama does: a bool [B, 1, N, N] mask from shapes and repeat_kv."""
    b, n = q.shape[0], q.shape[2]
    mask = causal_bool(n, q.device)[None, None].expand(b, 1, n, n)
    n_rep = q.shape[1] // k.shape[1]
    return F.scaled_dot_product_attention(q, repeat_kv(k, n_rep), repeat_kv(v, n_rep),
                                          attn_mask=mask, scale=0.3)


def tril_mask(q, k, v):
    n = q.shape[2]
    mask = torch.ones(n, n, dtype=torch.bool, device=q.device).tril()
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)


def padded(q, k, v, attention_mask):
    n = q.shape[2]
    mask = causal_bool(n, q.device)[None, None] & attention_mask[:, None, None, :].bool()
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)


def additive(masked_value, bias=0.0):
    """An additive float mask: masked_value above the diagonal, bias x distance on and below."""
    def attend(q, k, v):
        n = q.shape[2]
        i = torch.arange(n, device=q.device)
        mask = (bias * (i[None, :] - i[:, None])).to(q.dtype).masked_fill(
            ~causal_bool(n, q.device), masked_value)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
    return attend


def hf_float_causal(q, k, v):
    """The float mask older HF code builds: finfo.min above the diagonal, 0 elsewhere."""
    n = q.shape[2]
    mask = torch.full((n, n), torch.finfo(q.dtype).min, device=q.device).triu(1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask[None, None], enable_gqa=True)


def sliding(window):
    def attend(q, k, v):
        i = torch.arange(q.shape[2], device=q.device)
        mask = (i[None, :] <= i[:, None]) & (i[:, None] - i[None, :] < window)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
    return attend


def chunked(chunk):
    def attend(q, k, v):
        i = torch.arange(q.shape[2], device=q.device)
        mask = (i[None, :] <= i[:, None]) & (i[:, None] // chunk == i[None, :] // chunk)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
    return attend


def mutated_mask(q, k, v):
    n = q.shape[2]
    mask = torch.ones(n, n, dtype=torch.bool, device=q.device).tril()
    mask[n - 1, 0] = False
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)


class BufferMask(torch.nn.Module):
    """GPT-2 style: the causal mask is a registered buffer, i.e. runtime data."""

    def __init__(self, n_max=256):
        super().__init__()
        self.register_buffer("bias", torch.ones(n_max, n_max, dtype=torch.bool).tril())

    def forward(self, q, k, v):
        n = q.shape[2]
        return F.scaled_dot_product_attention(q, k, v, attn_mask=self.bias[:n, :n],
                                              enable_gqa=True)


# --- rewritten ----------------------------------------------------------------------------------

def test_is_causal_mha_is_rewritten():
    assert_rewritten(is_causal_call, *qkv(Hq=4, Hkv=4, seed=1))


def test_native_gqa_keeps_kv_heads():
    q, k, v = qkv(seed=2)
    _, gm = assert_rewritten(native_gqa, q, k, v)
    (call,) = [n for n in gm.graph.nodes if n.target is S2O]
    assert call.args[1].meta["example_value"].shape[1] == 2  # un-repeated K: native GQA
    assert call.args[3] == pytest.approx(16 ** -0.5)  # SDPA's default scale, made explicit


def test_one_kv_head_broadcast_without_enable_gqa_is_rewritten():
    """Multi-query attention that lets SDPA broadcast the one K/V head (HF Falcon does)."""
    q, k, v = qkv(Hq=4, Hkv=1, seed=23)
    _, gm = assert_rewritten(is_causal_call, q, k, v)
    (call,) = [n for n in gm.graph.nodes if n.target is S2O]
    assert call.args[1].meta["example_value"].shape[1] == 1


def test_hf_style_mask_and_repeat_kv_are_unwrapped_and_removed():
    q, k, v = qkv(seed=3)
    node, gm = assert_rewritten(hf_compiled_style, q, k, v)
    (call,) = [n for n in gm.graph.nodes if n.target is S2O]
    assert call.args[1].meta["example_value"].shape[1] == 2 and call.args[3] == 0.3
    # dead code removed: no mask subgraph, no repeat_kv left
    left = targets(gm)
    for gone in (torch.arange, operator.le, "expand", "reshape"):
        assert gone not in left, (gone, gm.code)
    assert "mask[2,1,100,100]" in node.shapes and "test_passes.py" in node.location


def test_output_keeps_sdpa_layout_for_views_downstream():
    """SDPA's output follows the query layout; HF-style [B, N, H, D] storage lets code .view() the
    transposed output. The rewrite restores that layout (the op itself returns contiguous)."""
    def attend_then_view(x):
        B, N, _ = x.shape
        q, k, v = x.view(B, N, 8, 16).transpose(1, 2).split([4, 2, 2], dim=1)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        return o, o.transpose(1, 2).view(B, N, 64)

    x = torch.randn(2, 100, 128, generator=torch.Generator().manual_seed(30))
    (o, flat), report, gm = rewritten_run(attend_then_view, x)
    assert only(report).rewritten
    o_ref, flat_ref = attend_then_view(x)
    assert o.stride() == o_ref.stride() != o.contiguous().stride()
    torch.testing.assert_close(flat, flat_ref, rtol=1e-5, atol=1e-5)


def test_tril_mask_is_rewritten():
    assert_rewritten(tril_mask, *qkv(seed=4))


def test_dynamic_mask_is_proven_at_two_sizes_and_runs_at_both():
    reports = []

    def backend(gm, example_inputs):
        reports.append(rewrite_sdpa(gm, CFG))
        return gm.forward

    layer = from_hidden(hf_compiled_style)
    compiled = torch.compile(layer, backend=backend)
    for n in (100, 77):
        x = hidden(n, seed=n)
        torch.testing.assert_close(compiled(x), layer(x), rtol=1e-5, atol=1e-5)
    assert len(reports) == 1 and only(reports[0]).rewritten, reports
    assert "mask[2,1,s" in only(reports[0]).shapes  # proven for a symbolic length


def test_export_graph_is_rewritten_and_runs():
    class M(torch.nn.Module):
        def forward(self, x):
            return from_hidden(hf_compiled_style)(x).transpose(1, 2)

    # Dim.DYNAMIC: a named Dim trips an export constraint check on torch 2.11
    ep = torch.export.export(M(), (hidden(100, seed=5),), dynamic_shapes=({1: Dim.DYNAMIC},))
    assert "sym_size" in ep.graph_module.code  # the mask is built from a symbolic size
    report = rewrite_sdpa(ep.graph_module, CFG)
    assert only(report).rewritten, report
    code = ep.graph_module.code
    assert "s2o.sparse_attention" in code and "scaled_dot_product_attention" not in code
    assert "expand" not in code and "arange" not in code
    for n in (100, 57):
        x = hidden(n, seed=n)
        torch.testing.assert_close(ep.module()(x), M()(x), rtol=1e-5, atol=1e-5)


def test_rewrite_is_logged(caplog):
    with caplog.at_level(logging.INFO, logger="s2o_compile"):
        rewritten_run(native_gqa, *qkv(seed=6))
    assert any("rewrote" in r.getMessage() and r.name == "s2o_compile" for r in caplog.records)


# --- skipped ------------------------------------------------------------------------------------

def test_padding_mask_is_skipped():
    q, k, v = qkv(seed=7)
    attention_mask = torch.ones(2, 100, dtype=torch.long)
    attention_mask[0, :5] = 0
    node = assert_skipped(padded, q, k, v, attention_mask, check="causal", reason="data of input")
    assert "mask[" in node.shapes


@pytest.mark.parametrize("attend", [additive(float("-inf")), additive(-1e4), hf_float_causal],
                         ids=["-inf", "-1e4", "finfo.min"])
def test_additive_causal_mask_is_rewritten(attend):
    assert_rewritten(attend, *qkv(seed=8))


@pytest.mark.parametrize("attend", [additive(float("-inf"), bias=0.1), additive(-1e3)],
                         ids=["alibi-like bias", "-1e3 masks too little"])
def test_other_additive_masks_are_skipped(attend):
    node = assert_skipped(attend, *qkv(seed=8), check="causal", reason="additive bias")
    assert "<= -10000 off it" in node.reason


def test_sliding_window_is_skipped():
    assert_skipped(sliding(16), *qkv(seed=9), check="causal",
                   reason="not the causal lower triangle")


def test_chunked_mask_is_skipped():
    assert_skipped(chunked(32), *qkv(seed=10), check="causal",
                   reason="not the causal lower triangle")


def test_wide_window_static_graph_is_exact_at_its_only_size():
    # window 200 > N = 100: at the one size a static graph runs, the mask is the lower triangle
    assert_rewritten(sliding(200), *qkv(seed=11))


def test_wide_window_dynamic_graph_is_skipped():
    # the larger evaluation size exceeds the constant 200 and exposes the window
    node = assert_skipped(from_hidden(sliding(200)), hidden(100, seed=12), check="causal",
                          reason="not the causal lower triangle at size 402")
    assert "mask[s" in node.shapes


def test_mask_written_in_place_is_skipped():
    assert_skipped(mutated_mask, *qkv(seed=13), check="causal", reason="modified in place")


def test_mask_from_buffer_is_skipped():
    assert_skipped(BufferMask(), *qkv(seed=14), check="causal", reason="data of input")


def test_non_causal_is_skipped():
    def full(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, enable_gqa=True)

    assert_skipped(full, *qkv(seed=15), check="causal", reason="non-causal")


def test_dropout_is_skipped():
    def drop(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=0.1,
                                              enable_gqa=True)

    assert_skipped(drop, *qkv(seed=16), check="inference", reason="dropout_p=0.1")


def test_inputs_requiring_grad_are_skipped():
    q, k, v = qkv(seed=17)
    q.requires_grad_(True)
    assert_skipped(native_gqa, q, k, v, check="inference", reason="require grad")


def test_decode_step_is_skipped():
    q, _, _ = qkv(N=1, seed=18)
    _, k, v = qkv(N=50, seed=19)

    def decode(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, enable_gqa=True)

    assert_skipped(decode, q, k, v, check="seq_len", reason="q_len 1 != kv_len 50")


def test_float64_is_skipped():
    assert_skipped(native_gqa, *qkv(dtype=torch.float64, seed=20), check="dtype",
                   reason="torch.float64")


def test_value_head_dim_differs_is_skipped():
    q, k, _ = qkv(seed=21)
    v = torch.randn(2, 2, 100, 32)
    assert_skipped(native_gqa, q, k, v, check="head_dim", reason="head dims differ")


def test_3d_inputs_are_skipped():
    q, k, v = (x.flatten(0, 1) for x in qkv(Hkv=4, seed=22))
    assert_skipped(is_causal_call, q, k, v, check="rank", reason="4-D")


def test_gqa_heads_not_multiple_are_skipped():
    """A hand-built ATen graph (SDPA itself would refuse these shapes)."""
    g = torch.fx.Graph()
    q, k, v = (g.placeholder(name) for name in "qkv")
    call = g.call_function(torch.ops.aten.scaled_dot_product_attention.default, (q, k, v),
                           {"is_causal": True, "enable_gqa": True})
    g.output(call)
    with FakeTensorMode():
        q.meta["val"] = torch.empty(1, 4, 64, 16)
        k.meta["val"] = v.meta["val"] = torch.empty(1, 3, 64, 16)
        call.meta["val"] = torch.empty(1, 4, 64, 16)
    report = rewrite_sdpa(torch.fx.GraphModule(torch.nn.Module(), g), CFG)
    assert only(report).check == "gqa" and "not a multiple" in only(report).reason


def test_analysis_error_skips_the_node_and_the_graph_still_runs(monkeypatch, caplog):
    def broken(*args):
        raise RuntimeError("boom")

    monkeypatch.setattr(sdpa_rewrite, "prove_causal", broken)
    q, k, v = qkv(seed=23)
    with caplog.at_level(logging.WARNING, logger="s2o_compile"):
        out, report, _ = rewritten_run(hf_compiled_style, q, k, v)
    node = only(report)
    assert node.check == "analysis_error" and "RuntimeError: boom" in node.reason
    assert "analysis_error: RuntimeError: boom" in str(report)
    assert any("boom" in r.getMessage() for r in caplog.records)
    torch.testing.assert_close(out, hf_compiled_style(q, k, v))


def test_report_lists_every_call_in_order():
    def two(q, k, v, attention_mask):
        return native_gqa(q, k, v) + padded(q, k, v, attention_mask)

    q, k, v = qkv(seed=24)
    out, report, _ = rewritten_run(two, q, k, v, torch.ones(2, 100))
    assert report.reasons() == [None, "causal"] and report.num_rewritten == 1
    assert "1 of 2 SDPA call(s) rewritten" in str(report)
    torch.testing.assert_close(out, two(q, k, v, torch.ones(2, 100)), rtol=1e-5, atol=1e-5)


def test_mask_with_a_runtime_int_window_is_skipped():
    """First graph: window 1000 is a constant, exposed at the larger size 2 * 1000 + 2. After the
    window changes it becomes a symbol (automatic dynamic), i.e. runtime data: kept as well."""
    def attend(q, k, v, window):
        i = torch.arange(q.shape[2], device=q.device)
        mask = (i[None, :] <= i[:, None]) & (i[:, None] - i[None, :] < window)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)

    reports = []

    def backend(gm, example_inputs):
        reports.append(rewrite_sdpa(gm, CFG))
        return gm.forward

    compiled = torch.compile(from_hidden_with(attend), backend=backend)
    for window in (1000, 3, 5):
        x = hidden(60, seed=window)
        torch.testing.assert_close(compiled(x, window), from_hidden_with(attend)(x, window),
                                   rtol=1e-5, atol=1e-5)
    first, second = reports
    assert only(first).check == "causal" and "at size 2002" in only(first).reason
    assert only(second).check == "causal" and "not the causal lower triangle" in only(second).reason


def test_mask_broadcasting_the_batch_is_skipped():
    """A [2, 1, N, N] mask with a batch-1 query: SDPA's output takes the mask's batch. (Eager
    SDPA refuses this; compiled SDPA computes it, hence aot_eager here.)"""
    def attend(q, k, v):
        n = q.shape[2]
        mask = torch.ones(n, n, dtype=torch.bool, device=q.device).tril().expand(2, 1, n, n)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)

    backend, q, k, v = make_backend(CFG, inner="aot_eager"), *qkv(B=1, seed=31)
    out = torch.compile(attend, backend=backend)(q, k, v)
    torch._dynamo.reset()
    assert torch.equal(out, torch.compile(attend, backend="aot_eager")(q, k, v))
    node = only(backend.reports[0])
    assert node.check == "rank" and "broadcast" in node.reason and out.shape[0] == 2
