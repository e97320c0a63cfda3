"""RNN-T beam search (`TransducerHead.beam_search`): beam 1 is greedy search, a wide beam is exact
against the forward algorithm (`mmrepro.losses.rnnt`) on a tiny head whose every label sequence can be
scored, and beam search finds the most probable sequence where greedy search does not."""

import itertools
import math

import pytest
import torch

from mmrepro.losses.rnnt import rnnt_loss
from mmrepro.models.transducer import TransducerHead


def _tiny(seed: int, blank_bias: float = 1.5) -> tuple[TransducerHead, torch.Tensor]:
    """Vocabulary of 2 labels (+ blank 0), T = 3 frames; sharpened outputs, blank favoured so that
    short sequences hold almost all of the probability."""
    torch.manual_seed(seed)
    head = TransducerHead(4, 2, pred_dim=4, dropout=0.0, blank=0).eval()
    with torch.no_grad():
        head.out.weight.mul_(2)
        head.out.bias[0] += blank_bias
    return head, torch.randn(1, 3, 4)


def _search_alone(head: TransducerHead, enc: torch.Tensor, beam: int, max_symbols: int) -> list[tuple[list[int], float]]:
    """One utterance's frames (T, d) searched as a batch of one: its final beam, (labels, log-prob) best first."""
    return head._beam_search_batch(enc[None], torch.tensor([enc.shape[0]]), beam, max_symbols)[0]


def _exact_log_probs(head: TransducerHead, enc: torch.Tensor, max_len: int) -> dict[tuple[int, ...], float]:
    """log P(y|x) = -rnnt_loss for every label sequence y of length <= max_len (one batch)."""
    seqs = [s for n in range(max_len + 1) for s in itertools.product([1, 2], repeat=n)]
    targets = torch.zeros(len(seqs), max_len, dtype=torch.long)
    for i, s in enumerate(seqs):
        targets[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    with torch.no_grad():
        logits = head(enc.expand(len(seqs), -1, -1), targets)
    nll = rnnt_loss(logits.double(), targets, torch.full((len(seqs),), enc.shape[1]),
                    torch.tensor([len(s) for s in seqs]), blank=head.blank, reduction="none")
    return dict(zip(seqs, (-nll).tolist(), strict=True))


@pytest.mark.parametrize("seed", range(6))
def test_beam_one_equals_greedy(seed):
    torch.manual_seed(seed)
    head = TransducerHead(8, 5, pred_dim=6, dropout=0.0, blank=seed % 6).eval()
    with torch.no_grad():
        head.out.weight.mul_(3)  # peaky outputs: multi-label frames and max_symbols both occur
    enc, lens = torch.randn(3, 7, 8), torch.tensor([7, 5, 1])
    for max_symbols in (1, 3, 10):
        greedy = head.greedy_decode(enc, lens, max_symbols)
        assert head.beam_search(enc, lens, beam=1, max_symbols=max_symbols) == greedy
    assert any(len(h) > 0 for h in greedy)


@pytest.mark.parametrize("seed", [0, 3, 7])
def test_wide_beam_is_exact_against_the_forward_algorithm(seed):
    head, enc = _tiny(seed, blank_bias=3.0)
    max_symbols, max_len = 3, 9  # with 3 frames, at most 9 labels fit into 3 per frame
    exact = _exact_log_probs(head, enc, max_len)
    nbest = _search_alone(head, enc[0], beam=2048, max_symbols=max_symbols)
    found = {tuple(y): s for y, s in nbest}
    assert len(found) == len(exact)  # nothing pruned: every sequence that fits is a hypothesis
    # alignments of up to max_symbols labels per frame: all of them when len(y) <= max_symbols
    for y, lp in exact.items():
        if len(y) <= max_symbols:
            assert found[y] == pytest.approx(lp, abs=1e-5)
        else:
            assert found[y] <= lp + 1e-5
    best = max(exact, key=exact.get)
    mass = sum(math.exp(v) for v in exact.values())
    assert math.exp(exact[best]) > 1 - mass  # no longer sequence can beat it
    assert tuple(head.beam_search(enc, torch.tensor([3]), beam=2048, max_symbols=max_symbols)[0]) == best
    greedy = tuple(head.greedy_decode(enc, torch.tensor([3]), max_symbols)[0])
    assert exact[best] >= exact[greedy]


@pytest.mark.parametrize("seed", [28, 51])
def test_beam_fixes_a_greedy_error(seed):
    """Seeds found by search where greedy's sequence is not the most probable one."""
    head, enc = _tiny(seed)
    exact = _exact_log_probs(head, enc, 6)
    best = max(exact, key=exact.get)
    assert math.exp(exact[best]) > 1 - sum(math.exp(v) for v in exact.values())  # the global best
    lens = torch.tensor([3])
    greedy = tuple(head.greedy_decode(enc, lens)[0])
    assert greedy != best and exact[greedy] < exact[best] - 0.1  # greedy is clearly suboptimal
    for beam in (4, 8):
        assert tuple(head.beam_search(enc, lens, beam)[0]) == best


def test_beam_search_batch_lengths_and_validation():
    torch.manual_seed(0)
    head = TransducerHead(8, 5, pred_dim=6, dropout=0.0).eval()
    enc, lens = torch.randn(3, 6, 8), torch.tensor([6, 2, 4])
    out = head.beam_search(enc, lens, beam=3)
    assert len(out) == 3 and all(all(1 <= k <= 5 for k in h) for h in out)
    # padding frames beyond an utterance's length do not change its result
    assert head.beam_search(enc[1:2, :2], lens[1:2], beam=3)[0] == out[1]
    with pytest.raises(ValueError):
        head.beam_search(enc, lens, beam=0)


@pytest.mark.parametrize("seed", range(3))
def test_batched_search_equals_one_utterance_at_a_time(seed):
    """The utterances of a batch are searched in lock step (one joint and one LSTM call per step for all of
    them): each one's final beam, labels and scores, equals its search alone (float64, so that the batched
    matrix products cannot round differently). A head that emits often (no blank bias) makes beams differ
    in length and finish their frames after different numbers of steps."""
    torch.manual_seed(seed)
    head = TransducerHead(8, 5, pred_dim=6, dropout=0.0).double().eval()
    lens = torch.tensor([9, 1, 5, 7, 3, 9])
    enc = torch.randn(len(lens), 9, 8, dtype=torch.float64)
    batched = head._beam_search_batch(enc, lens, beam=4, max_symbols=3)
    for i, n_frames in enumerate(lens.tolist()):
        alone = _search_alone(head, enc[i, :n_frames], beam=4, max_symbols=3)
        assert [y for y, _ in batched[i]] == [y for y, _ in alone]
        assert [s for _, s in batched[i]] == pytest.approx([s for _, s in alone], abs=1e-12)
    assert any(len(y) > 2 for nbest in batched for y, _ in nbest)  # the heads do emit
