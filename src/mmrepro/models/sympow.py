"""Symmetric power transformers (and the conformal variant), with a softmax baseline of equal size.

Papers: J. Buckman, C. Gelada, S. Zhang, "Symmetric Power Transformers", Manifest AI, 2024;
S. Zhang, J. Buckman, C. Gelada et al., "Conformal Transformations for Symmetric Power Transformers",
arXiv 2503.03269, 2025.

Attention weights are A_ij = (q_i . k_j)^p for an even power p (2, 4, ...), normalised over j <= i:

    y_i = sum_{j<=i} A_ij v_j / sum_{j<=i} A_ij .

Because (q . k)^p = <phi_p(q), phi_p(k)> for the symmetric power embedding phi_p : R^d -> R^D,
D = C(d+p-1, p) (one feature per multiset {i_1 <= ... <= i_p} of coordinates, equal to
sqrt(p! / prod_c m_c!) * x_{i_1} ... x_{i_p}, with m_c the multiplicities: the multinomial theorem
makes the inner product exactly (q . k)^p), the same outputs can be computed linearly in T:
- `sympow_attention_quadratic`: the O(T^2) reference;
- `sympow_attention_chunked`: training form; quadratic inside chunks of c tokens, a (D x d_v) state
  carried between chunks: O(T c d + T D d_v);
- `sympow_attention_recurrent`: generation form; one state update per token (used by `step`).

Conformal-sympow adds (i) data-dependent gating: a per-head decay g_t in (0, 1) computed from x_t,
A_ij *= prod_{l=j+1..i} g_l, i.e. the state decays S_t = g_t S_{t-1} + phi(k_t) v_t^T; and
(ii) data-dependent rotary embeddings: the rotary angle of position t is the running sum of
per-token increments omega(x_t) = freqs * 2 sigmoid(W x_t) (= the standard RoPE freqs at init),
instead of t * freqs. Both preserve the linear form. The plain sympow and softmax models use
standard RoPE. Queries and keys of the sympow variants are layer-normalised per head (no affine)
before rotation, which bounds |q.k| / sqrt(d) <= sqrt(d) and keeps (q.k)^p finite.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "SymPowConfig",
    "SymPowTransformer",
    "sympow_attention_chunked",
    "sympow_attention_quadratic",
    "sympow_attention_recurrent",
    "sympow_dim",
    "sympow_embedding",
]

ATTENTIONS = ("softmax", "sympow", "conformal")
_EPS = 1e-6  # added to the normaliser in every form (keeps a row of zero weights finite)


@dataclass(frozen=True)
class SymPowConfig:
    vocab_size: int = 256  # bytes
    d_model: int = 64  # residual width
    n_layer: int = 2  # transformer blocks
    n_head: int = 4  # heads; head dim d = d_model / n_head
    attention: str = "sympow"  # "softmax" | "sympow" | "conformal"
    power: int = 4  # p, even; ignored by softmax
    chunk_size: int = 64  # chunk length of the chunked training form
    rope_base: float = 10000.0  # RoPE base frequency
    mlp_ratio: int = 4  # MLP hidden = mlp_ratio * d_model
    gate_horizons: tuple[float, ...] = (8.0, 32.0, 128.0, 512.0)  # conformal: initial 1/(1-g) per head, cycled

    def __post_init__(self) -> None:
        if self.attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {self.attention!r}")
        if self.d_model <= 0 or self.n_head <= 0 or self.d_model % self.n_head:
            raise ValueError(f"d_model ({self.d_model}) must be a positive multiple of n_head ({self.n_head})")
        if (self.d_model // self.n_head) % 2:
            raise ValueError("head dim must be even (rotary embeddings)")
        if self.attention != "softmax" and (self.power < 2 or self.power % 2):
            raise ValueError(f"power must be even and >= 2, got {self.power}")
        if self.n_layer <= 0 or self.vocab_size <= 0 or self.chunk_size <= 0 or self.mlp_ratio <= 0:
            raise ValueError("n_layer, vocab_size, chunk_size and mlp_ratio must be > 0")
        if any(h <= 1 for h in self.gate_horizons):
            raise ValueError("gate_horizons must be > 1")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head


# ---------------------------------------------------------------- symmetric power embedding


def sympow_dim(d: int, p: int) -> int:
    """D = C(d + p - 1, p), the dimension of the symmetric power embedding."""
    return math.comb(d + p - 1, p)


@functools.lru_cache(maxsize=16)
def _sympow_index(d: int, p: int) -> tuple[torch.Tensor, torch.Tensor]:
    combos = list(itertools.combinations_with_replacement(range(d), p))
    idx = torch.tensor(combos, dtype=torch.long)  # (D, p)
    weights = []
    for c in combos:
        coef = math.factorial(p)
        for m in (c.count(i) for i in set(c)):
            coef //= math.factorial(m)
        weights.append(math.sqrt(coef))
    return idx, torch.tensor(weights, dtype=torch.float64)


def sympow_embedding(x: torch.Tensor, p: int) -> torch.Tensor:
    """phi_p: (..., d) -> (..., D) with <phi_p(q), phi_p(k)> = (q . k)^p exactly."""
    if p < 1:
        raise ValueError(f"p must be >= 1, got {p}")
    d = x.shape[-1]
    idx, w = _sympow_index(d, p)
    idx = idx.to(x.device)
    w = w.to(device=x.device, dtype=x.dtype)
    if p % 2:
        out = torch.index_select(x, -1, idx[:, 0])
        for j in range(1, p):
            out = out * torch.index_select(x, -1, idx[:, j])
        return out * w
    # even p: gather pairs from the outer product x x^T (fewer, cheaper gathers and backward)
    x2 = (x[..., :, None] * x[..., None, :]).flatten(-2)
    out = torch.index_select(x2, -1, idx[:, 0] * d + idx[:, 1])
    for j in range(2, p, 2):
        out = out * torch.index_select(x2, -1, idx[:, j] * d + idx[:, j + 1])
    return out * w


# ---------------------------------------------------------------- three forms of the attention


def sympow_attention_quadratic(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, p: int, log_gate: torch.Tensor | None = None
) -> torch.Tensor:
    """Reference form. q, k (B, H, T, d); v (B, H, T, dv); log_gate (B, H, T) <= 0 or None.
    Returns (B, H, T, dv)."""
    t = q.shape[-2]
    mask = torch.ones(t, t, dtype=torch.bool, device=q.device).tril()
    a = (q @ k.transpose(-1, -2)).pow(p)
    if log_gate is not None:
        g = log_gate.cumsum(-1)
        a = a * torch.exp((g[..., :, None] - g[..., None, :]).masked_fill(~mask, float("-inf")))
    a = a.masked_fill(~mask, 0.0)
    return (a @ v) / (a.sum(-1, keepdim=True) + _EPS)


def sympow_attention_chunked(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    p: int,
    chunk_size: int,
    log_gate: torch.Tensor | None = None,
) -> torch.Tensor:
    """Training form: exact same outputs as `sympow_attention_quadratic`, cost linear in T.
    Shapes as in the quadratic form; T need not be a multiple of chunk_size."""
    if chunk_size <= 0:
        raise ValueError("chunk_size must be > 0")
    b, h, t, _ = q.shape
    dv = v.shape[-1]
    c = min(chunk_size, t)
    pad = (-t) % c
    if pad:
        q, k, v = (F.pad(z, (0, 0, 0, pad)) for z in (q, k, v))
        if log_gate is not None:
            log_gate = F.pad(log_gate, (0, pad))
    n = (t + pad) // c
    q, k, v = (z.reshape(b, h, n, c, z.shape[-1]) for z in (q, k, v))
    mask = torch.ones(c, c, dtype=torch.bool, device=q.device).tril()
    a = (q @ k.transpose(-1, -2)).pow(p)  # (B, H, n, c, c) within-chunk weights
    if log_gate is not None:
        g = log_gate.reshape(b, h, n, c).cumsum(-1)  # log decay from chunk start to each position
        a = a * torch.exp((g[..., :, None] - g[..., None, :]).masked_fill(~mask, float("-inf")))
        to_end = torch.exp(g[..., -1:] - g)  # decay from position j to the chunk end
        from_start = torch.exp(g)  # decay from chunk start to position i
        chunk_decay = torch.exp(g[..., -1])  # (B, H, n)
    a = a.masked_fill(~mask, 0.0)
    num = a @ v
    den = a.sum(-1)
    if n == 1:  # one chunk: no state to carry, the quadratic part is the whole answer
        return (num / (den[..., None] + _EPS)).reshape(b, h, c, dv)[:, :, :t]
    phik = sympow_embedding(k, p)  # (B, H, n, c, D)
    phiq = sympow_embedding(q, p)
    if log_gate is not None:
        phik = phik * to_end[..., None]
    s_local = phik.transpose(-1, -2) @ v  # (B, H, n, D, dv)
    z_local = phik.sum(-2)  # (B, H, n, D)
    big_d = phik.shape[-1]
    s = q.new_zeros(b, h, big_d, dv)
    z = q.new_zeros(b, h, big_d)
    s_in, z_in = [], []
    for i in range(n):
        s_in.append(s)
        z_in.append(z)
        if log_gate is not None:
            s = s * chunk_decay[:, :, i, None, None]
            z = z * chunk_decay[:, :, i, None]
        s = s + s_local[:, :, i]
        z = z + z_local[:, :, i]
    s_prev = torch.stack(s_in, 2)  # (B, H, n, D, dv): state entering each chunk
    z_prev = torch.stack(z_in, 2)
    if log_gate is not None:
        phiq = phiq * from_start[..., None]
    num = num + phiq @ s_prev
    den = den + (phiq @ z_prev[..., None]).squeeze(-1)
    y = num / (den[..., None] + _EPS)
    return y.reshape(b, h, n * c, dv)[:, :, :t]


def sympow_attention_recurrent(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    p: int,
    log_gate: torch.Tensor | None = None,
    state: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """Generation form, one token at a time: S_t = g_t S_{t-1} + phi(k_t) v_t^T, z_t likewise,
    y_t = phi(q_t) S_t / (phi(q_t) . z_t). Shapes as above; returns (y (B, H, T, dv), (S, z)).
    The state is kept in float64 (the output is cast back to v's dtype)."""
    b, h, t, _ = q.shape
    out_dtype = v.dtype
    # float64 state: the D-dimensional inner products cancel heavily when a few recent keys dominate
    q, k, v = q.double(), k.double(), v.double()
    log_gate = None if log_gate is None else log_gate.double()
    phiq, phik = sympow_embedding(q, p), sympow_embedding(k, p)
    if state is None:
        s = q.new_zeros(b, h, phik.shape[-1], v.shape[-1])
        z = q.new_zeros(b, h, phik.shape[-1])
    else:
        s, z = state
    ys = []
    for i in range(t):
        if log_gate is not None:
            gi = torch.exp(log_gate[:, :, i])
            s = s * gi[..., None, None]
            z = z * gi[..., None]
        s = s + phik[:, :, i, :, None] * v[:, :, i, None, :]
        z = z + phik[:, :, i]
        num = (phiq[:, :, i, None, :] @ s).squeeze(-2)
        den = (phiq[:, :, i] * z).sum(-1, keepdim=True)
        ys.append(num / (den + _EPS))
    return torch.stack(ys, 2).to(out_dtype), (s, z)


# ---------------------------------------------------------------- model


def _rotate(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotary embedding: x (B, H, T, d), angles (B or 1, H or 1, T, d/2)."""
    x1, x2 = x.chunk(2, -1)
    cos, sin = angles.cos(), angles.sin()
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1)


class _Attention(nn.Module):
    def __init__(self, cfg: SymPowConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d, hd, nh = cfg.d_model, cfg.head_dim, cfg.n_head
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.proj = nn.Linear(d, d, bias=False)
        freqs = cfg.rope_base ** (-torch.arange(0, hd, 2, dtype=torch.float32) / hd)
        self.register_buffer("freqs", freqs, persistent=False)
        if cfg.attention == "conformal":
            self.gate = nn.Linear(d, nh)
            self.rot = nn.Linear(d, nh * hd // 2)
            nn.init.zeros_(self.gate.weight)
            horizons = [cfg.gate_horizons[i % len(cfg.gate_horizons)] for i in range(nh)]
            with torch.no_grad():  # sigmoid(b) = 1 - 1/horizon
                self.gate.bias.copy_(torch.tensor([math.log(hz - 1.0) for hz in horizons]))
            nn.init.zeros_(self.rot.weight)
            nn.init.zeros_(self.rot.bias)
            self.gate._keep_init = True
            self.rot._keep_init = True

    def _project(
        self, x: torch.Tensor, pos0: int, theta0: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """x (B, T, C) -> q, k, v (B, H, T, d), log_gate (B, H, T) or None, last angles (B, H, d/2)."""
        cfg = self.cfg
        b, t, _ = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, cfg.n_head, cfg.head_dim).permute(2, 0, 3, 1, 4)
        log_gate = None
        if cfg.attention == "conformal":
            omega = self.freqs * 2 * torch.sigmoid(self.rot(x).view(b, t, cfg.n_head, -1))
            angles = omega.transpose(1, 2).cumsum(2)  # (B, H, T, d/2)
            if theta0 is not None:
                angles = angles + theta0[:, :, None]
            log_gate = F.logsigmoid(self.gate(x)).transpose(1, 2)  # (B, H, T)
        else:
            pos = torch.arange(pos0, pos0 + t, device=x.device, dtype=torch.float32)
            angles = (pos[:, None] * self.freqs)[None, None].expand(b, cfg.n_head, t, -1)
        if cfg.attention != "softmax":
            q = F.layer_norm(q, (cfg.head_dim,))
            k = F.layer_norm(k, (cfg.head_dim,))
        q, k = _rotate(q, angles), _rotate(k, angles)
        q = q * cfg.head_dim**-0.5
        return q, k, v, log_gate, angles[:, :, -1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v, log_gate, _ = self._project(x, 0, None)
        if self.cfg.attention == "softmax":
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=1.0)
        else:
            y = sympow_attention_chunked(q, k, v, self.cfg.power, self.cfg.chunk_size, log_gate)
        return self.proj(y.transpose(1, 2).reshape(b, t, c))

    def step(self, x: torch.Tensor, cache: dict[str, Any]) -> torch.Tensor:
        """Incremental forward of new tokens x (B, T', C) given the cache of earlier ones (updated)."""
        b, t, c = x.shape
        pos = cache.get("pos", 0)
        q, k, v, log_gate, last = self._project(x, pos, cache.get("theta"))
        if self.cfg.attention == "softmax":
            if "k" in cache:
                k, v = torch.cat([cache["k"], k], 2), torch.cat([cache["v"], v], 2)
            cache["k"], cache["v"] = k, v
            mask = torch.ones(t, k.shape[2], dtype=torch.bool, device=x.device).tril(k.shape[2] - t)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=1.0)
        else:
            y, cache["state"] = sympow_attention_recurrent(
                q, k, v, self.cfg.power, log_gate, cache.get("state")
            )
            cache["theta"] = last
        cache["pos"] = pos + t
        return self.proj(y.transpose(1, 2).reshape(b, t, c))


class _Block(nn.Module):
    def __init__(self, cfg: SymPowConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = _Attention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.d_model, cfg.mlp_ratio * cfg.d_model),
            nn.GELU(),
            nn.Linear(cfg.mlp_ratio * cfg.d_model, cfg.d_model),
        )

    def forward(self, x: torch.Tensor, cache: dict[str, Any] | None = None) -> torch.Tensor:
        h = self.ln1(x)
        x = x + (self.attn(h) if cache is None else self.attn.step(h, cache))
        return x + self.mlp(self.ln2(x))


class SymPowTransformer(nn.Module):
    """Decoder-only byte LM with softmax, sympow or conformal-sympow attention.

    forward(idx (B, T) long) -> logits (B, T, vocab). Any T (no learned positions), so the same
    model is evaluated at 1x, 2x, 4x its training context.
    step(idx (B, T'), caches) -> logits of the new tokens, with per-layer caches (recurrent state
    for sympow, K/V for softmax) updated in place; `generate` samples with it.
    """

    def __init__(self, cfg: SymPowConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(_Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.head.weight = self.embed.weight  # tied
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if getattr(m, "_keep_init", False):
            return  # conformal gate / rotary projections keep their own initialisation
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        if idx.dim() != 2:
            raise ValueError(f"expected idx (B, T), got {tuple(idx.shape)}")
        x = self.embed(idx)
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.ln_f(x))

    def new_caches(self) -> list[dict[str, Any]]:
        return [{} for _ in self.blocks]

    def step(self, idx: torch.Tensor, caches: list[dict[str, Any]]) -> torch.Tensor:
        x = self.embed(idx)
        for blk, cache in zip(self.blocks, caches, strict=True):
            x = blk(x, cache)
        return self.head(self.ln_f(x))

    @torch.no_grad()
    def generate(
        self, prompt: torch.Tensor, n_new: int, temperature: float = 1.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """prompt (B, T0) -> (B, T0 + n_new), sampling one token per step from the recurrent form."""
        caches = self.new_caches()
        logits = self.step(prompt, caches)[:, -1]
        out = [prompt]
        for _ in range(n_new):
            probs = torch.softmax(logits / max(temperature, 1e-6), -1)
            nxt = torch.multinomial(probs, 1, generator=generator)
            out.append(nxt)
            logits = self.step(nxt, caches)[:, -1]
        return torch.cat(out, 1)
