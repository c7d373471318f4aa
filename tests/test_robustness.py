"""Robustness of the package inside other people's processes and models.

Importing it twice (reloads), two models compiled with different configs in one process, a
model with eligible and ineligible SDPA calls, graph breaks between layers, no global torch
configuration changed behind the user's back, and no N x N tensor on the S2O path (CPU part:
the op's reference and the rewritten graph; the GPU's peak memory is measured separately).
"""
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

from s2o_compile import S2OConfig, make_backend, sparse_attention
from s2o_compile.passes import causal_mask

CFG = S2OConfig(threshold=0.0, segment_size=64, block_m=32, block_n=16,
                walk_chunk=32, sink_tokens=8,
                local_window=16, min_seq_len=0, stop_rule="gain")
S2O = torch.ops.s2o.sparse_attention.default


def run_python(code: str):
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                       text=True, timeout=300, env={**__import__("os").environ,
                                                     "TRITON_INTERPRET": "1"})
    assert r.returncode == 0 and "OK" in r.stdout, r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout


# --- a small model: attention layers of several kinds --------------------------------------------

class Attention(torch.nn.Module):
    """One attention layer: fused qkv projection, HF layout ([B, N, H, D] storage), GQA."""

    def __init__(self, kind, dim=128, hq=4, hkv=2, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.kind, self.hq, self.hkv, self.d = kind, hq, hkv, dim // hq
        self.qkv = torch.nn.Linear(dim, (hq + 2 * hkv) * self.d, bias=False)
        self.out = torch.nn.Linear(hq * self.d, dim, bias=False)

    def forward(self, x, attention_mask=None, memory=None, shared_mask=None):
        B, N, _ = x.shape
        q, k, v = self.qkv(x).view(B, N, -1, self.d).transpose(1, 2).split(
            [self.hq, self.hkv, self.hkv], dim=1)
        if self.kind == "causal":  # eligible
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        elif self.kind == "hf_mask":  # eligible: compiled-HF-style boolean mask from shapes
            i = torch.arange(N, device=x.device)
            mask = (i[None, :] <= i[:, None])[None, None].expand(B, 1, N, N)
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
        elif self.kind == "shared_mask":  # eligible: one mask built by the model for all layers
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=shared_mask, enable_gqa=True)
        elif self.kind == "padded":  # kept: runtime padding mask
            i = torch.arange(N, device=x.device)
            mask = (i[None, :] <= i[:, None])[None, None] & attention_mask[:, None, None, :].bool()
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
        elif self.kind == "bidirectional":  # kept: encoder-style
            o = F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
        elif self.kind == "cross":  # kept: q_len != kv_len
            _, kc, vc = self.qkv(memory).view(B, memory.shape[1], -1, self.d).transpose(
                1, 2).split([self.hq, self.hkv, self.hkv], dim=1)
            o = F.scaled_dot_product_attention(q, kc, vc, is_causal=True, enable_gqa=True)
        else:
            raise AssertionError(self.kind)
        return x + self.out(o.transpose(1, 2).reshape(B, N, -1))


class Model(torch.nn.Module):
    def __init__(self, kinds, graph_break_after=()):
        super().__init__()
        self.layers = torch.nn.ModuleList(Attention(k, seed=i) for i, k in enumerate(kinds))
        self.graph_break_after = set(graph_break_after)

    def forward(self, x, attention_mask, memory):
        B, N, _ = x.shape
        i = torch.arange(N, device=x.device)
        shared_mask = (i[None, :] <= i[:, None])[None, None].expand(B, 1, N, N)
        for i, layer in enumerate(self.layers):
            x = layer(x, attention_mask, memory, shared_mask)
            if i in self.graph_break_after:
                torch._dynamo.graph_break()
        return x


def model_inputs(B=2, N=100, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, N, 128, generator=g)
    attention_mask = torch.ones(B, N)
    attention_mask[-1, :6] = 0
    memory = torch.randn(B, 37, 128, generator=g)
    return x, attention_mask, memory


def decisions(backend):
    return [[n.check or "rewritten" for n in r.nodes] for r in backend.reports]


MIXED = ["causal", "padded", "hf_mask", "bidirectional", "cross"]


