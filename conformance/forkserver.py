"""Cheap xdist workers: a warmed-up process forks each one instead of a fresh interpreter importing everything.

A quick run overlaps its waits by running more workers than cores, so what a worker costs before its first case
is paid many times over, all at once, on the run's critical path: a fresh interpreter importing pytest, the plugin,
mitmproxy and cryptography takes 0.6-0.7 CPU-seconds (most of a 2-core machine for the first seconds of a run with
eight workers). The fork server imports them once; each worker is a ``fork()`` of it (copy-on-write, milliseconds),
which then runs exactly what a fresh interpreter would have run.

It plugs into execnet's ordinary ``popen`` gateway, not a scheduler of its own: xdist is given
``--tx N*popen//python=<python> -m conformance.forkserver client <socket>``, so execnet starts this module's small
client with the usual ``-u -c <bootstrap>`` arguments and talks to it over its stdin and stdout. The client passes
those three descriptors to the server (SCM_RIGHTS on a Unix socket in a private folder), the server forks, the
child puts them in place and runs the bootstrap; the client stays as the stand-in execnet knows: it forwards
SIGTERM and SIGHUP to the worker and exits with the worker's exit status. A client that cannot reach the server
runs the bootstrap in a fresh interpreter instead (the run is slower, never different).

The server holds no threads (a fork copies only the calling thread), and ends when the run closes its stdin; the
run's own sweep (``processes.py``) ends it and every worker like any other process of the run.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time

READY = b"ready\n"


# what every worker of a run imports: pytest, xdist, the plugin, the case's clients and intermediaries (mitmproxy)
PRELOAD = ("pytest", "xdist", "xdist.remote", "execnet", "conformance.plugin",
           "conformance.case", "conformance.intermediaries.builtin", "conformance.checks.support")


def _boot(*call: str) -> str:
    """``python -c`` code that imports this module from the source tree the run itself uses and calls ``main``."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return (f"import sys;sys.path.insert(0,{root!r});from conformance.forkserver import main;"
            f"sys.exit(main({list(call)!r}+sys.argv[1:]))")


COLLECT = "collect:"  # a preload item naming pytest arguments (JSON) whose collection the server runs


def collect_item(pytest_args: list[str]) -> str:
    return COLLECT + json.dumps(pytest_args)


