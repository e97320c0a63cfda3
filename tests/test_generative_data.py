"""Generative-paper data: CIFAR-10 binary fixture + md5-checked download, LongCrawl64 Zarr fixture,
captioned shapes, photo patches split by photo, byte corpus split by file."""

import hashlib
import itertools
import json

import numpy as np
import pytest

from mmrepro.data import byte_corpus, captioned_shapes, cifar10, photo_patches
from mmrepro.data.longcrawl64 import LongCrawl64, ZarrArray
from mmrepro.datasets import DatasetError, split_identity

from .dataset_fixtures import cifar_archive, cifar_records, make_cifar10, patch_identities, write_zarr


def _cifar_archive(tmp_path, n_per_batch=3):
    path = tmp_path / "src" / cifar10.ARCHIVE
    return path, cifar_archive(path, n_per_batch)


def test_cifar10_binary_reader_on_fixture(tmp_path):
    raw, images, labels = cifar_records(5, 0)
    # first record by hand: byte 0 the label, then 1024 R, 1024 G, 1024 B bytes, rows of 32
    assert raw[0] == labels[0] and raw[1 + 1024 + 32 * 2 + 5] == images[0, 1, 2, 5]
    (tmp_path / "b.bin").write_bytes(raw)
    x, y = cifar10.read_batch(tmp_path / "b.bin")
    assert x.shape == (5, 3, 32, 32) and x.dtype == np.uint8
    np.testing.assert_array_equal(x, images)
    np.testing.assert_array_equal(y, labels.astype(np.int64))
    (tmp_path / "bad.bin").write_bytes(raw[:-1])
    with pytest.raises(DatasetError, match=f"^{tmp_path / 'bad.bin'}: 15364 bytes is not a whole number of 3073-byte"):
        cifar10.read_batch(tmp_path / "bad.bin")


def test_cifar10_download_checks_md5_keeps_a_bad_archive_and_unpacks(tmp_path):
    archive, expected = _cifar_archive(tmp_path)
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    root = tmp_path / "root"
    with pytest.raises(DatasetError, match=f"^{root / cifar10.ARCHIVE}: md5 {md5} != official {'0' * 32} "
                                           r"\(file left in place"):
        cifar10.download(root, url=archive.as_uri(), md5="0" * 32)
    assert (root / cifar10.ARCHIVE).read_bytes() == archive.read_bytes()  # a bad file is NOT deleted
    assert not (root / cifar10.FOLDER).exists()  # and nothing is unpacked from it
    folder = cifar10.download(root, url=archive.as_uri(), md5=md5)
    x, _ = cifar10.read_split(folder, "train")
    assert x.shape == (15, 3, 32, 32)
    np.testing.assert_array_equal(x[:3], expected["data_batch_1.bin"][0])
    _, yt = cifar10.read_split(folder, "test")
    np.testing.assert_array_equal(yt, expected["test_batch.bin"][1].astype(np.int64))
    assert cifar10.MD5 == "c32a1d4ab5d03f1284b67883e8d87530"


def _vqvae(root, identity="strict", download=False):
    from mmrepro.datasets import DatasetSettings
    from mmrepro.papers import get_paper

    paper = get_paper("vqvae", DatasetSettings(root, identity))
    cfg = paper.Config(epochs=1, batch_size=4, lr=1e-3, recon_dataset="cifar10", download=download)
    return paper, cfg


def _no_network(monkeypatch):
    import urllib.request

    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: (_ for _ in ()).throw(AssertionError("urlopen")))


def test_cifar10_missing_folder_names_dataset_key_and_source(tmp_path, monkeypatch):
    _no_network(monkeypatch)
    paper, cfg = _vqvae(tmp_path)
    with pytest.raises(DatasetError) as err:
        paper.prepare(cfg, tmp_path / "data", seed=0)
    assert str(err.value) == (
        f"cifar10: {tmp_path}/cifar10/cifar-10-batches-bin not found (params configs/vqvae.yaml:full.recon_dataset; "
        f"root {tmp_path}, $MMREPRO_DATASETS overrides it); get it from https://www.cs.toronto.edu/~kriz/cifar.html "
        "(cifar-10-binary.tar.gz, md5 c32a1d4ab5d03f1284b67883e8d87530) (or set configs/vqvae.yaml:full.download: true)")


