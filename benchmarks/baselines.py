"""Block-sparse baseline without permutation, in S2O's own index-table layout.

The paper's claim is about permutation granularity: block-sparse attention must compute a whole
contiguous key block as soon as one important key sits in it, while S2O's index table gathers
single keys from anywhere. To test exactly that, this baseline builds an index table in the SAME
flat layout as S2O (kernels/layout.py: per (batch, kv head), segment g's ranked prefix occupies
[offsets[g], offsets[g + 1]) and holds absolute positions of keys [sink_end, lo)), but made of
contiguous blocks of block_n keys: blocks in descending estimated score, keys inside a block in
original order. The same attention (reference or Triton attention_with_table), the same dense
pass, the same query tiles and the same stop rule then run it, so S2O and the baseline differ
only in how the prefix is ordered.

Block score, with S2O's own pooled representative queries (reference.segment_scores):
  "max"  the best of S2O's per-key estimates inside the block: the same information S2O has, so
         the comparison isolates granularity (the strongest block baseline we can build here);
  "mean" the block's mean key against the representative queries, what block-sparse methods
         (MInference, FlexPrefill) score: a lone important key is diluted by its block-mates.

Pure torch, works on CPU and CUDA; no host synchronisation (segment bounds come from shapes), so
it can be timed on a GPU like S2O's preprocessing.
"""
from __future__ import annotations

import math

import torch

from s2o_compile.config import S2OConfig
from s2o_compile.kernels.layout import segments
from s2o_compile.kernels.reference import segment_scores


BLOCK_SCORES = ("max", "mean")


def block_scores(q_seg: torch.Tensor, k_prefix: torch.Tensor, scale: float, cfg: S2OConfig,
                 how: str = "max") -> torch.Tensor:
    """Estimated importance of each contiguous key block of a segment's prefix: [B, Hkv, nb].

    Blocks of cfg.block_n keys start at the prefix's first key; the last one may be partial.
    """
    B, H, P, D = k_prefix.shape
    BN = cfg.block_n
    nb = math.ceil(P / BN)
    if how == "max":
        per_key = segment_scores(q_seg, k_prefix, scale, cfg)  # [B, H, P]
        padded = torch.nn.functional.pad(per_key, (0, nb * BN - P), value=-math.inf)
        return padded.reshape(B, H, nb, BN).amax(dim=-1)
    if how == "mean":
        n_full = P // BN
        means = [k_prefix[:, :, :n_full * BN].reshape(B, H, n_full, BN, D).mean(dim=3)]
        if P % BN:
            means.append(k_prefix[:, :, n_full * BN:].mean(dim=2, keepdim=True))
        return segment_scores(q_seg, torch.cat(means, dim=2), scale, cfg)
    raise ValueError(f"block score {how!r}: expected one of {BLOCK_SCORES}")


def block_order(scores: torch.Tensor, prefix_len: int, block_n: int) -> torch.Tensor:
    """Visiting order of a segment's prefix keys (positions into the prefix) from block scores.

    Every key inherits its block's score; a stable descending sort then yields whole blocks in
    descending score with keys in original order inside each block (blocks of equal score stay
    contiguous: all keys of the earlier block precede the later one's). NaN scores go last.
    """
    per_key = scores.repeat_interleave(block_n, dim=-1)[..., :prefix_len]
    per_key = torch.nan_to_num(per_key, nan=-math.inf)
    return torch.sort(per_key, dim=-1, descending=True, stable=True).indices


def block_sparse_table(q: torch.Tensor, k: torch.Tensor, scale: float, cfg: S2OConfig,
                       how: str = "max") -> torch.Tensor:
    """Flat int32 index table [B, R, total] (S2O's layout) of contiguous key blocks.

    q [B, Hq, N, D], k [B, Hkv, N, D]; block size cfg.block_n, pooling cfg.pooling, one ranking
    per kv head or, with cfg.rank_per_head, per query head (R = Hq), as S2O's table (ordering,
    num_tiers and tier_width are S2O's and are ignored). With the default config (sink and local
    window multiples of block_n) every table tile is exactly one key block.
    """
    if cfg.rank_per_head:
        k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
    B, Hkv, N, _ = k.shape
    kf = k.float()  # once: per-segment prefixes below are views, not copies
    parts = []
    for seg in segments(N, cfg.segment_size, cfg.sink_tokens, cfg.local_window):
        if seg.prefix_len == 0:
            continue
        scores = block_scores(q[:, :, seg.start:seg.end].float(), kf[:, :, seg.sink_end:seg.lo],
                              scale, cfg, how)
        order = block_order(scores, seg.prefix_len, cfg.block_n)
        parts.append((order + seg.sink_end).to(torch.int32))
    if not parts:
        return torch.empty(B, Hkv, 0, dtype=torch.int32, device=q.device)
    return torch.cat(parts, dim=-1)
