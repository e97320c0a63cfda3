"""params.yaml and recipe (configs/<paper>.yaml) validation: every kind of bad value is one line naming the file
and the key, exit code 2, nothing written."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mmrepro.config import ParamsError, load_params, paper_config, validate_params

from .conftest import REPO, committed_params, committed_recipes, stage_env, stderr_lines

GOOD = committed_params()
RECIPES = committed_recipes()


def _bad(mutate) -> tuple[dict, dict]:
    """(params, recipes), both mutated by `mutate(params, recipes)`."""
    raw, recipes = copy.deepcopy(GOOD), copy.deepcopy(RECIPES)
    mutate(raw, recipes)
    return raw, recipes


# case: (mutation, the file the error names, the message)
CASES = {
    "unknown paper override": (lambda r, c: r["papers"].__setitem__("nopaper", {"lr": 1.0}), "params.yaml",
                               "papers.nopaper: unknown paper"),
    "unknown recipe file": (lambda r, c: c.__setitem__("nopaper", c["starcapnet"]), "configs/nopaper.yaml",
                            "unknown paper 'nopaper'"),
    "unknown profile": (lambda r, c: r.__setitem__("profile", "huge"), "params.yaml",
                        "profile: Input should be 'smoke', 'cpu' or 'full'"),
    "unknown profile in a recipe": (lambda r, c: c["starcapnet"].__setitem__("tiny", {}), "configs/starcapnet.yaml",
                                    "tiny: unknown profile"),
    "wrong type": (lambda r, c: c["starcapnet"]["cpu"].__setitem__("epochs", "many"), "configs/starcapnet.yaml",
                   "cpu.epochs: Input should be a valid integer"),
    "negative learning rate": (lambda r, c: c["starcapnet"]["smoke"].__setitem__("lr", -0.1), "configs/starcapnet.yaml",
                               "smoke.lr: Input should be greater than 0 (got -0.1)"),
    "missing key": (lambda r, c: c["starcapnet"]["full"].pop("batch_size"), "configs/starcapnet.yaml",
                    "full.batch_size: missing key"),
    "missing profile": (lambda r, c: c["starcapnet"].pop("full"), "configs/starcapnet.yaml", "full: missing"),
    "missing top-level key": (lambda r, c: r.pop("seeds"), "params.yaml", "seeds: missing key"),
    "unknown config key": (lambda r, c: c["starcapnet"]["cpu"].__setitem__("lerning_rate", 1), "configs/starcapnet.yaml",
                           "cpu.lerning_rate: Extra inputs are not permitted"),
    "unknown override key": (lambda r, c: r["papers"].__setitem__("starcapnet", {"lerning_rate": 1}), "params.yaml",
                             "papers.starcapnet.lerning_rate: Extra inputs are not permitted"),
    "bad override value": (lambda r, c: r["papers"].__setitem__("starcapnet", {"lr": -1}), "params.yaml",
                           "papers.starcapnet.lr: Input should be greater than 0 (got -1)"),
    "negative seed": (lambda r, c: r.__setitem__("seeds", [0, -1]), "params.yaml",
                      "seeds: Value error, seeds must be in [0, 4294967295]"),
    "duplicate seeds": (lambda r, c: r.__setitem__("seeds", [1, 1]), "params.yaml", "seeds: Value error, seeds must be distinct"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_error_names_file_key_and_problem(case):
    mutate, source, expected = CASES[case]
    with pytest.raises(ParamsError) as info:
        validate_params(*_bad(mutate))
    message = str(info.value)
    assert (info.value.source, message[:len(expected)]) == (source, expected), message
    assert "\n" not in message


def test_the_shipped_params_are_valid_for_every_paper_and_profile():
    params = validate_params(copy.deepcopy(GOOD), copy.deepcopy(RECIPES))
    assert params.profile == "cpu" and params.papers == {} and list(params.recipes) == params.run
    for name in params.recipes:
        for profile in ("smoke", "cpu", "full"):
            assert paper_config(params, name, profile).lr > 0


def test_an_override_changes_only_the_active_profile_of_its_paper():
    raw = {**copy.deepcopy(GOOD), "papers": {"geocapnet": {"lr": 0.0123, "epochs": 3}}}
    params = validate_params(raw, copy.deepcopy(RECIPES))
    cpu = paper_config(params, "geocapnet")
    assert (cpu.lr, cpu.epochs, cpu.batch_size) == (0.0123, 3, RECIPES["geocapnet"]["cpu"]["batch_size"])
    assert paper_config(params, "geocapnet", "smoke").lr == RECIPES["geocapnet"]["smoke"]["lr"]
    assert paper_config(params, "starcapnet").lr == RECIPES["starcapnet"]["cpu"]["lr"]


def test_unreadable_files(tmp_path):
    with pytest.raises(ParamsError, match="file not found"):
        load_params(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("profile: [unclosed")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(tmp_path / "params.yaml")


def _write_repo_files(root: Path, params: dict, recipes: dict) -> None:
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    (root / "configs").mkdir()
    for name, recipe in recipes.items():
        (root / "configs" / f"{name}.yaml").write_text(yaml.safe_dump(recipe))


@pytest.mark.parametrize("case", ["negative learning rate", "bad override value"])
def test_stage_exits_2_with_one_line_and_writes_nothing(tmp_path, case):
    params, recipes = _bad(CASES[case][0])
    params["profile"] = "smoke"
    _write_repo_files(tmp_path, params, recipes)
    proc = subprocess.run([sys.executable, str(REPO / "stages/prepare.py"), "starcapnet"], cwd=tmp_path,
                          capture_output=True, text=True, env=stage_env())
    assert proc.returncode == 2
    expected = {"negative learning rate": "configs/starcapnet.yaml: smoke.lr: Input should be greater than 0 (got -0.1)",
                "bad override value": "params.yaml: papers.starcapnet.lr: Input should be greater than 0 (got -1)"}
    assert stderr_lines(proc) == [expected[case]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["configs", "params.yaml"]


def test_stage_rejects_a_paper_not_in_params(tmp_path):
    _write_repo_files(tmp_path, GOOD, RECIPES)
    proc = subprocess.run([sys.executable, str(REPO / "stages/train.py"), "nopaper"], cwd=tmp_path,
                          capture_output=True, text=True, env=stage_env())
    assert proc.returncode == 2
    assert stderr_lines(proc)[0].startswith("params.yaml: nopaper: unknown paper (known: ")
    assert not Path(tmp_path / "artifacts").exists()


def test_locate_record_changes_with_a_file_and_is_byte_identical_otherwise(tmp_path, monkeypatch):
    """locate@<paper>: a stat fingerprint of the external files (full profile), constant otherwise."""
    import os

    from mmrepro import pipeline
    from mmrepro.config import validate_params

    from .conftest import committed_recipes
    from .dataset_fixtures import make_cifar10

    raw = committed_params()
    recipes = committed_recipes()
    make_cifar10(tmp_path / "datasets", n_train=5, n_test=2)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MMREPRO_DATASETS", raising=False)
    full = validate_params({**raw, "profile": "full"}, recipes)
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
    cpu = validate_params({**raw, "profile": "cpu"}, recipes)
    assert pipeline.locate(cpu, "vqvae") == {"paper": "vqvae", "profile": "cpu", "files": None}
    constant = path.read_bytes()
    batch.write_bytes(b"x")
    pipeline.locate(cpu, "vqvae")
    assert path.read_bytes() == constant
