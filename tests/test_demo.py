"""`python -m s2o_compile demo`: what it prints is checked, at a small --seq-len.

One subprocess runs the whole demo as a user would (part 1 compiles a small HF Llama twice with
Inductor, which dominates the ~20-30 s); the other checks call main() in-process.
"""
import importlib.util
import os
import re
import subprocess
import sys

import pytest
import torch

from s2o_compile import S2OConfig
from conftest import run_cli

pytest.importorskip("transformers")

# 1536 tokens: the last 512-query segment has a ranked prefix (keys 64..511), so part 1 runs the
# stop rule, not only the dense sink/local passes.
N = 1536


def number(pattern: str, text: str) -> float:
    m = re.search(pattern, text)
    assert m, f"{pattern!r} not in output:\n{text}"
    return float(m[1])


def table(text: str) -> dict:
    """Part 2's rows: threshold -> (density, rel. error)."""
    rows = re.findall(r"^\s*([\d.e+-]+)\s+([\d.]+)\s+([\d.e+-]+)\s+[\d.]+", text, re.M)
    return {float(t): (float(d), float(e)) for t, d, e in rows}


def test_demo_end_to_end():
    env = dict(os.environ)
    env.setdefault("TRITON_INTERPRET", "1" if not torch.cuda.is_available() else "0")
    r = subprocess.run([sys.executable, "-m", "s2o_compile", "demo", "--device", "cpu",
                        "--seq-len", str(N), "--taus", "0", "0.3"],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout
    # part 1: the report from backend.reports, the decode step kept, the graph before/after
    assert "torch.compile(model, backend=make_backend(cfg))" in out
    assert "2 of 2 SDPA call(s) rewritten" in out
    assert out.count("replaced by s2o.sparse_attention") == 2
    assert "2 of 2 SDPA call(s) kept, seq_len: q_len 1 != kv_len" in out
    before, after = out.split("before the rewrite:")[1].split("\nafter:\n")
    assert "scaled_dot_product_attention(" in before.split("\n\n")[0]
    after = after.split("\n\n")[0]
    assert "s2o.sparse_attention" in after and "scaled_dot_product_attention" not in after
    densities = re.search(r"per layer, mean over heads\): ([\d., ]+)\n", out)[1].split(", ")
    assert len(densities) == 2 and all(0 < float(d) <= 1 for d in densities)
    assert number(r"logits rel\. error ([\d.e+-]+)", out) < 0.2  # random weights, tau 0.3
    assert number(r"same next token at ([\d.]+)%", out) > 50
    assert number(r"S2O ([\d.]+) ms, dense", out) > 0
    # part 2: exact at threshold 0, sparser (or as dense) at 0.3, errors printed
    rows = table(out.split("== Part 2")[1])
    assert set(rows) == {0.0, 0.3}
    assert rows[0.0][0] == 1.0 and rows[0.0][1] < 1e-5
    assert rows[0.3][0] <= 1.0 and rows[0.3][1] < 0.05
    assert "demo done in" in out


def test_no_model_runs_the_operator_part_only(capsys):
    threads = torch.get_num_threads()
    code, out, err = run_cli(["demo", "--no-model", "--device", "cpu", "--seq-len", "256",
                              "--taus", "0", "0.01"], capsys)
    assert code == 0, err
    assert "Part 1" not in out and "== Part 2" in out
    rows = table(out)
    assert set(rows) == {0.0, 0.01} and rows[0.0][0] == 1.0 and rows[0.0][1] < 1e-5
    assert torch.get_num_threads() == threads  # the demo's single thread is restored


def test_default_thresholds_include_the_default_and_zero():
    from s2o_compile.demo import DEFAULT_TAUS

    assert 0.0 in DEFAULT_TAUS and S2OConfig().threshold in DEFAULT_TAUS


@pytest.mark.parametrize("argv,message", [
    (["--seq-len", "0"], "--seq-len must be >= 1"),
    (["--seq-len", "x"], "invalid int value"),
    (["--taus", "1"], "--taus must be in [0, 1)"),
    (["--taus", "-0.1"], "--taus must be in [0, 1)"),
    (["--taus", "nan"], "--taus must be in [0, 1)"),
    (["--taus"], "expected at least one argument"),
    (["--device", "tpu"], "invalid choice"),
    (["--no-model=1"], "ignored explicit argument"),
])
def test_bad_demo_arguments_exit_2(argv, message, capsys):
    code, _, err = run_cli(["demo", *argv], capsys)
    assert code == 2 and message in err


def test_without_transformers_part_1_exits_1_with_a_hint(monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "transformers" else real(name, *a))
    code, out, err = run_cli(["demo", "--seq-len", "64"], capsys)
    assert code == 1 and "needs Hugging Face transformers" in err and "--no-model" in err
    assert not out
