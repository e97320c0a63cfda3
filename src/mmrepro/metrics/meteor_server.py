"""METEOR scored by one JVM that serves every stage process of a run, instead of one JVM per process.

METEOR's JVM spends ~5 s of two cores loading its 60 MB paraphrase table before it scores a caption, and
`dvc repro` scores captions in one evaluate process per captioning paper: four loads in every all-papers
run, a tenth of the smoke profile's time. So the first process that scores starts this module as a small
server: it owns one METEOR JVM (pycocoevalcap's own wrapper) and answers on a Unix socket, and later
processes send their references and hypotheses there. The JVM-daemon pattern of Nailgun and Gradle, for the
same reason. The server exits after `MMREPRO_METEOR_IDLE_S` seconds (default 120) without a request, when
its JVM dies, or when asked (`stop_server`).

- Same scores: METEOR's stdio protocol scores each EVAL from its own SCORE lines, so a set scored by a JVM
  that scored others before equals a fresh JVM's (tests/test_captions.py, tests/test_meteor_server.py).
- A server is only shared by clients that would start the same JVM: its socket is named by a hash of this
  file, the METEOR jar, the java binary and the locale, in a folder only this user can open.
- One request at a time; a request is read whole before the JVM sees it, so a client killed mid-request
  cannot leave the JVM half-way through an exchange.
- No server (`MMREPRO_METEOR_SERVER=0`, an unusable socket folder, a server that cannot start or fails):
  the caller scores with a JVM of its own (`mmrepro.metrics.captions`), and says so on stderr.

Run as `python -m mmrepro.metrics.meteor_server SOCKET IDLE_S` by `meteor_score`; it imports nothing of
mmrepro, so it starts fast and does not hold the checkout's modules. `python -m mmrepro.metrics.meteor_server
stop` stops this user's server.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROTOCOL = 1
IDLE_S = 120.0
START_TIMEOUT_S = 60.0  # python start-up of the server; METEOR's own load happens behind the first reply
REQUEST_READ_TIMEOUT_S = 60.0  # a connected client that sends nothing does not block the others for ever
_HEADER = struct.Struct("!Q")


class ServerUnavailable(RuntimeError):
    """No METEOR server could score this request; the caller scores in-process."""


def _send(conn: socket.socket, message: dict) -> None:
    body = json.dumps(message).encode()
    conn.sendall(_HEADER.pack(len(body)) + body)


def _receive(conn: socket.socket) -> dict:
    header = _read_exactly(conn, _HEADER.size)
    return json.loads(_read_exactly(conn, _HEADER.unpack(header)[0]))


def _read_exactly(conn: socket.socket, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = conn.recv(min(left, 1 << 20))
        if not chunk:
            raise ConnectionError("connection closed mid-message")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _meteor_jar() -> Path:
    import pycocoevalcap.meteor.meteor as wrapper

    return Path(wrapper.__file__).with_name(wrapper.METEOR_JAR)


def socket_path() -> Path:
    """This user's socket for a server that starts the JVM this process would start."""
    jar = _meteor_jar()
    stat = jar.stat()
    java = os.path.realpath(shutil.which("java") or "java")
    locale = [os.environ.get(k, "") for k in ("LANG", "LC_ALL", "LC_CTYPE", "JAVA_TOOL_OPTIONS")]
    identity = json.dumps([PROTOCOL, hashlib.sha256(Path(__file__).read_bytes()).hexdigest(), str(jar),
                           stat.st_size, stat.st_mtime_ns, java, sys.executable, locale])
    base = Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()).resolve() / f"mmrepro-{os.getuid()}"
    path = base / f"meteor-{hashlib.sha256(identity.encode()).hexdigest()[:16]}.sock"
    if len(os.fsencode(path)) > 100:  # the kernel's limit for a socket's path is 107 bytes
        raise ServerUnavailable(f"socket path too long for a Unix socket: {path}")
    return path


def _private_folder(folder: Path) -> None:
    folder.mkdir(mode=0o700, exist_ok=True)
    st = folder.stat()
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise ServerUnavailable(f"{folder} is not private to this user (owner {st.st_uid}, mode {oct(st.st_mode)})")


def _connect(path: Path) -> socket.socket | None:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError):
        conn.close()
        return None
    return conn


