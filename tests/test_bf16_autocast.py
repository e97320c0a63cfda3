"""The full profile trains under bf16 autocast on CUDA (`precision: bf16`, mmrepro.train), a path no CPU run
takes: CPU runs train in fp32. CPU autocast casts the same op classes (matrix products and convolutions to bf16,
most reductions and norms kept in fp32; the two op lists differ in details), so one training step of every
paper's models under it, on the smoke recipe's own prepared data, finds that path's dtype errors here. It found
two, each a crash of the full profile on GPUs: a padding fill of fp32's minimum in the Conformer's attention
scores, which overflows bf16 (the Conformer, Fast Conformer and lip reading), and bf16 rows of z_e written into
the VQ-VAE's fp32 codebook at its first step (`data_init`; its quantiser now runs in fp32). The loss must match
fp32's to bf16's precision and reach the same parameters. Not covered: CUDA-only kernels (flash attention,
cuDNN) and CUDA's own autocast op lists, which a GPU run exercises."""

from __future__ import annotations

import math

import pytest
import torch

from mmrepro.config import load_params, paper_config
from mmrepro.papers import REGISTRY, get_paper

from .conftest import REPO


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_one_training_step_of_every_variant_under_bf16_autocast(name, tmp_path):
    paper = get_paper(name)
    cfg = paper_config(load_params(REPO / "params.yaml", papers=[name]), name, "smoke")  # as the stages validate it
    paper.prepare(cfg, tmp_path, 0)
    variants = paper.make_variants(cfg, tmp_path)
    assert variants
    for variant in variants:
        batch = next(iter(variant.batches(0, 0)))
        fp32_loss, fp32_reached = _step(variant, batch, autocast=False)
        loss, reached = _step(variant, batch, autocast=True)
        assert math.isfinite(loss), f"{name}/{variant.name}: loss {loss}"
        # bf16 rounds to ~3 significant digits; an error of dtype handling is off by far more, or raises
        assert abs(loss - fp32_loss) <= 0.05 * abs(fp32_loss) + 1e-3, (name, variant.name, loss, fp32_loss)
        assert reached == fp32_reached, f"{name}/{variant.name}: gradients differ from fp32's: {reached ^ fp32_reached}"
        assert reached, f"{name}/{variant.name}: no parameter got a gradient"


def _step(variant, batch, autocast: bool) -> tuple[float, set[str]]:
    """Loss of a freshly seeded model on `batch` and the parameters that got a finite, non-zero gradient."""
    torch.manual_seed(0)
    model = variant.build_model()
    model.train()
    torch.manual_seed(1)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = variant.loss(model, batch)
    assert loss.dim() == 0
    loss.backward()
    reached = {n for n, p in model.named_parameters()
               if p.grad is not None and bool(torch.isfinite(p.grad).all()) and bool(p.grad.abs().sum() > 0)}
    return float(loss.detach()), reached