def test_cifar10_unpacked_copy_used_without_download_partial_test_strict_and_warn(tmp_path, monkeypatch, capsys):
    _no_network(monkeypatch)
    make_cifar10(tmp_path, n_train=10, n_test=4)
    patch_identities(monkeypatch, "cifar10", {"train": 10, "test": 10000})
    paper, cfg = _vqvae(tmp_path, download=True)  # asked to download, but the unpacked copy is there
    with pytest.raises(DatasetError, match=r"^cifar10/test: 4 examples, the official split has 10000 \(params "
                                           r"configs/vqvae.yaml:full.recon_dataset;"):
        paper.prepare(cfg, tmp_path / "data", seed=0)
    paper, cfg = _vqvae(tmp_path, "warn")
    (tmp_path / "data2").mkdir()
    info = paper.prepare(cfg, tmp_path / "data2", seed=0)
    assert "warning: cifar10/test: 4 examples, the official split has 10000" in capsys.readouterr().out
    assert info.splits["recon_train"] == 10 and info.splits["recon_test"] == 4
    raw = (tmp_path / "cifar10/cifar-10-batches-bin/test_batch.bin").read_bytes()
    want = split_identity((str(i), f"{raw[i * 3073]} {hashlib.sha256(raw[i * 3073 + 1 : (i + 1) * 3073]).hexdigest()}")
                          for i in range(4))
    assert info.identity == {"cifar10/test": want}
    assert not (tmp_path / "cifar10" / cifar10.ARCHIVE).exists()


def test_cifar10_checks_before_decoding_and_short_file_is_one_line(tmp_path, monkeypatch):
    make_cifar10(tmp_path, n_train=10, n_test=4)
    monkeypatch.setattr(cifar10, "read_batch", lambda path: (_ for _ in ()).throw(AssertionError("decoded")))
    paper, cfg = _vqvae(tmp_path)  # real identities: train has 50000 images
    with pytest.raises(DatasetError, match="^cifar10/train: 10 examples, the official split has 50000"):
        paper.prepare(cfg, tmp_path / "data", seed=0)
    short = tmp_path / "cifar10/cifar-10-batches-bin/data_batch_3.bin"
    short.write_bytes(short.read_bytes()[:-7])
    with pytest.raises(DatasetError, match=f"^{short}: 6139 bytes is not a whole number of 3073-byte records"):
        paper.prepare(cfg, tmp_path / "data", seed=0)
    assert paper.external_paths(cfg) == [tmp_path / "cifar10/cifar-10-batches-bin"]


@pytest.mark.parametrize("compressor", [None, {"id": "zlib", "level": 1}, {"id": "gzip", "level": 1}])
def test_longcrawl64_zarr_reader(tmp_path, compressor):
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 50304, size=(5, 40), dtype=np.uint16)
    expected = tokens.copy()
    expected[0:2, 16:32] = 0  # chunk (0, 1) missing
    root = tmp_path / "lc64"
    write_zarr(root / "train.zarr", tokens, (2, 16), compressor, skip=(0, 1))  # one chunk absent
    write_zarr(root / "heldout.zarr", tokens[:3], (2, 16), compressor, skip=(0, 1))
    arr = LongCrawl64(root).split("train")
    assert arr.shape == (5, 40) and arr.dtype == np.uint16
    np.testing.assert_array_equal(arr[:, :], expected)
    np.testing.assert_array_equal(arr[1:4, 10:37], expected[1:4, 10:37])
    assert arr[4, 39] == expected[4, 39]
    batch = LongCrawl64.batch(arr, 2, 3, 8, 24)
    assert batch.dtype == np.int64
    np.testing.assert_array_equal(batch, expected[2:5, 8:32])
    assert LongCrawl64(root).split("heldout").shape == (3, 40)
    with pytest.raises(IndexError):
        LongCrawl64.batch(arr, 0, 1, 30, 24)


def test_zarr_rejects_other_formats(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / ".zarray").write_text(json.dumps({"zarr_format": 3, "shape": [1, 1], "chunks": [1, 1]}))
    with pytest.raises(ValueError, match="zarr_format"):
        ZarrArray(tmp_path / "a")


