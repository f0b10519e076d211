"""The fork server that xdist's workers are forked from: what execnet's popen gateway relies on (stdin, stdout,
stderr, argv, exit status, signals) holds for a forked worker as for a fresh interpreter; without a server the
client runs the worker itself; it never runs a second worker on descriptors it handed over."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time

import pytest

from conformance.forkserver import ForkServer, _boot

WORKER = ("import os, sys\n"
          "line = sys.stdin.readline().strip()\n"
          "print('got', line, 'argv', sys.argv[1:], 'parent', os.getppid(), flush=True)\n"
          "print('to stderr', file=sys.stderr, flush=True)\n"
          "sys.exit(int(line))\n")


def client_cmd(fs: ForkServer) -> list[str]:
    tx = fs.tx(1)
    assert tx is not None and tx.startswith("1*popen//python=")
    return shlex.split(tx.split("python=", 1)[1])


def test_a_worker_is_forked_from_the_server_with_the_clients_stdio_argv_and_exit_status():
    with ForkServer(preload=("json",)) as fs:
        p = subprocess.run([*client_cmd(fs), "-u", "-c", WORKER, "one", "two"], input="7\n", capture_output=True,
                           text=True, timeout=30)
        assert p.returncode == 7, p.stderr
        assert p.stdout.startswith("got 7 argv ['one', 'two'] parent "), p.stdout
        assert int(p.stdout.split()[-1]) == fs.proc.pid  # forked by the server, not a fresh interpreter
        assert "to stderr" in p.stderr
        p = subprocess.run([*client_cmd(fs), "-u", "-c", "raise ValueError('boom')"], capture_output=True,
                           text=True, timeout=30)
        assert p.returncode == 1 and "ValueError: boom" in p.stderr  # as the interpreter itself would say
    assert fs.proc.poll() is not None, "the server ends with the run"
    assert not os.path.exists(fs.dir)


def test_sigterm_to_the_client_reaches_the_worker():
    with ForkServer(preload=()) as fs:
        p = subprocess.Popen([*client_cmd(fs), "-u", "-c", "import time, sys\nprint('up', flush=True)\ntime.sleep(60)"],
                             stdout=subprocess.PIPE, text=True)
        try:
            assert p.stdout.readline().strip() == "up"
            p.send_signal(signal.SIGTERM)
            assert p.wait(timeout=10) == 128 + signal.SIGTERM
        finally:
            p.kill()
            p.wait()


def test_without_a_server_the_client_runs_the_worker_itself(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    client = _boot("client", str(tmp_path / "no-such-socket"), str(dead.pid))
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-S", "-c", client, "-u", "-c", WORKER], input="5\n", capture_output=True,
                       text=True, timeout=30)
    assert time.monotonic() - t0 < 15  # a server that is gone is not waited for
    assert p.returncode == 5 and p.stdout.startswith("got 5"), (p.stdout, p.stderr)
    assert "a fresh interpreter runs this worker" in p.stderr


def test_a_server_that_cannot_start_means_fresh_workers(monkeypatch):
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    with ForkServer(preload=()) as fs:
        assert fs.tx(4) is None  # lemonade run then passes -n 4: xdist's own fresh interpreters


@pytest.mark.parametrize("answer", [b"", b"nonsense\n"])
def test_a_client_that_handed_its_descriptors_over_never_runs_a_second_worker(tmp_path, answer):
    """A server that takes the descriptors and then fails: the client reports it and exits (two workers reading one
    execnet channel would lose messages, i.e. cases)."""
    import socket
    import threading

    path = str(tmp_path / "s")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)

    def serve_badly():
        conn, _ = srv.accept()
        _msg, fds, _f, _a = socket.recv_fds(conn, 1 << 16, 3)
        for fd in fds:
            os.close(fd)
        conn.sendall(answer)
        conn.close()

    t = threading.Thread(target=serve_badly, daemon=True)
    t.start()
    client = _boot("client", path, str(os.getpid()))
    p = subprocess.run([sys.executable, "-S", "-c", client, "-u", "-c", "print('RAN')"], capture_output=True,
                       text=True, timeout=30)
    t.join(5)
    srv.close()
    assert p.returncode == 1 and "RAN" not in p.stdout, (p.stdout, p.stderr)
    assert "fork server" in p.stderr


def test_the_bytecode_cache_serves_the_server_only_and_only_when_bytecode_is_off(tmp_path, monkeypatch):
    from conformance.forkserver import bytecode_cache

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    assert bytecode_cache() == str(tmp_path / "lemonade" / "pycache" / sys.implementation.cache_tag)
    with ForkServer(preload=("json",)) as fs:  # a worker imports as the user asked: no prefix, nothing written
        p = subprocess.run([*client_cmd(fs), "-u", "-c", "import sys; print(sys.pycache_prefix, sys.dont_write_bytecode)"],
                           capture_output=True, text=True, timeout=30, env=dict(os.environ))
        assert p.stdout.split() == ["None", "True"], (p.stdout, p.stderr)
    monkeypatch.delenv("PYTHONDONTWRITEBYTECODE")
    if not sys.flags.dont_write_bytecode:
        assert bytecode_cache() is None  # Python's own __pycache__ folders serve
