"""Image-sentence retrieval metrics: R@1/5/10 (%) and median rank, in both directions.

The standard protocol of Karpathy & Fei-Fei 2015 (Table 1): every test image has 5 sentences.
image -> sentence: an image's rank is the rank of its best-ranked ground-truth sentence among all
sentences; sentence -> image: a sentence's rank is the rank of its image among all images.
Ranks are 1-based and pessimistic on ties: a competitor with a score equal to the ground truth's
is ranked ahead of it (identical sentences of different images cannot count as hits by luck).
"""

from __future__ import annotations

import numpy as np

KS = (1, 5, 10)


def _check(sim: np.ndarray, sent_to_img: np.ndarray, captions_per_image: int | None) -> None:
    if sim.ndim != 2:
        raise ValueError(f"sim must be (n_images, n_sentences), got shape {sim.shape}")
    if sent_to_img.shape != (sim.shape[1],):
        raise ValueError(f"sent_to_img needs {sim.shape[1]} entries, got {sent_to_img.shape}")
    if sent_to_img.min() < 0 or sent_to_img.max() >= sim.shape[0]:
        raise ValueError("sent_to_img holds an image index out of range")
    counts = np.bincount(sent_to_img, minlength=sim.shape[0])
    if captions_per_image is not None and not (counts == captions_per_image).all():
        raise ValueError(f"every image needs exactly {captions_per_image} sentences; counts range {counts.min()}..{counts.max()}")
    if (counts == 0).any():
        raise ValueError("an image has no sentence")


def image_to_sentence_ranks(sim: np.ndarray, sent_to_img: np.ndarray) -> np.ndarray:
    """(n_images,) 1-based rank of each image's best ground-truth sentence."""
    gt = sent_to_img[None, :] == np.arange(sim.shape[0])[:, None]  # (N, M)
    best_gt = np.where(gt, sim, -np.inf).max(axis=1, keepdims=True)
    return 1 + ((sim >= best_gt) & ~gt).sum(axis=1)


def sentence_to_image_ranks(sim: np.ndarray, sent_to_img: np.ndarray) -> np.ndarray:
    """(n_sentences,) 1-based rank of each sentence's image."""
    cols = np.arange(sim.shape[1])
    own = sim[sent_to_img, cols][None, :]
    others = np.ones_like(sim, dtype=bool)
    others[sent_to_img, cols] = False
    return 1 + ((sim >= own) & others).sum(axis=0)


def _summary(ranks: np.ndarray, prefix: str) -> dict[str, float]:
    out = {f"{prefix}_r{k}": float(100.0 * (ranks <= k).mean()) for k in KS}
    out[f"{prefix}_medr"] = float(np.median(ranks))
    return out


def retrieval_metrics(
    sim: np.ndarray, sent_to_img: np.ndarray, captions_per_image: int | None = 5
) -> dict[str, float]:
    """{"i2t_r1", "i2t_r5", "i2t_r10", "i2t_medr", "t2i_r1", ..., "t2i_medr"}; R@K in %.

    sim: (n_images, n_sentences) scores, higher = more similar.
    sent_to_img: (n_sentences,) index of each sentence's image.
    captions_per_image: enforced count per image (5 in the standard protocol); None = any >= 1.
    """
    sim = np.asarray(sim, dtype=np.float64)
    sent_to_img = np.asarray(sent_to_img, dtype=np.int64)
    _check(sim, sent_to_img, captions_per_image)
    return {
        **_summary(image_to_sentence_ranks(sim, sent_to_img), "i2t"),
        **_summary(sentence_to_image_ranks(sim, sent_to_img), "t2i"),
    }
