"""Python front of the S2O operator: sparse_attention(q, k, v, ...)."""
from __future__ import annotations

import torch

from . import ops
from .config import S2OConfig
from .validation import check_attention_inputs

_DEFAULT_CONFIG = S2OConfig()  # frozen: built once, not per call


def sparse_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, scale: float | None = None,
                     enable_gqa: bool = False, config: S2OConfig | None = None,
                     return_stats: bool = False):
    """Causal S2O attention, a drop-in for ``scaled_dot_product_attention(..., is_causal=True)``.

    q: [B, Hq, N, D]; k, v: [B, Hkv, N, D] with Hq a multiple of Hkv (enable_gqa=True when they
    differ, as for SDPA). scale defaults to 1/sqrt(D). Returns the output [B, Hq, N, D]
    (contiguous on the S2O path; below config.min_seq_len SDPA's own output, called directly so
    that short sequences pay nothing for the detour), and with return_stats also the density
    [B, Hq] (float32): QK pairs computed over the N(N+1)/2 causal pairs, 1.0 where it ran dense.
    """
    check_attention_inputs(q, k, v, enable_gqa=enable_gqa)
    cfg = config if config is not None else _DEFAULT_CONFIG
    if not isinstance(cfg, S2OConfig):
        raise TypeError(f"s2o: config must be an S2OConfig, got {type(cfg).__name__}")
    if scale is None:
        scale = q.shape[-1] ** -0.5
    if q.shape[2] < cfg.min_seq_len:  # SDPA alone; the density tensor only when asked for
        return ops.dense_attention(q, k, v, float(scale), contiguous=False, stats=return_stats)
    out, density = torch.ops.s2o.sparse_attention(q, k, v, float(scale), *ops.config_args(cfg))
    return (out, density) if return_stats else out
