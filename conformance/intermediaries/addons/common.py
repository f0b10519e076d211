"""What every TCP-path addon shares: connection labels, activity clocks and the ways to cut a connection.

mitmproxy 11's ``flow.kill()`` does nothing for raw TCP flows, so a cut cancels the connection handler the
way mitmproxy's own idle watchdog does; an RST cut first sets SO_LINGER 0 on both sockets.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
import traceback
import weakref
from dataclasses import dataclass
from typing import Any, Callable

from mitmproxy import ctx, exceptions, http, tcp
from mitmproxy.proxy import commands, events, layers
from mitmproxy.proxy.layers.modes import HttpProxy, ReverseProxy
from mitmproxy.proxy.layers.tcp import TcpMessageHook
from mitmproxy.proxy.mode_specs import ReverseMode

log = logging.getLogger("lemonade.intermediary")


@dataclass
class Trigger:
    after: int  # octets from `side` that may pass
    side: str = "client"  # client | server
    how: str = "rst"
    port: int | None = None  # only connections to this upstream port (None: any)
    once: bool = True


Recorder = Callable[[str, str, str], None]  # (who, text, connection label)


def default_record(who: str, text: str, conn: str = "") -> None:
    log.warning("%s %s: %s", conn, who, text)


FRAMES = 4  # frames of a fault's traceback kept in the transcript (the innermost ones)


def _short(filename: str) -> str:
    """A frame's file without the machine's prefix: from the package (site-packages or the checkout) on."""
    if "/site-packages/" in filename:
        return filename.rsplit("/site-packages/", 1)[1]
    for top in ("conformance", "tests"):
        if f"/{top}/" in filename:
            return f"{top}/" + filename.rsplit(f"/{top}/", 1)[1]
    return filename


def describe_fault(where: str, exc: BaseException | None) -> tuple[str, str]:
    """(one line, that line plus the innermost frames of the traceback) for an exception in the intermediary."""
    if exc is None:
        return where, where
    line = f"{where}: {type(exc).__name__}: {exc}"
    frames = [f"  at {_short(f.filename)}:{f.lineno} in {f.name}: {(f.line or '').strip()}"
              for f in traceback.extract_tb(exc.__traceback__)[-FRAMES:]]
    return line, "\n".join([line, *frames])


class Shared:
    """Per-master state all TCP addons read: labels and activity per client connection id, where intermediary
    actions are recorded, and the faults of the intermediary itself (exceptions in its own code)."""

    def __init__(self, record: Recorder = default_record, faults: list[str] | None = None,
                 scrub: Callable[[str], str] = str) -> None:
        self.labels: dict[str, str] = {}
        self.started: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.blackholed: dict[str, float] = {}
        self.bytes: dict[str, list[int]] = {}  # [from client, from server]
        self.redactors: dict[str, Any] = {}  # client connection id -> its transcript Redactor (SASL state per connection)
        self.record: Recorder = record
        self.faults: list[str] = faults if faults is not None else []
        self.scrub = scrub  # removes the case's secrets from a fault's text (an exception may quote traffic)
        self.count = 0

    def fault(self, where: str, exc: BaseException | None = None) -> None:
        """An exception in the suite's own intermediary (an addon hook, a stream callable, a timer): kept in
        ``faults`` (a path with faults makes its case ``error``) and recorded as an intermediary action with
        the innermost frames of its traceback. The target is not at fault."""
        line, detail = (self.scrub(text) for text in describe_fault(where, exc))
        self.faults.append(line)
        self.record("intermediary", "harness error, an exception in the suite's own intermediary "
                                    f"(not the target's fault): {detail}", "")

    def label(self, flow: tcp.TCPFlow) -> str:
        cid = flow.client_conn.id
        if cid not in self.labels:
            self.count += 1
            port = flow.server_conn.address[1] if flow.server_conn.address else "?"
            self.labels[cid] = f"conn#{self.count}->{port}"
        return self.labels[cid]

    def open(self, flow: tcp.TCPFlow) -> None:
        cid = flow.client_conn.id
        if cid in self.started:
            return
        now = time.monotonic()
        self.started[cid] = now
        self.last[cid] = now
        self.bytes[cid] = [0, 0]
        self.label(flow)

    def touch(self, flow: tcp.TCPFlow, n: int, from_client: bool) -> None:
        cid = flow.client_conn.id
        self.last[cid] = time.monotonic()
        if cid in self.bytes:
            self.bytes[cid][0 if from_client else 1] += n

    def forget(self, flow: tcp.TCPFlow) -> None:
        for d in (self.started, self.last, self.bytes, self.redactors):
            d.pop(flow.client_conn.id, None)

    def live(self, flow: tcp.TCPFlow) -> bool:
        return flow.client_conn.id in self.started and flow.live


SHARED_ATTR = "_lemonade_shared"


_LOOP_MASTERS: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any]" = weakref.WeakKeyDictionary()


def bind_master(loop: asyncio.AbstractEventLoop, master: Any, state: Shared | None = None) -> None:
    """Tie a master to the event loop it runs on (and to its Shared state, when given). mitmproxy's
    ``ctx.master``/``ctx.options`` are process globals (the newest master wins); each ProxyHost runs its
    master on its own loop, so addons look their master up by the running loop and two paths alive in one
    process never read each other's state."""
    _LOOP_MASTERS[loop] = master
    if state is not None:
        setattr(master, SHARED_ATTR, state)


