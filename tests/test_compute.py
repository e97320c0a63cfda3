"""mmrepro.compute: a stage's wall and CPU time (its children's CPU included) in reports/compute/<paper>/<stage>.json,
and the report's lines built from those records. The pipeline writing them under `dvc repro` is checked in
tests/test_pipeline_e2e.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmrepro.compute import compute_path, cpu_model, process_age, stage_cost
from mmrepro.report.sections import describe_compute, total_compute


def _busy(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_a_stage_records_its_wall_and_cpu_time_with_its_children(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with stage_cost("prepare", "starcapnet") as record:
        _busy(0.3)
        # a child process's CPU time counts once the stage has waited for it (prepare's synthesis workers)
        subprocess.run([sys.executable, "-c", "import time\nend = time.process_time() + 0.5\n"
                        "while time.process_time() < end: pass"], check=True)
        time.sleep(0.2)
        record["extra"] = 1
    saved = json.loads(compute_path("starcapnet", "prepare").read_text())
    assert saved["paper"] == "starcapnet" and saved["stage"] == "prepare" and saved["extra"] == 1
    assert saved["cpu_s"] >= 0.3 + 0.5 - 0.05  # own busy loop + the child's
    # the process's age: it began before the block, so at least the block's 1 s of work and sleep
    assert saved["wall_s"] >= 0.3 + 0.5 + 0.2 - 0.05
    assert saved["wall_s"] == pytest.approx(process_age(), abs=5.0)
    assert saved["device"] == "cpu" and saved["threads"] >= 1 and "omp_wait_policy" in saved
    assert saved["cpu"] == cpu_model()
    assert not list(tmp_path.rglob("*.tmp"))


def test_nothing_is_written_when_the_stage_fails(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RuntimeError), stage_cost("train", "conformer"):
        raise RuntimeError("killed")
    assert not (tmp_path / "reports").exists()
    with pytest.raises(ValueError, match="unknown stage 'report'"), stage_cost("report", "conformer"):
        pass


def test_process_age_reads_the_start_time_after_a_command_name_with_spaces(tmp_path: Path):
    ticks = os.sysconf("SC_CLK_TCK")
    (tmp_path / "self").mkdir()
    # pid (comm) state ppid ... field 22 = starttime, here 1000 s after boot
    fields = ["S"] + ["0"] * 18 + [str(1000 * ticks)] + ["0"] * 30
    (tmp_path / "self" / "stat").write_text("4242 (python (a) b) " + " ".join(fields) + "\n")
    (tmp_path / "uptime").write_text("1234.50 2000.00\n")
    assert process_age(tmp_path) == pytest.approx(234.5)
    assert process_age(tmp_path / "missing") is None
    assert 0 < process_age() < 24 * 3600  # this test process, read from the real /proc


def test_report_lines_from_the_records():
    records = [{"stage": "prepare", "wall_s": 5.2, "cpu_s": 9.0, "device": "cpu", "threads": 1},
               {"stage": "train", "wall_s": 600.0, "cpu_s": 1150.0, "device": "cuda", "threads": 8, "resumed": True}]
    assert describe_compute(records) == (
        "prepare 5 s, train 10.0 min: 10.1 min wall, 19.3 min CPU (cpu, 1 thread; cuda, 8 threads); "
        "training resumed from a checkpoint: its time is the last attempt's")
    assert describe_compute([]) == "not recorded"
    assert total_compute([records, records[:1], []]) == "10.2 min wall, 19.5 min CPU over 2 paper(s) (1 without a record)"
    assert total_compute([[], []]) == "not recorded"


def test_cpu_model_names_the_first_processor_and_its_widest_vector_extension(tmp_path: Path):
    info = tmp_path / "cpuinfo"
    one = "processor\t: {n}\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\nmodel name\t: AMD EPYC 7B13\n"
    info.write_text(one.format(n=0) + "flags\t\t: fpu sse4_2 avx avx2 fma\n\n" + one.format(n=1) + "flags\t\t: avx512f\n")
    assert cpu_model(info) == "AMD EPYC 7B13 (family 25, model 1; avx2)"
    info.write_text("processor\t: 0\nmodel name\t: Xeon\nflags\t\t: avx2 avx512f\n")
    assert cpu_model(info) == "Xeon (avx512f)"
    info.write_text("processor\t: 0\nBogoMIPS\t: 50.00\n")  # an ARM machine names no model
    assert cpu_model(info) == "unknown"
    assert cpu_model(tmp_path / "missing") == "unknown"