def test_model_with_eligible_and_ineligible_calls():
    model = Model(MIXED).eval()
    args = model_inputs()
    backend = make_backend(CFG, inner="aot_eager")
    with torch.no_grad():
        out = torch.compile(model, backend=backend)(*args)
        ref = model(*args)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    assert decisions(backend) == [["rewritten", "causal", "rewritten", "causal", "seq_len"]]


def test_graph_breaks_between_layers_inductor():
    """Every layer in its own graph; each graph rewritten or kept on its own; Inductor compiles
    the rewritten graphs (including the layout copy for the [B, N, H, D] output)."""
    model = Model(["causal", "padded", "hf_mask"], graph_break_after=(0, 1)).eval()
    args = model_inputs(seed=1)
    backend = make_backend(CFG, inner="inductor")
    with torch.no_grad():
        out = torch.compile(model, backend=backend)(*args)
        ref = model(*args)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    assert decisions(backend) == [["rewritten"], ["causal"], ["rewritten"]]


def test_grad_mode_keeps_every_call_and_backward_works():
    model = Model(["causal", "hf_mask"]).train()
    args = model_inputs(seed=2)
    backend = make_backend(CFG, inner="aot_eager")
    out = torch.compile(model, backend=backend)(*args)
    out.sum().backward()
    assert all(check == "inference" for r in decisions(backend) for check in r)
    assert model.layers[0].qkv.weight.grad is not None


@pytest.mark.parametrize("where", ["around", "inside"])
def test_autocast_calls_keep_sdpa_dtype(where):
    """Under autocast SDPA runs in bfloat16 on float32 inputs; the op has no autocast rule and
    would return float32: the call is kept (same dtype and values as plain torch.compile)."""
    def attend(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)

    def attend_autocast(q, k, v):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return attend(q, k, v)

    fn = attend if where == "around" else attend_autocast
    g = torch.Generator().manual_seed(8)
    q, k, v = (torch.randn(1, h, 70, 32, generator=g) for h in (4, 2, 2))
    backend = make_backend(CFG, inner="aot_eager")
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=where == "around"):
        out = torch.compile(fn, backend=backend)(q, k, v)
        torch._dynamo.reset()
        plain = torch.compile(fn, backend="aot_eager")(q, k, v)
    assert out.dtype == plain.dtype == torch.bfloat16
    assert torch.equal(out, plain)
    assert decisions(backend) == [["dtype"]]
    assert "autocast" in backend.reports[0].nodes[0].reason


