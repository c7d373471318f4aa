"""The torch.compile backend ("s2o", make_backend), its registration, and the Inductor pass."""
import subprocess
import sys
from importlib.metadata import entry_points

import pytest
import torch
import torch.nn.functional as F

from conftest import PASS_CFG
import s2o_compile
from s2o_compile import S2OConfig, S2OInductorPass, make_backend
from s2o_compile import backend as backend_module

CFG = PASS_CFG
S2O = torch.ops.s2o.sparse_attention.default
SDPA = torch._C._nn.scaled_dot_product_attention


def qkv(B=2, Hq=4, Hkv=2, N=96, D=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(B, h, N, D, generator=g) for h in (Hq, Hkv, Hkv))


def three_calls(q, k, v, attention_mask):
    """One eligible call, one padded (kept), one non-causal (kept)."""
    n = q.shape[2]
    i = torch.arange(n, device=q.device)
    padded = (i[None, :] <= i[:, None])[None, None] & attention_mask[:, None, None, :].bool()
    a = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    b = F.scaled_dot_product_attention(q, k, v, attn_mask=padded, enable_gqa=True)
    c = F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
    return a + 2 * b + 3 * c


def inputs(seed=0):
    q, k, v = qkv(seed=seed)
    attention_mask = torch.ones(2, q.shape[2])
    attention_mask[1, :7] = 0
    return q, k, v, attention_mask


def decisions(report):
    return [(n.decision, n.check) for n in report.nodes]


EXPECTED = [("rewritten", None), ("skipped", "causal"), ("skipped", "causal")]


def test_backend_by_name_compiles_with_inductor_and_keeps_short_sequences():
    """backend="s2o" has the default config: at N below min_seq_len (16384) every call stays
    SDPA. The eligible call says so; the others give their own reason, which lowering
    min_seq_len would not lift."""
    args = inputs(seed=1)
    before = len(s2o_compile.s2o_backend.reports)
    out = torch.compile(three_calls, backend="s2o")(*args)
    torch.testing.assert_close(out, three_calls(*args), rtol=1e-4, atol=1e-4)
    (report,) = s2o_compile.s2o_backend.reports[before:]
    assert decisions(report) == [("skipped", "min_seq_len"), ("skipped", "causal"),
                                 ("skipped", "causal")], report
    assert f"min_seq_len={S2OConfig().min_seq_len}" in report.nodes[0].reason


def test_inner_aot_eager_matches_at_tau0():
    backend = make_backend(CFG, inner="aot_eager")
    args = inputs(seed=2)
    out = torch.compile(three_calls, backend=backend)(*args)
    torch.testing.assert_close(out, three_calls(*args), rtol=1e-5, atol=1e-5)
    assert [decisions(r) for r in backend.reports] == [EXPECTED]


def test_compiled_model_really_runs_sparse_s2o():
    """With a large threshold the walk stops early: the output moves away from dense SDPA (so the
    op ran, with this config), but stays close."""
    def attend(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)

    q, k, v = qkv(N=512, seed=7)
    out = torch.compile(attend, backend=make_backend(CFG.replace(threshold=0.1), inner="eager"))(
        q, k, v)
    rel = ((out - attend(q, k, v)).norm() / attend(q, k, v).norm()).item()
    assert 1e-3 < rel < 0.5, rel  # ~0 would mean dense ran; ~1 would mean garbage


def test_inner_callable_sees_the_rewritten_graph():
    seen = []

    def inner(gm, example_inputs):
        seen.append([n.target for n in gm.graph.nodes if n.op == "call_function"])
        return gm.forward

    backend = make_backend(CFG, inner=inner)
    args = inputs(seed=3)
    torch.testing.assert_close(torch.compile(three_calls, backend=backend)(*args),
                               three_calls(*args), rtol=1e-5, atol=1e-5)
    (targets,) = seen
    assert targets.count(S2O) == 1 and targets.count(SDPA) == 2


def test_one_report_per_graph():
    def broken(q, k, v):
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        torch._dynamo.graph_break()
        return a + F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)

    backend = make_backend(CFG, inner="eager")
    q, k, v = qkv(seed=4)
    torch.testing.assert_close(torch.compile(broken, backend=backend)(q, k, v), broken(q, k, v),
                               rtol=1e-5, atol=1e-5)
    assert [r.num_rewritten for r in backend.reports] == [1, 1]


