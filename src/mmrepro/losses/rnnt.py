"""RNN-Transducer loss (Graves 2012, "Sequence Transduction with Recurrent Neural Networks",
https://arxiv.org/abs/1211.3711), written in PyTorch (torchaudio is not available here), with the
"function merging" of Li et al. 2019 ("Improving RNN Transducer Modeling for End-to-End Speech
Recognition", https://arxiv.org/abs/1909.12415): the log-softmax over the C classes is never materialised
and the gradient w.r.t. the logits is written analytically in one fused pass.

Algorithm. With z the (B, T, U+1, C) logits, lse(t, u) = logsumexp_k z(t, u, k) (computed in chunks, no
autograd) gives the only two log-probabilities the lattice needs,
    blank(t, u) = z(t, u, blank) - lse(t, u),     y(t, u) = z(t, u, y_u) - lse(t, u)   (u < U),
all (B, T, U+1), i.e. C times smaller than the logits. The forward variable, in log space,
    alpha(0, 0) = 0
    alpha(t, u) = logaddexp( alpha(t-1, u) + blank(t-1, u),  alpha(t, u-1) + y(t, u-1) )
    loss        = -log P = -( alpha(T-1, U) + blank(T-1, U) )
is computed one time step at a time, vectorised over the batch and over u: along u the recursion is a
log-cumulative sum,
    alpha(t, u) = c(t, u) + logcumsumexp_{u' <= u}( alpha(t-1, u') + blank(t-1, u') - c(t, u') ),
    c(t, u) = sum_{k < u} y(t, k),
so each of the T steps is one `torch.logcumsumexp` on (B, U+1) rows pre-split with `unbind` (constant work
per step, no autograd graph). The backward variable beta(t, u) = log P(rest | at (t, u)),
    beta(T_b - 1, U_b) = blank(T_b - 1, U_b),
    beta(t, u) = logaddexp( beta(t+1, u) + blank(t, u),  beta(t, u+1) + y(t, u) ),
is the mirrored reverse log-cumulative sum, started per utterance at its own (T_b, U_b) (beta = -inf
outside each utterance's lattice). The posterior of each lattice arc,
    P_blank(t, u) = exp( alpha(t, u) + blank(t, u) + beta(t+1, u) - log P )   (beta(T_b, U_b) := 0),
    P_label(t, u) = exp( alpha(t, u) + y(t, u) + beta(t, u+1) - log P ),
and d lse / d z = softmax(z) give, for unnormalised logits,
    dL/dz(t, u, k) = softmax(z)(t, u, k) * (P_blank + P_label)(t, u) - [k = blank] P_blank(t, u)
                     - [k = y_u] P_label(t, u),
(P_blank + P_label is the occupancy exp(alpha + beta - log P) of node (t, u)), scaled per utterance by the
incoming gradient. With `log_probs=True` the input is used as the log-probabilities as it is (lse = 0, no
normalisation, as before), so its gradient is just the two arc terms (no softmax term).

Precision. The (B, T, U+1) lattice (blank, y, c, alpha, beta, posteriors) is float64 whatever the logits'
dtype: log P is thousands of nats at U = 200 and alpha + beta - log P cancels numbers of that size, which
in float32 costs ~1e-3 relative error in the posteriors (the previous autograd version: ~1e-4 absolute in
the gradient at B=2, T=60, U=200, C=1025; this one: ~1e-6). It is C times smaller than the logits, so
this costs little time or memory; the logits-sized work stays in the logits' dtype (float32 for half).

Memory. Forward keeps only (B, T, U+1) tensors (lse, blank, y, c, alpha) and a reference to the logits;
the logsumexp over C runs over chunks of the logits (bf16/half chunks are upcast to float32 one chunk at a
time). Backward writes the softmax term straight into the one (B, T, U+1, C) gradient tensor chunk by chunk
(in place: sub, exp, mul, then the two scatters), so the loss's peak beyond the logits is about one
logits-sized tensor (the gradient) plus a chunk, against ~4x for autograd through `log_softmax` + gather.

Cost. O(B T U C) for the logsumexp and the fused gradient, O(B T U) for the recursions: 2T logcumsumexp
calls on (B, U+1) rows, so the time per lattice cell does not grow with T.
"""

from __future__ import annotations

import torch

__all__ = ["rnnt_loss"]

_CHUNK_ELEMS = 1 << 22  # at most this many logits (16 MiB float32) per chunk, beyond one (U+1, C) row
_CHUNK_FRACTION = 8  # and at most 1/8 of the logits, so the chunk temporaries stay small