def test_captioned_shapes_deterministic_and_coloured(tmp_path):
    spec = captioned_shapes.ShapesSpec(image_size=32, noise_std=0.0)
    captioned_shapes.write_dataset(tmp_path, {"train": 40, "test": 30}, spec, seed=3)
    x, attrs, caps = captioned_shapes.read_split(tmp_path, "train")
    assert x.shape == (40, 3, 32, 32) and len(caps) == 40
    x2, _, caps2 = captioned_shapes.generate(40, spec, np.random.default_rng([3, 0]), pairs="seen")
    np.testing.assert_array_equal(x, x2)
    assert caps == caps2
    for i in range(40):
        words = caps[i].split()
        assert words[1] == captioned_shapes.SIZES[attrs["size"][i]]
        assert words[3] == captioned_shapes.SHAPES[attrs["shape"][i]]
        rgb = captioned_shapes.COLOURS[words[2]]
        fg = (np.abs(x[i].astype(int) - np.array(rgb)[:, None, None]).sum(0) == 0)
        assert fg.sum() > 10  # the named colour is drawn
        ys, xs = np.nonzero(fg)
        assert (ys.mean() < 16) == (words[6] == "top") and (xs.mean() < 16) == (words[7] == "left")
        assert not captioned_shapes.heldout_pair(attrs["shape"][i], attrs["colour"][i])  # train: seen pairs only
    _, test_attrs, _ = captioned_shapes.read_split(tmp_path, "test")
    held = [captioned_shapes.heldout_pair(s, c) for s, c in zip(test_attrs["shape"], test_attrs["colour"], strict=True)]
    assert any(held)
    tok = captioned_shapes.CaptionTokenizer()
    ids = tok.encode(caps[0], 8)
    assert len(ids) == 8 and 0 not in ids and " ".join(tok.words[i] for i in ids) == caps[0]


def test_photo_patches_split_by_photo(tmp_path):
    split = {"train": ("astronaut",), "test": ("rocket",)}
    sizes = photo_patches.write_dataset(tmp_path, 32, 16, split=split, max_per_photo=100)
    _, src_tr = photo_patches.read_split(tmp_path, "train")
    test, src_te = photo_patches.read_split(tmp_path, "test")
    assert sizes == {"train": 100, "test": (427 // 32) * (640 // 32)}
    assert set(src_tr) == {photo_patches.PHOTOS.index("astronaut")}
    assert set(src_te) == {photo_patches.PHOTOS.index("rocket")}
    rocket = photo_patches.load_photo("rocket")
    np.testing.assert_array_equal(test[1], rocket[0:32, 32:64].transpose(2, 0, 1))
    with pytest.raises(ValueError, match="both"):
        photo_patches.write_dataset(tmp_path / "x", 32, 16, split={"train": ("rocket",), "test": ("rocket",)})


def test_byte_corpus_whole_documents_split_by_file(tmp_path):
    root = tmp_path / "lib"
    for i in range(30):
        (root / f"pkg{i % 3}").mkdir(parents=True, exist_ok=True)
        (root / f"pkg{i % 3}" / f"m{i}.py").write_text(f"# module {i}\n" + "x = 1\n" * (i + 1))
    (root / "test").mkdir()
    (root / "test" / "big.py").write_text("excluded\n")
    out = tmp_path / "out"
    stats = byte_corpus.write_dataset(out, seed=0, fractions=(0.2, 0.2), root=root)
    assert sum(s["documents"] for s in stats.values()) == 30
    docs = set()
    for split in ("train", "val", "test"):
        data, offsets = byte_corpus.read_split(out, split)
        assert offsets[-1] == len(data)
        for a, b in itertools.pairwise(offsets):
            text = bytes(data[a:b]).decode()
            assert text.startswith("# module ") and text.endswith("x = 1\n")  # whole files
            docs.add(text.split("\n")[0])
    assert len(docs) == 30
    data, offsets = byte_corpus.read_split(out, "train")
    w = byte_corpus.sample_windows(data, offsets, 20, 50, np.random.default_rng(0))
    assert w.shape == (50, 20)
    text = [bytes(r.astype(np.uint8)).decode() for r in w]
    whole = bytes(data).decode()
    assert all(t in whole for t in text)
    ev = byte_corpus.document_windows(data, offsets, 20, 3)
    assert bytes(ev[0].astype(np.uint8)) == bytes(data[offsets[np.argmax(np.diff(offsets) >= 20)]:][:20])