class ForkServer:
    """The run's fork server: ``with ForkServer() as fs:`` then ``fs.tx(n)`` is the ``--tx`` value for n workers
    (None when the server could not be started: xdist then starts fresh interpreters, ``-n n``)."""

    def __init__(self, preload: tuple[str, ...] = PRELOAD, collect: list[str] | None = None) -> None:
        self.preload = (*preload, *([collect_item(collect)] if collect else []))
        self.proc = None
        self.dir = ""

    def __enter__(self) -> "ForkServer":
        import subprocess
        import tempfile

        self.dir = tempfile.mkdtemp(prefix="lemonade-fork-")  # mode 0700: only this user reaches the socket
        sock = os.path.join(self.dir, "s")
        try:
            self.proc = subprocess.Popen([sys.executable, "-c", _boot("serve", sock), *self.preload],
                                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
        except OSError:
            self.proc = None
            return self
        from .processes import note_started

        note_started(self.proc.pid, "fork server", leads=False)
        return self

    def tx(self, workers: int) -> str | None:
        if self.proc is None or self.proc.poll() is not None:
            return None
        import shlex

        client = _boot("client", os.path.join(self.dir, "s"), str(self.proc.pid))
        # -S: the client needs nothing of site-packages (its start is on the run's critical path, once per worker)
        return f"{workers}*popen//python={shlex.join([sys.executable, '-S', '-c', client])}"

    def __exit__(self, *exc) -> None:
        import shutil
        import subprocess

        if self.proc is not None:
            try:
                self.proc.stdin.close()  # the server's cue to end
                self.proc.wait(timeout=8)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(timeout=5)
        shutil.rmtree(self.dir, ignore_errors=True)


# -- the server ---------------------------------------------------------------------------------------------------
def serve(sock_path: str, preload: list[str]) -> int:
    import gc
    import importlib
    import selectors

    cache = bytecode_cache()
    if cache:  # the imports below read (and write) compiled code there: see bytecode_cache
        sys.pycache_prefix, sys.dont_write_bytecode = cache, False
    try:
        for name in preload:  # what every worker needs, imported once; a module that fails is imported by the worker
            try:
                if name.startswith(COLLECT):
                    collect(json.loads(name[len(COLLECT):]))
                else:
                    importlib.import_module(name)
            except Exception as e:  # noqa: BLE001 - the worker imports it again and reports any error itself
                print(f"forkserver: cannot preload {name}: {e}", file=sys.stderr)
    finally:
        if cache:  # the workers import as the user asked (no bytecode written), their own later imports included
            sys.pycache_prefix, sys.dont_write_bytecode = None, True
    gc.collect()
    gc.freeze()  # the workers share these pages: a collection in a worker must not touch (and so copy) them
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(sock_path)
    listener.listen(64)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ)
    sel.register(0, selectors.EVENT_READ)  # the run: its end (EOF) ends the server
    children: dict[int, socket.socket] = {}
    os.write(1, READY)
    running = True
    try:
        while running:
            for key, _ in sel.select(timeout=0.05):
                if key.fileobj is listener:
                    conn, _ = listener.accept()
                    pid = spawn(conn, listener, sel, children)
                    if pid:
                        children[pid] = conn
                elif not os.read(0, 512):
                    running = False
            reap(children)
    except KeyboardInterrupt:  # Ctrl-C reached the whole process group: the workers handle their own
        pass
    finally:
        listener.close()
        try:
            os.unlink(sock_path)
        except OSError:
            pass
    deadline = time.monotonic() + 5  # workers still running get their exit status reported for a little while
    while children and time.monotonic() < deadline:
        reap(children)
        time.sleep(0.05)
    return 0


def bytecode_cache() -> str | None:
    """Where the fork server keeps compiled code when the user turned bytecode writing off (PYTHONDONTWRITEBYTECODE,
    common in CI images), or None when Python's own __pycache__ folders serve.

    Without it every run compiles the suite's own modules and rewrites the asserts of every check from source, on
    the run's critical path (the workers wait for the server). The cache is the user's cache folder
    (``$XDG_CACHE_HOME/lemonade/pycache``, never the source tree or site-packages), used only while the server
    imports; Python checks each entry against its source, so an edited check is compiled again."""
    if not sys.flags.dont_write_bytecode and not os.environ.get("PYTHONDONTWRITEBYTECODE"):
        return None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    path = os.path.join(base, "lemonade", "pycache", f"{sys.implementation.cache_tag}")
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError:
        return None
    return path if os.access(path, os.W_OK) else None


def collect(args: list[str]) -> None:
    """Import the checks as a worker's collection does (pytest's import hook rewrites their asserts): a worker's
    pytest then finds each check module imported already, under the same name and file, instead of parsing,
    rewriting and compiling all of them again (a third of a worker's start when bytecode is not cached, e.g.
    under PYTHONDONTWRITEBYTECODE). Nothing of pytest's session is kept, only the modules."""
    import pytest

    pytest.main([*args, "--collect-only"])


def spawn(conn: socket.socket, listener: socket.socket, sel, children: dict[int, socket.socket]) -> int:
    """Fork one worker for the client on ``conn``; returns its PID (0 when the request was not understood)."""
    conn.settimeout(5)
    try:
        msg, fds, _flags, _addr = socket.recv_fds(conn, 1 << 16, 3)
        request = json.loads(msg)
    except (OSError, ValueError):
        conn.close()
        return 0
    if len(fds) != 3:
        for fd in fds:
            os.close(fd)
        conn.close()
        return 0
    pid = os.fork()
    if pid == 0:  # the worker
        code = 1
        try:
            sel.close()
            listener.close()
            conn.close()
            for other in children.values():
                other.close()
            code = become_worker(request, fds)
        finally:
            os._exit(code)
    for fd in fds:
        os.close(fd)
    try:
        conn.sendall(f"pid {pid}\n".encode())
    except OSError:
        pass
    return pid


