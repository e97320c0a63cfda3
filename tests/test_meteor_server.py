"""The METEOR server (mmrepro.metrics.meteor_server): one JVM serves the scoring of separate processes with
the scores a fresh JVM gives, starts once when several processes ask at once, leaves no pipe held, goes away
when idle, and is replaced or bypassed when it fails. Real Java, real server processes, real sockets."""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from pycocoevalcap.meteor.meteor import Meteor

from mmrepro.metrics import meteor_server
from mmrepro.metrics.captions import score_captions

SRC = str(Path(meteor_server.__file__).resolve().parents[2])
GTS = {"1": ["the cat is on the mat", "a cat on a mat"], "2": ["a dog runs in the park"]}
RES = {"1": ["the cat sat on the mat"], "2": ["a dog is running"]}
GTS_B = {"x": ["a blue square above a green circle"], "y": ["three small stars"], "z": ["one red triangle"]}
RES_B = {"x": ["a green square above a blue circle"], "y": ["three stars"], "z": ["a red triangle"]}

# One scoring process: prints the server's pid (or null) and the scores, as JSON.
CLIENT = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, {src!r})
    from mmrepro.metrics import meteor_server
    score, scores = meteor_server.meteor_score(json.loads(sys.argv[1]), json.loads(sys.argv[2]))
    print(json.dumps({{"score": score, "scores": scores}}))
""")


@pytest.fixture
def runtime_dir(monkeypatch):
    """A private socket folder per test (short: a Unix socket's path is limited to 107 bytes), with its
    servers stopped and removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="mt-", dir="/tmp"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(folder))
    monkeypatch.delenv("MMREPRO_METEOR_SERVER", raising=False)
    yield folder
    meteor_server.stop_server()
    for pid in _server_pids(folder):
        os.kill(pid, signal.SIGKILL)
    shutil.rmtree(folder, ignore_errors=True)


def _server_pids(folder: Path) -> list[int]:
    out = subprocess.run(["pgrep", "-f", f"mmrepro.metrics.meteor_server {folder}"], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def _client(gts, res) -> dict:
    out = subprocess.run([sys.executable, "-c", CLIENT.format(src=SRC), json.dumps(gts), json.dumps(res)],
                         capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout)


@functools.cache
def _fresh_jvm_scores(sets: str) -> tuple[float, list[float]]:
    gts, res = json.loads(sets)
    scorer = Meteor()
    try:
        return scorer.compute_score(gts, res)
    finally:
        scorer.meteor_p.kill()
        scorer.meteor_p.wait()


def _fresh_jvm(gts, res) -> tuple[float, list[float]]:
    """What pycocoevalcap's own wrapper gives on a JVM that scored nothing before (computed once per set)."""
    return _fresh_jvm_scores(json.dumps([gts, res]))


def _wait_until(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def test_separate_processes_share_one_server_and_get_a_fresh_jvms_scores(runtime_dir):
    a = _client(GTS, RES)
    servers = _server_pids(runtime_dir)
    assert len(servers) == 1
    b = _client(GTS_B, RES_B)  # a second process, scored by the JVM that scored set A
    assert _server_pids(runtime_dir) == servers
    for got, (gts, res) in ((a, (GTS, RES)), (b, (GTS_B, RES_B))):
        score, scores = _fresh_jvm(gts, res)
        assert got["score"] == score and got["scores"] == scores
    assert 0 < b["score"] < 1 and len(b["scores"]) == 3


def test_processes_that_ask_at_once_start_one_server(runtime_dir):
    cmd = [sys.executable, "-c", CLIENT.format(src=SRC), json.dumps(GTS), json.dumps(RES)]
    clients = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [json.loads(c.communicate(timeout=120)[0]) for c in clients]
    assert all(c.returncode == 0 for c in clients)
    assert len(_server_pids(runtime_dir)) == 1
    assert outs[0] == outs[1] == outs[2]


def test_the_server_holds_no_pipe_of_its_starter(runtime_dir, monkeypatch):
    """`dvc repro | tee log` or `subprocess.run(capture_output=True)` waits for every holder of the pipe: a
    server that kept the starter's stdout would hold them until it exits."""
    monkeypatch.setenv("MMREPRO_METEOR_IDLE_S", "300")
    started = time.monotonic()
    _client(GTS, RES)  # capture_output: returns only when no process holds the pipes
    assert time.monotonic() - started < 30
    assert len(_server_pids(runtime_dir)) == 1  # the server lives on, detached


def test_an_idle_server_exits_and_removes_its_socket(runtime_dir, monkeypatch):
    monkeypatch.setenv("MMREPRO_METEOR_IDLE_S", "1")
    score, _ = meteor_server.meteor_score(GTS, RES)
    path = meteor_server.socket_path()
    assert path.is_socket()
    assert _wait_until(lambda: not _server_pids(runtime_dir), 15)
    assert not path.exists()
    assert meteor_server.meteor_score(GTS, RES)[0] == score  # and the next request starts a new one


def test_a_dead_jvm_is_bypassed_then_replaced(runtime_dir, capfd):
    ref = score_captions({"1": "the cat sat on the mat"}, {"1": ["the cat is on the mat"]})
    (server,) = _server_pids(runtime_dir)
    jvm = int(subprocess.run(["pgrep", "-P", str(server)], capture_output=True, text=True).stdout.split()[0])
    os.kill(jvm, signal.SIGKILL)
    capfd.readouterr()
    again = score_captions({"1": "the cat sat on the mat"}, {"1": ["the cat is on the mat"]})
    err = capfd.readouterr().err
    assert "METEOR server unavailable (METEOR's JVM exited with code -9); scoring with a JVM of this process" in err
    assert again.corpus == ref.corpus  # scored by this process's own JVM instead
    assert _wait_until(lambda: server not in _server_pids(runtime_dir), 10)  # the server left with its JVM
    meteor_server.meteor_score(GTS, RES)
    assert len(_server_pids(runtime_dir)) == 1 and server not in _server_pids(runtime_dir)


def test_a_stale_socket_is_replaced(runtime_dir):
    path = meteor_server.socket_path()
    path.parent.mkdir(mode=0o700)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))  # bound, never listening: what a SIGKILLed server leaves
    stale.close()
    assert meteor_server.meteor_score(GTS, RES) == _fresh_jvm(GTS, RES)
    assert len(_server_pids(runtime_dir)) == 1


