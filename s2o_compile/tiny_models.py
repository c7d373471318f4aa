"""Small random-init Hugging Face causal LMs for the CLI, the examples and the tests.

They have the real attention code of their families (SDPA, GQA, rotary, HF's mask building), so
the graph rewrite sees what it sees on a full-size model, at a size that compiles in seconds on
a CPU. Weights are random: outputs mean nothing, rewrites and equality with dense do.
"""
from __future__ import annotations

import os

import torch

# name -> (transformers config class, model class)
TINY_MODELS = {
    "llama-tiny": ("LlamaConfig", "LlamaForCausalLM"),
    "mistral-tiny": ("MistralConfig", "MistralForCausalLM"),
    "qwen2-tiny": ("Qwen2Config", "Qwen2ForCausalLM"),
}
VOCAB = 128


def _transformers():
    try:
        import transformers
    except ImportError:
        raise SystemExit("s2o: this needs Hugging Face transformers: pip install transformers")
    return transformers


def tiny_model(name: str, layers: int = 2, vocab_size: int = VOCAB, seed: int = 0,
               max_positions: int = 8192) -> torch.nn.Module:
    """A random-init model: hidden 64, 4 query heads, 2 kv heads (GQA), head dim 16, eval mode."""
    if name not in TINY_MODELS:
        raise ValueError(f"unknown tiny model {name!r}: expected one of {sorted(TINY_MODELS)}")
    tf = _transformers()
    config_cls, model_cls = (getattr(tf, n) for n in TINY_MODELS[name])
    config = config_cls(hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                        num_attention_heads=4, num_key_value_heads=2, vocab_size=vocab_size,
                        max_position_embeddings=max_positions, attn_implementation="sdpa")
    torch.manual_seed(seed)
    return model_cls(config).eval()


def load_model(name_or_path: str, device: str = "cpu", dtype=torch.float32) -> torch.nn.Module:
    """A built-in tiny model by name, or a local Hugging Face checkpoint directory (SDPA)."""
    if name_or_path in TINY_MODELS:
        return tiny_model(name_or_path).to(device, dtype)
    if not os.path.isdir(name_or_path):
        raise ValueError(f"{name_or_path!r} is neither a built-in model "
                         f"({', '.join(TINY_MODELS)}) nor a local model directory")
    tf = _transformers()
    return tf.AutoModelForCausalLM.from_pretrained(
        name_or_path, dtype=dtype, attn_implementation="sdpa").to(device).eval()
