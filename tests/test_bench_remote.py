"""`edgecnn bench --host`: against a real OpenSSH server the test starts on 127.0.0.1 (key-based, in a temp
folder, no passwords), never any other address."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgecnn.bench.harness import BenchSettings, prepare_model, run_prepared
from edgecnn.bench.remote import HostError, SshHost
from edgecnn.cli import app
from edgecnn.errors import MissingRuntimeError
from tests.onnx_builders import save, small_cnn

SSHD = shutil.which("sshd") or next((p for p in ("/usr/sbin/sshd", "/sbin/sshd") if os.path.exists(p)), None)
USER = os.environ.get("USER") or __import__("getpass").getuser()


# CI sets this (.ci/run): there the SSH tests must run, so a missing or broken sshd fails them instead of skipping.
REQUIRED = os.environ.get("EDGECNN_REQUIRE_SSH_TESTS") == "1"


def _unavailable(why: str) -> None:
    """Skip (visibly: pytest -rs lists the reason) where sshd is missing; fail where CI requires it."""
    if REQUIRED:
        pytest.fail(f"EDGECNN_REQUIRE_SSH_TESTS=1 but {why}", pytrace=False)
    pytest.skip(why)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Board:
    def __init__(self, port: int, key: Path, known_hosts: Path) -> None:
        self.port = port
        self.target = f"{USER}@127.0.0.1"
        self.options = [
            f"Port={port}",
            f"IdentityFile={key}",
            "IdentitiesOnly=yes",
            f"UserKnownHostsFile={known_hosts}",
            "StrictHostKeyChecking=no",
        ]

    def cli_args(self) -> list[str]:
        args = ["--host", self.target, "--remote-python", sys.executable, "--connect-timeout", "10"]
        for o in self.options:
            args += ["--ssh-option", o]
        return args


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Board]:
    if SSHD is None:
        _unavailable("sshd is not installed (apt-get install openssh-server); on-device runs are not tested")
    if shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        _unavailable("the ssh client is not installed (apt-get install openssh-client)")
    d = tmp_path_factory.mktemp("sshd")
    os.chmod(d, 0o700)
    host_key, user_key = d / "host_ed25519", d / "user_ed25519"
    for k in (host_key, user_key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(k)], check=True)
    auth = d / "authorized_keys"
    auth.write_text(user_key.with_suffix(".pub").read_text())
    auth.chmod(0o600)
    port = _free_port()
    cfg = d / "sshd_config"
    cfg.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nAuthorizedKeysFile {auth}\n"
        f"PidFile {d / 'sshd.pid'}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n"
        f"AllowUsers {USER}\nSubsystem sftp internal-sftp\n"
    )
    if os.geteuid() == 0 and not os.path.isdir("/run/sshd"):
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation folder sshd requires as root
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(cfg)], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _unavailable(f"sshd did not start: {proc.stderr.read().strip()[-300:] if proc.stderr else ''}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    b = Board(port, user_key, d / "known_hosts")
    probe = subprocess.run(
        ["ssh", "-o", "BatchMode=yes", *[a for o in b.options for a in ("-o", o)], b.target, "true"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    if probe.returncode != 0:
        proc.terminate()
        _unavailable(f"key login to the test sshd failed: {probe.stderr.strip()[-300:]}")
    try:
        yield b
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save(small_cnn(), tmp_path_factory.mktemp("m") / "small.onnx")


def test_remote_run_reports_board_facts_and_raw_samples(board: Board, model: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    res = CliRunner().invoke(
        app,
        [
            "bench",
            str(model),
            "-r",
            "ort",
            "-n",
            "25",
            "--warmup",
            "2",
            "--threads",
            "1",
            "--json",
            str(out),
            *board.cli_args(),
        ],
    )
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    (r,) = data["results"]
    assert r["machine"]["host"] == board.target
    assert r["machine"]["hostname"] == socket.gethostname()
    assert len(r["samples_ns"]) == 25 and min(r["samples_ns"]) > 0
    assert r["memory"]["peak_rss"] >= r["memory"]["baseline_rss"] > 0
    assert board.target in res.output


def test_remote_model_is_cached_by_hash(board: Board, model: Path) -> None:
    host = SshHost(board.target, ssh_options=board.options, remote_python=sys.executable)
    p = prepare_model(model)
    run_prepared(p, "ort", BenchSettings(iterations=3, warmup=0, threads=1), host=host)
    facts = host.probe([f"{p.sha256}.onnx"])
    assert facts["have"] == [f"{p.sha256}.onnx"]
    cached = Path(facts["cache"]) / f"{p.sha256}.onnx"
    assert cached.read_bytes() == model.read_bytes()


def test_board_without_edgecnn_says_what_to_install(board: Board, model: Path, tmp_path: Path) -> None:
    bare = f"{sys.executable} -I -S"  # an interpreter that cannot see edgecnn (no site-packages, no cwd)
    host = SshHost(board.target, ssh_options=board.options, remote_python=bare)
    with pytest.raises(
        MissingRuntimeError, match=r"edgecnn on host .* is not installed; install it with: .* -m pip install edgecnn"
    ):
        run_prepared(prepare_model(model), "ort", BenchSettings(iterations=3), host=host)


def test_board_without_the_runtime_says_what_to_install(board: Board, model: Path, tmp_path: Path) -> None:
    # The board is this machine, where the dev extra installs LiteRT: its interpreter here is a wrapper that
    # shadows ai_edge_litert with a package whose import fails as a missing one does (environment variables do
    # not travel over SSH, so the wrapper sets them on the board side).
    from tests.absent import env_without

    shadow = env_without("ai_edge_litert", tmp_path)["PYTHONPATH"].split(os.pathsep)[0]
    board_python = tmp_path / "board-python"
    board_python.write_text(f'#!/bin/sh\nPYTHONPATH="{shadow}" exec "{sys.executable}" "$@"\n', encoding="utf-8")
    board_python.chmod(0o755)
    host = SshHost(board.target, ssh_options=board.options, remote_python=str(board_python))
    with pytest.raises(MissingRuntimeError, match=r"runtime 'litert' on host .*install it with: .*pip install"):
        run_prepared(prepare_model(model), "litert", BenchSettings(iterations=3), host=host)


def test_missing_remote_python_is_clear(board: Board, model: Path) -> None:
    host = SshHost(board.target, ssh_options=board.options, remote_python="/nonexistent/python3")
    with pytest.raises(HostError, match="was not found on the board"):
        host.probe()


# -- unreachable hosts: only 127.0.0.1 ------------------------------------------------------------------
def _bench_on_local_port(model: Path, port: int, timeout_s: int):
    """`edgecnn bench --host` against 127.0.0.1:``port`` (never any other address)."""
    args = ["bench", str(model), "-n", "3", "--host", "nobody@127.0.0.1", "--ssh-option", f"Port={port}"]
    return CliRunner().invoke(app, [*args, "--connect-timeout", str(timeout_s)])


def test_refused_port_is_a_clear_error(model: Path) -> None:
    if shutil.which("ssh") is None:
        _unavailable("the ssh client is not installed (apt-get install openssh-client)")
    port = _free_port()  # nothing listens there
    res = _bench_on_local_port(model, port, timeout_s=3)
    assert res.exit_code == 3, res.output
    assert "host nobody@127.0.0.1: cannot connect over SSH" in res.output
    assert "refused" in res.output.lower()


def test_silent_host_times_out_clearly(model: Path) -> None:
    if shutil.which("ssh") is None:
        _unavailable("the ssh client is not installed (apt-get install openssh-client)")
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    port = srv.getsockname()[1]
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:  # accept and never speak: ssh waits for a banner that never comes
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        start = time.monotonic()
        res = _bench_on_local_port(model, port, timeout_s=2)
        elapsed = time.monotonic() - start
    finally:
        stop.set()
        t.join()
        for c in held:
            c.close()
        srv.close()
    assert res.exit_code == 3, res.output
    assert "no answer within 2 s" in res.output
    assert elapsed < 30
