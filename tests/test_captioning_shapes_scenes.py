"""shapes-scenes: determinism, rendering, the two caption grammars, on-disk round trip."""

import numpy as np
import pytest

from mmrepro.data.shapes_scenes import (
    COLOURS,
    SceneObject,
    ShapesScenesConfig,
    generate_split,
    geocap_caption,
    read_split,
    render_scene,
    scene_captions,
    write_split,
)


def test_deterministic_by_seed_and_split():
    cfg = ShapesScenesConfig()
    a, b = generate_split(30, "train", 3, cfg), generate_split(30, "train", 3, cfg)
    assert np.array_equal(a.images, b.images) and a.captions == b.captions
    assert not np.array_equal(a.images, generate_split(30, "train", 4, cfg).images)
    assert not np.array_equal(a.images, generate_split(30, "test", 3, cfg).images)


def test_scenes_have_five_distinct_references_and_the_right_colours():
    cfg = ShapesScenesConfig()
    split = generate_split(60, "val", 0, cfg)
    n_objects = set()
    for img, caps, objs in zip(split.images, split.captions, split.scenes, strict=True):
        assert len(caps) == 5 and len(set(caps)) == 5
        n_objects.add(len(objs))
        # every object's colour is painted, no other colour is
        painted = {tuple(p) for p in img.reshape(-1, 3)} - {(0, 0, 0)}
        assert painted == {COLOURS[o.colour] for o in objs}
        for o in objs:
            assert all(o.colour in c and o.shape in c for c in caps[:1])
    assert n_objects == {1, 2, 3}


def test_relations_and_templates_for_a_two_object_scene():
    objs = [SceneObject("circle", "red", "large", 0, 0), SceneObject("square", "blue", "small", 2, 0)]
    caps = scene_captions(objs, np.random.default_rng(0), n_refs=7)
    assert caps[0] == "a large red circle above a small blue square"
    assert "a small blue square below a large red circle" in caps
    assert "a big red circle above a little blue square" in caps
    assert geocap_caption(objs) == "a red circle and a blue square"
    side = [SceneObject("cross", "green", "small", 2, 0), SceneObject("diamond", "cyan", "large", 0, 1)]
    assert scene_captions(side, np.random.default_rng(0))[0] == "a small green cross left of a large cyan diamond"


def test_render_sizes_differ_and_objects_stay_in_their_cell():
    cfg = ShapesScenesConfig(jitter=0)
    rng = np.random.default_rng(0)
    big = render_scene([SceneObject("square", "white", "large", 1, 1)], cfg, rng)
    small = render_scene([SceneObject("square", "white", "small", 1, 1)], cfg, rng)
    assert (big > 0).any(-1).sum() > 2.0 * (small > 0).any(-1).sum()  # half-extents 0.45 vs 0.3 of a cell
    ys, xs = np.nonzero((big > 0).any(-1))
    assert ys.min() >= 16 and ys.max() < 32 and xs.min() >= 16 and xs.max() < 32


def test_geocap_grammar_is_one_caption_in_reading_order():
    split = generate_split(20, "train", 1, ShapesScenesConfig(grammar="geocap", max_objects=2))
    for caps, objs in zip(split.captions, split.scenes, strict=True):
        assert caps == [" and ".join(f"a {o.colour} {o.shape}" for o in objs)]
        assert [(o.col, o.row) for o in objs] == sorted((o.col, o.row) for o in objs)


def test_round_trip_on_disk(tmp_path):
    split = generate_split(10, "test", 0, ShapesScenesConfig())
    write_split(tmp_path, "test", split)
    back = read_split(tmp_path, "test")
    assert np.array_equal(back.images, split.images) and back.captions == split.captions
    assert back.scenes == split.scenes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test.json", "test_images.npy"]


@pytest.mark.parametrize("kwargs", [{"image_size": 50}, {"max_objects": 4}, {"grammar": "x"}, {"n_refs": 3},
                                    {"object_weights": (1.0,)}])
def test_bad_config(kwargs):
    with pytest.raises(ValueError):
        ShapesScenesConfig(**kwargs)
