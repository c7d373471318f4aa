"""The walk's kernel choice (kernels/walk.py) and the Gluon pair kernel (kernels/gluon_pair.py).

On the CPU: which calls the pair kernel takes and why not, the fallback to the Triton kernel
when a first pair launch fails, and the traced op's fake shapes. On a Hopper GPU with Triton 3.6
(marked gpu): the pair kernel against the Triton kernel (the same visits), the reference and
dense SDPA, through the op eagerly and under torch.compile.
"""
import warnings

import pytest
import torch
import triton

from conftest import SMALL, dense, rel_err
from s2o_compile import S2OConfig
from s2o_compile.kernels import gluon_pair as GP
from s2o_compile.kernels import reference as R
from s2o_compile.kernels import triton_s2o as T
from s2o_compile.kernels import walk as W

LLAMA = S2OConfig(threshold=0.5, min_seq_len=0)  # the default tiles: 128-key steps
DEV = "cuda" if torch.cuda.is_available() else "cpu"  # CPU: Triton's interpreter


def _qkv(B=1, Hq=4, Hkv=2, N=256, D=64, dtype=torch.float32, device="cpu", seed=0):
    g = torch.Generator(device=device).manual_seed(seed)
    return tuple(torch.randn(B, h, N, D, generator=g, device=device, dtype=dtype)
                 for h in (Hq, Hkv, Hkv))


def _why(q, k, v, cfg, table=True):
    table = torch.zeros(1, 1, 1, dtype=torch.int32) if table else None
    return GP.pair_unsupported(q, k, v, table, cfg, 0.1, True)


def test_pair_kernel_declines_with_a_reason(monkeypatch):
    """Every refusal names its cause; the Triton release gate and the switch come first."""
    q, k, v = _qkv(dtype=torch.bfloat16, D=128)
    monkeypatch.setattr(triton, "__version__", "3.9.0")
    assert "3.6" in _why(q, k, v, LLAMA)
    monkeypatch.setattr(triton, "__version__", "3.6.0")
    monkeypatch.setenv(GP.PAIR_SWITCH, "0")
    assert GP.PAIR_SWITCH in _why(q, k, v, LLAMA)
    monkeypatch.delenv(GP.PAIR_SWITCH)
    if GP.HAVE_GLUON:
        assert "Hopper" in _why(q, k, v, LLAMA)  # CPU tensors


@pytest.mark.skipif(not GP.HAVE_GLUON, reason="this Triton has no Gluon")
@pytest.mark.parametrize("change,expect", [
    (dict(dtype=torch.float32), "dtype"), (dict(D=96), "head dim"),
    (dict(tau=0.0), "tau 0"),
    (dict(cfg=dict(block_m=32)), "block_m 64"), (dict(cfg=dict(stop_rule="mean")), "block_m 64"),
    (dict(cfg=dict(segment_size=64)), "segment_size"),
    (dict(cfg=dict(walk_chunk=2048, block_n=64)), "31 stop tests"),
    (dict(head_stride=4), "16-byte"),
])
def test_pair_kernel_declines_each_unsupported_call(monkeypatch, change, expect):
    """Past the card check (patched, CPU tensors), each unsupported feature is refused."""
    monkeypatch.setattr(triton, "__version__", "3.6.0")
    monkeypatch.setattr(GP, "_hopper", lambda t: True)
    q, k, v = _qkv(dtype=change.get("dtype", torch.bfloat16), D=change.get("D", 128))
    if change.get("head_stride"):  # heads 4 elements apart: rows 16-byte aligned only in head 0
        k = torch.empty(k.numel() + 16, dtype=k.dtype).as_strided(
            k.shape, (k.stride(0), change["head_stride"], 128, 1))
    cfg = LLAMA.replace(threshold=change.get("tau", 0.5), **change.get("cfg", {}))
    assert expect in _why(q, k, v, cfg, table=change.get("tau", 0.5) > 0)
    q, k, v = _qkv(dtype=torch.bfloat16, D=128)
    assert _why(q, k, v, LLAMA) is None  # and the plain call passes, a chunk of it too
    assert _why(q[:, :, -70:], k, v, LLAMA) is None


