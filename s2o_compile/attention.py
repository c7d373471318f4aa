"""Python front of the S2O operator: sparse_attention(q, k, v, ...)."""
from __future__ import annotations

import torch
from torch.nn.attention.bias import CausalVariant

from . import ops
from .config import S2OConfig
from .validation import check_attention_inputs

_DEFAULT_CONFIG = S2OConfig()  # frozen: built once, not per call
_VARIANTS = {"upper_left": CausalVariant.UPPER_LEFT, "lower_right": CausalVariant.LOWER_RIGHT}


def sparse_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, scale: float | None = None,
                     enable_gqa: bool = False, config: S2OConfig | None = None,
                     return_stats: bool = False, causal_variant="upper_left"):
    """Causal S2O attention, a drop-in for ``scaled_dot_product_attention(..., is_causal=True)``.

    q: [B, Hq, L, D]; k, v: [B, Hkv, N, D] with Hq a multiple of Hkv (enable_gqa=True when they
    differ, as for SDPA, which broadcasts a single kv head without it) and N >= L. scale
    defaults to 1/sqrt(D). causal_variant (a string or torch.nn.attention.bias.CausalVariant)
    says where the L queries sit when L < N:
    "upper_left" (SDPA's is_causal=True: query i sees keys 0..i, so keys past L are unused and
    not read) or "lower_right" (chunked prefill with a KV cache: the queries are the last L
    positions, query i sees keys 0..N - L + i; FlashAttention's causal). Returns the output
    [B, Hq, L, D] (contiguous on the S2O path; SDPA's own output where it runs dense, below
    config.min_seq_len keys or for a chunk of fewer than ops.MIN_CHUNK_QUERIES queries, called
    directly so that short sequences pay nothing for the detour), and with return_stats
    also the density [B, Hq] (float32): QK pairs computed over the causal pairs, 1.0 where it
    ran dense.
    """
    variant = _VARIANTS.get(causal_variant, causal_variant)
    if variant not in (CausalVariant.UPPER_LEFT, CausalVariant.LOWER_RIGHT):
        raise ValueError(f"s2o: causal_variant must be 'upper_left' or 'lower_right', "
                         f"got {causal_variant!r}")
    check_attention_inputs(q, k, v, enable_gqa=enable_gqa)
    if variant == CausalVariant.UPPER_LEFT and k.shape[2] > q.shape[2]:
        k, v = k[:, :, :q.shape[2]], v[:, :, :q.shape[2]]  # the keys no query sees
    cfg = config if config is not None else _DEFAULT_CONFIG
    if not isinstance(cfg, S2OConfig):
        raise TypeError(f"s2o: config must be an S2OConfig, got {type(cfg).__name__}")
    if scale is None:
        scale = q.shape[-1] ** -0.5
    if ops.runs_dense(q.shape[2], k.shape[2], cfg):  # SDPA alone; density only when asked for
        return ops.dense_attention(q, k, v, float(scale), contiguous=False, stats=return_stats)
    out, density = torch.ops.s2o.sparse_attention(q, k, v, float(scale), *ops.config_args(cfg))
    return (out, density) if return_stats else out