def test_a_client_that_dies_mid_request_does_not_block_the_server(runtime_dir):
    meteor_server.meteor_score(GTS, RES)
    half = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    half.connect(str(meteor_server.socket_path()))
    half.sendall(b"\x00\x00\x00\x00\x00\x00\x10\x00{\"gts\"")  # announces 4096 bytes, sends 6
    half.close()
    assert meteor_server.meteor_score(GTS_B, RES_B) == _fresh_jvm(GTS_B, RES_B)


def test_a_socket_folder_others_can_open_is_not_used(runtime_dir, capfd):
    folder = meteor_server.socket_path().parent
    folder.mkdir(mode=0o777)
    folder.chmod(0o777)
    with pytest.raises(meteor_server.ServerUnavailable, match="not private to this user"):
        meteor_server.meteor_score(GTS, RES)
    capfd.readouterr()
    scores = score_captions({"1": "a dog runs"}, {"1": ["a dog runs"]})
    assert "not private to this user" in capfd.readouterr().err and scores.corpus["meteor"] == 100.0
    assert not _server_pids(runtime_dir)


def test_switched_off_no_server_starts(runtime_dir, monkeypatch):
    monkeypatch.setenv("MMREPRO_METEOR_SERVER", "0")
    scores = score_captions({"1": "a dog runs"}, {"1": ["a dog runs"]})
    assert scores.corpus["meteor"] == 100.0
    assert not _server_pids(runtime_dir) and not meteor_server.socket_path().parent.exists()


def test_stop_from_the_command_line(runtime_dir):
    """What scripts/image_test.py runs before removing its container (no PID namespace ends the server there)."""
    meteor_server.meteor_score(GTS, RES)
    (server,) = _server_pids(runtime_dir)
    env = {**os.environ, "PYTHONPATH": SRC}
    stop = [sys.executable, "-m", "mmrepro.metrics.meteor_server", "stop"]
    assert subprocess.run(stop, env=env, capture_output=True, text=True, check=True).stdout == "stopped\n"
    assert _wait_until(lambda: not _server_pids(runtime_dir), 10) and not meteor_server.socket_path().exists()
    assert subprocess.run(stop, env=env, capture_output=True, text=True, check=True).stdout == "none running\n"
