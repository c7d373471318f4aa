"""A seeded long-context attention workload with the structure of real heat maps (a proxy).

Random q/k give near-uniform attention, where no sparse method can win; real long-context
attention is concentrated. Pretrained weights cannot be used here, so this builds q, k, v whose
logits q_i . k_j * scale are a sum of planted components, each imitating a pattern seen in
long-context LLM heat maps:
  sink      the first few keys attract every query;
  local     a band near the diagonal (rotary-like features of position i - j);
  stripes   thin vertical stripes: scattered "topic" keys, and each query region (a block of
            positions) favours its own few topics, so different regions attend to different stripes;
  slash     lines i - j = c for a few offsets c (rotary features with a phase shift);
  noise     isotropic Gaussian background.
`concentration` scales every planted component (0 = pure noise, larger = sharper attention);
`noise` is the per-dimension std of the background (logit std ~ noise^2 * sqrt(D)).
Everything is generated per position in chunks: memory is O(N * D), never N x N.

Limits: it imitates the shapes, not the statistics, of real attention; the mass held by each
pattern is set by hand; all heads of a kv group share their stripes. It is a proxy for
benchmarks, stated as such, not a substitute for a real model.
"""
from __future__ import annotations

import math

import torch

_BAND_PAIRS = 8     # rotary pairs for the local band
_SLASH_PAIRS = 8    # rotary pairs for slash lines
_TOPICS = 24        # topic directions for vertical stripes


def _gen(seed: int, *salt: int, device="cpu") -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(hash((seed,) + salt) & 0x7FFF_FFFF_FFFF)
    return g


