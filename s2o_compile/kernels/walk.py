"""Which kernel walks the index table: the Gluon tile-pair kernel (gluon_pair.py) where it takes
the call (Hopper, Triton 3.6, fp16/bf16, head dim 64/128, block_m 64/128 ...), the Triton
kernel (triton_s2o.attention_with_table) otherwise. Both give the same visits and outputs
within rounding.

While a compiler traces the op, the pair kernel runs inside torch.ops.s2o.pair_walk, an opaque
custom op launched eagerly: Inductor re-emits a user kernel's source under @triton.jit, which a
Gluon kernel is not, so wrap_triton cannot carry it. The ranking kernels stay traced
(wrap_triton), so Inductor still schedules them.
"""
from __future__ import annotations

import logging
import warnings

import torch
from torch import Tensor

from ..config import S2OConfig
from . import gluon_pair, triton_s2o
from .layout import query_tiles

# Keys whose first pair launch failed (compile or launch error) -> the reason; they run the
# Triton kernel. Keys that launched once are trusted: a later error is raised, not hidden.
_PAIR_FAILED: dict = {}
_PAIR_OK: set = set()
_LOGGED: set = set()  # the (kernel, reason) choices logged so far
log = logging.getLogger("s2o_compile")


def pair_failures() -> dict:
    """The pair kernel's failures so far (specialization -> reason): those calls ran the Triton
    kernel."""
    return dict(_PAIR_FAILED)


def kernel_for(q, k, v, table, scale: float, cfg: S2OConfig) -> tuple[str, str | None]:
    """("pair", None) or ("triton", why the pair kernel does not take the call); each new
    choice is logged once (INFO, logger "s2o_compile")."""
    why = gluon_pair.pair_unsupported(q, k, v, table, cfg, scale,
                                      triton_s2o.whole_tiles(cfg, cfg.block_m, scale))
    choice = ("pair", None) if why is None else ("triton", why)
    _log_once(choice)
    return choice


def _log_once(choice):
    if choice not in _LOGGED:
        _LOGGED.add(choice)
        log.info("s2o: the walk runs the %s kernel%s", choice[0],
                 f" (not the pair kernel: {choice[1]})" if choice[1] else "")


def _pair_or_triton(q, k, v, table, offsets, scale: float, cfg: S2OConfig):
    """The pair kernel; the Triton kernel where this specialization failed to compile or
    launch (the reason kept in pair_failures and warned once), or where q, k or v does not
    start on a 16-byte boundary (the pair kernel copies rows in 16-byte pieces; a traced
    graph cannot see this before it runs)."""
    key = (q.dtype, q.shape[-1], q.shape[1] // k.shape[1], q.device, cfg.segment_size,
           cfg.block_m, cfg.block_n, cfg.walk_chunk, cfg.stop_rule, q.shape[2] < k.shape[2])
    aligned = all(x.data_ptr() % 16 == 0 for x in (q, k, v))
    if not aligned:
        _log_once(("triton", "q, k or v does not start on a 16-byte boundary"))
    if aligned and key not in _PAIR_FAILED:
        try:
            result = gluon_pair.attention_pair(q, k, v, table, offsets, scale, cfg)
        except Exception as e:  # noqa: BLE001 - any failure of a first launch falls back
            if key in _PAIR_OK:
                raise
            _PAIR_FAILED[key] = f"{type(e).__name__}: {str(e)[:300]}"
            warnings.warn(f"s2o: the Gluon pair kernel failed ({_PAIR_FAILED[key]}); this "
                          "specialization runs the Triton kernel", RuntimeWarning, stacklevel=2)
        else:
            _PAIR_OK.add(key)
            return result
    return triton_s2o.attention_with_table(q, k, v, table, offsets, scale, cfg)


@torch.library.custom_op("s2o::pair_walk", mutates_args=())
def pair_walk(q: Tensor, k: Tensor, v: Tensor, table: Tensor, offsets: Tensor, scale: float,
              threshold: float, segment_size: int, block_m: int, block_n: int,
              sink_tokens: int, local_window: int, stop_rule: str,
              walk_chunk: int) -> tuple[Tensor, Tensor]:
    """The pair kernel as an opaque op, for traced graphs: (out, visited)."""
    cfg = S2OConfig(threshold=threshold, segment_size=segment_size, block_m=block_m,
                    block_n=block_n, sink_tokens=sink_tokens, local_window=local_window,
                    stop_rule=stop_rule, walk_chunk=walk_chunk)
    return _pair_or_triton(q, k, v, table, offsets, scale, cfg)


@pair_walk.register_fake
def _(q, k, v, table, offsets, scale, threshold, segment_size, block_m, *cfg_fields):
    B, Hq, L, D = q.shape
    return q.new_empty(B, Hq, L, D), q.new_empty(B, Hq, query_tiles(L, k.shape[2], block_m),
                                                 dtype=torch.int32)


def attention(q, k, v, table, offsets, scale: float, cfg: S2OConfig):
    """The walk over the table: (out contiguous [B, Hq, L, D], visited int32 [B, Hq, n_mt]),
    from the pair kernel where it takes the call, else from the Triton kernel."""
    if kernel_for(q, k, v, table, scale, cfg)[0] == "triton":
        return triton_s2o.attention_with_table(q, k, v, table, offsets, scale, cfg)
    if triton_s2o.tracing():
        return torch.ops.s2o.pair_walk(q, k, v, table, offsets, scale, cfg.threshold,
                                       cfg.segment_size, cfg.block_m, cfg.block_n,
                                       cfg.sink_tokens, cfg.local_window, cfg.stop_rule,
                                       cfg.walk_chunk)
    return _pair_or_triton(q, k, v, table, offsets, scale, cfg)


def s2o_attention(q, k, v, scale: float, cfg: S2OConfig):
    """Full S2O on the GPU with the fastest walk that takes the call: (out, density float32
    [B, Hq]) as triton_s2o.s2o_attention."""
    return triton_s2o.s2o_attention(q, k, v, scale, cfg, attend=attention)
