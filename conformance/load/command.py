"""`lemonade load`: many push sessions against any target, through a scenario's intermediary, with a storm.

The command validates like ``lemonade run``, starts an embedded target once (the embedded Dovecot with the
[load] limits of servers/dovecot/settings.toml) and hands it to the workers as a private target file, then
runs the load check (``conformance/checks/scale/``) under pytest with the plugin: one case per worker, each
a shard of the sessions. Workers are pytest-xdist's: ``--workers K`` on this machine, ``--tx SPEC`` (xdist's
own execnet specs, e.g. ``ssh=host//python=...``) across machines. The run directory holds the same
results.json, report and JUnit as a ``lemonade run``; ``run.load`` joins the shards.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

from ..errors import BadInput, HarnessError
from .engine import LoadPlan

PROFILE = "push-at-scale"
DEFAULT_WINDOW_S = {"quick": 30, "full": 300}  # the default scenario's NAT window, above the [load] keepalive


def add_parser(sub) -> None:
    p = sub.add_parser("load", help="many concurrent push sessions through an intermediary, a control group "
                                    "direct, and a reconnect storm; writes the same outputs as run")
    p.add_argument("--target", default="dovecot", help="dovecot (default, started with its [load] limits), "
                                                       "another named target, or a target file")
    p.add_argument("--sessions", type=int, default=100, help="sessions through the scenario's path (default 100)")
    p.add_argument("--protocol", action="append", choices=("imap", "eventsource"), default=[],
                   help="push sessions: imap (IDLE) and, where the target has JMAP, eventsource; repeatable "
                        "(default: both where the target has a jmap endpoint, else imap); one case each")
    p.add_argument("--control", type=int, help="sessions on the direct path, watching the same mailboxes "
                                               "(default: a fifth of --sessions, 10 to 200)")
    p.add_argument("--scenario", help="the intermediary path (default nat-idle:timeout=30 at quick depth)")
    p.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                   help="how long changes are made (default 30 at quick depth, 300 at full)")
    p.add_argument("--rate", type=float, default=1.0, help="changes per second per mailbox (default 1)")
    p.add_argument("--no-storm", action="store_true", help="do not drop the sessions")
    p.add_argument("--storm-at", type=float, default=0.5, metavar="FRACTION",
                   help="when the intermediary drops every session, as a fraction of --duration (default 0.5)")
    p.add_argument("--storm-how", choices=("rst", "fin"), default="rst", help="how the connections are cut")
    p.add_argument("--reconnect-jitter", type=float, default=0.0, metavar="SECONDS",
                   help="each session waits up to this long before reconnecting (default 0: all at once)")
    p.add_argument("--workers", type=int, default=1, help="pytest-xdist workers on this machine, each a shard")
    p.add_argument("--tx", action="append", default=[], metavar="SPEC",
                   help="an xdist/execnet worker spec (repeatable; e.g. ssh=host//python=/srv/lemonade/.venv/bin/"
                        "python): one shard per spec, instead of --workers")
    p.add_argument("--depth", choices=("quick", "full"), default="quick")
    p.add_argument("--deadline", metavar="SECONDS", help="how long a session waits for one answer (default 10)")
    p.add_argument("--output", help="run directory (default reports/<UTC timestamp>)")
    p.set_defaults(fn=cmd_load)


def load_settings_overrides() -> dict[str, Any]:
    """The [load] table of servers/dovecot/settings.toml: the embedded Dovecot's limits for many sessions."""
    from ..data import data_dir

    return dict(tomllib.loads((data_dir("servers") / "dovecot" / "settings.toml").read_text()).get("load", {}))


