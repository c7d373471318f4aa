"""The FlexAttention peer (benchmarks/flex_peer.py): block lists, density accounting, outputs."""
import json
import math
import pathlib
import sys

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import flex_attention

from conftest import dense, rel_err
from s2o_compile import S2OConfig
from s2o_compile.workload import structured_qkv

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
import flex_peer as FP  # noqa: E402

# Segments of two Flex blocks, a sink inside block 0, a one-block local window.
CFG = S2OConfig(threshold=0.0, segment_size=256, sink_tokens=64, local_window=128, min_seq_len=0)
BS = FP.FLEX_BLOCK
# Eager flex_attention warns that it materializes the scores (fine at these sizes).
pytestmark = pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")


def flex(q, k, v, mask):
    return flex_attention(q, k, v, block_mask=mask, enable_gqa=True)


def pair_mask(num, idx, n):
    """[B, Hkv, N, N] bool from the full block lists plus the causal diagonal block (tiny N)."""
    B, H, nb = num.shape
    blocks = torch.zeros(B, H, nb, nb, dtype=torch.bool)
    for b in range(B):
        for h in range(H):
            for qb in range(nb):
                blocks[b, h, qb, idx[b, h, qb, :num[b, h, qb]].long()] = True
                blocks[b, h, qb, qb] = True
    pos = torch.arange(n)
    expand = blocks.repeat_interleave(BS, 2).repeat_interleave(BS, 3)[..., :n, :n]
    return expand & (pos[:, None] >= pos[None, :])


def test_hand_made_block_lists():
    # N 1024 = 8 blocks; 4 segments of 2 blocks. Prefix blocks: none in segments 0-1, {1, 2} in
    # segment 2, {1, 2, 3, 4} in segment 3. Keys of blocks 2 and 4 score highest (ties keep the
    # lower block first), so keeping 1 and 2 blocks selects {2} and {2, 4}.
    n, D = 1024, 64
    q = torch.zeros(1, 2, n, D)
    q[..., 0] = 1.0
    k = torch.zeros(1, 1, n, D)
    k[:, :, 2 * BS:3 * BS, 0] = 5.0
    k[:, :, 4 * BS:5 * BS, 0] = 5.0
    num, idx = FP.select_blocks(q, k, D ** -0.5, CFG, keep=[0, 0, 1, 2])
    expect = [[], [0], [0, 1], [0, 1, 2], [0, 2, 3], [0, 2, 3, 4], [0, 2, 4, 5], [0, 2, 4, 5, 6]]
    got = [idx[0, 0, qb, :num[0, 0, qb]].tolist() for qb in range(8)]
    assert got == expect

    mask = FP.block_mask(num, idx, n, group=2)
    for h in range(2):  # the kv head's lists, repeated for both query heads of the group
        assert [mask.full_kv_indices[0, h, qb, :mask.full_kv_num_blocks[0, h, qb]].tolist()
                for qb in range(8)] == expect
        assert mask.kv_num_blocks[0, h].tolist() == [1] * 8
        assert mask.kv_indices[0, h, :, 0].tolist() == list(range(8))  # the diagonal, partial

    # Density: computed causal pairs over N(N+1)/2, from the lists and by brute force.
    brute = pair_mask(num, idx, n).sum().item() / (n * (n + 1) / 2)
    assert FP.achieved_density(num, n).item() == pytest.approx(brute, rel=1e-12)


@pytest.mark.parametrize("n", [1024, 1000])
def test_full_density_is_dense_causal(n):
    q, k, v = structured_qkv(1, 4, 2, n, 64, dtype=torch.float32, seed=1)
    mask, density = FP.flex_block_mask(q, k, 64 ** -0.5, CFG, 1.0)
    assert density.shape == (1, 2) and torch.allclose(density, torch.ones(1, 2, dtype=torch.float64))
    assert rel_err(flex(q, k, v, mask), dense(q, k, v)) < 1e-5


def test_sparse_selection_density_error_and_mask():
    n = 2048
    q, k, v = structured_qkv(1, 4, 2, n, 64, dtype=torch.float32, seed=2)
    scale = 64 ** -0.5
    ref = dense(q, k, v)
    segs = FP.segment_blocks(n, CFG)
    floor = FP.dense_pairs(n, segs, BS) / (n * (n + 1) / 2)

    # Below the floor nothing of the prefix is kept; above it, up to the target, same fraction.
    assert FP.keep_counts(n, CFG, floor / 2) == [0] * len(segs)
    keep = FP.keep_counts(n, CFG, 0.6)
    fracs = [kg / s.prefix for kg, s in zip(keep, segs) if s.prefix]
    assert max(fracs) - min(fracs) <= max(1 / s.prefix for s in segs if s.prefix)

    errs = []
    for target in (floor / 2, 0.6):
        num, idx = FP.select_blocks(q, k, scale, CFG, FP.keep_counts(n, CFG, target))
        density = FP.achieved_density(num, n).mean().item()
        out = flex(q, k, v, FP.block_mask(num, idx, n, group=2))
        errs.append(rel_err(out, ref))
        if target < floor:
            assert density == pytest.approx(floor)
        else:
            assert floor < density <= target and target - density < 0.05
        # Flex computed exactly the pairs the lists say: SDPA with the same boolean mask agrees.
        allowed = pair_mask(num, idx, n).repeat_interleave(2, dim=1)
        masked = F.scaled_dot_product_attention(q, k.repeat_interleave(2, 1),
                                                v.repeat_interleave(2, 1), attn_mask=allowed)
        assert rel_err(out, masked) < 1e-5
    assert 0 < errs[1] < errs[0]


def test_compiled_flex_matches_eager():
    n = 1024
    q, k, v = structured_qkv(1, 4, 2, n, 64, dtype=torch.float32, seed=3)
    mask, _ = FP.flex_block_mask(q, k, 64 ** -0.5, CFG, 0.6)
    compiled = torch.compile(flex_attention)(q, k, v, block_mask=mask, enable_gqa=True)
    assert rel_err(compiled, flex(q, k, v, mask)) < 1e-5


def test_cli_writes_json(tmp_path):
    out = tmp_path / "flex.json"
    FP.main(["--device", "cpu", "--seq-len", "1024", "--heads", "2", "--kv-heads", "1",
             "--head-dim", "64", "--densities", "0.8", "--taus", "0.1", "--eager",
             "--segment-size", "256", "--sink-tokens", "64", "--local-window", "128",
             "--out", str(out)])
    res = json.loads(out.read_text())
    assert res["meta"]["torch"] == torch.__version__ and "triton" in res["meta"]
    run = res["runs"][0]
    assert [r["target"] for r in run["flex"]] == [1.0, 0.8]
    assert run["flex"][0]["density"] == 1.0 and run["flex"][0]["rel_err"] < 1e-5
    assert run["flex_density_floor"] < run["flex"][1]["density"] <= 0.8
    assert run["s2o"][0]["tau"] == 0.1 and 0 < run["s2o"][0]["density"] <= 1
    assert all(math.isfinite(r["flex_ms"]) for r in run["flex"])
