"""Transducer head (RNN-T, Graves 2012) as used by the Conformer paper (Gulati et al. 2020, Table 1):
a prediction network of one LSTM layer (320 units for S, 640 for M and L) and a joint network, with the
RNN-T loss of `mmrepro.losses.rnnt`, standard greedy decoding and beam search (`TransducerHead.beam_search`).

    prediction:  y_{u-1} -> Embedding(V+1, P) -> LSTM(P, P) -> g_u                      (B, U+1, P)
    joint:       z(t, u) = W_out tanh(W_enc f_t + W_pred g_u)                            (B, T, U+1, V+1)

The blank id doubles as the start-of-sequence input of the prediction network.

Parameter counts. The paper gives only "decoder layers 1, decoder dim 320/640/640". With the encoder of
`ConformerConfig.preset`, a 1k vocabulary (+ blank), joint dim J = P and label embeddings E = P, the full
transducers measure 10.30M / 32.40M / 120.16M (S exact, M +5.6%, L +1.1%; M is the known outlier,
e.g. sooftware/conformer#35 gets 31.86M). Label embeddings of E = 320 for all sizes
(`TransducerHead.preset`, the recipe we use) give 10.30M / 31.27M / 119.00M: +0.05% / +1.85% / +0.17%.
No consistent recipe we tried lands M closer; the paper's M figure is probably rounded from a slightly
different front end. Measured in `tests/test_speech_models_params.py`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mmrepro.losses.rnnt import rnnt_loss

__all__ = ["TransducerHead"]


def _logaddexp(a: float, b: float) -> float:
    m = max(a, b)
    return m + math.log1p(math.exp(-abs(a - b))) if m > -math.inf else m


class TransducerHead(nn.Module):
    """Prediction + joint network over encoder frames.

    Args:
        encoder_dim: encoder output size d.
        vocab_size: number of real tokens V (without blank); outputs have V + 1 classes.
        pred_dim: prediction-network LSTM size P (paper: 320 S, 640 M/L).
        embed_dim: label-embedding size E fed to the LSTM (0 = pred_dim). 320 for all three sizes
            reproduces the paper's Table 1 counts best (see module docstring).
        joint_dim: joint-network hidden size J (0 = pred_dim).
        pred_layers: LSTM layers (paper: 1).
        blank: index of blank among the V + 1 classes (0 by default).
        dropout: dropout on the embedding and the LSTM output.
    """

    def __init__(self, encoder_dim: int, vocab_size: int, pred_dim: int = 320, joint_dim: int = 0,
                 pred_layers: int = 1, blank: int = 0, dropout: float = 0.1, embed_dim: int = 0) -> None:
        super().__init__()
        if min(encoder_dim, vocab_size, pred_dim, pred_layers) <= 0 or joint_dim < 0 or embed_dim < 0:
            raise ValueError("encoder_dim, vocab_size, pred_dim, pred_layers must be positive; joint/embed_dim >= 0")
        if not 0 <= blank <= vocab_size:
            raise ValueError(f"blank must be in [0, {vocab_size}], got {blank}")
        joint_dim = joint_dim or pred_dim
        embed_dim = embed_dim or pred_dim
        self.blank, self.num_classes = blank, vocab_size + 1
        self.embed = nn.Embedding(self.num_classes, embed_dim)
        self.lstm = nn.LSTM(embed_dim, pred_dim, num_layers=pred_layers, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.enc_proj = nn.Linear(encoder_dim, joint_dim)
        self.pred_proj = nn.Linear(pred_dim, joint_dim)
        self.out = nn.Linear(joint_dim, self.num_classes)

    @classmethod
    def preset(cls, size: str, encoder_dim: int, vocab_size: int, **overrides) -> TransducerHead:
        """Decoder of Table 1 (Gulati et al. 2020): 1-layer LSTM of 320 (S) / 640 (M, L), J = P, E = 320."""
        dims = {"S": 320, "M": 640, "L": 640}
        if size not in dims:
            raise ValueError(f"unknown Conformer size {size!r}; expected one of {sorted(dims)}")
        kw = {"pred_dim": dims[size], "joint_dim": dims[size], "embed_dim": 320, "pred_layers": 1}
        kw.update(overrides)
        return cls(encoder_dim, vocab_size, **kw)

    def predict(self, tokens: torch.Tensor, state=None):
        """tokens (B, U) -> prediction outputs (B, U, P), new LSTM state."""
        g, state = self.lstm(self.dropout(self.embed(tokens)), state)
        return self.dropout(g), state

    def joint(self, enc: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        """enc (B, T, d), pred (B, U+1, P) -> logits (B, T, U+1, V+1)."""
        return self.out(torch.tanh(self.enc_proj(enc)[:, :, None] + self.pred_proj(pred)[:, None]))

    def forward(self, enc: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """enc (B, T, d), targets (B, U) -> joint logits (B, T, U+1, V+1) (blank prepended as SOS)."""
        sos = torch.full((targets.shape[0], 1), self.blank, dtype=torch.long, device=targets.device)
        pred, _ = self.predict(torch.cat([sos, targets.long()], dim=1))
        return self.joint(enc, pred)

    def loss(self, enc: torch.Tensor, enc_lengths: torch.Tensor, targets: torch.Tensor,
             target_lengths: torch.Tensor) -> torch.Tensor:
        """Mean over the batch of the RNN-T negative log-likelihood (nats per utterance).
        Targets are trimmed to the longest target length, so padding beyond it costs nothing."""
        u = int(target_lengths.max()) if len(target_lengths) else 0
        t = int(enc_lengths.max())
        targets = targets[:, :u]
        logits = self(enc[:, :t], targets)
        return rnnt_loss(logits, targets, enc_lengths, target_lengths, blank=self.blank)

    @torch.no_grad()
    def greedy_decode(self, enc: torch.Tensor, enc_lengths: torch.Tensor, max_symbols: int = 10) -> list[list[int]]:
        """Standard RNN-T greedy search, batched: at each frame emit the argmax while it is not blank
        (at most `max_symbols` per frame), advancing the prediction network on each emission.
        enc (B, T, d), enc_lengths (B,) -> one list of token ids per utterance."""
        b, t_max, _ = enc.shape
        dev = enc.device
        f = self.enc_proj(enc)  # (B, T, J)
        last = torch.full((b, 1), self.blank, dtype=torch.long, device=dev)
        g, state = self.predict(last)
        g = self.pred_proj(g[:, 0])  # (B, J)
        hyps: list[list[int]] = [[] for _ in range(b)]
        for t in range(t_max):
            active = enc_lengths > t
            for _ in range(max_symbols):
                k = self.out(torch.tanh(f[:, t] + g)).argmax(-1)  # (B,)
                emit = active & (k != self.blank)
                if not emit.any():
                    break
                for i in emit.nonzero().flatten().tolist():
                    hyps[i].append(int(k[i]))
                g_new, state_new = self.predict(k[:, None], state)
                g_new = self.pred_proj(g_new[:, 0])
                m = emit[:, None].to(g.dtype)
                g = m * g_new + (1 - m) * g
                state = tuple(m[None] * sn + (1 - m[None]) * s for sn, s in zip(state_new, state, strict=True))
                active = emit
        return hyps

    @torch.no_grad()
    def beam_search(self, enc: torch.Tensor, enc_lengths: torch.Tensor, beam: int,
                    max_symbols: int = 10) -> list[list[int]]:
        """RNN-T beam search: the best label sequence of each utterance by total log-probability.

        A time-synchronous form of the beam search of Graves 2012 ("Sequence Transduction with Recurrent
        Neural Networks", section 2.6, https://arxiv.org/abs/1211.3711) with its merging of identical label
        sequences by log-add; the utterances of a batch in lock step (`_beam_search_batch`). Graves (and
        ESPnet's `default_beam_search`) expand the best hypothesis of a frame one at a time until `beam`
        finished ones beat every open one; here
        the open hypotheses of a frame are expanded in lock step, one label per step, and finished and open
        hypotheses share the `beam` places after every step (close to the time-synchronous decoding of
        Saon et al. 2020, "Alignment-length synchronous decoding for RNN transducer", ICASSP), with the
        per-frame label limit `max_symbols` of `greedy_decode`. Per frame t, starting from the beam H of
        at most `beam` hypotheses (label sequence y, score log P(y, frames < t)):

            active C = H, finished D = {}
            for n = 0 .. max_symbols:                 # n = labels emitted so far within frame t
                for h in C, with log p = log_softmax(joint(f_t, g(h))):
                    finished candidate  (y_h,      s_h + log p(blank))     # ends frame t
                    active candidate    (y_h + k,  s_h + log p(k))        # top-`beam` labels k (only n < max_symbols)
                merge finished candidates with the same y (also with those already in D) by log-add
                keep the `beam` best of D and the new active candidates together; C = the kept active ones
            H = D

        Identical label sequences reached by different alignments are merged by log-add, so with a beam
        wide enough to keep every hypothesis and `max_symbols` >= the sequence length the score is the
        exact log P(y|x) of the forward algorithm (`mmrepro.losses.rnnt`), and the search is exact (tested
        in tests/test_transducer_beam.py). With a narrower beam the scores are lower bounds: alignments
        whose hypotheses were pruned are missing from the sum. Because finished and active hypotheses
        compete for the same `beam` places, beam = 1 is exactly
        `greedy_decode` (at each step: blank if it beats the best label, else that label). The result is
        the best hypothesis by total log-probability, without length normalisation: every hypothesis
        covers all T frames (each ends with a blank per frame), so scores are comparable as they stand.

        Prediction network: its output and LSTM state are stored with each hypothesis (it depends only on
        the label sequence), so each kept extension costs one batched LSTM step. Cost: at most
        T * (max_symbols + 1) steps, each one joint evaluation of <= B * beam hypotheses (O(beam * J * (V+1))
        per utterance) plus one LSTM step for the new ones; in practice a step or two per frame, as most
        hypotheses finish the frame on blank. A step is mostly Python and small-op overhead, which the
        batch shares: on the Conformer's cpu test set (300 utterances, batches of 32, beam 4, one thread)
        the lock-step search took 28.9 s against 207.7 s one utterance at a time, with the same hypotheses
        for every utterance of its test, dev and pocketsphinx-real sets.

        enc (B, T, d), enc_lengths (B,) -> one list of token ids per utterance. Call in eval mode.
        """
        if beam < 1 or max_symbols < 1:
            raise ValueError(f"beam and max_symbols must be >= 1, got {beam}, {max_symbols}")
        return [nbest[0][0] for nbest in self._beam_search_batch(enc, enc_lengths, beam, max_symbols)]

    @torch.no_grad()
    def _beam_search_batch(self, enc: torch.Tensor, enc_lengths: torch.Tensor, beam: int,
                           max_symbols: int) -> list[list[tuple[list[int], float]]]:
        """The search of `beam_search` for every utterance of enc (B, T, d) in lock step: per step, one joint
        evaluation for the open hypotheses of all utterances together and one LSTM step for all their kept
        extensions (a step is a handful of small ops whatever the batch, so batching divides their cost by up
        to B); merging and pruning stay per utterance. Returns each utterance's final beam as
        (labels, log-prob), best first."""
        f = self.enc_proj(enc)  # (B, T, J)
        start = torch.full((1, 1), self.blank, dtype=torch.long, device=enc.device)
        g, (h, c) = self.predict(start)
        g0 = self.pred_proj(g[0, 0])
        lengths = enc_lengths.tolist()
        # per utterance, a hypothesis: labels (tuple) -> [score, pred_proj(g) (J,), h (L, P), c (L, P)]
        hyps = [{(): [0.0, g0, h[:, 0], c[:, 0]]} for _ in lengths]
        k_top = min(beam, self.num_classes - 1)
        for t in range(max(lengths, default=0)):
            active = {i: hyps[i] for i, n_frames in enumerate(lengths) if n_frames > t}
            done: dict[int, dict] = {i: {} for i in active}
            for n in range(max_symbols + 1):
                rows = [(i, y) for i, open_ in active.items() for y in open_]
                gs = torch.stack([active[i][y][1] for i, y in rows])  # (N, J)
                ft = f[torch.tensor([i for i, _ in rows], device=enc.device), t]  # (N, J)
                logp = torch.log_softmax(self.out(torch.tanh(ft + gs)).float(), dim=-1)  # (N, V+1)
                lp_blank = logp[:, self.blank].tolist()
                if n < max_symbols:
                    lab = logp.clone()
                    lab[:, self.blank] = float("-inf")
                    top_lp, top_k = (v.tolist() for v in lab.topk(k_top, dim=-1))
                ext: list[tuple[int, float, tuple, tuple]] = []  # (utterance, score, labels, parent labels)
                first = 0
                for i, open_ in active.items():
                    keys = list(open_)
                    finished = done[i]
                    for j, y in enumerate(keys):  # finish frame t on blank, merging identical label sequences
                        s = open_[y][0] + lp_blank[first + j]
                        if y in finished:
                            finished[y][0] = _logaddexp(finished[y][0], s)
                        else:
                            finished[y] = [s, *open_[y][1:]]
                    cands: list[tuple[float, tuple, tuple]] = []  # (score, labels, parent labels)
                    if n < max_symbols:
                        for j, y in enumerate(keys):
                            s = open_[y][0]
                            for lp, k in zip(top_lp[first + j], top_k[first + j], strict=True):
                                cands.append((s + lp, (*y, k), y))
                    first += len(keys)
                    pool = [(v[0], 0, y) for y, v in finished.items()] + [(e[0], 1, q) for q, e in enumerate(cands)]
                    pool.sort(key=lambda e: -e[0])
                    kept = pool[:beam]
                    done[i] = {e[2]: finished[e[2]] for e in kept if e[1] == 0}
                    ext += [(i, *cands[e[2]]) for e in kept if e[1] == 1]
                if not ext:
                    break
                # one batched prediction step for the kept extensions of every utterance
                tokens = torch.tensor([[labels[-1]] for _, _, labels, _ in ext], dtype=torch.long, device=enc.device)
                h0 = torch.stack([active[i][parent][2] for i, _, _, parent in ext], dim=1)  # (L, N, P)
                c0 = torch.stack([active[i][parent][3] for i, _, _, parent in ext], dim=1)
                g, (h, c) = self.predict(tokens, (h0.contiguous(), c0.contiguous()))
                gp = self.pred_proj(g[:, 0])
                active = {}
                for q, (i, score, labels, _) in enumerate(ext):
                    active.setdefault(i, {})[labels] = [score, gp[q], h[:, q], c[:, q]]
            for i, finished in done.items():
                hyps[i] = finished
        return [[(list(y), v[0]) for y, v in sorted(nbest.items(), key=lambda kv: -kv[1][0])] for nbest in hyps]