def test_two_configs_in_one_process():
    """Two models (and one function) compiled with different configs: each gets its own op
    arguments, Inductor's caches do not mix them, and recompiling one leaves the other alone."""
    exact, sparse = CFG, CFG.replace(threshold=0.3, stop_rule="remaining")

    def attend(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)

    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(1, h, 300, 32, generator=g) for h in (4, 2, 2))
    b_exact, b_sparse = make_backend(exact), make_backend(sparse)  # Inductor
    f_exact = torch.compile(attend, backend=b_exact)
    f_sparse = torch.compile(attend, backend=b_sparse)
    for _ in range(2):  # alternate: each call must hit its own compiled code
        o_exact, o_sparse = f_exact(q, k, v), f_sparse(q, k, v)
        torch.testing.assert_close(o_exact, attend(q, k, v), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(
            o_sparse, sparse_attention(q, k, v, enable_gqa=True, config=sparse),
            rtol=1e-5, atol=1e-5)
        assert (o_sparse - o_exact).abs().max() > 1e-3  # the sparse config really ran sparse
    assert [r.num_rewritten for r in b_exact.reports] == [1]
    assert [r.num_rewritten for r in b_sparse.reports] == [1]

    m_exact, m_sparse = Model(["causal"]).eval(), Model(["causal"]).eval()
    m_sparse.load_state_dict(m_exact.state_dict())
    args = model_inputs(N=300, seed=4)
    with torch.no_grad():
        a = torch.compile(m_exact, backend=make_backend(exact, inner="aot_eager"))(*args)
        b = torch.compile(m_sparse, backend=make_backend(sparse, inner="aot_eager"))(*args)
        torch.testing.assert_close(a, m_exact(*args), rtol=1e-4, atol=1e-4)
        assert (a - b).abs().max() > 1e-4


def test_importing_twice_and_reloading():
    run_python("""
        import importlib, sys, torch, torch.nn.functional as F
        import s2o_compile
        import s2o_compile as again
        assert again is s2o_compile
        for m in ("s2o_compile.ops", "s2o_compile.passes.sdpa_rewrite", "s2o_compile.backend",
                  "s2o_compile"):
            importlib.reload(sys.modules[m])
        from torch._dynamo.backends.registry import lookup_backend
        assert lookup_backend("s2o") is s2o_compile.s2o_backend
        cfg = s2o_compile.S2OConfig(threshold=0.0, segment_size=64, block_m=32, block_n=16,
                                    walk_chunk=32,
                                    sink_tokens=8, local_window=16, min_seq_len=0)
        # A fresh process's first multi-threaded CPU ops (here inside the compiled call) read
        # ~1e-4 off in float32 in about 1 run of 12 (torch 2.13, 2 threads; rows of one
        # segment of one head): none in 40 runs after this warm-up, none with one thread.
        (torch.randn(256, 256) @ torch.randn(256, 256)).exp().sum()
        g = torch.Generator().manual_seed(5)
        q, k, v = (torch.randn(1, 2, 100, 32, generator=g) for _ in range(3))
        f = lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True)
        backend = s2o_compile.make_backend(cfg, inner="aot_eager")
        out = torch.compile(f, backend=backend)(q, k, v)
        assert backend.reports[0].num_rewritten == 1
        # The reloaded op is the one the graph calls: the same bits as the eager front end.
        torch.testing.assert_close(out, s2o_compile.sparse_attention(q, k, v, config=cfg),
                                   rtol=0, atol=0)
        # And tau 0 is dense attention (a wrong result is far off 1e-3).
        torch.testing.assert_close(out, f(q, k, v), rtol=1e-3, atol=1e-3)
        print("OK")
    """)


def test_no_global_torch_configuration_is_changed():
    """Import, compile through every entry point (backend by name, make_backend with Inductor,
    explain, the Inductor pass under config.patch), run: torch's global state is as before."""
    run_python("""
        import logging, os, warnings
        import torch, torch.nn.functional as F

        def state():
            b = torch.backends
            s = {
                "dynamo": torch._dynamo.config.get_config_copy(),
                "inductor": {k: repr(v) for k, v in
                             torch._inductor.config.get_config_copy().items()},
                "functorch": torch._functorch.config.get_config_copy(),
                "flags": (b.cuda.matmul.allow_tf32, b.cudnn.allow_tf32, b.cudnn.benchmark,
                          b.cudnn.deterministic, b.cudnn.enabled, b.mkldnn.enabled,
                          torch.get_float32_matmul_precision(),
                          b.cuda.flash_sdp_enabled(), b.cuda.mem_efficient_sdp_enabled(),
                          b.cuda.math_sdp_enabled(), b.cuda.cudnn_sdp_enabled()),
                "torch": (torch.get_default_dtype(), torch.is_grad_enabled(),
                          torch.are_deterministic_algorithms_enabled(),
                          torch.is_inference_mode_enabled(), torch.get_num_threads(),
                          torch.get_default_device()),
                "sdpa kernels": torch._C._dispatch_dump("aten::scaled_dot_product_attention"),
                "env": dict(os.environ),
                "logging": {n: (logging.getLogger(n).level, len(logging.getLogger(n).handlers))
                            for n in ("", "torch", "torch._dynamo", "torch._inductor",
                                      "s2o_compile")},
                "warnings": len(warnings.filters),
            }
            from torch._dynamo.backends.registry import list_backends
            s["backends"] = sorted(set(list_backends(exclude_tags=())) - {"s2o"})
            return s

        before = state()
        import s2o_compile
        from s2o_compile import S2OConfig, S2OInductorPass, explain, make_backend
        cfg = S2OConfig(threshold=0.0, segment_size=64, block_m=32, block_n=16,
                        walk_chunk=32, sink_tokens=8,
                        local_window=16, min_seq_len=0)
        q, k, v = (torch.randn(1, 2, 100, 32) for _ in range(3))
        f = lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True)
        with torch.no_grad():
            torch.compile(f, backend="s2o")(q, k, v)
            torch._dynamo.reset()
            torch.compile(f, backend=make_backend(cfg))(q, k, v)
            torch._dynamo.reset()
            explain(f, q, k, v, config=cfg)
            torch._dynamo.reset()
            with torch._inductor.config.patch(pre_grad_custom_pass=S2OInductorPass(cfg)):
                torch.compile(f)(q, k, v)
            s2o_compile.sparse_attention(q, k, v, config=cfg)
        after = state()
        for key in before:
            if before[key] != after[key]:
                if isinstance(before[key], dict):
                    diff = {k: (before[key].get(k), after[key].get(k))
                            for k in set(before[key]) | set(after[key])
                            if before[key].get(k) != after[key].get(k)}
                else:
                    diff = (before[key], after[key])
                raise AssertionError(f"{key} changed: {diff}")
        print("OK")
    """)


# --- memory: no N x N tensor on the S2O path (CPU) -----------------------------------------------

N_MEM = 512


def largest_allocation(fn) -> tuple[int, str]:
    """(bytes, op) of the largest single CPU allocation made while fn runs, nested ops included
    (the profiler sees the allocator, also inside custom ops and compiled code)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                profile_memory=True) as prof:
        fn()
    return max(((e.self_cpu_memory_usage, e.name) for e in prof.events()), default=(0, ""))


def test_op_allocates_no_n_by_n_tensor():
    """The op's largest allocation is q-sized; dense SDPA's math backend (the sanity check of
    the measurement) allocates the N x N scores."""
    g = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(1, h, N_MEM, 32, generator=g) for h in (2, 1, 1))
    n_by_n = N_MEM * N_MEM * q.element_size()
    size, op = largest_allocation(lambda: sparse_attention(q, k, v, enable_gqa=True, config=CFG))
    assert size < n_by_n // 4, (size, op)
    with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH):
        size, _ = largest_allocation(lambda: F.scaled_dot_product_attention(
            q, k, v, is_causal=True, enable_gqa=True))
    assert size >= n_by_n


def test_rewritten_graph_holds_no_n_by_n_tensor():
    """The HF-style mask ([B, 1, N, N]) and everything feeding only it leave the graph with the
    rewrite, and running the rewritten graph allocates no N x N scores."""
    captured = []

    def keep(gm, example_inputs):
        captured.append((gm, example_inputs))
        return gm.forward

    model = Model(["shared_mask"]).eval()
    backend = make_backend(CFG, inner=keep)
    with torch.no_grad():
        torch.compile(model, backend=backend)(*model_inputs(B=1, N=N_MEM, seed=6))
    assert decisions(backend) == [["rewritten"]]
    ((gm, example_inputs),) = captured
    for node in gm.graph.nodes:
        val = node.meta.get("example_value")
        if isinstance(val, torch.Tensor):
            assert val.numel() < N_MEM * N_MEM, (node.name, node.target, tuple(val.shape))
    with torch.no_grad():
        size, op = largest_allocation(lambda: gm(*example_inputs))
    assert size < N_MEM * N_MEM * 4, (size, op)


def test_mask_proof_runs_once_per_graph():
    """Compile time: proving a static mask causal evaluates it once at the traced size (O(N^2)
    on the graph's device, as the un-rewritten model would build it at every call), and the
    proof is shared by all layers that read the same mask, as HF's do."""
    evaluated = []
    real = causal_mask._lower_triangle

    def spy(m, n, s):
        evaluated.append(tuple(m.shape))
        return real(m, n, s)

    model = Model(["shared_mask"] * 3).eval()
    backend = make_backend(CFG, inner="eager")
    with pytest.MonkeyPatch.context() as mp, torch.no_grad():
        mp.setattr(causal_mask, "_lower_triangle", spy)
        torch.compile(model, backend=backend)(*model_inputs(N=200, seed=7))
    assert decisions(backend) == [["rewritten"] * 3]
    assert evaluated == [(2, 1, 200, 200)]
