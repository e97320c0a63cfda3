"""Fault injection on an external dataset: the Conformer paper's smoke-size model on a LibriSpeech copy in the
release's layout (tests/dataset_fixtures.py: real 16 kHz FLACs and trans.txt files) under an absolute datasets
root outside the checkout, through the real stage processes (prepare, train, evaluate). It asserts that no
output names the datasets root or the checkout (reports/, info.json, runs.json, MLflow params and tags), then
that a corrupted FLAC ends evaluate with one line naming the file, and the openclipart reader's rejects list.
Nothing is mocked."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from mmrepro import pipeline
from mmrepro.config import load_params
from mmrepro.data import openclipart
from mmrepro.data.rejects import collecting

from .conftest import REPO, VENV_BIN, committed_params, committed_text, copy_repo, stage_env
from .dataset_fixtures import make_librispeech
from .test_captioning_openclipart import _svg

pytestmark = pytest.mark.slow
PAPER = "conformer"
# the smoke profile's model on LibriSpeech's layout: only the subsets the paper reads, a few utterances each
SUBSETS = {"train-clean-100": 4, "dev-other": 2, "test-clean": 3, "test-other": 2}
CONFIG = {"dataset": "librispeech", "train_subsets": ["train-clean-100"], "variants": ["ctc"]}


def _stage(repo: Path, stage: str) -> subprocess.CompletedProcess:
    paper = [] if stage == "validate" else [PAPER]
    return subprocess.run([sys.executable, f"stages/{stage}.py", *paper], cwd=repo, capture_output=True, text=True,
                          timeout=600, env=stage_env(OMP_NUM_THREADS="1", PYTHONPATH=str(repo / "src")))


def _ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> tuple[Path, Path]:
    root = copy_repo(tmp_path_factory.mktemp("repo"))
    datasets = tmp_path_factory.mktemp("datasets").resolve()
    make_librispeech(datasets, SUBSETS)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params.update(profile="smoke", run=[PAPER], papers={PAPER: CONFIG},  # the smoke recipe, on LibriSpeech
                  datasets={"root": str(datasets), "identity": "warn"})  # 3 test utterances are not the release
    params["train"]["loader_workers"] = 1  # FLACs decoded in a DataLoader worker, as on a GPU box
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run(["git", "commit", "-qam", "smoke conformer on LibriSpeech"], cwd=root, check=True, env=stage_env())
    for stage in ("validate", "prepare", "train", "evaluate"):
        _ok(_stage(root, stage))
    yield root, datasets
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(datasets, ignore_errors=True)


def test_no_output_names_the_datasets_root_or_the_checkout(repo):
    root, datasets = repo
    info = json.loads((root / "data" / PAPER / "info.json").read_text())
    assert info["details"]["root"] == "$MMREPRO_DATASETS"  # the paper recorded its absolute root
    outputs = [p for folder in ("reports", "artifacts", "data/external") for p in (root / folder).rglob("*")
               if p.is_file() and p.suffix in (".json", ".csv", ".md", ".txt", ".jsonl", ".html")]
    outputs.append(root / "data" / PAPER / "info.json")
    assert len(outputs) >= 5, outputs
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("mmrepro").experiment_id
    runs = client.search_runs([experiment])
    assert len(runs) == 2  # training and evaluation
    logged = [json.dumps([r.data.params, r.data.tags, [i.dataset.source for i in r.inputs.dataset_inputs]])
              for r in runs]
    assert all(r.inputs.dataset_inputs for r in runs)
    for text in [p.read_text() for p in outputs] + logged:
        assert str(datasets) not in text and str(root.resolve()) not in text and str(root) not in text
    provenance = json.loads((root / "reports/provenance" / f"{PAPER}.json").read_text())
    assert provenance["rejected"] == 0 and provenance["splits"] == {"train": 4, "dev": 2, "test-clean": 3,
                                                                     "test-other": 2}


def _assert_stage_names_the_flac(root: Path, stage: str, victim: Path, damaged: bytes) -> None:
    """Run `stage` with `victim` replaced by `damaged` (restored afterwards): exit 2, its last stderr line
    names the file, no traceback."""
    original = victim.read_bytes()
    victim.write_bytes(damaged)
    try:
        proc = _stage(root, stage)
    finally:
        victim.write_bytes(original)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"dataset: {victim}: not a readable FLAC file (Internal psf_fseek() failed.)")
    assert "Traceback" not in proc.stderr


def test_a_corrupted_flac_ends_evaluate_with_one_line_naming_it(repo):
    root, datasets = repo
    victim = datasets / "LibriSpeech/test-clean/120/5020/120-5020-0001.flac"
    garbled = bytearray(victim.read_bytes())
    garbled[len(garbled) // 2] ^= 0xFF  # one byte in the middle of the audio frames, same size
    _assert_stage_names_the_flac(root, "evaluate", victim, bytes(garbled))


def test_a_truncated_flac_decoded_in_a_dataloader_worker_ends_train_with_one_line(repo):
    """Training decodes FLACs in DataLoader workers (train.loader_workers): torch re-raises a worker's error
    with the worker's traceback as its message; the stage still prints one line naming the file."""
    root, datasets = repo
    victim = datasets / "LibriSpeech/train-clean-100/100/5000/100-5000-0000.flac"
    shutil.rmtree(root / "checkpoints")  # else the finished checkpoint resumes and nothing is decoded
    _assert_stage_names_the_flac(root, "train", victim, victim.read_bytes()[: victim.stat().st_size // 2])


def test_a_touched_dataset_file_reruns_prepare_through_dvc_and_nothing_else_does(repo):
    """`validate` (DVC runs it every time) writes the stat record of the LibriSpeech files into
    data/external/conformer.json, a dependency of prepare: an unchanged copy reruns nothing after validate,
    a file with a new mtime reruns prepare."""
    import os

    root, datasets = repo

    def stages_run() -> list[str]:
        proc = subprocess.run([str(VENV_BIN / "dvc"), "repro", f"prepare@{PAPER}"], cwd=root, capture_output=True,
                              text=True, timeout=600, env=stage_env(OMP_NUM_THREADS="1"))
        return [line.split("'")[1] for line in _ok(proc).splitlines() if line.startswith("Running stage")]

    assert stages_run() == ["validate", f"prepare@{PAPER}"]  # the first `dvc repro` here: nothing in dvc.lock
    assert stages_run() == ["validate"]
    record = json.loads((root / "data/external" / f"{PAPER}.json").read_text())
    assert record["files"]["LibriSpeech/test-clean"]["files"] == 3 + 2  # 3 FLACs, a trans.txt for each of 2 chapters
    victim = sorted((datasets / "LibriSpeech/test-clean").rglob("*.flac"))[0]
    st = victim.stat()
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert stages_run() == ["validate", f"prepare@{PAPER}"]


def test_inputs_skipped_on_purpose_are_listed_with_their_reason(tmp_path):
    """The openclipart reader (SVGs in the Debian package's format): what it leaves out, and why."""
    _svg(tmp_path / "animals" / "cat.svg", "Sleeping cat", "A grey cat asleep on a cushion.")
    _svg(tmp_path / "people" / "cat.svg", "Sleeping cat")  # the same file installed under two folders
    _svg(tmp_path / "food" / "pear.svg", "Pear", "A ripe pear.")
    _svg(tmp_path / "food" / "fc23.svg", "fc23")  # a file-ish name, not a caption
    _svg(tmp_path / "food" / "untitled.svg", "")
    (tmp_path / "food" / "broken.svg").write_text((tmp_path / "food" / "pear.svg").read_text()[:400])  # truncated
    with collecting() as rejects:
        images, items = openclipart.build_test_set(2, 16, seed=0, root=tmp_path)
    assert sorted(i.path.name for i in items) == ["cat.svg", "pear.svg"] and images.shape == (2, 16, 16, 3)
    assert sorted(rejects, key=lambda r: r["item"]) == [
        {"item": "food/broken.svg", "reason": "no dc:title"},
        {"item": "food/fc23.svg", "reason": "title not a usable caption (boilerplate, non-English, numbered or "
                                            "blocklisted)"},
        {"item": "food/untitled.svg", "reason": "no dc:title"},
        {"item": "people/cat.svg", "reason": "duplicate of animals/cat.svg"},
    ]


def test_prepare_writes_the_rejects_of_the_real_openclipart_package(tmp_path, monkeypatch):
    """The attention captioner's smoke prepare (in this process) on Debian's openclipart-svg package: every
    drawing the reader left out is in rejects.json with its reason, and counted in info.json."""
    if not openclipart.DEFAULT_ROOT.is_dir():
        pytest.skip("Debian package openclipart-svg is not installed (scripts/system_deps.sh installs it)")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({**committed_params(), "profile": "smoke"}))
    (tmp_path / "configs").mkdir()
    for recipe in (REPO / "configs").glob("*.yaml"):
        (tmp_path / "configs" / recipe.name).write_text(committed_text(f"configs/{recipe.name}"))
    params = load_params(tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    shutil.copytree(REPO / "references", tmp_path / "references")
    pipeline.prepare(params, "attention_captioner")
    info = json.loads(Path("data/attention_captioner/info.json").read_text())
    rejects = json.loads(Path("data/attention_captioner/rejects.json").read_text())
    svgs = sorted(p.relative_to(openclipart.DEFAULT_ROOT).as_posix() for p in openclipart.DEFAULT_ROOT.rglob("*.svg"))
    eligible = openclipart.scan()
    assert rejects["rejected"] == len(rejects["items"]) == info["rejected"] > 0
    # every drawing is either eligible or rejected once, with one of the reader's reasons
    assert sorted([r["item"] for r in rejects["items"]] +
                  [i.path.relative_to(openclipart.DEFAULT_ROOT).as_posix() for i in eligible]) == svgs
    reasons = {r["reason"] if not r["reason"].startswith("duplicate of ") else "duplicate" for r in rejects["items"]}
    assert reasons <= {"duplicate", "no dc:title", "collection title shared by several drawings",
                       "Italian-titled Rollandin set", "rsvg-convert cannot render it",
                       "title not a usable caption (boilerplate, non-English, numbered or blocklisted)"}
    assert "collection title shared by several drawings" in reasons


def test_a_garbled_zarr_chunk_and_a_truncated_archive_are_one_line_naming_the_file(tmp_path):
    """LongCrawl64's zlib chunks and CIFAR-10's tar.gz, in the release formats (tests/dataset_fixtures.py)."""
    import zlib

    import numpy as np

    from mmrepro.data import cifar10
    from mmrepro.data.longcrawl64 import ZarrArray
    from mmrepro.datasets import DatasetError

    from .dataset_fixtures import cifar_archive, write_zarr

    tokens = np.arange(4 * 64, dtype=np.uint16).reshape(4, 64)
    write_zarr(tmp_path / "heldout.zarr", tokens, (1, 64), {"id": "zlib", "level": 1})
    array = ZarrArray(tmp_path / "heldout.zarr")
    assert (array[0:2, 0:64] == tokens[:2]).all()
    chunk = tmp_path / "heldout.zarr" / "1.0"
    chunk.write_bytes(chunk.read_bytes()[:-9])  # the last bytes of the zlib stream gone
    with pytest.raises(DatasetError) as err:
        array[1, 0:64]
    assert str(err.value) == (f"{chunk}: not a readable Zarr chunk (Error -5 while decompressing data: incomplete or "
                              f"truncated stream)")
    chunk.write_bytes(zlib.compress(tokens[1, :32].tobytes()))  # decodes, but half a chunk
    with pytest.raises(DatasetError, match=rf"^{chunk}: Zarr chunk of 64 bytes decoded, 128 expected"):
        array[1, 0:64]

    archive = tmp_path / "cifar" / "cifar-10-binary.tar.gz"
    cifar_archive(archive)
    archive.write_bytes(archive.read_bytes()[:-100])
    with pytest.raises(DatasetError, match=rf"^{archive}: not a readable tar.gz archive \("):
        cifar10.locate(archive.parent, md5=cifar10.md5sum(archive))
