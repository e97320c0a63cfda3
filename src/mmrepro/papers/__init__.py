"""The paper registry: a plain mapping from name to the class that implements it.

Adding a paper = one module here, its model file under `mmrepro.models`, its references file
`references/<name>.yaml`, one line below, and its per-profile config under `papers:` in
params.yaml (dvc.yaml iterates over that section, so it needs no edit).
Imports are lazy so that a stage for one paper does not import every other paper's code.
"""

from __future__ import annotations

import importlib

from mmrepro.datasets import DatasetSettings
from mmrepro.papers.base import Paper

REGISTRY: dict[str, str] = {
    "starcapnet": "mmrepro.papers.starcapnet:StarCapNet",
    "conformer": "mmrepro.papers.conformer:Conformer",
    "fast_conformer": "mmrepro.papers.fast_conformer:FastConformer",
    "sympow": "mmrepro.papers.sympow:SymPow",
    "vqvae": "mmrepro.papers.vqvae:VQVAEPaper",
    "vsr_conformer": "mmrepro.papers.vsr_conformer:VsrConformer",
    "geocapnet": "mmrepro.papers.geocapnet:GeoCapNet",
    "attention_captioner": "mmrepro.papers.attention_captioner:AttentionCaptioner",
    "karpathy_alignment": "mmrepro.papers.karpathy_alignment:KarpathyAlignment",
}


def get_paper(name: str, datasets: DatasetSettings | None = None) -> Paper:
    if name not in REGISTRY:
        raise KeyError(f"unknown paper {name!r}; known: {', '.join(sorted(REGISTRY))}")
    module_name, cls_name = REGISTRY[name].split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    return cls(datasets)
