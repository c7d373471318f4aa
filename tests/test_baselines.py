"""The block-sparse baseline (benchmarks/baselines.py) and the claims harness (paper_claims.py)."""
import json
import math
import pathlib
import sys

import pytest
import torch

from conftest import SMALL, dense, qkv, rel_err
from s2o_compile.kernels import layout
from s2o_compile.kernels import reference as R
from s2o_compile.kernels import triton_s2o as T

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
import baselines  # noqa: E402
import paper_claims  # noqa: E402

DEV = "cuda" if torch.cuda.is_available() else "cpu"
# SMALL: prefix lengths s0 - 28 are not multiples of block_n 16 (partial last blocks);
# ALIGNED: sink and window multiples of block_n, every tile is one block.
ALIGNED = SMALL.replace(sink_tokens=16, local_window=32)


@pytest.mark.parametrize("cfg", [SMALL, ALIGNED])
@pytest.mark.parametrize("how", ["max", "mean"])
def test_table_is_whole_blocks_in_descending_score(cfg, how):
    q, k, _ = qkv(2, 4, 2, 333, 32, seed=1)
    scale = 32 ** -0.5
    offsets = layout.table_offsets(333, cfg.segment_size, cfg.sink_tokens, cfg.local_window)
    per_head = baselines.block_sparse_table(q, k, scale, cfg.replace(rank_per_head=True), how)
    assert per_head.shape == (2, 4, offsets[-1].item())  # one ranking per query head
    cfg = cfg.replace(rank_per_head=False)  # one per kv head: brute-forced below
    table = baselines.block_sparse_table(q, k, scale, cfg, how)
    assert table.dtype == torch.int32 and table.shape == (2, 2, offsets[-1].item())
    BN = cfg.block_n
    for g, seg in enumerate(layout.segments(333, cfg.segment_size, cfg.sink_tokens,
                                            cfg.local_window)):
        part = table[:, :, offsets[g]:offsets[g + 1]].long()
        if seg.prefix_len == 0:
            continue
        keys = torch.arange(seg.sink_end, seg.lo)
        assert torch.equal(part.sort(-1).values, keys.expand_as(part))  # a permutation
        # Brute-force block scores, from S2O's per-key estimates or block-mean keys.
        kp = k[:, :, seg.sink_end:seg.lo]
        qs = q[:, :, seg.start:seg.end]
        blocks = [kp[:, :, i:i + BN] for i in range(0, seg.prefix_len, BN)]
        if how == "max":
            expect = torch.stack([R.segment_scores(qs, b, scale, cfg).amax(-1) for b in blocks], -1)
        else:
            expect = R.segment_scores(qs, torch.stack([b.mean(2) for b in blocks], 2), scale, cfg)
        for b in range(2):
            for h in range(2):
                pos = part[b, h] - seg.sink_end
                block = pos // BN
                starts = torch.cat([torch.tensor([True]), block[1:] != block[:-1]])
                run_blocks = block[starts]
                assert len(set(run_blocks.tolist())) == len(run_blocks)  # each block one run
                assert bool((pos[1:] > pos[:-1])[~starts[1:]].all())    # original order inside
                s = expect[b, h, run_blocks]
                assert bool((s[1:] <= s[:-1] + 1e-6).all())             # descending score


