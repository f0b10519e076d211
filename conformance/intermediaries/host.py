"""Runs one mitmproxy master in a background thread for one case: the emulated intermediaries of a path.

The master gets mitmproxy's default addons plus the scenario's addons, framed by two recorders that write
both legs of every connection into the case transcript. mitmproxy's own TCP timeout is raised far beyond
any emulated window, so an emulated drop is never confused with mitmproxy's. An exception in the master's
own code (an addon hook, a stream callable, a timer, a crashed connection handler) is a fault of the
intermediary: it is recorded in the transcript and kept in ``faults``, never left to look like the target's.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import socket
import tempfile
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable

import mitmproxy.proxy.server as _mitm_server
from mitmproxy import addons as _mitm_addons
from mitmproxy import exceptions as _mitm_exceptions
from mitmproxy import flow as _mitm_flow
from mitmproxy import hooks as _mitm_hooks
from mitmproxy import options
from mitmproxy.master import Master

from ..errors import HarnessError
from ..transcript import Transcript
from .addons.common import Shared, bind_master, master_of, shared
from .ca import BASENAME, write_ca

# emulated windows go up to hours in full depth; mitmproxy's own idle watchdog (600 s) must never fire first
# (addons raise it further when an emulated window is longer: common.keep_proxy_timeout_above)
_mitm_server.TCP_TIMEOUT = max(_mitm_server.TCP_TIMEOUT, 24 * 3600)


NEEDED_DEFAULTS = {"Core", "Proxyserver", "NextLayer", "TlsConfig", "DisableH2C", "UpdateAltSvc"}


class ProxyHost:
    """One mitmproxy master in its own thread and loop. ``start(modes, addons)``, ``call(fn)``, ``stop()``."""

    def __init__(self, transcript: Transcript, confdir: Path | None = None, faults: list[str] | None = None) -> None:
        self.transcript = transcript
        self.faults: list[str] = faults if faults is not None else []  # one line per fault of the intermediary
        self._tmp = None
        if confdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="lemonade-mitm-")
            confdir = Path(self._tmp.name)
        self.confdir = confdir
        self.loop: asyncio.AbstractEventLoop | None = None
        self.master: Master | None = None
        self.thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.listen: dict[str, tuple[str, int]] = {}  # mode spec -> (host, port)
        self.started_in: float | None = None  # seconds from start() to listening (benchmarked)

    @property
    def ca_file(self) -> Path:
        """The certificate of this master's own CA (trusted only by the suite's clients)."""
        return self.confdir / f"{BASENAME}-ca-cert.pem"

    def start(self, modes: list[str], addons: list[Any], extra_options: dict[str, Any] | None = None,
              timeout: float = 10.0) -> dict[str, tuple[str, int]]:
        t0 = time.monotonic()
        route_mitmproxy_errors()
        if not (self.confdir / f"{BASENAME}-ca.pem").exists():
            write_ca(self.confdir)
        self.thread = threading.Thread(target=self._run, args=(modes, addons, extra_options or {}),
                                       name="lemonade-intermediary", daemon=True)
        self.thread.start()
        if not self._ready.wait(timeout):
            self.stop()
            raise HarnessError(f"intermediary did not start listening within {timeout} s")
        if self._error:
            err = self._error
            self.stop()
            raise HarnessError(f"intermediary failed to start: {err}")
        self.started_in = time.monotonic() - t0
        return self.listen

    def _run(self, modes: list[str], addons: list[Any], extra: dict[str, Any]) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.loop.set_exception_handler(_quiet_exceptions)
        try:
            self.loop.run_until_complete(self._main(modes, addons, extra))
        except BaseException as e:  # noqa: BLE001 - reported to the starter
            self._error = e
            self._ready.set()
        finally:
            try:
                pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
                for t in pending:
                    t.cancel()
                if pending:
                    self.loop.run_until_complete(asyncio.wait(pending, timeout=2))
            finally:
                self.loop.close()

    async def _main(self, modes: list[str], addons: list[Any], extra: dict[str, Any]) -> None:
        opts = options.Options(listen_host="127.0.0.1", confdir=str(self.confdir))
        self.master = Master(opts, event_loop=asyncio.get_running_loop())
        record = lambda who, text, conn="": self.transcript.action(who, text, conn)  # noqa: E731
        state = Shared(record=record, faults=self.faults, scrub=self.transcript.redactor().scrub)
        bind_master(asyncio.get_running_loop(), self.master, state)
        # only the default addons a path needs: every hook event walks all addons, and mitmproxy's ~30
        # defaults (playback, export, onboarding...) cost ~0.8 ms per TCP message on a loaded machine
        self.master.addons.add(*[a for a in _mitm_addons.default_addons() if type(a).__name__ in NEEDED_DEFAULTS])
        self.master.addons.add(*addons)
        self.master.addons.handle_lifecycle = FastLifecycle(self.master.addons)
        # http2_ping_keepalive=0: mitmproxy must not add traffic of its own (PINGs would keep an emulated
        # idle timer, or a real upstream NAT, alive)
        # ssl_insecure unless the path says otherwise (the target's TLS settings: NetworkPath.upstream_tls_options)
        opts.update(**{"mode": modes, "ssl_insecure": True, "connection_strategy": "eager", "http2_ping_keepalive": 0,
                       **extra})
        run = asyncio.ensure_future(self.master.run())
        ps = self.master.addons.get("proxyserver")
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            if run.done():
                run.result()
                raise HarnessError("mitmproxy master exited during start")
            servers = list(ps.servers)
            if servers and all(s.is_running for s in servers) and len(servers) == len(modes):
                break
            errors = [s.last_exception for s in servers if s.last_exception]
            if errors:
                raise HarnessError(f"cannot listen: {errors[0]}")
            await asyncio.sleep(0.005)
        else:
            raise HarnessError("mitmproxy servers did not come up")
        for s in ps.servers:
            addr = s.listen_addrs[0]
            self.listen[s.mode.full_spec] = (addr[0], addr[1])
            deepen_accept_queue(s)
        self._ready.set()
        await run

    def call(self, fn: Callable[[], Any], timeout: float = 5.0) -> Any:
        """Run ``fn`` (sync or coroutine function) on the proxy loop and return its result."""
        if not self.loop or self.loop.is_closed():
            raise HarnessError("intermediary is not running")

        async def runner():
            r = fn()
            if asyncio.iscoroutine(r):
                r = await r
            return r

        fut: Future = asyncio.run_coroutine_threadsafe(runner(), self.loop)
        return fut.result(timeout)

    def stop(self) -> None:
        if self.master and self.loop and not self.loop.is_closed():
            try:
                self.master.shutdown()
            except RuntimeError:
                pass
        if self.thread:
            self.thread.join(10)
        if self._tmp:
            self._tmp.cleanup()
            self._tmp = None


class FastLifecycle:
    """mitmproxy's ``AddonManager.handle_lifecycle`` with the hook handlers looked up once per hook name.

    The stock dispatch walks every addon twice per TCP message (the hook and an ``update`` hook), with
    ``getattr`` and a context manager per addon: most of the proxy's CPU time per message. The addons of a
    path are fixed before it starts, so the handlers are cached (refreshed if the chain changes); errors are
    logged like mitmproxy's ``safecall`` and ``AddonHalt`` stops the chain, as before.
    """

    def __init__(self, manager) -> None:
        self.manager = manager
        self.cache: dict[str, list[Callable]] = {}
        self.inline: dict[str, bool] = {}
        self.chain_len = -1

    def handlers(self, event) -> list[Callable]:
        if len(self.manager.chain) != self.chain_len:
            self.cache.clear()
            self.inline.clear()
            self.chain_len = len(self.manager.chain)
        found = self.cache.get(event.name)
        if found is None:
            found = [func for addon in self.manager.chain for _, func in self.manager._iter_hooks(addon, event)]
            self.cache[event.name] = found
        return found

    async def run(self, event) -> None:
        args = event.args()
        for func in self.handlers(event):
            try:
                res = func(*args)
                if res is not None and inspect.isawaitable(res):
                    await res
            except _mitm_exceptions.AddonHalt:
                return
            except Exception as e:  # noqa: BLE001 - a fault of the intermediary, recorded; the connection goes on
                shared(self.manager.master).fault(_where(func, event), e)

    def run_inline(self, event) -> bool:
        """Run the hook's handlers synchronously, in order; False (nothing run) if one is a coroutine
        function or the flow needs an ``update`` hook, so the caller raises the hook the usual way."""
        handlers = self.handlers(event)
        inline = self.inline.get(event.name)
        if inline is None or len(self.manager.chain) != self.chain_len:
            inline = not any(inspect.iscoroutinefunction(f) for f in handlers) and not self.handlers(
                _mitm_hooks.UpdateHook([]))
            self.inline[event.name] = inline
        if not inline:
            return False
        args = event.args()
        for func in handlers:
            try:
                func(*args)
            except _mitm_exceptions.AddonHalt:
                break
            except Exception as e:  # noqa: BLE001 - as mitmproxy's safecall, but recorded; the relay goes on
                shared(self.manager.master).fault(_where(func, event), e)
        return True

    async def __call__(self, event) -> None:
        await self.run(event)
        message = event.args()[0]
        if isinstance(message, _mitm_flow.Flow):
            update = _mitm_hooks.UpdateHook([message])
            if self.handlers(update):
                await self.run(update)


def deepen_accept_queue(server) -> None:
    """Raise a listener's accept queue from asyncio's default of 100 to the kernel's limit (somaxconn).

    mitmproxy listens with asyncio's default backlog: a thousand clients reconnecting at once through the path
    (a reconnect storm) would overflow it, and the SYNs the kernel then drops would be retransmitted seconds
    later: a delay of the suite's own making, which a NAT (it forwards SYNs, it does not accept them) never adds.
    ``listen()`` again on the same socket only changes its backlog."""
    try:
        with open("/proc/sys/net/core/somaxconn") as f:
            backlog = int(f.read().strip())
    except (OSError, ValueError):
        backlog = 4096
    for srv in getattr(server, "_servers", []):
        for sock in getattr(srv, "sockets", ()):
            try:
                with socket.socket(fileno=os.dup(sock.fileno())) as dup:
                    dup.listen(backlog)
            except OSError:
                pass


def _where(func: Callable, event) -> str:
    return f"{getattr(func, '__qualname__', repr(func))} (hook {event.name})"


class FaultLog(logging.Handler):
    """mitmproxy's own error records that carry an exception (an addon hook run by mitmproxy's dispatch, a
    crashed connection handler, an unhandled task error) become faults of the path whose loop logged them.
    Records without an exception (e.g. a peer's HTTP/2 push promise) say something about the peer: ignored."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)

    def emit(self, record: logging.LogRecord) -> None:
        if not record.exc_info or record.exc_info[1] is None:
            return
        try:
            master = master_of(asyncio.get_running_loop())
        except RuntimeError:
            return
        if master is not None:
            shared(master).fault(record.getMessage().splitlines()[0], record.exc_info[1])


def route_mitmproxy_errors() -> None:
    """mitmproxy's log stays off the terminal; its error records go to FaultLog (installed once per process)."""
    logger = logging.getLogger("mitmproxy")
    logger.setLevel(logging.ERROR)
    logger.propagate = False
    if not any(isinstance(h, FaultLog) for h in logger.handlers):
        logger.addHandler(FaultLog())


def _quiet_exceptions(loop: asyncio.AbstractEventLoop, context: dict) -> None:
    """Connections cancelled at shutdown are expected; anything else goes to the log, not the terminal."""
    exc = context.get("exception")
    if isinstance(exc, asyncio.CancelledError):
        return
    logging.getLogger("lemonade.intermediary").debug("proxy loop: %s", context.get("message"), exc_info=exc)
