"""mmrepro.checkpoint.load_resumable on bad files: each is set aside with one warning line naming it and
None is returned (training starts fresh); a checkpoint of another fingerprint stays where it is."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from mmrepro.checkpoint import REQUIRED, load_resumable

CPU = torch.device("cpu")


def _good(fingerprint: str = "f1") -> dict:
    return {key: torch.zeros(1) for key in REQUIRED} | {"fingerprint": fingerprint, "epoch": 2}


class Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def _truncated(path):
    torch.save(_good(), path)
    path.write_bytes(path.read_bytes()[:200])


def _tampered(path):
    with path.open("wb") as handle:
        pickle.dump({"fingerprint": "f1", "model": Payload()}, handle)


def _text(path):
    path.write_text("not a checkpoint\n")


def _other_format(path):
    torch.save({"state_dict": {"w": torch.ones(2)}}, path)  # a bare model file, not a training checkpoint


@pytest.mark.parametrize("make, why", [
    (_truncated, "cannot be loaded safely (PytorchStreamReader failed reading zip archive: failed finding central "
                 "directory)"),
    (_tampered, "cannot be loaded safely (not tensors only: Unsupported operand 149)"),
    (_text, "cannot be loaded safely (not tensors only: Unsupported operand 110)"),
    (_other_format, "is not a training checkpoint of this project"),
], ids=["truncated", "tampered", "text", "other format"])
def test_bad_checkpoint_is_set_aside_with_one_line(tmp_path, monkeypatch, capsys, make, why):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "main.pt"
    make(path)
    assert load_resumable(path, "f1", CPU) is None
    (bad,) = tmp_path.glob("main.pt.bad-*")
    err = capsys.readouterr().err
    assert err == f"warning: checkpoint {path} {why}; moved to {bad.name}, training starts fresh\n"
    assert not path.exists() and not (tmp_path / "PWNED").exists() and "weights_only" not in err


def test_matching_checkpoint_loads_and_another_fingerprint_stays(tmp_path, capsys):
    path = tmp_path / "main.pt"
    torch.save(_good("f1"), path)
    assert load_resumable(path, "f1", CPU)["epoch"] == 2
    assert load_resumable(path, "f2", CPU) is None
    assert path.is_file() and not list(tmp_path.glob("*.bad-*"))
    assert capsys.readouterr().out == f"checkpoint {path} is for another code, config or data; starting fresh\n"