def master_of(loop: asyncio.AbstractEventLoop) -> Any:
    """The master bound to ``loop``, or None (a loop no ProxyHost runs)."""
    return _LOOP_MASTERS.get(loop)


def current_master() -> Any:
    """The master whose loop is running this code (``ctx.master`` under a plain mitmdump)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return ctx.master
    return _LOOP_MASTERS.get(loop) or ctx.master


def options() -> Any:
    """The options of the current master (use instead of ``ctx.options``)."""
    return current_master().options


def shared(master: Any = None) -> Shared:
    """The Shared state of ``master`` (default: the current one), created on first use, so addons work alone too."""
    master = master if master is not None else current_master()
    s = getattr(master, SHARED_ATTR, None)
    if s is None:
        s = Shared()
        setattr(master, SHARED_ATTR, s)
    return s


def spawn(coro, where: str) -> asyncio.Task:
    """Run an addon's background coroutine (a timer, a watch). An exception in it is a fault of the
    intermediary, recorded when the task ends (not whenever the task happens to be collected)."""
    master = current_master()
    task = asyncio.get_running_loop().create_task(coro)

    def done(t: asyncio.Task) -> None:
        if not t.cancelled() and t.exception() is not None:
            shared(master).fault(where, t.exception())

    task.add_done_callback(done)
    return task


def later(delay: float, where: str, fn: Callable[..., Any], *args: Any) -> None:
    """``loop.call_later`` for an addon's callback; an exception in it is a fault of the intermediary."""
    master = current_master()

    def run() -> None:
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001 - recorded as the intermediary's fault
            shared(master).fault(where, e)

    asyncio.get_running_loop().call_later(delay, run)


def cut(flow: tcp.TCPFlow | http.HTTPFlow, how: str, reason: str) -> bool:
    """Close both sides of a live flow's connection now: how = 'fin' (orderly close) or 'rst' (reset)."""
    ps = current_master().addons.get("proxyserver")
    handler = ps.connections.get(flow.client_conn.id) if ps else None
    if handler is None:
        return False
    for io in list(handler.transports.values()):
        discard = getattr(io.writer, "discard", None)
        if discard is not None:  # a shaped link: queued data is lost with the connection
            discard()
    if how == "rst":
        for io in list(handler.transports.values()):
            sock = io.writer.get_extra_info("socket") if io.writer is not None else None
            if sock is not None:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except OSError:
                    pass
    client_io = handler.transports.get(handler.client)
    if client_io is None or client_io.handler is None:
        return False
    client_io.handler.cancel(reason)
    shared().forget(flow)
    return True


def blackhole(flow: tcp.TCPFlow) -> None:
    """From now on nothing is forwarded either way and nobody is told: a NAT that forgot the mapping."""
    shared().blackholed[flow.client_conn.id] = time.monotonic()


