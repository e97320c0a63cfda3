"""Bad params, all of them: each is one line naming the key and the problem, exit code 2, nothing written.
The cases a lax schema let through: numbers too large to run, non-finite floats, booleans as numbers,
seeds outside numpy's/torch's range, duplicate YAML keys, a YAML error without its position, an unknown paper."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import yaml

from mmrepro.config import ParamsError, load_params, validate_params

from .conftest import REPO, committed_params, committed_recipes, stage_env

GOOD = committed_params()
RECIPES = committed_recipes()


def _with(path: tuple, value) -> tuple[dict, dict]:
    """(params, recipes) with one value set: a path starting with "recipes" is in configs/<paper>.yaml."""
    raw, recipes = copy.deepcopy(GOOD), copy.deepcopy(RECIPES)
    node = recipes if path[0] == "recipes" else raw
    for key in path[1:-1] if path[0] == "recipes" else path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return raw, recipes


CASES = {
    "epochs 1e12": (("recipes", "starcapnet", "cpu", "epochs"), 10**12,
                    "configs/starcapnet.yaml: cpu.epochs: 1000000000000 is above the limit 2147483647"),
    "images too large": (("recipes", "starcapnet", "smoke", "image_size"), 100_000,
                         "configs/starcapnet.yaml: smoke.image_size: 100000 is above the limit 4096"),
    "training set too large": (("recipes", "geocapnet", "cpu", "n_train"), 10**9,
                               "configs/geocapnet.yaml: cpu.n_train: 1000000000 is above the limit 50000000"),
    "infinite lr": (("recipes", "starcapnet", "smoke", "lr"), float("inf"),
                    "configs/starcapnet.yaml: smoke.lr: must be a finite number (got inf)"),
    "nan noise": (("recipes", "starcapnet", "full", "noise_std"), float("nan"),
                  "configs/starcapnet.yaml: full.noise_std: must be a finite number (got nan)"),
    "boolean epochs": (("recipes", "starcapnet", "cpu", "epochs"), True,
                       "configs/starcapnet.yaml: cpu.epochs: expected a number, got a boolean (True)"),
    "boolean lr": (("recipes", "vqvae", "smoke", "lr"), False,
                   "configs/vqvae.yaml: smoke.lr: expected a number, got a boolean (False)"),
    "boolean in a variant recipe": (("recipes", "sympow", "full", "variant_recipes", "sympow_p2", "batch_size"), True,
                                    "configs/sympow.yaml: full.variant_recipes.sympow_p2.batch_size: expected a number, "
                                    "got a boolean (True)"),
    "boolean seed": (("seeds",), [True], "params.yaml: seeds.0: Input should be a valid integer (got True)"),
    "seed beyond int64": (("seeds",), [2**64], "params.yaml: seeds: Value error, seeds must be in [0, 4294967295]"),
    "data seed too large": (("data_seed",), 2**40, "params.yaml: data_seed: Input should be less than or equal to 4294967295"),
    "unknown paper": (("papers", "nopaper"), {"lr": 1.0},
                      "params.yaml: papers.nopaper: unknown paper (known: attention_captioner"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_value_is_one_line_naming_the_key(case):
    path, value, expected = CASES[case]
    with pytest.raises(ParamsError) as info:
        validate_params(*_with(path, value))
    message = f"{info.value.source}: {info.value}"  # as the stages print it
    assert message.startswith(expected), message
    assert "\n" not in message


def test_duplicate_key_and_yaml_error_give_line_and_column(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("profile: smoke\nseeds: [0]\nprofile: cpu\n")
    with pytest.raises(ParamsError, match=r"^line 3, column 1: duplicate key 'profile'$"):
        load_params(path)
    path.write_text("profile: smoke\nseeds: [0\ndata_seed: 0\n")
    with pytest.raises(ParamsError) as info:
        load_params(path)
    assert str(info.value).startswith("line 3, column 10: not valid YAML (expected ',' or ']'")


def test_validate_stage_exits_2_with_one_line_and_writes_nothing(tmp_path):
    """The first stage of `dvc repro` (the stages' own check, for a paper name too, is in test_params.py)."""
    duplicated = yaml.safe_dump(GOOD, sort_keys=False).replace("profile: cpu", "profile: cpu\nprofile: smoke", 1)
    (tmp_path / "params.yaml").write_text(duplicated)
    proc = subprocess.run([sys.executable, str(REPO / "stages/validate.py")], cwd=tmp_path, capture_output=True,
                          text=True, env=stage_env())
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["params.yaml: line 2, column 1: duplicate key 'profile'"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_benchmark_on_a_missing_cuda_device_is_one_line(capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("efficiency", REPO / "benchmarks" / "efficiency.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit) as info:
        module.main(["--device", "cuda"])
    assert info.value.code == 2
    assert capsys.readouterr().err == "--device cuda: no CUDA device on this machine; use --device cpu\n"