def become_worker(request: dict, fds: list[int]) -> int:
    """In the forked child: the client's stdin, stdout and stderr in place, then what ``python -u -c`` would run."""
    import atexit
    import io
    import traceback

    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.chdir(request.get("cwd") or ".")
    sys.stdin = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)))
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), write_through=True)  # -u
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), write_through=True)
    sys.argv = ["-c", *request.get("argv", [])]
    code = 0
    try:
        exec(compile(request["code"], "<string>", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001 - what the interpreter itself would print
        traceback.print_exc()
        code = 1
    try:
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # noqa: BLE001 - exiting anyway
        pass
    return code


def reap(children: dict[int, socket.socket]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = children.pop(pid, None)
        if conn is not None:
            try:
                conn.sendall(f"exit {os.waitstatus_to_exitcode(status)}\n".encode())
            except OSError:
                pass
            conn.close()


# -- the client ---------------------------------------------------------------------------------------------------
def client(sock_path: str, server_pid: int, python_args: list[str]) -> int:
    """Stand in for ``python <python_args>`` (``-u -c CODE [ARGS]``): the fork server runs it, or this process does.
    A server still importing is waited for (up to 20 s), a server that is gone is not."""
    deadline = time.monotonic() + 20
    while not os.path.exists(sock_path) and _alive(server_pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        code_at = python_args.index("-c")
    except ValueError:
        return fresh(python_args)
    code, argv = python_args[code_at + 1], python_args[code_at + 2:]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(5)
        s.connect(sock_path)
    except OSError as e:  # no server: this process runs the worker itself
        s.close()
        print(f"forkserver: {e}: a fresh interpreter runs this worker", file=sys.stderr)
        return fresh(python_args)
    # from here on the worker's descriptors are the server's: whatever happens, this process must not run a second
    # worker on them (two readers of one channel lose messages); it reports the failure and exits
    try:
        s.settimeout(None)
        socket.send_fds(s, [json.dumps({"code": code, "argv": argv, "cwd": os.getcwd()}).encode()], [0, 1, 2])
        reply = s.makefile("rb")
        first = reply.readline().split()
    except OSError as e:
        print(f"forkserver: the fork server failed: {e}", file=sys.stderr)
        return 1
    if len(first) != 2 or first[0] != b"pid":
        print(f"forkserver: the fork server did not start the worker (answer {first!r})", file=sys.stderr)
        return 1
    pid = int(first[1])
    forward = [signal.SIGTERM, signal.SIGHUP]
    try:
        if os.getpgid(pid) != os.getpgrp():  # Ctrl-C reaches a worker in this process group by itself
            forward.append(signal.SIGINT)
        else:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
    except OSError:
        pass
    for sig in forward:
        signal.signal(sig, lambda signum, _frame: _kill(pid, signum))
    s.settimeout(None)
    while True:
        try:
            line = reply.readline()  # a signal forwarded meanwhile does not interrupt it (PEP 475)
        except OSError:
            line = b""
        words = line.split()
        if len(words) == 2 and words[0] == b"exit":
            return int(words[1]) if int(words[1]) >= 0 else 128 - int(words[1])
        if not line:  # the server ended first: wait for the worker itself
            while _alive(pid):
                time.sleep(0.1)
            return 0


def fresh(python_args: list[str]) -> int:
    os.execv(sys.executable, [sys.executable, *python_args])
    return 1  # not reached


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except OSError:
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "serve":
        return serve(argv[1], argv[2:])
    if len(argv) >= 3 and argv[0] == "client":
        return client(argv[1], int(argv[2]), argv[3:])
    print("usage: python -m conformance.forkserver serve SOCKET [MODULE...] | client SOCKET SERVER_PID -u -c CODE",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
