"""Batched beam search for the caption decoders (Karpathy & Fei-Fei's generator, Show, Attend
and Tell, GeoCapNet). With `beam_size=1` it is exactly greedy decoding.

A decoder exposes one step: `step(tokens (N,), state) -> (log_probs (N, V), new_state)`, where
`state` is a tuple of tensors whose first dimension is N (one row per hypothesis). Models get
`generate` and `greedy` from `CaptionDecoding`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from mmrepro.data.caption_vocab import BOS, EOS

State = tuple[torch.Tensor, ...]
StepFn = Callable[[torch.Tensor, State], tuple[torch.Tensor, State]]


@torch.no_grad()
def beam_search(
    step: StepFn,
    state: State,
    *,
    bos: int,
    eos: int,
    beam_size: int,
    max_len: int,
) -> list[list[int]]:
    """Best token sequence per example (no <bos>, cut before <eos>) under summed log-probability.

    state: tensors with first dimension B (the batch); they are repeated per beam internally.
    A hypothesis that emitted <eos> is finished: it keeps its score and is carried unchanged.
    """
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    b = state[0].shape[0]
    k = beam_size
    device = state[0].device
    state = tuple(s.repeat_interleave(k, dim=0) for s in state)
    tokens = torch.full((b * k,), bos, dtype=torch.long, device=device)
    scores = torch.full((b, k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all beams start identical: keep only one alive at first
    seqs = torch.zeros((b * k, 0), dtype=torch.long, device=device)
    finished = torch.zeros(b * k, dtype=torch.bool, device=device)
    for _ in range(max_len):
        logp, state = step(tokens, state)
        v = logp.shape[-1]
        # finished hypotheses may only "emit" <eos> again, at no cost
        frozen = torch.full_like(logp, float("-inf"))
        frozen[:, eos] = 0.0
        logp = torch.where(finished[:, None], frozen, logp)
        cand = (scores.view(b * k, 1) + logp).view(b, k * v)
        scores, flat = cand.topk(k, dim=1)  # (B, K), sorted best first
        src = (flat // v + torch.arange(b, device=device)[:, None] * k).view(-1)
        tokens = (flat % v).view(-1)
        seqs = torch.cat([seqs[src], tokens[:, None]], dim=1)
        state = tuple(s[src] for s in state)
        finished = finished[src] | (tokens == eos)
        if bool(finished.all()):
            break
    best = seqs.view(b, k, -1)[:, 0]
    out = []
    for row in best.tolist():
        out.append(row[: row.index(eos)] if eos in row else row)
    return out


@torch.no_grad()
def greedy_search(step: StepFn, state: State, *, bos: int, eos: int, max_len: int) -> list[list[int]]:
    """Arg-max decoding, written independently of `beam_search` as the reference it must match."""
    b = state[0].shape[0]
    tokens = torch.full((b,), bos, dtype=torch.long, device=state[0].device)
    out: list[list[int]] = [[] for _ in range(b)]
    done = [False] * b
    for _ in range(max_len):
        logp, state = step(tokens, state)
        tokens = logp.argmax(-1)
        for i, tok in enumerate(tokens.tolist()):
            if not done[i]:
                if tok == eos:
                    done[i] = True
                else:
                    out[i].append(tok)
        if all(done):
            break
    return out


class CaptionDecoding:
    """Decoding for a caption model with `encode(images) -> state` and `_log_step(tokens, state)`."""

    @torch.no_grad()
    def generate(self, images: torch.Tensor, beam_size: int = 3, max_len: int = 24) -> list[list[int]]:
        """Token ids (no <bos>/<eos>) per image by beam search; beam_size=1 is greedy."""
        return beam_search(self._log_step, self.encode(images), bos=BOS, eos=EOS, beam_size=beam_size, max_len=max_len)

    @torch.no_grad()
    def greedy(self, images: torch.Tensor, max_len: int = 24) -> list[list[int]]:
        """Arg-max decoding (the reference that beam search with beam 1 must reproduce)."""
        return greedy_search(self._log_step, self.encode(images), bos=BOS, eos=EOS, max_len=max_len)
