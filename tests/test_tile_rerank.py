"""benchmarks/tile_rerank.py: its walk in the segment's own order is the reference's walk, and a
per-tile order is a permutation of each tile's prefix (so that its densities are comparable)."""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import tile_rerank as TR  # noqa: E402
from s2o_compile import S2OConfig  # noqa: E402
from s2o_compile.kernels import reference as R  # noqa: E402
from s2o_compile.workload import structured_qkv  # noqa: E402

CFG = S2OConfig(min_seq_len=0, threshold=0.6, segment_size=256, sink_tokens=16, local_window=64,
                pool_rows=128)


def test_segment_order_walk_is_the_reference():
    q, k, v = structured_qkv(1, 4, 2, 1024, 64, seed=1)
    scale = 64 ** -0.5
    table = R.build_index_table(q, k, scale, CFG)
    expected, _, pairs = R.attention_with_table(q, k, v, table, scale, CFG)
    out, walked = TR.walk(q, k, v, table, scale, CFG, front=0, buckets=0)
    assert walked == int(pairs.sum())
    assert torch.allclose(out.to(expected.dtype).float(), expected.float(), atol=1e-2, rtol=0)


def test_tile_orders_permute_the_front_only():
    table = torch.stack([torch.randperm(300) for _ in range(2)])[None].int()  # [1, 2, 300]
    kf = torch.randn(1, 2, 300, 16)
    means = torch.randn(1, 2, 3, 16)
    orders = TR.tile_orders(table, means, kf, 0.25, front=100, buckets=None)
    assert orders.shape == (1, 2, 3, 300)
    assert torch.equal(orders[..., 100:], table[:, :, None, 100:].expand(1, 2, 3, 200))
    assert torch.equal(orders[..., :100].sort(-1).values,
                       table[:, :, None, :100].sort(-1).values.expand(1, 2, 3, 100))