def _start_server(path: Path) -> subprocess.Popen:
    """The server, detached from this process (own session, no inherited pipes: a caller that waits for
    this process's output, such as `dvc repro` under a pipe, is not held by the server)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                                        os.environ.get("PYTHONPATH", "")])}
    idle = os.environ.get("MMREPRO_METEOR_IDLE_S", str(IDLE_S))
    with open(path.with_suffix(".log"), "ab") as log:  # the server's and the JVM's stderr
        return subprocess.Popen([sys.executable, "-m", "mmrepro.metrics.meteor_server", str(path), idle],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                                start_new_session=True, close_fds=True, env=env, cwd="/")  # pins no folder


def _connect_or_start(path: Path) -> socket.socket:
    _private_folder(path.parent)  # before connecting: a socket in a folder others can write is not trusted
    conn = _connect(path)
    if conn is not None:
        return conn
    with open(path.with_suffix(".lock"), "w") as lock:  # one starter when several processes find no server
        fcntl.flock(lock, fcntl.LOCK_EX)
        conn = _connect(path)
        if conn is not None:
            return conn
        path.unlink(missing_ok=True)  # a dead server's socket
        server = _start_server(path)
        deadline = time.monotonic() + START_TIMEOUT_S
        while (conn := _connect(path)) is None:
            if server.poll() is not None:
                raise ServerUnavailable(f"the server exited with code {server.returncode} (log: {path.with_suffix('.log')})")
            if time.monotonic() > deadline:
                server.kill()
                raise ServerUnavailable(f"the server did not listen within {START_TIMEOUT_S:.0f} s")
            time.sleep(0.02)
        return conn


def meteor_score(gts: dict[str, list[str]], res: dict[str, list[str]]) -> tuple[float, list[float]]:
    """pycocoevalcap `Meteor().compute_score(gts, res)` (corpus score, per-image scores in gts' order),
    computed by this user's METEOR server, started if none runs. Raises ServerUnavailable."""
    try:
        path = socket_path()
        with _connect_or_start(path) as conn:
            _send(conn, {"gts": gts, "res": res})
            reply = _receive(conn)
    except (OSError, ValueError) as exc:  # includes a server that died mid-request
        raise ServerUnavailable(f"{type(exc).__name__}: {exc}") from exc
    if "error" in reply:
        raise ServerUnavailable(reply["error"])
    return reply["score"], reply["scores"]


def stop_server() -> bool:
    """Ask this user's server (if one runs) to exit now; True if one was running."""
    try:
        conn = _connect(socket_path())
        if conn is None:
            return False
        with conn:
            _send(conn, {"stop": True})
            _receive(conn)
        return True
    except (OSError, ValueError, ServerUnavailable):
        return False


def serve(path: Path, idle_s: float) -> None:
    """Answer scoring requests on `path` until idle for `idle_s` seconds, the JVM dies, or a stop request."""
    from pycocoevalcap.meteor.meteor import Meteor

    meteor = Meteor()  # the JVM starts loading now; the first request waits for it inside compute_score
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    bound = path.stat().st_ino
    listener.listen(16)
    listener.settimeout(idle_s)
    try:
        while True:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                return
            with conn:
                conn.settimeout(REQUEST_READ_TIMEOUT_S)
                try:
                    request = _receive(conn)
                except (OSError, ValueError):
                    continue  # a client that died or hung before its request was whole: the JVM saw nothing
                conn.settimeout(None)
                if request.get("stop"):
                    _send(conn, {"stopped": True})
                    return
                if meteor.meteor_p.poll() is not None:
                    _send(conn, {"error": f"METEOR's JVM exited with code {meteor.meteor_p.returncode}"})
                    return
                score, scores = meteor.compute_score(request["gts"], request["res"])
                try:
                    _send(conn, {"score": score, "scores": scores})
                except OSError:
                    pass  # the client went away after its request; the JVM's exchange is complete
    finally:
        try:
            if path.stat().st_ino == bound:  # not a newer server's socket
                path.unlink()
        except FileNotFoundError:
            pass
        meteor.meteor_p.kill()
        meteor.meteor_p.wait()


if __name__ == "__main__":
    if sys.argv[1:] == ["stop"]:  # e.g. before a container that ran stages is removed (scripts/image_test.py)
        print("stopped" if stop_server() else "none running")
    else:
        serve(Path(sys.argv[1]), float(sys.argv[2]))
