"""`python -m s2o_compile explain MODEL --out DIR`: what the S2O rewrite does to a model.

MODEL is a built-in random-init model (llama-tiny, mistral-tiny, qwen2-tiny: the real HF
attention code at toy size) or a local Hugging Face checkpoint directory. The model runs once,
under torch.no_grad() (inference, as the rewrite requires), on random token ids; DIR receives
report.txt (every SDPA call: location, shapes, decision, the check that failed) and, per Dynamo
graph, graph_<i>_before.py / graph_<i>_after.py, the graph code around the rewrite. min_seq_len
defaults to 0 here, so that the rewrite shows at toy lengths.
"""
from __future__ import annotations

import argparse
import os

import torch

from .cli_args import add_config_arguments, config_from_args
from .explain import explain
from .tiny_models import TINY_MODELS, load_model

HELP = "write the rewrite report and before/after graph code of a model to a folder"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def write_explanation(explanation, out_dir: str) -> list[str]:
    """report.txt and graph_<i>_{before,after}.py in out_dir; returns the paths written."""
    os.makedirs(out_dir, exist_ok=True)
    files = {"report.txt": str(explanation) + "\n"}
    for i, g in enumerate(explanation.graphs):
        files[f"graph_{i}_before.py"] = g.code_before
        files[f"graph_{i}_after.py"] = g.code_after
    paths = []
    for name, text in files.items():
        path = os.path.join(out_dir, name)
        with open(path, "w") as f:
            f.write(text)
        paths.append(path)
    return paths


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help=f"one of {', '.join(TINY_MODELS)}, or a local HF model directory")
    p.add_argument("--out", required=True, help="folder for report.txt and the graph code")
    p.add_argument("--seq-len", type=int, default=256, help="prompt tokens (default 256)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--dtype", choices=list(DTYPES), default="float32")
    # min_seq_len 0: show the rewrite at the short lengths explain runs (at the default 16384 a
    # shorter static sequence keeps SDPA, reason "min_seq_len"); pass --min-seq-len to see that.
    add_config_arguments(p, min_seq_len=0)


def command(p: argparse.ArgumentParser, args) -> int:
    if args.seq_len < 1 or args.batch < 1:
        p.error("--seq-len and --batch must be >= 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA GPU is available")
    if args.model not in TINY_MODELS and not os.path.isdir(args.model):
        p.error(f"model {args.model!r} is neither a built-in model ({', '.join(TINY_MODELS)}) "
                "nor a local directory")
    cfg = config_from_args(p, args)
    model = load_model(args.model, args.device, DTYPES[args.dtype])
    vocab = model.config.vocab_size
    ids = torch.randint(0, vocab, (args.batch, args.seq_len),
                        generator=torch.Generator().manual_seed(0)).to(args.device)
    with torch.no_grad():
        explanation = explain(model, ids, config=cfg)
    paths = write_explanation(explanation, args.out)
    print(explanation.summary)
    print(f"wrote {len(paths)} files to {args.out}: {', '.join(os.path.basename(x) for x in paths)}")
    return 0