def make_plan(args: argparse.Namespace, deadline: float) -> tuple[LoadPlan, int]:
    shards = len(args.tx) or args.workers
    if args.sessions < 1 or shards < 1 or args.sessions < shards:
        raise BadInput("--sessions must be at least 1 and at least the number of workers")
    if args.rate <= 0 or not 0 < args.storm_at < 1:
        raise BadInput("--rate must be > 0 and --storm-at between 0 and 1")
    duration = args.duration if args.duration is not None else (30.0 if args.depth == "quick" else 300.0)
    if duration <= 0:
        raise BadInput("--duration must be > 0")
    control = args.control if args.control is not None else min(200, max(10, args.sessions // 5))
    if control < 0:
        raise BadInput("--control must be >= 0")
    per = lambda n: -(-n // shards)  # noqa: E731 - each shard gets its share, rounded up
    plan = LoadPlan(sessions=per(args.sessions), control=per(control), duration_s=duration, rate=args.rate,
                    storm=not args.no_storm, storm_at=args.storm_at, storm_how=args.storm_how,
                    reconnect_jitter_s=args.reconnect_jitter, deadline_s=deadline,
                    mailbox_prefix=f"lemonade-load-{int(time.time())}")
    return plan, shards


def start_target(spec: str, depth: str, logs: Path, workdir: Path) -> tuple[str, Any, dict[str, Any] | None]:
    """(the --lemonade-target the workers get, the provider to stop, the target's description)."""
    from ..providers import NAMED, provider_for
    from ..targets import write_target_file

    if spec not in NAMED:
        return spec, None, None
    if spec == "dovecot":
        from ..providers.dovecot import DovecotProvider

        provider = DovecotProvider(depth=depth, settings=load_settings_overrides(), keep_logs=logs)
    else:
        provider = provider_for(spec, depth, logs)
    target = provider.start()
    return str(write_target_file(target, workdir / "target.toml")), provider, target.describe()


def group_cpu_s(provider) -> float | None:
    """CPU seconds used so far by an embedded server's process group (its master started the group): what the
    server spent, beside what the suite spent (Linux /proc; None elsewhere or for a target not started here)."""
    proc = getattr(provider, "proc", None)
    if proc is None:
        return None
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == proc.pid:  # the process group id
            total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return round(total / tick, 2)


class RemoteResults:
    """A pytest plugin object on the controller: keeps the load results workers send back, and writes those whose
    worker's results file is not on this machine (a worker on another host wrote it there)."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.results: list[dict[str, Any]] = []

    def pytest_runtest_logreport(self, report) -> None:
        self.results += [value for key, value in report.user_properties if key == "lemonade_load_result"]

    def keep(self) -> int:
        from ..results import ResultsWriter

        kept = 0
        for r in self.results:
            worker = str(r.get("worker") or "remote")
            if not (self.out / "results.d" / f"{worker}.jsonl").exists():
                ResultsWriter(self.out / "results.d", f"remote-{worker}").append(r)
                kept += 1
        return kept


def cmd_load(args: argparse.Namespace) -> int:
    from ..cli import (
        console,
        die,
        finalize_run,
        make_run_dir,
        only_named_plugins,
        print_summary,
        pytest_args_for,
        start_run_meta,
    )
    from ..runplan import DEFAULT_DEADLINE_S, plan_run
    from .summary import aggregate, lines

    scenario = args.scenario or f"nat-idle:timeout={DEFAULT_WINDOW_S[args.depth]}"
    try:
        plan = plan_run(targets=[args.target], profiles=[PROFILE], scenarios=[scenario], depth=args.depth,
                        deadline=args.deadline, case_timeout=1)  # the case timeout follows from the load plan
        load, shards = make_plan(args, plan.deadline_s or DEFAULT_DEADLINE_S)
        plan.case_timeout_s = (load.ramp_deadline_s + load.duration_s + load.storm_deadline_s + load.drain_s
                               + 4 * load.deadline_s + 120)
        out = make_run_dir(args.output)
    except BadInput as e:
        return die(str(e))
    workdir = Path(tempfile.mkdtemp(prefix="lemonade-load-"))
    provider = None
    t0 = time.monotonic()
    try:
        try:
            target_arg, provider, described = start_target(args.target, args.depth, out / "logs", workdir)
        except (HarnessError, BadInput, OSError) as e:
            return die(f"target {args.target} could not be started: {e}")
        run_meta = start_run_meta(out, plan)
        run_meta.update(command="lemonade load " + " ".join(_argv(args)), load={
            "plan": {**load.as_dict(), "shard": None}, "shards": shards, "sessions": args.sessions,
            "workers": args.tx or shards})
        (out / "run.json").write_text(json.dumps(run_meta, indent=1))
        console().print(f"[bold]lemonade load[/] target={args.target} scenario={scenario} sessions={args.sessions} "
                        f"(+{load.control * shards} direct) shards={shards} duration={load.duration_s:g}s "
                        f"rate={load.rate:g}/s -> {out}", markup=True)
        protocols = args.protocol or (["imap", "eventsource"] if _has_jmap(target_arg) else ["imap"])
        pytest_args = pytest_args_for(out, plan, [target_arg]) + [
            "--lemonade-load", json.dumps({**load.as_dict(), "shards": shards, "protocols": protocols}),
            "--lemonade-rerun-prefix", run_meta["command"]]
        if args.tx:
            pytest_args += ["-p", "xdist", "--dist", "load", "--lemonade-schedule", "collection"]
            for spec in args.tx:
                pytest_args += ["--tx", spec]
        elif shards > 1:
            pytest_args += ["-p", "xdist", "-n", str(shards), "--dist", "load", "--lemonade-schedule", "collection"]
        import pytest

        server_cpu0 = group_cpu_s(provider)
        from ..progress import progress_for

        remote = RemoteResults(out)
        with progress_for(console()) as progress, only_named_plugins():
            rc = int(pytest.main(pytest_args, plugins=[progress, remote]))
        if remote.keep():
            run_meta["load"]["remote_results"] = True
        server_cpu1 = group_cpu_s(provider)
        if server_cpu0 is not None and server_cpu1 is not None:
            run_meta["load"]["server_cpu_s"] = round(server_cpu1 - server_cpu0, 2)
    finally:
        if provider is not None:
            provider.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    from ..cli import target_descriptions

    run_meta["targets"] = [described] if described else target_descriptions(out, plan.targets, plan.target_names)
    run_meta["wall_s"] = round(time.monotonic() - t0, 2)
    run_meta["pytest_exit"] = rc
    doc = finalize_run(out, run_meta, plan.catalog, plan.profiles)
    agg = aggregate(doc["results"])
    if agg is not None:
        doc["run"]["load"]["aggregate"] = agg
        from ..results import write_results

        write_results(out, doc)
    from ..report import render_all

    render_all(out, doc)
    print_summary(doc, out)
    for line in lines(agg) if agg else ["load: no load result (see the messages above)"]:
        console().print(line, markup=False, highlight=False)
    if "server_cpu_s" in run_meta["load"]:
        console().print(f"server: {run_meta['load']['server_cpu_s']:.1f} CPU-s (the embedded target's processes)",
                        markup=False, highlight=False)
    if not doc["results"]:
        return die("the load check did not run (see the messages above)")
    from ..results import exit_code

    return exit_code(doc)


def _has_jmap(target_arg: str) -> bool:
    from ..targets import load_target_file

    try:
        return load_target_file(target_arg).endpoint("jmap") is not None
    except BadInput:
        return False


def _argv(args: argparse.Namespace) -> list[str]:
    """The command's options as given (no secrets: a load run takes none on its command line)."""
    import shlex

    out = ["--target", args.target, "--sessions", str(args.sessions)]
    for p in args.protocol:
        out += ["--protocol", p]
    for flag, value in (("--control", args.control), ("--scenario", args.scenario), ("--duration", args.duration),
                        ("--rate", args.rate), ("--storm-at", args.storm_at), ("--storm-how", args.storm_how),
                        ("--reconnect-jitter", args.reconnect_jitter or None), ("--depth", args.depth),
                        ("--deadline", args.deadline)):
        if value is not None:
            out += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    if args.no_storm:
        out.append("--no-storm")
    out += [x for spec in args.tx for x in ("--tx", spec)] or (["--workers", str(args.workers)] if args.workers > 1
                                                               else [])
    return [shlex.quote(a) for a in out]
