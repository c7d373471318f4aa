"""The command line: python -m s2o_compile {demo, explain, bench}.

Subprocesses check what a user sees (help, exit codes, files); the remaining argument checks call
main() in-process, which is much faster than starting Python again.
"""
import os
import subprocess
import sys

import pytest
import torch

from conftest import run_cli

pytest.importorskip("transformers")


def cli(*args, timeout=120):
    env = dict(os.environ)
    env.setdefault("TRITON_INTERPRET", "1" if not torch.cuda.is_available() else "0")
    return subprocess.run([sys.executable, "-m", "s2o_compile", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def test_help_lists_every_command():
    r = cli("--help")
    assert r.returncode == 0
    for name in ("demo", "explain", "bench"):
        assert name in r.stdout


@pytest.mark.parametrize("command,option", [("demo", "--seq-len"), ("explain", "--out"),
                                            ("bench", "--seq-lens")])
def test_each_command_has_help(command, option, capsys):
    code, out, _ = run_cli([command, "--help"], capsys)
    assert code == 0 and option in out
    assert ("--block-n" in out) == (command != "demo")  # S2OConfig options where they apply


@pytest.mark.parametrize("argv,message", [
    ([], "required"),
    (["nope"], "invalid choice"),
    (["demo", "--seq-len", "0"], "--seq-len must be >= 1"),
    (["demo", "--taus", "1.5"], "--taus must be in [0, 1)"),
    (["explain", "llama-tiny"], "--out"),
    (["explain", "no-such-model", "--out", "x"], "neither a built-in model"),
    (["explain", "llama-tiny", "--out", "x", "--threshold", "2"], "S2OConfig.threshold=2.0"),
    (["explain", "llama-tiny", "--out", "x", "--ordering", "random"], "invalid choice"),
    (["bench", "--block-n", "48"], "S2OConfig.block_n=48"),
    (["bench", "--heads", "6", "--kv-heads", "4"], "multiple of --kv-heads"),
])
def test_bad_arguments_exit_2_with_a_reason(argv, message, capsys):
    code, _, err = run_cli(argv, capsys)
    assert code == 2 and message in err


def test_bad_arguments_exit_2_in_a_subprocess():
    r = cli("explain", "no-such-model", "--out", "x")
    assert r.returncode == 2 and "neither a built-in model" in r.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only message")
def test_bench_without_gpu_exits_1_with_a_clear_message():
    r = cli("bench", "--seq-lens", "1024")
    assert r.returncode == 1 and "needs a CUDA GPU" in r.stderr and not r.stdout


def test_explain_llama_tiny_writes_report_and_graph_code(tmp_path):
    out = tmp_path / "explain"
    r = cli("explain", "llama-tiny", "--out", str(out), "--seq-len", "64")
    assert r.returncode == 0, r.stderr
    assert "2 SDPA call(s), 2 rewritten" in r.stdout
    assert sorted(os.listdir(out)) == ["graph_0_after.py", "graph_0_before.py", "report.txt"]
    report = (out / "report.txt").read_text()
    assert "2 of 2 SDPA call(s) rewritten" in report and "sdpa_attention.py" in report
    assert "scaled_dot_product_attention" in (out / "graph_0_before.py").read_text()
    after = (out / "graph_0_after.py").read_text()
    assert "s2o.sparse_attention" in after and "scaled_dot_product_attention" not in after


def test_explain_a_local_checkpoint_directory(tmp_path, capsys):
    from s2o_compile.tiny_models import tiny_model

    tiny_model("qwen2-tiny").save_pretrained(tmp_path / "ckpt")
    code, out, err = run_cli(["explain", str(tmp_path / "ckpt"), "--out", str(tmp_path / "x"),
                              "--seq-len", "48", "--batch", "2"], capsys)
    assert code == 0, err
    assert "2 rewritten" in out
    assert "q[2,4,48,16]" in (tmp_path / "x" / "report.txt").read_text()


@pytest.mark.parametrize("name", ["mistral-tiny", "qwen2-tiny"])
def test_explain_other_built_in_models(name, tmp_path, capsys):
    code, out, err = run_cli(["explain", name, "--out", str(tmp_path), "--seq-len", "40"],
                             capsys)
    assert code == 0, err
    assert "2 SDPA call(s), 2 rewritten" in out


def test_bench_ratios_pair_each_round_with_its_own_dense_reading(capsys):
    """Speedup and efficiency are the medians of the rounds' own ratios, not a ratio of medians
    taken from readings far apart (the card's clock moves with what ran before: session 18)."""
    from s2o_compile import S2OConfig
    from s2o_compile.bench import _row

    case = dict(N=4096, cfg=S2OConfig(threshold=0.5), density=0.5, err=0.01, mse=1e-4,
                kernel="pair", table_mib=1.0, kv_mib=2.0,
                readings={"s2o": [2.0, 4.0, 3.0], "att": [1.5, 3.5, 2.5], "pre": [0.5] * 3})
    dense_rounds = [{"cudnn": 10.0, "flash": 12.0}, {"cudnn": 10.0, "flash": None},
                    {"cudnn": 40.0, "flash": 30.0}]
    row = _row(case, {"cudnn": 10.0, "flash": 12.0}, 10.0, [10.0, 10.0, 30.0], dense_rounds)
    assert row["efficiency_rounds"] == [0.4, 0.8, 0.2] and row["efficiency"] == 0.4
    assert row["speedup_rounds"] == [5.0, 2.5, 10.0] and row["speedup"] == 5.0
    assert row["s2o_ms"] == 3.0 and row["triton_attention_ms"] == 2.5  # no Triton reading
    assert "eff=0.40 (rounds 0.20-0.80)" in capsys.readouterr().out
