"""benchmarks/needle.py mechanics on a tiny random-init Llama saved to disk with a word-level
tokenizer: the harness loads both from a directory, builds prompts, runs dense and S2O, and
reports. A random model's answers are noise, so accuracy is not checked; but at tau = 0 S2O
equals dense, so both must give the same continuation."""
import json
import pathlib
import re
import sys

import pytest

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
import needle  # noqa: E402
from s2o_compile.tiny_models import tiny_model  # noqa: E402

SMALL_S2O = ["--threshold", "0", "--min-seq-len", "0", "--segment-size", "64", "--block-m", "32",
             "--block-n", "16", "--walk-chunk", "32", "--sink-tokens", "8", "--local-window", "16"]


def word_level_tokenizer():
    """Every word of the prompt templates, digits one token each (so any key is encodable)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    text = needle.INTRO + needle.FILLER + needle.NEEDLE + needle.QUESTION
    words = sorted(set(re.findall(r"[A-Za-z]+|[^\w\s]", text)))
    vocab = {w: i for i, w in enumerate(["[UNK]", "<s>", "</s>"] + list("0123456789") + words)}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(),
                                                pre_tokenizers.Digits(individual_digits=True)])
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]",
                                                bos_token="<s>", eos_token="</s>")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-llama")
    tok = word_level_tokenizer()
    tok.save_pretrained(path)
    tiny_model("llama-tiny", vocab_size=len(tok)).save_pretrained(path)
    return path


def test_prompt_length_and_needle_depth(model_dir):
    tok = transformers.AutoTokenizer.from_pretrained(model_dir)
    for depth in (0.0, 0.5, 1.0):
        ids = needle.build_prompt(tok, 400, depth, "12345")[0].tolist()
        assert abs(len(ids) - 400) < 30
        assert tok.unk_token_id not in ids
        digits = [i for i, t in enumerate(ids) if tok.convert_ids_to_tokens(t) == "1"]
        assert abs(digits[0] / len(ids) - depth) < 0.1  # the needle sits at the asked depth


def test_parse_answer():
    assert needle.parse_answer(" 7 1 4 3 2 . Remember") == "71432"
    assert needle.parse_answer("12345. The pass key is 999") == "12345"
    assert needle.parse_answer("blue sky") == ""


def test_harness_runs_dense_and_s2o_and_reports(model_dir, tmp_path, capsys):
    out = tmp_path / "needle.json"
    result = needle.main([str(model_dir), "--lengths", "150", "260", "--depths", "0.5",
                          "--trials", "2", "--max-new-tokens", "4", "--inner", "aot_eager",
                          "--out", str(out), *SMALL_S2O])
    assert json.loads(out.read_text())["summary"] == result["summary"]
    assert [(s["length"], s["n"]) for s in result["summary"]] == [(150, 2), (260, 2)]
    assert len(result["rows"]) == 4
    assert len({r["key"] for r in result["rows"]}) == 4
    assert result["rewritten"] >= 2  # S2O really ran in the prefill (2 layers)
    for r in result["rows"]:
        assert r["dense_text"] == r["s2o_text"]  # tau = 0: S2O is dense attention
        assert r["agree"] and r["dense_ok"] == r["s2o_ok"]
    report = capsys.readouterr().out
    assert "SDPA calls rewritten to S2O:" in report and "agree" in report


def test_bad_arguments_exit_2(model_dir, capsys):
    with pytest.raises(SystemExit) as e:
        needle.main([str(model_dir), "--depths", "1.5"])
    assert e.value.code == 2 and "--depths" in capsys.readouterr().err


def test_missing_model_directory_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="cannot load"):
        needle.main([str(tmp_path / "nothing-here"), "--lengths", "50"])
