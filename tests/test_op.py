"""torch.ops.s2o.sparse_attention and the Python front: semantics, opcheck, compile, bad input."""
import pytest
import torch
import torch.nn.functional as F

from conftest import SMALL, dense, qkv, rel_err
from s2o_compile import S2OConfig, sparse_attention
from s2o_compile.ops import config_args


def transposed(B, H, N, D, dtype=torch.float32, seed=0):
    """[B, H, N, D] views of [B, N, H, D] storage, as HF models pass them."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, N, H, D, generator=g).to(dtype).transpose(1, 2)


@pytest.mark.parametrize("enable_gqa,Hkv", [(True, 2), (False, 4)])
def test_front_matches_dense_at_tau0(enable_gqa, Hkv):
    q, k, v = qkv(2, 4, Hkv, 257, 64, seed=11)
    out, density = sparse_attention(q, k, v, enable_gqa=enable_gqa, config=SMALL, return_stats=True)
    assert out.shape == q.shape and out.is_contiguous()
    assert rel_err(out, dense(q, k, v)) < 1e-5
    assert density.shape == (2, 4) and density.dtype == torch.float32
    assert torch.allclose(density, torch.ones(2, 4))


def test_density_falls_with_tau_and_scale_is_respected():
    q, k, v = qkv(1, 4, 2, 300, 64, seed=12)
    out, density = sparse_attention(q, k, v, scale=0.3, enable_gqa=True,
                                    config=SMALL.replace(threshold=0.2), return_stats=True)
    assert (density < 1).all() and (density > 0).all()
    exact = sparse_attention(q, k, v, scale=0.3, enable_gqa=True, config=SMALL)
    assert rel_err(exact, dense(q, k, v, scale=0.3)) < 1e-5


def test_short_sequences_run_dense_sdpa():
    q, k, v = qkv(1, 4, 2, 100, 64, seed=13)
    out, density = sparse_attention(q, k, v, enable_gqa=True, config=S2OConfig(min_seq_len=101),
                                    return_stats=True)
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    assert torch.equal(out, ref) and torch.all(density == 1)
    alone = sparse_attention(q, k, v, enable_gqa=True, config=S2OConfig(min_seq_len=101))
    assert isinstance(alone, torch.Tensor) and torch.equal(alone, ref)  # no stats: SDPA's output
    assert torch.equal(sparse_attention(q, k, v, enable_gqa=True), ref)  # default min_seq_len


@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
@pytest.mark.parametrize("min_seq_len", [0, 10_000])  # sparse path and dense fallback
def test_opcheck(layout, min_seq_len):
    if layout == "contiguous":
        q, k, v = qkv(1, 4, 2, 130, 32, seed=14)
    else:
        q, k, v = transposed(1, 4, 130, 32, seed=1), transposed(1, 2, 130, 32, seed=2), \
            transposed(1, 2, 130, 32, seed=3)
    args = (q, k, v, 32 ** -0.5, *config_args(SMALL.replace(threshold=0.05, min_seq_len=min_seq_len)))
    torch.library.opcheck(torch.ops.s2o.sparse_attention, args)


def test_fake_strides_equal_real_on_transposed_inputs():
    from torch._subclasses.fake_tensor import FakeTensorMode
    q, k, v = transposed(1, 4, 100, 32, seed=1), transposed(1, 2, 100, 32), transposed(1, 2, 100, 32)
    args = (32 ** -0.5, *config_args(SMALL))
    real, _ = torch.ops.s2o.sparse_attention(q, k, v, *args)
    with FakeTensorMode() as mode:
        fq, fk, fv = (mode.from_tensor(t) for t in (q, k, v))
        fake, fd = torch.ops.s2o.sparse_attention(fq, fk, fv, *args)
    assert fake.shape == real.shape and fake.stride() == real.stride()


@pytest.mark.parametrize("dynamic", [False, True])
def test_torch_compile_matches_eager(dynamic):
    q, k, v = qkv(1, 4, 2, 200, 64, seed=15)
    cfg = SMALL.replace(threshold=0.05)

    def fn(q, k, v):
        return sparse_attention(q, k, v, enable_gqa=True, config=cfg) * 2 + 1

    eager = fn(q, k, v)
    compiled = torch.compile(fn, backend="inductor", dynamic=dynamic, fullgraph=True)
    assert torch.allclose(compiled(q, k, v), eager, atol=1e-5, rtol=1e-5)
    q2, k2, v2 = qkv(1, 4, 2, 150, 64, seed=16)
    assert torch.allclose(compiled(q2, k2, v2), fn(q2, k2, v2), atol=1e-5, rtol=1e-5)


def test_backward_is_a_clear_error():
    q, k, v = qkv(1, 2, 2, 64, 32, seed=17)
    q.requires_grad_(True)
    out = sparse_attention(q, k, v, config=SMALL)
    with pytest.raises(RuntimeError, match="inference-only"):
        out.sum().backward()


def _bad(**over):
    q, k, v = qkv(1, 4, 2, 64, 32, seed=18)
    args = dict(q=q, k=k, v=v)
    args.update(over)
    return args


@pytest.mark.parametrize("args,exc,match", [
    (_bad(q=torch.randn(4, 64, 32)), ValueError, "query must be 4-D"),
    (_bad(k=torch.randn(1, 2, 64, 32, dtype=torch.float64)), TypeError, "key has dtype torch.float64"),
    (_bad(q=torch.randn(1, 4, 64, 32, dtype=torch.float16)), TypeError, "key dtype torch.float32 differs"),
    (_bad(k=torch.randn(2, 2, 64, 32), v=torch.randn(2, 2, 64, 32)), ValueError, "batch 2 differs"),
    (_bad(k=torch.randn(1, 3, 64, 32), v=torch.randn(1, 3, 64, 32)), ValueError, "multiple of key/value heads 3"),
    (_bad(k=torch.randn(1, 2, 50, 32), v=torch.randn(1, 2, 50, 32)), ValueError, "length 50 differs"),
    (_bad(k=torch.randn(1, 2, 64, 16), v=torch.randn(1, 2, 64, 16)), ValueError, "head_dim 16 differs"),
    (_bad(v=torch.randn(1, 2, 64, 16)), ValueError, "key shape .* differs from value shape"),
    (_bad(q=torch.randn(1, 4, 64, 512), k=torch.randn(1, 2, 64, 512), v=torch.randn(1, 2, 64, 512)),
     ValueError, "head_dim 512 is not supported"),
    (_bad(v=[1, 2]), TypeError, "value must be a torch.Tensor"),
])
def test_bad_inputs_raise_clear_errors(args, exc, match):
    with pytest.raises(exc, match=match):
        sparse_attention(args["q"], args["k"], args["v"], enable_gqa=True, config=SMALL)
    if isinstance(args["v"], torch.Tensor):  # the raw op checks too
        with pytest.raises(exc, match=match):
            torch.ops.s2o.sparse_attention(args["q"], args["k"], args["v"], 0.1, *config_args(SMALL))


def test_gqa_requires_enable_gqa_like_sdpa():
    q, k, v = qkv(1, 4, 2, 64, 32, seed=19)
    with pytest.raises(ValueError, match="enable_gqa=True"):
        sparse_attention(q, k, v, config=SMALL)


def test_one_kv_head_broadcasts_without_enable_gqa_like_sdpa():
    q, k, v = qkv(1, 4, 1, 64, 32, seed=24)
    torch.testing.assert_close(sparse_attention(q, k, v, config=SMALL),
                               F.scaled_dot_product_attention(q, k, v, is_causal=True),
                               rtol=1e-5, atol=1e-5)


def test_config_must_be_s2oconfig():
    q, k, v = qkv(1, 2, 2, 64, 32, seed=20)
    with pytest.raises(TypeError, match="S2OConfig"):
        sparse_attention(q, k, v, config={"threshold": 0.1})
