"""R@K and median rank against hand-made similarity matrices."""

import numpy as np
import pytest

from mmrepro.metrics.retrieval import image_to_sentence_ranks, retrieval_metrics, sentence_to_image_ranks


def test_hand_made_matrix_two_captions_per_image():
    # images 0, 1, 2; sentences 0,1 -> image 0; 2,3 -> image 1; 4,5 -> image 2
    sim = np.array([
        [0.9, 0.1, 0.5, 0.2, 0.3, 0.0],  # image 0: its best gt (0.9) is first -> rank 1
        [0.8, 0.7, 0.6, 0.1, 0.2, 0.3],  # image 1: best gt 0.6, beaten by 0.8 and 0.7 -> rank 3
        [0.4, 0.3, 0.2, 0.1, 0.35, 0.9],  # image 2: best gt 0.9 -> rank 1
    ])
    owner = np.array([0, 0, 1, 1, 2, 2])
    assert image_to_sentence_ranks(sim, owner).tolist() == [1, 3, 1]
    # sentence columns: s0 own 0.9 -> 1; s1 own 0.1 < 0.7, 0.3 -> 3; s2 own 0.6 > 0.5, 0.2 -> 1;
    # s3 own 0.1 < 0.2 (img0) -> 2 (0.1 on image 2 ties: counted ahead) -> 3; s4 own 0.35 > 0.3, 0.2 -> 1;
    # s5 own 0.9 -> 1
    assert sentence_to_image_ranks(sim, owner).tolist() == [1, 3, 1, 3, 1, 1]
    m = retrieval_metrics(sim, owner, captions_per_image=2)
    assert m["i2t_r1"] == pytest.approx(200 / 3)
    assert m["i2t_r5"] == 100.0 and m["i2t_medr"] == 1.0
    assert m["t2i_r1"] == pytest.approx(400 / 6)
    assert m["t2i_r5"] == 100.0 and m["t2i_r10"] == 100.0
    assert m["t2i_medr"] == 1.0


def test_standard_protocol_five_captions_and_ranks_beyond_ten():
    rng = np.random.default_rng(0)
    n = 12
    owner = np.repeat(np.arange(n), 5)
    sim = rng.uniform(0, 1, size=(n, 5 * n))
    # image k's gt sentences get score -k, everything else > 0: image k ranks at 5n - 5 + 1 = 56
    sim[owner, np.arange(5 * n)] = -1.0
    m = retrieval_metrics(sim, owner)
    assert m["i2t_r10"] == 0.0 and m["i2t_medr"] == 56.0
    assert m["t2i_r10"] == 0.0 and m["t2i_medr"] == 12.0
    # now make them the unique best: everything perfect
    sim[owner, np.arange(5 * n)] = 2.0
    m = retrieval_metrics(sim, owner)
    assert (m["i2t_r1"], m["t2i_r1"], m["i2t_medr"], m["t2i_medr"]) == (100.0, 100.0, 1.0, 1.0)


def test_ties_are_pessimistic():
    sim = np.ones((2, 2))  # every sentence identical to every image
    m = retrieval_metrics(sim, np.array([0, 1]), captions_per_image=1)
    assert m["i2t_r1"] == 0.0 and m["t2i_r1"] == 0.0 and m["i2t_medr"] == 2.0


def test_protocol_checks():
    with pytest.raises(ValueError, match="exactly 5"):
        retrieval_metrics(np.zeros((2, 9)), np.array([0] * 5 + [1] * 4))
    with pytest.raises(ValueError, match="entries"):
        retrieval_metrics(np.zeros((2, 10)), np.zeros(9, dtype=int))
    with pytest.raises(ValueError, match="no sentence"):
        retrieval_metrics(np.zeros((3, 2)), np.array([0, 1]), captions_per_image=None)