class InlineTCPLayer(layers.TCPLayer):
    """mitmproxy's TCP relay, with ``tcp_message`` handlers called in line when they are all synchronous.

    The stock layer raises a blocking hook per message: a task, a second loop iteration and a
    HookCompleted event before the data is sent on. Calling the (cached) handlers directly keeps the same
    order and semantics (every handler sees and may rewrite ``flow.messages[-1]`` before it is forwarded)
    at about half the CPU per message. Falls back to the hook when a handler is a coroutine or when the
    master has no cached dispatch (plain mitmdump).
    """

    def relay_messages(self, event):
        if isinstance(event, events.DataReceived) and self.flow is not None:
            dispatch = getattr(current_master().addons, "handle_lifecycle", None)
            run_inline = getattr(dispatch, "run_inline", None)
            if run_inline is not None:
                from_client = event.connection == self.context.client
                message = tcp.TCPMessage(from_client, event.data)
                self.flow.messages.append(message)
                if run_inline(TcpMessageHook(self.flow)):
                    yield commands.SendData(self.context.server if from_client else self.context.client,
                                            message.content)
                    DirectRelay.install(self, run_inline)
                    return
                self.flow.messages.pop()
        yield from super().relay_messages(event)


class DirectRelay:
    """The data phase of an inline TCP flow without mitmproxy's event machinery (``server_event``).

    Once a flow relays with in-line handlers, each chunk its connection handler reads goes straight to the same
    handlers (``tcp_message``, in order, each free to rewrite the message) and then to the peer's writer: the
    layer stack, the command generator and the event lock are skipped for data only. Everything else (connects,
    closes, half-closes, cuts, timeouts) still takes mitmproxy's path; after a relayed chunk only the writer it
    went to is drained. Installed on the one connection handler (instance attributes), so a plain mitmdump keeps
    its own behaviour. About a third of the relay's instructions per message (bench/tcp_path.py)."""

    def __init__(self, handler, layer: InlineTCPLayer, dispatch) -> None:
        self.handler, self.flow, self.dispatch = handler, layer.flow, dispatch
        self.peers = {layer.context.client: layer.context.server, layer.context.server: layer.context.client}
        self.generic = handler.server_event
        self.generic_drain = handler.drain_writers
        self.written = None  # the writer a relayed chunk went to, drained next (instead of every writer)
        self.chain_len = len(dispatch.manager.chain)
        self.handlers = dispatch.handlers(TcpMessageHook(self.flow))  # in line: checked by run_inline just before

    @classmethod
    def install(cls, layer: InlineTCPLayer, run_inline) -> None:
        ps = current_master().addons.get("proxyserver")
        handler = ps.connections.get(layer.context.client.id) if ps else None
        dispatch = getattr(run_inline, "__self__", None)
        if handler is None or dispatch is None or isinstance(getattr(handler, "server_event", None), DirectRelay):
            return
        if layer.context.server not in handler.transports:
            return
        relay = cls(handler, layer, dispatch)
        handler.server_event = relay
        handler.drain_writers = relay.drain_writers

    async def __call__(self, event) -> None:
        if type(event) is events.DataReceived and event.connection in self.peers and self.relay(event):
            return
        await self.generic(event)

    def relay(self, event) -> bool:
        """Run the handlers on one chunk (as ``FastLifecycle.run_inline`` does: in order, ``AddonHalt`` ends the
        chain, an addon's error is logged) and write what they left to the peer; False (nothing done) when the
        addon chain changed since, so the event takes mitmproxy's path."""
        if len(self.dispatch.manager.chain) != self.chain_len:
            return False
        self.handler.timeout_watchdog.register_activity()
        flow = self.flow
        message = tcp.TCPMessage(event.connection is flow.client_conn, event.data)
        flow.messages.append(message)
        for func in self.handlers:
            try:
                func(flow)
            except exceptions.AddonHalt:
                break
            except Exception as e:  # noqa: BLE001 - as FastLifecycle.run_inline: recorded, the relay goes on
                shared(self.dispatch.manager.master).fault(
                    f"{getattr(func, '__qualname__', repr(func))} (hook tcp_message)", e)
        io = self.handler.transports.get(self.peers[event.connection])
        if io is not None and io.writer is not None and not io.writer.is_closing() and message.content:
            io.writer.write(message.content)
            self.written = io
        return True

    async def drain_writers(self) -> None:
        """After a relayed chunk only its writer can be full (the backpressure mitmproxy's own loop applies);
        after anything else, every writer, as mitmproxy does."""
        io, self.written = self.written, None
        if io is None:
            await self.generic_drain()
            return
        try:
            await io.writer.drain()
        except OSError as e:
            if io.handler is not None:
                io.handler.cancel(f"Error sending data: {e}")


