"""A hand-built input where the importance order and every tile's gain are known exactly.

One head, N = 128, segment_size = block_m = 64, block_n = 16, no sink, no local window: the
second segment (queries 64..127) has a 64-key prefix = 4 key tiles. Every query is e0 and
scale = 1, so a key's logit is its e0 component. Prefix key j belongs to group (3 * j) % 4
(scattered positions) with logit LOGITS[group]; the segment's own keys have logit 0. Tiers of
width 1 put group t in the t-th visited tile. Row 64 sees one own key, so after tile t its ratio
gain / l is 16 e^{L_t} / (1 + 16 sum_{s<=t} e^{L_s}), the largest of the tile's rows:
RATIOS = [0.9989, 0.1190, 0.0159, 0.0021].
"""
import math

import torch

from s2o_compile import S2OConfig

LOGITS = [4.0, 2.0, 0.0, -2.0]
CFG = S2OConfig(threshold=0.0, segment_size=64, block_m=64, block_n=16, walk_chunk=16,
                sink_tokens=0, local_window=0, num_tiers=8, tier_width=1.0, min_seq_len=0,
                stop_rule="gain",
                ordering="tiers")


def ratios():
    out, l = [], 1.0
    for L in LOGITS:
        gain = 16 * math.exp(L)
        l += gain
        out.append(gain / l)
    return out


# tau -> key tiles visited by the second segment's query tile
EXPECTED_VISITS = {0.999: 1, 0.5: 2, 0.2: 2, 0.05: 3, 0.01: 4, 0.001: 4, 0.0: 4}


def build(dtype=torch.float32):
    N, D = 128, 16
    g = torch.Generator().manual_seed(0)  # torch 2.13 seeds its default generator at random
    q = torch.zeros(1, 1, N, D)
    q[..., 0] = 1.0
    q[..., 1:] = 1e-3 * torch.randn(1, 1, N, D - 1, generator=g)  # nonzero, negligible
    k = torch.zeros(1, 1, N, D)
    groups = (3 * torch.arange(64)) % 4
    k[0, 0, :64, 0] = torch.tensor(LOGITS)[groups]
    k[0, 0, 64:, 1] = 1.0  # own keys: orthogonal to e0, logit ~0
    v = torch.randn(1, 1, N, D, generator=g)
    expected_order = torch.cat([torch.nonzero(groups == t).flatten() for t in range(4)])
    return q.to(dtype), k.to(dtype), v.to(dtype), expected_order
