"""Input checks shared by the op, the Python front and the graph pass.

Each check raises a clear ValueError/TypeError naming the argument, so that bad input never
reaches a Triton or CUDA error deep inside a kernel.
"""
from __future__ import annotations

import torch

SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
MAX_HEAD_DIM = 256


def needs_enable_gqa(hq: int, hkv: int) -> bool:
    """Whether SDPA needs enable_gqa=True for these head counts: they differ, and there is more
    than one key/value head (a single one SDPA broadcasts over the query heads, as multi-query
    models such as HF Falcon rely on)."""
    return hq != hkv and hkv != 1


def check_attention_inputs(q, k, v, enable_gqa: bool = True) -> None:
    for name, t in (("query", q), ("key", k), ("value", v)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"s2o: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(f"s2o: {name} must be 4-D [batch, heads, seq, head_dim], "
                             f"got shape {tuple(t.shape)}")
        if t.dtype not in SUPPORTED_DTYPES:
            raise TypeError(f"s2o: {name} has dtype {t.dtype}; supported: float16, bfloat16, float32")
    for name, t in (("key", k), ("value", v)):
        if t.dtype != q.dtype:
            raise TypeError(f"s2o: {name} dtype {t.dtype} differs from query dtype {q.dtype}")
        if t.device != q.device:
            raise ValueError(f"s2o: {name} is on {t.device}, query on {q.device}")
    B, Hq, N, D = q.shape
    if k.shape != v.shape:
        raise ValueError(f"s2o: key shape {tuple(k.shape)} differs from value shape {tuple(v.shape)}")
    Bk, Hkv, Nk, Dk = k.shape
    if Bk != B:
        raise ValueError(f"s2o: key/value batch {Bk} differs from query batch {B}")
    if Nk < N:
        raise ValueError(f"s2o: key/value length {Nk} differs from query length {N}: S2O needs "
                         "at least as many keys as queries (self-attention prefill, q_len == "
                         "kv_len, or a chunked prefill whose queries are the last q_len of the "
                         "kv_len positions)")
    if Dk != D:
        raise ValueError(f"s2o: key/value head_dim {Dk} differs from query head_dim {D}")
    if not 1 <= D <= MAX_HEAD_DIM:
        raise ValueError(f"s2o: head_dim {D} is not supported (expected 1..{MAX_HEAD_DIM})")
    if Hkv == 0 or Hq % Hkv != 0:
        raise ValueError(f"s2o: query heads {Hq} must be a multiple of key/value heads {Hkv}")
    if needs_enable_gqa(Hq, Hkv) and not enable_gqa:
        raise ValueError(f"s2o: query heads {Hq} != key/value heads {Hkv}; pass enable_gqa=True "
                         "for grouped-query attention")
