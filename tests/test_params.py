"""params.yaml validation: every kind of bad value is one line naming the key, exit code 2, nothing written."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mmrepro.config import ParamsError, load_params, paper_config, validate_params

from .conftest import REPO, committed_params, stage_env

GOOD = committed_params()


def _bad(mutate) -> dict:
    raw = copy.deepcopy(GOOD)
    mutate(raw)
    return raw


CASES = {
    "unknown paper": (lambda r: r["papers"].__setitem__("nopaper", r["papers"]["starcapnet"]),
                      "papers.nopaper: unknown paper"),
    "unknown profile": (lambda r: r.__setitem__("profile", "huge"), "profile: Input should be 'smoke', 'cpu' or 'full'"),
    "unknown profile in a paper": (lambda r: r["papers"]["starcapnet"].__setitem__("tiny", {}),
                                   "papers.starcapnet.tiny: unknown profile"),
    "wrong type": (lambda r: r["papers"]["starcapnet"]["cpu"].__setitem__("epochs", "many"),
                   "papers.starcapnet.cpu.epochs: Input should be a valid integer"),
    "negative learning rate": (lambda r: r["papers"]["starcapnet"]["smoke"].__setitem__("lr", -0.1),
                               "papers.starcapnet.smoke.lr: Input should be greater than 0 (got -0.1)"),
    "missing key": (lambda r: r["papers"]["starcapnet"]["full"].pop("batch_size"),
                    "papers.starcapnet.full.batch_size: missing key"),
    "missing profile": (lambda r: r["papers"]["starcapnet"].pop("full"), "papers.starcapnet.full: missing key"),
    "missing top-level key": (lambda r: r.pop("seeds"), "seeds: missing key"),
    "unknown config key": (lambda r: r["papers"]["starcapnet"]["cpu"].__setitem__("lerning_rate", 1),
                           "papers.starcapnet.cpu.lerning_rate: Extra inputs are not permitted"),
    "negative seed": (lambda r: r.__setitem__("seeds", [0, -1]), "seeds: Value error, seeds must be in [0, 4294967295]"),
    "duplicate seeds": (lambda r: r.__setitem__("seeds", [1, 1]), "seeds: Value error, seeds must be distinct"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_error_names_key_and_problem(case):
    mutate, expected = CASES[case]
    with pytest.raises(ParamsError) as info:
        validate_params(_bad(mutate))
    message = str(info.value)
    assert message.startswith(expected), message
    assert "\n" not in message


def test_the_shipped_params_are_valid_for_every_paper_and_profile():
    params = validate_params(copy.deepcopy(GOOD))
    assert params.profile == "cpu"
    for name in params.papers:
        for profile in ("smoke", "cpu", "full"):
            assert paper_config(params, name, profile).lr > 0


def test_unreadable_files(tmp_path):
    with pytest.raises(ParamsError, match="file not found"):
        load_params(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("profile: [unclosed")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(tmp_path / "params.yaml")


def test_stage_exits_2_with_one_line_and_writes_nothing(tmp_path):
    bad = _bad(CASES["negative learning rate"][0])
    bad["profile"] = "smoke"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(bad))
    proc = subprocess.run([sys.executable, str(REPO / "stages/prepare.py"), "starcapnet"], cwd=tmp_path,
                          capture_output=True, text=True, env=stage_env())
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "params.yaml: papers.starcapnet.smoke.lr: Input should be greater than 0 (got -0.1)"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_stage_rejects_a_paper_not_in_params(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(GOOD))
    proc = subprocess.run([sys.executable, str(REPO / "stages/train.py"), "nopaper"], cwd=tmp_path,
                          capture_output=True, text=True, env=stage_env())
    assert proc.returncode == 2
    assert proc.stderr.startswith("params.yaml: nopaper: unknown paper (known: ")
    assert not Path(tmp_path / "artifacts").exists()


def test_locate_record_changes_with_a_file_and_is_byte_identical_otherwise(tmp_path, monkeypatch):
    """locate@<paper>: a stat fingerprint of the external files (full profile), constant otherwise."""
    import os

    from mmrepro import pipeline
    from mmrepro.config import validate_params

    from .dataset_fixtures import make_cifar10

    raw = committed_params()
    make_cifar10(tmp_path / "datasets", n_train=5, n_test=2)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MMREPRO_DATASETS", raising=False)
    full = validate_params({**raw, "profile": "full"})
    record = pipeline.locate(full, "vqvae")
    path = tmp_path / "data/external/vqvae.json"
    first = path.read_bytes()
    assert record["files"]["cifar10/cifar-10-batches-bin"]["files"] == 7
    assert record["files"]["cifar10/cifar-10-batches-bin"]["bytes"] == 7 * 3073 + 61  # 5 + 2 records, meta
    pipeline.locate(full, "vqvae")
    assert path.read_bytes() == first  # nothing changed: byte-identical
    batch = tmp_path / "datasets/cifar10/cifar-10-batches-bin/test_batch.bin"
    st = batch.stat()
    os.utime(batch, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    pipeline.locate(full, "vqvae")
    assert path.read_bytes() != first  # a touched file changes the record
    cpu = validate_params({**raw, "profile": "cpu"})
    assert pipeline.locate(cpu, "vqvae") == {"paper": "vqvae", "profile": "cpu", "files": None}
    constant = path.read_bytes()
    batch.write_bytes(b"x")
    pipeline.locate(cpu, "vqvae")
    assert path.read_bytes() == constant
