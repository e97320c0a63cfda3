"""Efficiency metrics of speech encoders: multiply-accumulates counted by torch's FLOP counter, peak live
tensor memory, and the Conformer-L vs Fast-Conformer-L rows of Rekesh et al. 2023
(https://arxiv.org/abs/2305.05084): 143.2 vs 48.7 encoder GMACs (2.94x), 115M vs 109M encoder parameters.

`benchmarks/efficiency.py` uses these for its tables; a paper module can add `gmacs_results()` to the
rows its evaluate stage returns (deterministic, a few seconds on CPU: counted on meta tensors).
"""

from __future__ import annotations

import math
import statistics
import weakref
from collections.abc import Iterable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from mmrepro.papers.base import Result

__all__ = ["LiveTensorBytes", "encoder_gmacs", "frames", "gmacs_results"]

FRAMES_PER_SECOND = 100  # 10 ms hop


def loglog_slope(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of log y against log x (the growth exponent: 1 linear, 2 quadratic), to 3
    decimals; None with fewer than two positive points."""
    pts = [(math.log(a), math.log(b)) for a, b in zip(xs, ys, strict=True) if a > 0 and b > 0]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    den = sum((p[0] - mx) ** 2 for p in pts)
    return round(sum((p[0] - mx) * (p[1] - my) for p in pts) / den, 3)


def median_ratio(xs: Iterable[float], ys: Iterable[float]) -> float:
    """Median of the paired ratios x_i / y_i: the benchmarks' side-by-side speed ratio (repetition i of both
    measured back to back, so a load change hits both sides of a pair)."""
    return statistics.median(x / y for x, y in zip(xs, ys, strict=True))


def frames(seconds: float) -> int:
    """Feature frames of a clip at a 10 ms hop (center-padded STFT convention: 1 + samples / hop)."""
    return round(seconds * FRAMES_PER_SECOND) + 1


def encoder_gmacs(model: torch.nn.Module, n_frames: int, batch: int = 1, input_dim: int = 80) -> float:
    """Multiply-accumulates (x 1e9) of one forward of `model(x (batch, n_frames, input_dim), lengths)`.

    Counted by `torch.utils.flop_counter.FlopCounterMode` (matmuls and convolutions; MACs = FLOPs / 2) on
    meta tensors, so nothing is computed; build the model under `torch.device("meta")` for speed.
    """
    from torch.utils.flop_counter import FlopCounterMode  # here: ~0.1 s of import only GMACs counting needs

    if n_frames < 1 or batch < 1:
        raise ValueError(f"n_frames and batch must be positive, got {n_frames}, {batch}")
    device = next(model.parameters()).device
    with torch.device("meta" if device.type == "meta" else device):
        x = torch.randn(batch, n_frames, input_dim, device=device)
        lengths = torch.full((batch,), n_frames, device=device)
        counter = FlopCounterMode(display=False)
        was_training = model.training
        with counter, torch.no_grad():
            model.eval()(x, lengths)
        model.train(was_training)
    return counter.get_total_flops() / 2e9


class LiveTensorBytes(TorchDispatchMode):
    """Peak bytes of tensor storages created by aten ops while active (activations and temporaries; not
    inputs or weights created before). Deterministic on any device: each new storage is counted when an
    op returns it and uncounted when Python frees it (storages keep their Python object alive).
    Kernel-internal workspaces are not seen. Use: `with torch.no_grad(), LiveTensorBytes() as m: ...; m.peak`.
    A view of a tensor created before would count its whole storage as new: pass such inputs as `exclude`
    (e.g. `LiveTensorBytes(exclude=[logits])` when the measured code slices the logits).
    """

    def __init__(self, exclude: Iterable[torch.Tensor] = ()) -> None:
        super().__init__()
        self.live = self.peak = 0
        self._excluded = [t.untyped_storage() for t in exclude]  # held, so that their ids stay theirs
        self._seen: set[int] = {id(st) for st in self._excluded}

    def _free(self, key: int, nbytes: int) -> None:
        self._seen.discard(key)
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                st = t.untyped_storage()
                key = id(st)
                if key not in self._seen:
                    self._seen.add(key)
                    self.live += st.nbytes()
                    weakref.finalize(st, self._free, key, st.nbytes())
        self.peak = max(self.peak, self.live)
        return out


def gmacs_results(seconds: float = 30.0) -> list[Result]:
    """Encoder GMACs and parameters of Conformer-L (NeMo's, `subsampling_padding=1`, the paper's baseline)
    and Fast-Conformer-L (full attention) for one clip of `seconds` (30 s reproduces the published
    143.2 / 48.7 GMACs and 115M / 109M parameters), as report rows (variant = the encoder)."""
    from mmrepro.models.conformer import ConformerConfig, ConformerEncoder
    from mmrepro.models.fast_conformer import FastConformerConfig, FastConformerEncoder

    with torch.device("meta"):
        encoders = {
            # the paper's baseline is NeMo's Conformer-L: subsampling convs with padding 1
            "conformer_l": ConformerEncoder(ConformerConfig.preset("L", subsampling_padding=1)),
            "fast_conformer_l": FastConformerEncoder(FastConformerConfig.preset("L")),
        }
    n = frames(seconds)
    dataset = f"synthetic input: 1 x {seconds:g} s ({n} frames x 80 log-mel)"
    details = {"counter": "torch.utils.flop_counter.FlopCounterMode, MACs = FLOPs / 2, encoder only, batch 1"}
    rows, gm = [], {}
    for name, enc in encoders.items():
        gm[name] = encoder_gmacs(enc, n)
        params = sum(p.numel() for p in enc.parameters()) / 1e6
        rows.append(Result("encoder_gmacs", round(gm[name], 2), dataset, "-", 1, variant=name,
                           higher_is_better=False, details=details))
        rows.append(Result("encoder_params_million", round(params, 2), "-", "-", 1, variant=name,
                           higher_is_better=False))
    rows.append(Result("gmacs_ratio", round(gm["conformer_l"] / gm["fast_conformer_l"], 3), dataset, "-", 1,
                       variant="conformer_l/fast_conformer_l", details=details))
    return rows
