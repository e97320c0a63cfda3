"""Decoding keys (`TrainConfig.decode_keys`): what only evaluation reads stays out of what training depends on.

The real `dvc repro` of a decoding change (evaluate reruns, training does not) is in tests/test_pipeline_e2e.py."""

from __future__ import annotations

import pytest

from mmrepro.config import load_recipes
from mmrepro.papers import REGISTRY, get_paper
from mmrepro.train import config_fingerprint

# what each paper decodes or samples with: a key missing here (or added without a test) fails below
EXPECTED = {
    "starcapnet": {"beam_size"},
    "geocapnet": {"beam_size"},
    "attention_captioner": {"beam_size", "n_attention_maps"},
    "karpathy_alignment": {"beam_size"},
    "conformer": {"beam_size"},
    "fast_conformer": {"beam_size"},
    "vsr_conformer": {"beam_size", "sample_videos"},
    "vqvae": {"n_generate", "temperature", "top_k", "guidance", "n_grid"},
    "sympow": {"sample_bytes"},
}


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_decode_keys_are_fields_and_split_the_config(name):
    cls = get_paper(name).Config
    assert set(cls.decode_keys) == EXPECTED[name]
    assert cls.decode_keys <= set(cls.model_fields)
    cfg = cls.model_validate(load_recipes()[name]["cpu"])
    training, decoding = cfg.training_fields(), cfg.decode_fields()
    assert set(decoding) == EXPECTED[name] and not set(training) & set(decoding)
    assert {**training, **decoding} == cfg.model_dump(mode="json")


def test_checkpoint_fingerprint_ignores_decoding_and_follows_training():
    cls = get_paper("conformer").Config
    recipe = load_recipes()["conformer"]["cpu"]
    base = config_fingerprint("conformer", "transducer", 0, cls.model_validate(recipe), "data")
    beam = cls.model_validate({**recipe, "beam_size": recipe.get("beam_size", 1) + 3})
    assert config_fingerprint("conformer", "transducer", 0, beam, "data") == base
    lr = cls.model_validate({**recipe, "lr": recipe["lr"] * 2})
    assert config_fingerprint("conformer", "transducer", 0, lr, "data") != base