@pytest.mark.parametrize("how", ["max", "mean"])
def test_tau0_block_table_equals_dense(how):
    q, k, v = qkv(1, 4, 2, 300, 32, seed=2)
    table = baselines.block_sparse_table(q, k, 32 ** -0.5, SMALL, how)
    out, _, pairs = R.attention_with_table(q, k, v, table, 32 ** -0.5, SMALL)
    assert rel_err(out, dense(q, k, v)) < 1e-5
    assert (pairs == 300 * 301 // 2).all()


def test_triton_attention_runs_the_block_table_like_the_reference():
    """The GPU path of paper_claims: Triton attention_with_table (interpreter on CPU)."""
    q, k, v = qkv(1, 4, 2, 200, 32, device=DEV, seed=3)
    cfg = SMALL.replace(threshold=0.2)
    table = baselines.block_sparse_table(q, k, 32 ** -0.5, cfg)
    ref_out, ref_visited, ref_pairs = R.attention_with_table(q.cpu(), k.cpu(), v.cpu(),
                                                             table.cpu(), 32 ** -0.5, cfg)
    offsets = layout.table_offsets(200, cfg.segment_size, cfg.sink_tokens, cfg.local_window, DEV)
    out, visited = T.attention_with_table(q, k, v, table, offsets, 32 ** -0.5, cfg)
    assert torch.equal(visited.cpu().long(), ref_visited)
    assert rel_err(out.cpu(), ref_out) < 1e-5
    assert (ref_pairs < 200 * 201 // 2).any()  # the stop rule cut work


def test_pass_pairs_split_all_causal_pairs():
    for n in (1, 100, 333):
        dense_pairs, prefix_pairs = paper_claims.pass_pairs(n, SMALL)
        assert dense_pairs + prefix_pairs == n * (n + 1) // 2
        visited_nothing = torch.zeros(1, 1, math.ceil(n / SMALL.block_m), dtype=torch.int32)
        assert T.pairs_from_visited(visited_nothing, n, SMALL).item() == dense_pairs


def test_pareto_keeps_only_undominated_points():
    pts = [(0.5, 1e-2), (0.6, 2e-2), (0.7, 1e-3), (0.3, 1e-1), (0.8, 1e-3)]
    assert paper_claims.pareto(pts) == [(0.3, 1e-1), (0.5, 1e-2), (0.7, 1e-3)]


def test_compare_recovers_known_ratios():
    """Power laws are exact under log-log interpolation: baseline MSE = 16 x S2O's at equal
    density, i.e. (mse ~ d^-4) the baseline needs 2x the density for the same MSE."""
    rows = []
    for d in (0.05, 0.1, 0.2, 0.4, 0.8):
        rows.append(dict(method="s2o", density=d, prefix_density=d, mse=1e-6 * d ** -4))
        rows.append(dict(method="block", density=d, prefix_density=d, mse=16e-6 * d ** -4))
    c = paper_claims.compare(rows, "s2o", "block")
    assert c["matched_density"] and c["matched_mse"]
    assert all(p["mse_ratio"] == pytest.approx(16) for p in c["matched_density"])
    assert all(p["density_ratio"] == pytest.approx(2) for p in c["matched_mse"])
    assert c["mse_ratio_median"] == pytest.approx(16) == c["mse_ratio_sparsest"]
    assert c["density_ratio_median"] == pytest.approx(2) == c["density_ratio_sparsest"]


def test_compare_leaves_out_points_in_the_rounding_floor():
    rows = [dict(method=m, density=d, prefix_density=d, mse=e * f)
            for m, f in (("s2o", 1), ("block", 4)) for d, e in ((0.2, 1e-2), (0.5, 1e-4),
                                                                (0.8, 1e-6))]
    c = paper_claims.compare(rows, "s2o", "block", mse_floor=1.5e-6)
    assert [d for d, _ in c["front"]["s2o"]] == [0.2, 0.5]  # 1e-6 < 2 x floor: rounding
    assert [d for d, _ in c["front"]["block"]] == [0.2, 0.5, 0.8]


def test_compare_says_when_curves_cannot_be_compared():
    rows = [dict(method="s2o", density=0.5, prefix_density=0.5, mse=1e-3),
            dict(method="block", density=0.5, prefix_density=0.5, mse=1e-2),
            dict(method="block", density=0.7, prefix_density=0.7, mse=1e-3)]
    c = paper_claims.compare(rows, "s2o", "block")
    assert c["mse_ratio_median"] is None and "fewer than 2" in c["note"]


def test_paper_claims_end_to_end_small(tmp_path, capsys):
    out = tmp_path / "claims.json"
    paper_claims.main(["--seq-len", "512", "--heads", "2", "--kv-heads", "1", "--head-dim", "64",
                       "--segment-size", "64", "--block-m", "32", "--block-n", "16", "--walk-chunk", "32",
                       "--sink-tokens", "16", "--local-window", "32", "--kernel", "reference",
                       "--device", "cpu", "--taus", "1e-3", "0.1", "0.7", "--out", str(out)])
    result = json.loads(out.read_text())
    (run,) = result["runs"]
    assert run["N"] == 512 and len(run["rows"]) == 3 * 3
    for r in run["rows"]:
        assert 0 < r["density"] <= 1 and 0 <= r["prefix_density"] <= 1 and r["mse"] >= 0
    assert {(c["baseline"], c["x"]) for c in run["comparisons"]} == {
        (b, x) for b in ("block", "block-mean") for x in ("density", "prefix_density")}
    assert "MSE ratio" in capsys.readouterr().out


def test_paper_claims_bfloat16_measures_the_rounding_floor(capsys):
    result = paper_claims.main(["--seq-len", "256", "--heads", "2", "--kv-heads", "1",
                                "--head-dim", "64", "--segment-size", "64", "--block-m", "32",
                                "--block-n", "16", "--walk-chunk", "32", "--sink-tokens", "16", "--local-window", "32",
                                "--device", "cpu", "--dtype", "bfloat16", "--taus", "0.01", "0.5",
                                "--methods", "s2o", "block"])
    (run,) = result["runs"]
    assert 0 < run["mse_floor"] < min(r["mse"] for r in run["rows"])
    assert all(c["mse_floor"] == run["mse_floor"] for c in run["comparisons"])
    assert "rounding floor" in capsys.readouterr().out


def test_paper_claims_rejects_bad_config(capsys):
    with pytest.raises(SystemExit) as e:
        paper_claims.main(["--block-n", "48", "--seq-len", "64"])
    assert e.value.code == 2 and "S2OConfig.block_n=48" in capsys.readouterr().err
