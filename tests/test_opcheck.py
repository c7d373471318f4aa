"""torch.library.opcheck on the S2O ops over dtypes, head layouts (MHA, GQA, MQA) and memory
layouts (contiguous, HF's transposed [B, N, H, D], sequence-first, non-unit head-dim stride).

opcheck verifies the schema (no hidden mutation or aliasing), the autograd registration, the
fake (meta) implementation against the real one, and AOT dispatch with dynamic shapes. On CPU
the op runs the PyTorch reference; the Triton path is covered on CUDA by tests/test_gpu.py.
"""
import pytest
import torch

from conftest import dense, rel_err
from s2o_compile import S2OConfig
from s2o_compile.ops import config_args

CFG = S2OConfig(threshold=0.05, segment_size=64, block_m=32, block_n=16, walk_chunk=32,
                sink_tokens=8, local_window=16, min_seq_len=0, stop_rule="gain")
N, D = 70, 32  # two segments: the second one has a ranked prefix


def tensor(B, H, layout, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    if layout == "contiguous":
        t = torch.randn(B, H, N, D, generator=g)
    elif layout == "transposed":
        t = torch.randn(B, N, H, D, generator=g).transpose(1, 2)
    elif layout == "nbhd":
        t = torch.randn(N, B, H, D, generator=g).permute(1, 2, 0, 3)
    elif layout == "strided_last":
        t = torch.randn(B, H, N, 2 * D, generator=g)[..., ::2]
    else:
        raise AssertionError(layout)
    return t.to(dtype)


CASES = [  # (dtype, Hq, Hkv, layout)
    (torch.float32, 4, 2, "contiguous"),
    (torch.float32, 4, 2, "transposed"),
    (torch.float32, 4, 1, "strided_last"),
    (torch.float16, 4, 2, "transposed"),
    (torch.float16, 2, 2, "nbhd"),
    (torch.bfloat16, 4, 2, "contiguous"),
    (torch.bfloat16, 6, 3, "transposed"),
]


@pytest.mark.parametrize("dtype,Hq,Hkv,layout", CASES,
                         ids=[f"{str(c[0])[6:]}-{c[1]}q{c[2]}kv-{c[3]}" for c in CASES])
def test_opcheck(dtype, Hq, Hkv, layout):
    q, k, v = (tensor(2, h, layout, dtype, seed) for seed, h in enumerate((Hq, Hkv, Hkv)))
    args = (q, k, v, D ** -0.5, *config_args(CFG))
    torch.library.opcheck(torch.ops.s2o.sparse_attention, args)
    torch.library.opcheck(torch.ops.s2o.sparse_attention_eager, args)
    out, density = torch.ops.s2o.sparse_attention(*args)
    assert out.dtype == dtype and out.is_contiguous() and density.dtype == torch.float32
    exact, _ = torch.ops.s2o.sparse_attention(q, k, v, D ** -0.5,
                                              *config_args(CFG.replace(threshold=0.0)))
    assert rel_err(exact, dense(q, k, v)) < (1e-5 if dtype == torch.float32 else 1e-2)
