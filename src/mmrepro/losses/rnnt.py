"""RNN-Transducer loss (Graves 2012, "Sequence Transduction with Recurrent Neural Networks",
https://arxiv.org/abs/1211.3711), written in PyTorch (torchaudio is not available here).

The forward variable over the (T, U+1) lattice, in log space,
    alpha(0, 0) = 0
    alpha(t, u) = logaddexp( alpha(t-1, u) + blank(t-1, u),  alpha(t, u-1) + y(t, u-1) )
    loss        = -( alpha(T-1, U) + blank(T-1, U) )
is computed one time step at a time, vectorised over the batch and over u: along u the recursion is a
log-cumulative sum,
    alpha(t, u) = c(t, u) + logcumsumexp_{u' <= u}( alpha(t-1, u') + blank(t-1, u') - c(t, u') ),
    c(t, u) = sum_{k < u} y(t, k),
so each of the T steps is one `torch.logcumsumexp`. Gradients come from autograd.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["rnnt_loss"]


def rnnt_loss(logits: torch.Tensor, targets: torch.Tensor, logit_lengths: torch.Tensor,
              target_lengths: torch.Tensor, blank: int = 0, reduction: str = "mean",
              log_probs: bool = False) -> torch.Tensor:
    """RNN-T negative log-likelihood.

    Args:
        logits: (B, T, U + 1, C) joint-network outputs (unnormalised unless `log_probs`), C = vocab + blank.
        targets: (B, U) int token ids (padding anywhere beyond `target_lengths`).
        logit_lengths: (B,) valid encoder frames T_b (1 <= T_b <= T).
        target_lengths: (B,) valid target tokens U_b (0 <= U_b <= U).
        blank: blank index in C.
        reduction: "mean" (over the batch), "sum" or "none" ((B,) losses).
        log_probs: set if `logits` are already log-softmaxed.
    Returns:
        scalar, or (B,) with reduction="none".
    """
    if logits.dim() != 4:
        raise ValueError(f"logits must be (B, T, U+1, C), got {tuple(logits.shape)}")
    b, t_max, u1, c = logits.shape
    if targets.shape != (b, u1 - 1):
        raise ValueError(f"targets must be (B, U) = ({b}, {u1 - 1}), got {tuple(targets.shape)}")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be mean, sum or none, got {reduction!r}")
    if (logit_lengths < 1).any() or (logit_lengths > t_max).any():
        raise ValueError("logit_lengths must be in [1, T]")
    if (target_lengths < 0).any() or (target_lengths > u1 - 1).any():
        raise ValueError("target_lengths must be in [0, U]")
    if logits.dtype not in (torch.float32, torch.float64):
        logits = logits.float()  # half precision is not accurate enough for the forward variable
    logp = logits if log_probs else F.log_softmax(logits, dim=-1)
    blank_lp = logp[..., blank]  # (B, T, U+1)
    tgt = targets.long().clamp(0, c - 1)
    emit_lp = logp[:, :, :-1, :].gather(-1, tgt[:, None, :, None].expand(b, t_max, u1 - 1, 1)).squeeze(-1)
    emit_lp = F.pad(emit_lp, (0, 1), value=0.0)  # (B, T, U+1); last column unused
    # c(t, u) = sum_{k<u} emit(t, k): exclusive cumulative sum over u
    csum = F.pad(emit_lp[..., :-1].cumsum(-1), (1, 0), value=0.0)  # (B, T, U+1)
    alphas = []
    alpha = csum[:, 0]  # alpha(0, u) = sum of emissions at t = 0
    alphas.append(alpha)
    for t in range(1, t_max):
        prev = alpha + blank_lp[:, t - 1]
        alpha = csum[:, t] + torch.logcumsumexp(prev - csum[:, t], dim=-1)
        alphas.append(alpha)
    alpha_all = torch.stack(alphas, dim=1)  # (B, T, U+1)
    bi = torch.arange(b, device=logits.device)
    tl, ul = logit_lengths.long() - 1, target_lengths.long()
    nll = -(alpha_all[bi, tl, ul] + blank_lp[bi, tl, ul])
    if reduction == "mean":
        return nll.mean()
    if reduction == "sum":
        return nll.sum()
    return nll
