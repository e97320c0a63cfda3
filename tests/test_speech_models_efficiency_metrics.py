"""Report rows of `mmrepro.metrics.efficiency`: published encoder sizes and GMACs of Rekesh et al. 2023."""

import pytest
import torch

from mmrepro.metrics.efficiency import encoder_gmacs, frames, gmacs_results


def test_gmacs_results_match_published_encoder_sizes_and_macs():
    rows = {(r.metric, r.variant): r for r in gmacs_results(30.0)}
    # NeMo / paper: Conformer-L encoder 115M, Fast-Conformer-L 109M parameters; 143.2 vs 48.7 GMACs at 30 s
    assert rows[("encoder_params_million", "conformer_l")].value == pytest.approx(115, rel=0.01)
    assert rows[("encoder_params_million", "fast_conformer_l")].value == pytest.approx(109, rel=0.01)
    assert rows[("encoder_gmacs", "fast_conformer_l")].value == pytest.approx(48.7, rel=0.02)
    assert rows[("encoder_gmacs", "conformer_l")].value == pytest.approx(143.2, rel=0.01)
    ratio = rows[("gmacs_ratio", "conformer_l/fast_conformer_l")]
    assert abs(ratio.value - 2.94) / 2.94 < 0.10
    assert "3001 frames" in ratio.dataset


def test_encoder_gmacs_of_a_linear_model_is_hand_computable():
    class Lin(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.f = torch.nn.Linear(80, 10)

        def forward(self, x, lengths):
            return self.f(x)

    # 2 x 7 frames x 80 x 10 MACs = 11,200
    assert encoder_gmacs(Lin(), 7, batch=2) * 1e9 == pytest.approx(11_200)
    assert frames(0.5) == 51
    with pytest.raises(ValueError):
        encoder_gmacs(Lin(), 0)
