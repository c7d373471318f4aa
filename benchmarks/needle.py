"""Passkey retrieval (needle in a haystack): does a model answer the same with S2O as dense?

A long filler text hides one sentence, "The pass key is 71432", at a given depth; the prompt ends
with "What is the pass key? The pass key is" and the model continues greedily. The model is a
Hugging Face causal LM from a local directory (AutoModelForCausalLM / AutoTokenizer), run twice
on every prompt: dense (its own SDPA) and through torch.compile(model, backend=make_backend(cfg)),
where the prefill's causal SDPA calls become S2O. Decoding steps run on the eager model with the
prefill's KV cache for both: they are never rewritten anyway (q_len 1), and this avoids
recompiling for every generated token. The answer is the first digit run of the continuation.

    python benchmarks/needle.py /models/Llama-3.1-8B-Instruct --lengths 32768 131072 \\
        --depths 0.1 0.5 0.9 --trials 3 --out needle.json

Reports, per (length, depth): accuracy of dense and of S2O, and how often S2O's answer equals
dense's; plus how many SDPA calls the rewrite replaced (0 means S2O never ran: check
`explain`). Prompts shorter than --min-seq-len run dense SDPA inside the S2O op by design.
This measures accuracy, not speed (compile time would dominate a timing here).
"""
from __future__ import annotations

import argparse
import inspect
import json
import random
import re
import sys
import time

import torch

from s2o_compile import make_backend
from s2o_compile.cli_args import add_config_arguments, config_from_args

INTRO = ("There is an important info hidden inside a lot of irrelevant text. Find it and "
         "memorize it. I will quiz you about the important information there.\n")
FILLER = ("The grass is green. The sky is blue. The sun is yellow. Here we go. There and back "
          "again.\n")
NEEDLE = "The pass key is {key}. Remember it. {key} is the pass key.\n"
QUESTION = "What is the pass key? The pass key is"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _n_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def build_prompt(tokenizer, length: int, depth: float, key: str) -> torch.Tensor:
    """Token ids [1, ~length] with the needle after a fraction `depth` of the filler."""
    fixed = _n_tokens(tokenizer, INTRO + NEEDLE.format(key=key) + QUESTION)
    reps = max(1, round((length - fixed) / _n_tokens(tokenizer, FILLER)))
    before = round(depth * reps)
    text = (INTRO + FILLER * before + NEEDLE.format(key=key) + FILLER * (reps - before)
            + QUESTION)
    return tokenizer(text, return_tensors="pt")["input_ids"]


def parse_answer(text: str) -> str:
    """The first run of digits, ignoring spaces between them (word-level tokenizers decode
    '7 1 4 3 2'); '' when there is none."""
    m = re.search(r"\d+", re.sub(r"\s+", "", text))
    return m[0] if m else ""


def _cache(out):
    """The KV cache of a model output: `cache` in recent transformers, else past_key_values."""
    return out["cache"] if "cache" in out.keys() else out["past_key_values"]


@torch.no_grad()
def greedy(prefill, model, ids: torch.Tensor, max_new_tokens: int) -> list[int]:
    """Prefill with `prefill` (compiled or not), then decode greedily on the eager `model`."""
    params = inspect.signature(model.forward).parameters
    cache_arg = "cache" if "cache" in params else "past_key_values"  # renamed in transformers 5.2x
    kw = {"logits_to_keep": 1} if "logits_to_keep" in params else {}  # not [N, vocab] logits
    out = prefill(ids, use_cache=True, **kw)
    tokens = [out.logits[:, -1:].argmax(-1)]
    for _ in range(max_new_tokens - 1):
        out = model(tokens[-1], use_cache=True, **{cache_arg: _cache(out)})
        tokens.append(out.logits[:, -1:].argmax(-1))
    return torch.cat(tokens, dim=-1)[0].tolist()