def structured_qkv(batch: int = 1, heads: int = 32, kv_heads: int = 8, seq_len: int = 8192,
                   head_dim: int = 128, *, dtype=torch.bfloat16, device="cpu", seed: int = 0,
                   concentration: float = 1.0, noise: float = 0.3, region: int = 2048, stripe_density: float = 0.004,
                   chunk: int = 8192):
    """q [B, heads, N, D], k and v [B, kv_heads, N, D]; attention logits with scale 1/sqrt(D)."""
    if head_dim < 2 * (_BAND_PAIRS + _SLASH_PAIRS) + _TOPICS + 1:
        raise ValueError(f"head_dim {head_dim} too small for the structured workload (>= 61)")
    if heads % kv_heads:
        raise ValueError(f"heads {heads} must be a multiple of kv_heads {kv_heads}")
    B, H, Hkv, N, D = batch, heads, kv_heads, seq_len, head_dim
    c = float(concentration)
    root = math.sqrt(D)  # pre-scale q so that logits = q . k / sqrt(D) carry the planted values

    g = _gen(seed, 0)
    # Incommensurate (jittered, random) frequencies: a sum of cosines with commensurate periods
    # would repeat, turning one slash line into a periodic grid of them.
    jitter = 1 + 0.1 * torch.rand(_BAND_PAIRS, generator=g)
    band_w = 2 * math.pi / (torch.logspace(math.log10(128), math.log10(8192), _BAND_PAIRS) * jitter)
    slash_w = 2 * math.pi / (8 + 56 * torch.rand(_SLASH_PAIRS, generator=g))
    slash_off = torch.randint(64, 4096, (Hkv,), generator=g).float()
    n_regions = math.ceil(N / region)
    # Each (query head, region) favours 3 topics; each stripe key of a kv head carries one topic.
    favour = torch.randint(0, _TOPICS, (B, H, n_regions, 3), generator=g)

    q = torch.empty(B, H, N, D, dtype=dtype, device=device)
    k = torch.empty(B, Hkv, N, D, dtype=dtype, device=device)
    v = torch.empty(B, Hkv, N, D, dtype=dtype, device=device)
    d_band, d_slash = 2 * _BAND_PAIRS, 2 * _SLASH_PAIRS
    o_slash, o_topic = d_band, d_band + d_slash
    o_sink = o_topic + _TOPICS

    f = torch.float64 if torch.device(device).type == "cpu" else torch.float32
    for c0 in range(0, N, chunk):
        c1 = min(c0 + chunk, N)
        pos = torch.arange(c0, c1, dtype=f, device=device)
        gc = _gen(seed, 1, c0, device=device)
        qc = noise * torch.randn(B, H, c1 - c0, D, generator=gc, dtype=f, device=device)
        kc = noise * torch.randn(B, Hkv, c1 - c0, D, generator=gc, dtype=f, device=device)
        vc = torch.randn(B, Hkv, c1 - c0, D, generator=gc, device=device)

        # local band: sum_r a^2 cos(w_r (i - j)) peaks at i == j
        ang = pos[:, None] * band_w[None, :].to(device, f)
        a = math.sqrt(4.0 * c / _BAND_PAIRS)
        qc[..., 0:d_band:2] += a * torch.cos(ang)
        qc[..., 1:d_band:2] += a * torch.sin(ang)
        kc[..., 0:d_band:2] += a * torch.cos(ang)
        kc[..., 1:d_band:2] += a * torch.sin(ang)

        # slash lines: keys carry the phase of j + offset, so logits peak at i - j == offset
        ang_q = pos[:, None] * slash_w[None, :].to(device, f)
        ang_k = (pos[None, :, None] + slash_off[:, None, None].to(device, f)) * slash_w.to(device, f)
        a = math.sqrt(3.0 * c / _SLASH_PAIRS)
        qc[..., o_slash:o_topic:2] += a * torch.cos(ang_q)
        qc[..., o_slash + 1:o_topic:2] += a * torch.sin(ang_q)
        kc[..., o_slash:o_topic:2] += a * torch.cos(ang_k)
        kc[..., o_slash + 1:o_topic:2] += a * torch.sin(ang_k)

        # vertical stripes: scattered topic keys, favoured by the query region's topics
        stripe = torch.rand(B, Hkv, c1 - c0, generator=gc, device=device) < stripe_density
        topic = torch.randint(0, _TOPICS, (B, Hkv, c1 - c0), generator=gc, device=device)
        onehot = torch.nn.functional.one_hot(topic, _TOPICS).to(device, f) * stripe[..., None]
        kc[..., o_topic:o_sink] += 3.3 * math.sqrt(c) * onehot
        reg = (pos.long() // region)
        fav = torch.nn.functional.one_hot(favour.to(device)[:, :, reg], _TOPICS).sum(-2).to(device, f)
        qc[..., o_topic:o_sink] += 3.3 * math.sqrt(c) * fav

        # attention sink: the first 4 keys
        qc[..., o_sink] += 3.2 * math.sqrt(c)
        sink = (pos < 4).to(device, f)
        kc[..., o_sink] += 3.2 * math.sqrt(c) * sink

        q[:, :, c0:c1] = (qc * root).to(dtype)
        k[:, :, c0:c1] = kc.to(dtype)
        v[:, :, c0:c1] = vc.to(dtype)
    return q, k, v


@torch.no_grad()
def mass_coverage(q: torch.Tensor, k: torch.Tensor, scale: float | None = None, rows: int = 64,
                  fractions=(0.9, 0.95), seed: int = 0) -> dict:
    """On `rows` sampled query positions (all heads), how many keys hold each fraction of the
    causal softmax mass, as mean fraction of the row's prefix: {0.9: x, 0.95: y}."""
    B, H, N, D = q.shape
    group = H // k.shape[1]
    scale = D ** -0.5 if scale is None else scale
    g = _gen(seed, 2)
    idx = torch.randint(N // 4, N, (rows,), generator=g).tolist()
    result = {f: 0.0 for f in fractions}
    for i in idx:
        s = (q[:, :, i:i + 1].float() @ k[:, :, :i + 1].float().repeat_interleave(group, 1)
             .transpose(-1, -2)) * scale  # [B, H, 1, i+1]
        p = torch.softmax(s, dim=-1).flatten(0, 2)
        cum = torch.sort(p, dim=-1, descending=True).values.cumsum(-1)
        for f in fractions:
            needed = (cum < f).sum(-1) + 1
            result[f] += (needed.double() / (i + 1)).mean().item() / rows
    return result
