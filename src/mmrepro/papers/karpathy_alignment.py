"""Karpathy & Fei-Fei 2015, Deep Visual-Semantic Alignments for Generating Image Descriptions.

Two variants, as in the paper:
  align     the alignment model (image regions x BRNN sentence fragments, max-margin ranking loss),
            scored by image-sentence retrieval: R@1/5/10 and median rank both ways (Table 1);
  generate  the multimodal RNN generator (image injected at the first step), beam search, scored
            by the shared caption evaluator (Table 2: BLEU, METEOR, CIDEr x100).
The test split has 5 references per image (the standard retrieval protocol; 1000 images on the
cpu profile, as the papers' Flickr8k/30k test splits).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from mmrepro.data.caption_vocab import EOS, PAD
from mmrepro.data.shapes_scenes import read_split
from mmrepro.metrics.retrieval import retrieval_metrics
from mmrepro.models.karpathy_alignment import KarpathyAlignment as AlignmentModel
from mmrepro.models.karpathy_alignment import KarpathyAlignmentConfig
from mmrepro.models.multimodal_rnn import MultimodalRNN, MultimodalRNNConfig
from mmrepro.papers.common import captioning as cap
from mmrepro.papers.base import Result, Variant

VARIANTS = ("align", "generate")


class Config(cap.CaptionDataConfig):
    grid: int = Field(default=3, gt=0, description="CNN grid cells per side: the image regions")
    embed_dim: int = Field(default=128, gt=0, description="multimodal embedding size h")
    word_dim: int = Field(default=128, gt=0)
    brnn_cell: Literal["relu", "gru"] = "gru"
    margin: float = Field(default=1.0, gt=0)
    score_norm: Literal["sum", "mean"] = "sum"
    gen_embed_dim: int = Field(default=128, gt=0)
    gen_hidden_dim: int = Field(default=256, gt=0)
    gen_cell: Literal["relu", "lstm"] = "relu"  # the paper's eq. 14; with "lstm" the cpu run ignored the image
    gen_dropout: float = Field(default=0.1, ge=0, lt=1)
    variants: list[Literal["align", "generate"]] = Field(default=list(VARIANTS), min_length=1)
    generate_fraction: float = Field(default=1.0, gt=0, le=1,
                                     description="share of each epoch's training images the generator sees")


def _fragment_tokens(tokens: torch.Tensor) -> torch.Tensor:
    """Caption ids <bos> w.. <eos> <pad>.. -> words only, <pad>-padded (the BRNN's input)."""
    words = tokens[:, 1:]
    return words.masked_fill(words == EOS, PAD)


@torch.no_grad()
def similarity(model: AlignmentModel, images: torch.Tensor, captions: list[str], vocab, max_len: int,
               batch: int = 250) -> np.ndarray:
    """(n_images, n_sentences) image-sentence scores S_kl."""
    device = next(model.parameters()).device
    v = torch.cat([model.embed_images(images[i : i + batch].to(device)) for i in range(0, len(images), batch)])
    frags, masks = [], []
    tokens = _fragment_tokens(vocab.encode_batch(captions, max_len))
    for i in range(0, len(tokens), batch):
        s, m = model.embed_sentences(tokens[i : i + batch].to(device))
        frags.append(s)
        masks.append(m)
    return model.scores(v, torch.cat(frags), torch.cat(masks), chunk=16).cpu().numpy()


def _flatten(captions: list[list[str]]) -> tuple[list[str], np.ndarray]:
    sents = [c for caps in captions for c in caps]
    owner = np.repeat(np.arange(len(captions)), [len(c) for c in captions])
    return sents, owner


class KarpathyAlignment(cap.CaptionPaper):
    name = "karpathy_alignment"
    title = "Karpathy & Fei-Fei 2015, Deep Visual-Semantic Alignments"
    Config = Config

    def departures(self, cfg: Config) -> list[str]:
        out = [f"{cfg.grid} x {cfg.grid} grid regions of a {cfg.encoder} + the whole image in place of the paper's "
               "R-CNN detections (top 19 + whole image)"]
        if cfg.pretrained_path is None:
            out.append("no ImageNet-pretrained encoder weights (the paper's CNN is ImageNet-trained)")
        return out

    def make_variants(self, cfg: Config, data_dir: Path) -> list[Variant]:
        data = cap.CaptionData(self, data_dir)
        made = {"align": lambda: self._align(cfg, data), "generate": lambda: self.captioner(
            "generate", cfg, data, lambda: self._generator(cfg, len(data.vocab)), fraction=cfg.generate_fraction)}
        return [made[name]() for name in cfg.variants]

    def _align(self, cfg: Config, data: cap.CaptionData) -> Variant:
        """The alignment model: the captioner's batches, the max-margin ranking loss, R@1 both ways on val."""
        base = self.captioner("align", cfg, data, lambda: self._alignment_model(cfg, len(data.vocab)))

        def retrieval_on_val(model) -> dict[str, float]:
            images, captions = data.split("val")
            sents, owner = _flatten(captions)
            m = retrieval_metrics(similarity(model, images, sents, data.vocab, cfg.max_caption_len), owner,
                                  captions_per_image=None)
            return {"i2t_r1": m["i2t_r1"], "t2i_r1": m["t2i_r1"]}

        return replace(base, loss=lambda model, batch: model(batch["images"], _fragment_tokens(batch["tokens"])),
                       validate=retrieval_on_val)

    def _alignment_model(self, cfg: Config, vocab_size: int) -> AlignmentModel:
        return AlignmentModel(KarpathyAlignmentConfig(
            vocab_size=vocab_size, encoder=cfg.encoder_config(cfg.grid, self.datasets.root), embed_dim=cfg.embed_dim,
            word_dim=cfg.word_dim, cell=cfg.brnn_cell, margin=cfg.margin, score_norm=cfg.score_norm))

    def _generator(self, cfg: Config, vocab_size: int) -> MultimodalRNN:
        return MultimodalRNN(MultimodalRNNConfig(
            vocab_size=vocab_size, encoder=cfg.encoder_config(cfg.grid, self.datasets.root), embed_dim=cfg.gen_embed_dim,
            hidden_dim=cfg.gen_hidden_dim, cell=cfg.gen_cell, dropout=cfg.gen_dropout))

    def evaluate(self, models, cfg: Config, data_dir: Path, out_dir: Path, seed: int) -> list[Result]:
        vocab = cap.load_vocab(data_dir)
        test = read_split(data_dir, "test")
        images = cap.images_tensor(test)
        dataset = cap.dataset_label(cfg)
        results = []
        if "align" in models:
            sents, owner = _flatten(test.captions)
            sim = similarity(models["align"], images, sents, vocab, cfg.max_caption_len)
            per_image = 5 if all(len(c) == 5 for c in test.captions) else None
            m = retrieval_metrics(sim, owner, captions_per_image=per_image)
            details = {"protocol": f"{per_image or 'variable'} sentences per image; ties ranked pessimistically",
                       "score": f"sum_t max_i v_i.s_t ({cfg.score_norm} over words)"}
            (out_dir / "retrieval.json").write_text(json.dumps({"metrics": m, **details}, indent=1))
            np.save(out_dir / "similarity.npy", sim.astype(np.float32))
            for key, value in m.items():
                medr = key.endswith("medr")
                results.append(Result(key, value, dataset=dataset, split="test", n_samples=len(test),
                                      scale="raw" if medr else "x100", variant="align",
                                      higher_is_better=not medr, details=details))
        if "generate" in models:
            preds = cap.decode(models["generate"], images, vocab, cfg.beam_size, cfg.max_caption_len)
            where = out_dir / "generate"
            where.mkdir()
            cap.write_predictions(where / "predictions.jsonl", preds, test.captions)
            scores = cap.score_split(preds, test.captions, where)
            details = {"decoding": f"beam search, beam {cfg.beam_size}"}
            results.append(Result("exact_match", cap.exact_match(preds, test.captions), dataset=dataset,
                                  split="test", n_samples=len(test), variant="generate", details=details))
            results += cap.caption_results(scores, dataset, "test", "generate", details)
        return results