def test_symfloat_scale_under_dynamic_shapes():
    """A float attribute becomes a SymFloat (.item() node) under dynamic=True. It is passed to the
    op as is; AOT cannot keep a SymFloat for a custom op's float argument, so Dynamo restarts with
    the float specialized. No crash, one report for the graph that was compiled, correct numbers."""
    class Scaled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = 0.3

        def forward(self, x):
            B, N, _ = x.shape
            q, k, v = x.view(B, N, 8, 16).transpose(1, 2).split([4, 2, 2], dim=1)
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True,
                                                  scale=self.scale)

    model, backend = Scaled(), make_backend(CFG, inner="aot_eager")
    compiled = torch.compile(model, backend=backend, dynamic=True)
    for n in (96, 71):
        x = torch.randn(2, n, 128, generator=torch.Generator().manual_seed(n))
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-5, atol=1e-5)
    assert len(backend.reports) == 1 and backend.reports[0].num_rewritten == 1


def test_rewrite_crash_compiles_the_graph_unchanged(monkeypatch):
    def boom(gm, config):
        raise RuntimeError("pass exploded")

    monkeypatch.setattr(backend_module, "rewrite_sdpa", boom)
    backend = make_backend(CFG, inner="eager")
    args = inputs(seed=5)
    torch.testing.assert_close(torch.compile(three_calls, backend=backend)(*args),
                               three_calls(*args))
    (report,) = backend.reports
    assert report.nodes[0].check == "analysis_error" and "pass exploded" in report.nodes[0].reason


def test_bad_arguments():
    with pytest.raises(TypeError):
        make_backend(config={"threshold": 0.0})
    with pytest.raises(ValueError):
        make_backend(inner="s2o")
    with pytest.raises(TypeError):
        make_backend(inner=3)


# --- registration ---------------------------------------------------------------------------------

def test_name_is_registered_once_whatever_the_order():
    from torch._dynamo.backends.registry import list_backends, lookup_backend

    backend_module.register()  # importing twice / registering again is harmless
    backend_module.register()
    assert lookup_backend("s2o") is s2o_compile.s2o_backend
    assert "s2o" in list_backends()


def _run(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_import_registers_without_the_entry_point():
    # Dynamo has not discovered entry points yet; importing s2o_compile alone provides the name.
    r = _run("import s2o_compile\n"
             "from torch._dynamo.backends import registry\n"
             "assert registry._discover_entrypoint_backends.cache_info().currsize == 0\n"
             "assert registry.lookup_backend('s2o') is s2o_compile.s2o_backend\n"
             "print('ok')")
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr


@pytest.mark.skipif("s2o" not in entry_points(group="torch_dynamo_backends").names,
                    reason="package not installed (pip install -e .)")
def test_entry_point_first_then_import():
    # Loading through the entry point imports s2o_compile while Dynamo registers: no duplicate.
    r = _run("import torch\n"
             "from torch._dynamo.backends.registry import lookup_backend\n"
             "fn = lookup_backend('s2o')\n"
             "import s2o_compile, importlib\n"
             "importlib.reload(s2o_compile)\n"
             "assert lookup_backend('s2o') is fn\n"
             "print('ok')")
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr


# --- Inductor pre-grad pass -----------------------------------------------------------------------

def test_inductor_pass_makes_the_same_rewrites_as_the_backend():
    received = []

    class Spy(S2OInductorPass):
        def __call__(self, graph):
            received.append(type(graph))
            super().__call__(graph)

    spy, backend = Spy(CFG), make_backend(CFG, inner="eager")
    args = inputs(seed=6)
    with torch._inductor.config.patch(pre_grad_custom_pass=spy, fx_graph_cache=False):
        out = torch.compile(three_calls)(*args)
    torch.testing.assert_close(out, three_calls(*args), rtol=1e-4, atol=1e-4)
    torch._dynamo.reset()
    torch.compile(three_calls, backend=backend)(*args)
    assert received == [torch.fx.Graph]  # pre-grad passes get the Graph, not the GraphModule
    assert [decisions(r) for r in spy.reports] == [decisions(r) for r in backend.reports]
    assert [decisions(r) for r in spy.reports] == [EXPECTED]


def test_inductor_pass_uuid_follows_config():
    a, b = S2OInductorPass(CFG), S2OInductorPass(CFG)
    assert a.uuid() == b.uuid() and len(a.uuid()) == 64
    assert S2OInductorPass(CFG.replace(threshold=1e-3)).uuid() != a.uuid()