def test_walk_runs_the_triton_kernel_where_the_pair_kernel_declines(monkeypatch, caplog):
    """Small tiles (block_m 32): kernel_for says why, and walk.attention equals the Triton
    kernel's result exactly."""
    q, k, v = _qkv(N=200, device=DEV)
    cfg = SMALL.replace(threshold=0.3)
    table, offsets = T.build_index_table(q, k, 0.125, cfg)
    monkeypatch.setattr(W, "_LOGGED", set())
    with caplog.at_level("INFO", logger="s2o_compile"):
        name, why = W.kernel_for(q, k, v, table, 0.125, cfg)
    assert name == "triton" and why
    assert f"the walk runs the triton kernel (not the pair kernel: {why})" in caplog.text
    out, visited = W.attention(q, k, v, table, offsets, 0.125, cfg)
    ref, ref_visited = T.attention_with_table(q, k, v, table, offsets, 0.125, cfg)
    assert torch.equal(out, ref) and torch.equal(visited, ref_visited)


def test_a_failed_first_pair_launch_falls_back_once_and_a_later_failure_raises(monkeypatch):
    """A pair kernel that fails to compile or launch (another Triton's Gluon, say) leaves the
    call to the Triton kernel, warns once and is not tried again for that specialization; a
    specialization that launched before is trusted, so its errors surface."""
    q, k, v = _qkv(N=200, device=DEV)
    cfg = SMALL.replace(threshold=0.3)
    table, offsets = T.build_index_table(q, k, 0.125, cfg)
    ref = T.attention_with_table(q, k, v, table, offsets, 0.125, cfg)
    calls = []

    def broken(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("no gl.thread_barrier in this Triton")
    monkeypatch.setattr(GP, "attention_pair", broken)
    monkeypatch.setattr(W, "_PAIR_FAILED", {})
    monkeypatch.setattr(W, "_PAIR_OK", set())
    with pytest.warns(RuntimeWarning, match="thread_barrier"):
        out = W._pair_or_triton(q, k, v, table, offsets, 0.125, cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = W._pair_or_triton(q, k, v, table, offsets, 0.125, cfg)
    assert len(calls) == 1 and list(W.pair_failures().values()) == [
        "RuntimeError: no gl.thread_barrier in this Triton"]
    for got in (out, again):
        assert all(torch.equal(a, b) for a, b in zip(got, ref))

    monkeypatch.setattr(W, "_PAIR_FAILED", {})
    monkeypatch.setattr(GP, "attention_pair", lambda *a, **kw: ref)
    assert W._pair_or_triton(q, k, v, table, offsets, 0.125, cfg) is ref
    monkeypatch.setattr(GP, "attention_pair", broken)
    with pytest.raises(RuntimeError, match="thread_barrier"):
        W._pair_or_triton(q, k, v, table, offsets, 0.125, cfg)


def test_inputs_off_a_16_byte_boundary_run_the_triton_kernel(monkeypatch):
    """q starting 8 bytes into its storage (strides fine) never reaches the pair kernel, whose
    16-byte row copies need aligned rows; the Triton kernel's result comes back."""
    q, k, v = _qkv(N=200, device=DEV)
    q = torch.empty(q.numel() + 2, device=DEV)[2:].view_as(q).copy_(q)
    assert q.data_ptr() % 16 == 8 and q.stride(2) % 8 == 0
    cfg = SMALL.replace(threshold=0.3)
    table, offsets = T.build_index_table(q, k, 0.125, cfg)
    monkeypatch.setattr(GP, "attention_pair", lambda *a, **kw: pytest.fail("pair kernel ran"))
    out, visited = W._pair_or_triton(q, k, v, table, offsets, 0.125, cfg)
    ref, ref_visited = T.attention_with_table(q, k, v, table, offsets, 0.125, cfg)
    assert torch.equal(out, ref) and torch.equal(visited, ref_visited)


@pytest.mark.parametrize("block_m", [64, 128])
@pytest.mark.parametrize("q_len", [200, 70])
def test_traced_pair_op_has_the_triton_kernels_shapes(block_m, q_len):
    """s2o::pair_walk's fake result: the shapes, dtypes and (contiguous) strides of the Triton
    kernel's (out, visited), so a traced graph plans the same buffers (visited: one count per
    block_m rows from the first query's tile; q_len < 200: a chunked prefill)."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    q, k, v = _qkv(B=2, Hq=4, Hkv=2, N=200, device=DEV)
    q = q[:, :, 200 - q_len:]
    cfg = SMALL.replace(threshold=0.3, block_m=block_m, block_n=64, segment_size=128,
                        walk_chunk=64)
    table, offsets = T.build_index_table(q, k, 0.125, cfg)
    real = T.attention_with_table(q, k, v, table, offsets, 0.125, cfg)
    with FakeTensorMode() as mode:
        args = [mode.from_tensor(x) for x in (q, k, v, table, offsets)]
        fake = torch.ops.s2o.pair_walk(*args, 0.125, cfg.threshold, cfg.segment_size,
                                       cfg.block_m, cfg.block_n, cfg.sink_tokens, cfg.local_window,
                                       cfg.stop_rule, cfg.walk_chunk)
    for f, r in zip(fake, real):
        assert (f.shape, f.dtype, f.stride()) == (r.shape, r.dtype, r.stride())


# ---- on a Hopper GPU with the Triton release the pair kernel was checked on -----------------

def _pair_runs_here():
    if not torch.cuda.is_available():
        return False
    q = torch.empty(1, 1, 256, 128, device="cuda", dtype=torch.bfloat16)
    return GP.pair_unsupported(q, q, q, torch.empty(1, 1, 1, dtype=torch.int32, device="cuda"),
                               LLAMA, 0.1, True) is None


needs_pair = pytest.mark.skipif(not _pair_runs_here(), reason="needs a Hopper GPU and Triton 3.6")


@pytest.mark.gpu
@needs_pair
@pytest.mark.parametrize("B,Hq,Hkv,N,D,dtype,transposed,fields", [
    (1, 8, 2, 4096, 128, torch.bfloat16, False, {}),
    (2, 8, 2, 8192 + 37, 128, torch.bfloat16, False, {}),  # batch 2, odd N, a lone last tile
    (1, 4, 4, 6000, 64, torch.float16, False, {}),
    (1, 8, 2, 8192, 128, torch.bfloat16, True, {}),
    (1, 8, 2, 8192, 128, torch.bfloat16, False, dict(stop_rule="gain", walk_chunk=128)),
    (1, 8, 2, 8192, 128, torch.bfloat16, False,  # 64-key steps
     dict(block_n=64, segment_size=1024, sink_tokens=128, local_window=0)),
    (1, 32, 8, 8192 + 64, 128, torch.bfloat16, False, dict(rank_per_head=False)),
    (1, 16, 1, 8192, 128, torch.bfloat16, True, dict(rank_per_head=False)),  # multi-query
    # block_m 128: one stop rule for the pair's two tiles
    (2, 8, 2, 8192 + 37, 128, torch.bfloat16, False, dict(block_m=128)),
    (1, 8, 2, 8192 + 64, 128, torch.bfloat16, True, dict(block_m=128)),  # a lone last tile
    (1, 4, 4, 6000, 64, torch.float16, False, dict(block_m=128)),
    (1, 8, 2, 8192, 128, torch.bfloat16, False,
     dict(block_m=128, stop_rule="gain", walk_chunk=128)),
    # chunked prefill: q is the last q_len positions (the first query inside a pair's first
    # tile: position % 128 < 64; inside its second; on a segment boundary), block_m 64 and 128
    (2, 8, 2, 8192 + 37, 128, torch.bfloat16, False, dict(q_len=3000)),  # 5229: second tile
    (1, 8, 2, 8192, 128, torch.bfloat16, True, dict(q_len=8192 - 4096 - 30)),  # first tile
    (1, 8, 2, 8192, 128, torch.bfloat16, False, dict(q_len=8192 - 4096 - 90)),  # second tile
    (1, 4, 4, 6000, 64, torch.float16, False, dict(q_len=6000 - 2048)),  # segment boundary
    (2, 8, 2, 8192 + 37, 128, torch.bfloat16, False, dict(q_len=3000, block_m=128)),
    (1, 8, 2, 8192, 128, torch.bfloat16, False, dict(q_len=8192 - 4096 - 30, block_m=128)),
    (1, 8, 2, 8192, 128, torch.bfloat16, False, dict(q_len=8192 - 4096 - 90, block_m=128)),
    (1, 8, 2, 8192, 128, torch.bfloat16, False, dict(q_len=513, block_m=128)),
])
@pytest.mark.parametrize("tau", [0.05, 0.5])
def test_pair_kernel_matches_the_triton_kernel(B, Hq, Hkv, N, D, dtype, transposed, fields, tau):
    g = torch.Generator(device="cuda").manual_seed(N + D)
    shape = (B, N, Hq, D) if transposed else (B, Hq, N, D)
    q = torch.randn(*shape, generator=g, device="cuda", dtype=dtype)
    q = q.transpose(1, 2) if transposed else q
    k = torch.randn(B, Hkv, N, D, generator=g, device="cuda", dtype=dtype) * 1.5
    v = torch.randn(B, Hkv, N, D, generator=g, device="cuda", dtype=dtype)
    fields = dict(fields)
    q = q[:, :, N - fields.pop("q_len", N):]
    cfg = LLAMA.replace(threshold=tau, **fields)
    scale = D ** -0.5
    table, offsets = T.build_index_table(q, k, scale, cfg)
    assert W.kernel_for(q, k, v, table, scale, cfg) == ("pair", None)
    out, visited = W.attention(q, k, v, table, offsets, scale, cfg)
    ref, ref_visited = T.attention_with_table(q, k, v, table, offsets, scale, cfg)
    assert torch.equal(visited, ref_visited)
    assert rel_err(out, ref) < 5e-3
    assert out.is_contiguous() and torch.isfinite(out).all()
    # as close to dense as the Triton kernel (the stop rule "gain" at tau 0.05: 0.23 for both)
    assert rel_err(out, dense(q, k, v)) < rel_err(ref, dense(q, k, v)) + 5e-3


def test_row_offsets_fall_back_to_64_bits_where_32_would_overflow():
    narrow = torch.empty(1, 1, 2, 64)  # D 64, a row stride of 64 elements
    wide = torch.empty(1, 1, 2, 128)[..., :64]  # D 64 cut from 128: a row stride of 128
    last = 2 ** 31 // 128 - 2 * GP.BLOCK  # rows up to a pair past N are addressed
    assert GP.fits_32_bits(last - 1, wide, narrow) and GP.fits_32_bits(last - 1, narrow, wide)
    assert not GP.fits_32_bits(last, wide, narrow) and not GP.fits_32_bits(last, narrow, wide)
    assert GP.fits_32_bits(last, narrow, narrow)


@pytest.mark.gpu
@needs_pair
@pytest.mark.parametrize("block_m", [64, 128])
@pytest.mark.parametrize("switch", [
    # the producer's 64-bit row offsets (taken where N x row stride passes 2^31) against the
    # 32-bit ones (the default at this N): the same copies
    dict(off32=False),
    # o *= alpha at every step against the default, where a warp whose rows all kept their
    # maximum skips it (alpha is exactly 1 there); the maxima do move on these inputs (the
    # sink's and the window's keys come first, the ranked ones after)
    dict(rescale_skip=False),
])
def test_launch_switches_keep_the_bits(block_m, switch):
    q, k, v = _qkv(2, 8, 2, 8192 + 37, 128, torch.bfloat16, "cuda", seed=3)
    cfg = LLAMA.replace(threshold=0.3, block_m=block_m)
    table, offsets = T.build_index_table(q, k, 128 ** -0.5, cfg)
    assert GP.fits_32_bits(q.shape[2], k, v)
    out, vis = GP.attention_pair(q, k, v, table, offsets, 128 ** -0.5, cfg)
    out_s, vis_s = GP.attention_pair(q, k, v, table, offsets, 128 ** -0.5, cfg, **switch)
    assert torch.equal(vis, vis_s) and torch.equal(out, out_s)


@pytest.mark.gpu
@needs_pair
@pytest.mark.parametrize("tau", [0.02, 0.3])
@pytest.mark.parametrize("block_m", [64, 128])
def test_pair_kernel_matches_the_reference_on_the_structured_workload(tau, block_m):
    from s2o_compile.workload import structured_qkv
    q, k, v = structured_qkv(2, 8, 2, 4096 + 77, 128, device="cuda", seed=1)
    cfg = LLAMA.replace(threshold=tau, block_m=block_m)
    table, offsets = T.build_index_table(q, k, 128 ** -0.5, cfg)
    out, visited = W.attention(q, k, v, table, offsets, 128 ** -0.5, cfg)
    ref_out, ref_visited, _ = R.attention_with_table(q, k, v, table, 128 ** -0.5, cfg)
    agree = (visited.long() == ref_visited).float().mean().item()
    assert agree > 0.97, agree  # bf16 rounding may flip a knife-edge stop
    assert rel_err(out, ref_out) < 2e-2


@pytest.mark.gpu
@needs_pair
def test_compiled_op_runs_the_pair_kernel_and_matches_eager(monkeypatch):
    """Under torch.compile the walk is the opaque s2o::pair_walk, the ranking kernels stay in
    Inductor's code, and the result equals the eager op's."""
    from torch._inductor.utils import run_and_get_code
    from s2o_compile import sparse_attention
    from s2o_compile.workload import structured_qkv
    calls = []
    real = W._pair_or_triton
    monkeypatch.setattr(W, "_pair_or_triton", lambda *a: calls.append(1) or real(*a))
    q, k, v = structured_qkv(1, 8, 2, 8192, 128, device="cuda", seed=2)
    cfg = LLAMA.replace(threshold=0.3)
    fn = torch.compile(lambda q, k, v: sparse_attention(q, k, v, enable_gqa=True, config=cfg))
    out, codes = run_and_get_code(fn, q, k, v)
    assert any("pair_walk" in c and "_prefix_scores_kernel" in c for c in codes)
    assert calls, "the compiled graph did not launch the pair kernel"
    eager = sparse_attention(q, k, v, enable_gqa=True, config=cfg)
    assert rel_err(out, eager) < 5e-3
    assert not W.pair_failures()


@pytest.mark.gpu
@needs_pair
@pytest.mark.parametrize("name,value", [("k", float("nan")), ("k", float("inf")),
                                        ("q", float("nan")), ("v", float("nan"))])
def test_pair_kernel_keeps_nan_and_inf_to_the_rows_that_see_them(name, value):
    """A NaN/inf in q or k at position j reaches the rows the Triton kernel's reaches, none
    before j (the causal mask selects, it does not add). One in v also reaches the rows of j's
    64-row tile before j (0 * NaN in its diagonal step's P @ V), as in the Triton kernel
    (tests/test_nan_inf.py): the pair's first tile multiplies only the first half of the shared
    128-key diagonal step, so no row of it sees a v row of the second tile."""
    from s2o_compile.workload import structured_qkv
    q, k, v = structured_qkv(1, 4, 2, 4096, 128, device="cuda", seed=3)
    j = 3000 + 37
    {"q": q, "k": k, "v": v}[name][:, :, j] = value
    cfg, scale = LLAMA.replace(threshold=0.3), 128 ** -0.5
    table, offsets = T.build_index_table(q, k, scale, cfg)
    out, _ = W.attention(q, k, v, table, offsets, scale, cfg)
    ref, _ = T.attention_with_table(q, k, v, table, offsets, scale, cfg)
    bad, ref_bad = ((~torch.isfinite(x)).any(-1) for x in (out, ref))
    assert bad[..., j].all()
    first = j // 64 * 64 if name == "v" else j
    assert not bad[..., :first].any()
    assert torch.equal(bad, ref_bad)