class RawTcp:
    """Makes every reverse:tcp connection a plain TCP relay (no TLS interception), with tcp_* hooks on."""

    def next_layer(self, nextlayer) -> None:
        # mitmproxy's own NextLayer addon runs first and puts a ClientTLSLayer under TCP when the client starts
        # with a ClientHello (IMAPS): replace that stack, the path relays TLS untouched.
        context = nextlayer.context
        mode = context.client.proxy_mode
        if not (isinstance(mode, ReverseMode) and mode.scheme == "tcp" and isinstance(context.layers[0], ReverseProxy)):
            return
        if not isinstance(nextlayer.layer, InlineTCPLayer):
            replace_layer(nextlayer, InlineTCPLayer)

    def tcp_start(self, flow: tcp.TCPFlow) -> None:
        shared().open(flow)

    def tcp_message(self, flow: tcp.TCPFlow) -> None:
        m = flow.messages[-1]
        shared().touch(flow, len(m.content), m.from_client)

    def tcp_end(self, flow: tcp.TCPFlow) -> None:
        shared().forget(flow)

    def tcp_error(self, flow: tcp.TCPFlow) -> None:
        shared().forget(flow)


class Blackhole:
    """Swallows every message of a black-holed connection. Runs after the behaviour addons."""

    def tcp_message(self, flow: tcp.TCPFlow) -> None:
        if flow.client_conn.id in shared().blackholed:
            flow.messages[-1].content = b""


def add_options(loader, params) -> None:
    """Declare an addon's options in ``load()`` from its ``OPTIONS`` (scenario.Param): type, the full-depth
    default (what a standalone mitmdump starts with), help and ``choices=``."""
    for p in params:
        if not p.option:
            continue
        help_text = p.help + (f" ({p.unit})" if p.unit else "")
        loader.add_option(p.option, p.option_type, p.option_value(p.full), help_text,
                          choices=list(p.choices) or None)


def check_options(params, updated) -> None:
    """``configure()``: refuse a bad value the way a scenario string refuses it (mitmproxy itself does not check
    ``choices`` on ``--set``), with an OptionsError naming the option, under mitmdump too; and keep mitmproxy's
    own idle timeout far above every duration option (``unit="s"``)."""
    for p in params:
        if p.option and p.option in updated:
            try:
                v = p.parse(getattr(options(), p.option))
            except ValueError as e:
                raise exceptions.OptionsError(f"{p.option} {e}") from None
            if p.unit == "s":
                keep_proxy_timeout_above(v)


def value(param) -> Any:
    """The typed current value of an addon's option (e.g. a duration as float seconds)."""
    return param.type(getattr(options(), param.option))


def keep_proxy_timeout_above(seconds: float) -> None:
    """mitmproxy closes connections idle for ``TCP_TIMEOUT`` (600 s in 11.0.2, no option): raise it far above an
    emulated window, so mitmproxy's own close is never mistaken for the emulated one (also under mitmdump)."""
    import mitmproxy.proxy.server as server

    if server.TCP_TIMEOUT < 2 * seconds + 60:
        server.TCP_TIMEOUT = 2 * seconds + 60


def replace_layer(nextlayer, make) -> None:
    """Replace the layer stack mitmproxy's own NextLayer addon chose for this decision with ``make(context)``."""
    context = nextlayer.context
    if nextlayer.layer is not None and nextlayer.layer in context.layers:
        del context.layers[context.layers.index(nextlayer.layer):]
    nextlayer.layer = make(context)


def in_connect_tunnel(nextlayer) -> bool:
    """True for the first layer decision inside an explicit proxy's CONNECT tunnel (not the proxy's own
    HTTP layer, which is decided with the same stack)."""
    stack = nextlayer.context.layers
    return (len(stack) >= 2 and isinstance(stack[0], HttpProxy) and isinstance(stack[1], layers.HttpLayer)
            and nextlayer.layer is not stack[1])


class StreamResponses:
    """HTTP responses pass through as they arrive (mitmproxy holds whole bodies by default, which would make
    every HTTP intermediary a buffering one). Behaviour addons that run later may replace the stream."""

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None and not flow.response.stream:
            flow.response.stream = True