def _chunks(b: int, t_max: int, row: int, total: int):
    """(batch index, t0, t1) slices of at most ~min(total / 8, 4M) elements (at least one (U+1, C) row)."""
    per_chunk = max(row, min(total // _CHUNK_FRACTION, _CHUNK_ELEMS))
    tc = max(1, per_chunk // row)
    for i in range(b):
        for t0 in range(0, t_max, tc):
            yield i, t0, min(t0 + tc, t_max)


def _logsumexp_chunked(logits: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """logsumexp over C in `dtype`, through one chunk-sized work buffer reused by every chunk (no other
    logits-sized temporaries; fresh large buffers cost page faults on CPU)."""
    b, t_max, u1, c = logits.shape
    lse = torch.empty((b, t_max, u1), dtype=dtype, device=logits.device)
    chunks = list(_chunks(b, t_max, u1 * c, logits.numel()))
    buf = torch.empty(max(t1 - t0 for _, t0, t1 in chunks) * u1 * c, dtype=dtype, device=logits.device)
    for i, t0, t1 in chunks:
        z, out = logits[i, t0:t1], lse[i, t0:t1]
        m = torch.amax(z, dim=-1, keepdim=True).to(dtype)
        m.masked_fill_(m.isinf(), 0.0)  # rows of -inf (or +inf) as torch.logsumexp
        w = buf[: z.numel()].view(z.shape)
        torch.sub(z, m, out=w)
        torch.sum(w.exp_(), dim=-1, out=out)
        out.log_().add_(m.squeeze(-1))
    return lse


class _RNNTLoss(torch.autograd.Function):
    """Per-utterance RNN-T NLL (B,) with the analytic gradient w.r.t. the logits (see the module docstring)."""

    @staticmethod
    def forward(ctx, logits, targets, logit_lengths, target_lengths, blank, log_probs):
        b, t_max, u1, c = logits.shape
        # dt: the logits-sized work (float32 for half precision); rd: the (B, T, U+1) lattice, always float64,
        # since alpha + beta - log P cancels numbers of the size of the loss (thousands of nats at U = 200)
        dt = logits.dtype if logits.dtype in (torch.float32, torch.float64) else torch.float32
        rd = torch.float64
        lse_dt = None if log_probs else _logsumexp_chunked(logits, dt)  # saved in dt, used in float64
        lse = None if lse_dt is None else lse_dt.to(rd)
        blank_lp = logits[..., blank].to(rd)  # (B, T, U+1)
        emit_lp = logits[:, :, :-1].gather(-1, targets[:, None, :, None].expand(b, t_max, u1 - 1, 1))
        emit_lp = emit_lp.squeeze(-1).to(rd)  # (B, T, U)
        if lse is not None:
            blank_lp = blank_lp - lse
            emit_lp = emit_lp - lse[..., :-1]
        # c(t, u) = sum_{k<u} emit(t, k): exclusive cumulative sum over u
        csum = torch.zeros((b, t_max, u1), dtype=rd, device=logits.device)
        torch.cumsum(emit_lp, -1, out=csum[..., 1:])
        c_rows, b_rows = csum.unbind(1), blank_lp.unbind(1)
        alpha = c_rows[0]  # alpha(0, u) = sum of emissions at t = 0
        alphas = [alpha]
        for t in range(1, t_max):
            ct = c_rows[t]
            alpha = ct + torch.logcumsumexp(alpha + b_rows[t - 1] - ct, dim=-1)
            alphas.append(alpha)
        alpha_all = torch.stack(alphas, dim=1)  # (B, T, U+1)
        bi = torch.arange(b, device=logits.device)
        tl, ul = logit_lengths - 1, target_lengths
        log_p = alpha_all[bi, tl, ul] + blank_lp[bi, tl, ul]
        ctx.blank, ctx.log_probs, ctx.dt = blank, log_probs, dt
        ctx.save_for_backward(logits, targets, logit_lengths, target_lengths, alpha_all, blank_lp, emit_lp, csum,
                              log_p, *(() if lse_dt is None else (lse_dt,)))
        return (-log_p).to(dt)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_nll):
        logits, targets, logit_lengths, target_lengths, alpha, blank_lp, emit_lp, csum, log_p, *rest = ctx.saved_tensors
        lse = rest[0] if rest else None
        blank = ctx.blank
        b, t_max, u1, c = logits.shape
        rd, dt, dev = alpha.dtype, ctx.dt, alpha.device
        ninf = torch.tensor(float("-inf"), dtype=rd, device=dev)
        # start(t, u) = 0 at (T_b - 1, U_b) (beta(T_b, U_b) := 0), -inf elsewhere: the exit after the final blank
        start = torch.full((b, t_max, u1), float("-inf"), dtype=rd, device=dev)
        bi = torch.arange(b, device=dev)
        start[bi, logit_lengths - 1, target_lengths] = 0.0
        # beta in flipped-u coordinates v = U - u, so that the reverse cumulative sum is a forward one:
        # beta(t, u) = -c(t, u) + logsumexp_{u' >= u}( next(t, u') + blank(t, u') + c(t, u') ),
        # next(t, u) = max(beta(t+1, u), start(t, u)) (one of the two is -inf)
        cf, bf, sf = csum.flip(-1).unbind(1), blank_lp.flip(-1).unbind(1), start.flip(-1).unbind(1)
        beta = ninf.expand(b, u1)
        betas, nexts = [None] * t_max, [None] * t_max
        for t in range(t_max - 1, -1, -1):
            nxt = torch.maximum(beta, sf[t])
            ct = cf[t]
            beta = torch.logcumsumexp(nxt + bf[t] + ct, dim=-1) - ct
            betas[t], nexts[t] = beta, nxt
        beta_all = torch.stack(betas, dim=1).flip(-1)  # (B, T, U+1)
        next_all = torch.stack(nexts, dim=1).flip(-1)
        del betas, nexts, start
        # arc posteriors, scaled per utterance by the incoming gradient
        g = grad_nll.to(rd)[:, None, None]
        base = alpha - log_p[:, None, None]
        p_blank = torch.exp(base + blank_lp + next_all) * g  # (B, T, U+1)
        p_label = torch.exp(base[..., :-1] + emit_lp + beta_all[..., 1:]) * g  # (B, T, U)
        # beyond an utterance's lattice alpha is finite and beta -inf, so both are exactly 0 there
        occ = p_blank.clone()
        occ[..., :-1] += p_label
        del beta_all, next_all, base
        occ, p_blank, p_label = occ.to(dt), p_blank.to(dt), p_label.to(dt)
        grad = torch.empty_like(logits, memory_format=torch.contiguous_format)
        same = logits.dtype == dt
        for i, t0, t1 in _chunks(b, t_max, u1 * c, logits.numel()):
            z, gz = logits[i, t0:t1], grad[i, t0:t1]
            work = gz if same else torch.empty(gz.shape, dtype=dt, device=dev)
            if lse is None:
                work.zero_()
            else:
                torch.sub(z, lse[i, t0:t1, :, None], out=work)
                work.exp_()
                work.mul_(occ[i, t0:t1, :, None])
            work[..., blank] -= p_blank[i, t0:t1]
            if u1 > 1:
                idx = targets[i, None, :, None].expand(t1 - t0, u1 - 1, 1)
                work[:, :-1].scatter_add_(-1, idx, -p_label[i, t0:t1, :, None])
            if not same:
                gz.copy_(work)
        return grad, None, None, None, None, None


def check_args(logits: torch.Tensor, targets: torch.Tensor, logit_lengths: torch.Tensor,
               target_lengths: torch.Tensor, reduction: str) -> tuple[int, int, int, int]:
    """Validate `rnnt_loss`'s arguments; returns (B, T, U + 1, C)."""
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
    return b, t_max, u1, c


def rnnt_loss(logits: torch.Tensor, targets: torch.Tensor, logit_lengths: torch.Tensor,
              target_lengths: torch.Tensor, blank: int = 0, reduction: str = "mean",
              log_probs: bool = False) -> torch.Tensor:
    """RNN-T negative log-likelihood.

    Args:
        logits: (B, T, U + 1, C) joint-network outputs (unnormalised unless `log_probs`), C = vocab + blank.
            float32/float64 are used as they are; other dtypes are upcast to float32 one chunk at a time,
            and the gradient has the logits' dtype.
        targets: (B, U) int token ids (padding anywhere beyond `target_lengths`).
        logit_lengths: (B,) valid encoder frames T_b (1 <= T_b <= T).
        target_lengths: (B,) valid target tokens U_b (0 <= U_b <= U).
        blank: blank index in C.
        reduction: "mean" (over the batch), "sum" or "none" ((B,) losses).
        log_probs: set if `logits` are already log-softmaxed (used as they are, not renormalised).
    Returns:
        scalar, or (B,) with reduction="none" (float32 for half-precision logits). Not twice differentiable.
    """
    b, t_max, u1, c = check_args(logits, targets, logit_lengths, target_lengths, reduction)
    dev = logits.device
    tgt = targets.to(dev, torch.long).clamp(0, c - 1)
    with torch.autocast(dev.type, enabled=False):  # the recursions stay in float32/64 under bf16 autocast
        nll = _RNNTLoss.apply(logits, tgt, logit_lengths.to(dev, torch.long), target_lengths.to(dev, torch.long),
                              blank, log_probs)
    if reduction == "mean":
        return nll.mean()
    if reduction == "sum":
        return nll.sum()
    return nll