def run(model, tokenizer, cfg, lengths, depths, trials, max_new_tokens=10, inner="inductor",
        seed=0, device="cpu") -> dict:
    """Every (length, depth, trial) prompt through the dense and the S2O model."""
    backend = make_backend(cfg, inner=inner)
    compiled = torch.compile(model, backend=backend)
    rng = random.Random(seed)
    rows = []
    for length in lengths:
        for depth in depths:
            for trial in range(trials):
                key = str(rng.randint(10000, 99999))
                ids = build_prompt(tokenizer, length, depth, key).to(device)
                row = dict(length=length, depth=depth, trial=trial, key=key,
                           prompt_tokens=ids.shape[1])
                for name, prefill in (("dense", model), ("s2o", compiled)):
                    t = time.perf_counter()
                    toks = greedy(prefill, model, ids, max_new_tokens)
                    text = tokenizer.decode(toks, skip_special_tokens=True)
                    row[f"{name}_answer"] = parse_answer(text)
                    row[f"{name}_text"] = text
                    row[f"{name}_s"] = time.perf_counter() - t
                row["dense_ok"] = row["dense_answer"] == key
                row["s2o_ok"] = row["s2o_answer"] == key
                row["agree"] = row["dense_answer"] == row["s2o_answer"]
                rows.append(row)
                print(f"N={row['prompt_tokens']:>7} depth={depth:<4g} key={key} "
                      f"dense={row['dense_answer'] or '-':>6} s2o={row['s2o_answer'] or '-':>6}",
                      flush=True)
    nodes = [n for r in backend.reports for n in r.nodes]
    return dict(rows=rows, summary=summarize(rows), sdpa_calls=len(nodes),
                rewritten=sum(n.rewritten for n in nodes),
                skipped={n.check: n.reason for n in nodes if not n.rewritten})


def summarize(rows) -> list[dict]:
    """Accuracy of each method and dense/S2O agreement per (length, depth)."""
    groups = {}
    for r in rows:
        groups.setdefault((r["length"], r["depth"]), []).append(r)
    return [dict(length=length, depth=depth, n=len(g),
                 dense_acc=sum(r["dense_ok"] for r in g) / len(g),
                 s2o_acc=sum(r["s2o_ok"] for r in g) / len(g),
                 agreement=sum(r["agree"] for r in g) / len(g))
            for (length, depth), g in sorted(groups.items())]


def print_report(result, cfg) -> None:
    print(f"\n{cfg}\n{'length':>8} {'depth':>6} {'n':>3} {'dense':>6} {'s2o':>6} {'agree':>6}")
    for s in result["summary"]:
        print(f"{s['length']:>8} {s['depth']:>6g} {s['n']:>3} {s['dense_acc']:>6.2f} "
              f"{s['s2o_acc']:>6.2f} {s['agreement']:>6.2f}")
    print(f"SDPA calls rewritten to S2O: {result['rewritten']} of {result['sdpa_calls']}")
    for check, reason in result["skipped"].items():
        print(f"  kept dense ({check}): {reason}")
    if result["rewritten"] == 0:
        print("  S2O never ran: the comparison is dense vs dense (see `python -m s2o_compile "
              "explain`)")
    short = [s["length"] for s in result["summary"] if s["length"] < cfg.min_seq_len]
    if short:
        print(f"  lengths {sorted(set(short))} < min_seq_len {cfg.min_seq_len}: "
              "the S2O op ran dense SDPA there")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="local Hugging Face model directory (model and tokenizer)")
    ap.add_argument("--lengths", type=int, nargs="+", default=[8192, 32768],
                    help="prompt tokens (approximate)")
    ap.add_argument("--depths", type=float, nargs="+", default=[0.1, 0.5, 0.9],
                    help="needle position as a fraction of the filler")
    ap.add_argument("--trials", type=int, default=2, help="keys per (length, depth)")
    ap.add_argument("--max-new-tokens", type=int, default=10)
    ap.add_argument("--device", choices=["cpu", "cuda"], default=None)
    ap.add_argument("--dtype", choices=list(DTYPES), default=None,
                    help="default bfloat16 on CUDA, float32 on CPU")
    ap.add_argument("--inner", choices=["inductor", "aot_eager", "eager"], default="inductor",
                    help="compiler after the rewrite (aot_eager/eager: faster to compile)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="JSON results file")
    add_config_arguments(ap)
    args = ap.parse_args(argv)
    cfg = config_from_args(ap, args)
    if min(args.lengths) < 1 or args.trials < 1 or args.max_new_tokens < 1:
        ap.error("--lengths, --trials and --max-new-tokens must be >= 1")
    if any(not 0 <= d <= 1 for d in args.depths):
        ap.error("--depths must be in [0, 1]")
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA GPU is available")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = DTYPES[args.dtype or ("bfloat16" if device == "cuda" else "float32")]

    from transformers import AutoTokenizer

    from s2o_compile.tiny_models import load_model

    try:
        model = load_model(args.model, device, dtype)
        tokenizer = AutoTokenizer.from_pretrained(args.model)
    except (OSError, ValueError) as e:
        sys.exit(f"needle: cannot load {args.model!r}: {e}")
    result = run(model, tokenizer, cfg, args.lengths, args.depths, args.trials,
                 args.max_new_tokens, args.inner, args.seed, device)
    result["meta"] = dict(model=args.model, device=device, dtype=str(dtype), config=repr(cfg),
                          inner=args.inner, torch=torch.__version__,
                          date=time.strftime("%Y-%m-%d"))
    print_report(result, cfg)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
        print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
