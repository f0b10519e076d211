"""The `lemonade` command: run checks, list profiles and scenarios, re-render reports.

Exit codes: 0 conformant (baseline applied), 1 conformance failures, 2 harness error, bad input or nothing run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from .data import reports_dir
from .errors import BadInput


def console(stderr: bool = False):
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # piped output (CI logs) gets a wide console so tables keep their column names
    width = None if stream.isatty() else 160
    return Console(stderr=stderr, highlight=False, soft_wrap=not stream.isatty(), width=width)


def die(msg: str, code: int = 2) -> int:
    console(stderr=True).print(f"[bold red]lemonade:[/] {msg}", markup=True)
    return code


# -- run ---------------------------------------------------------------------------------------
def make_run_dir(output: str | None) -> Path:
    if output:
        out = Path(output)
        if any((out / "results.d").glob("*.jsonl")):
            raise BadInput(f"{out} already holds a run's results; choose another --output or remove it")
    else:
        reports = reports_dir()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        out = reports / stamp
        n = 1
        while out.exists():
            n += 1
            out = reports / f"{stamp}-{n}"
    out.mkdir(parents=True, exist_ok=True)
    if not output:
        latest = reports / "latest"
        tmp = reports / f".latest-{uuid.uuid4().hex[:6]}"
        tmp.symlink_to(out.name)
        tmp.replace(latest)
    return out


# options of `lemonade run` that say what a run is: recorded in run.json, taken from there by --resume
RUN_OPTIONS = ("target", "profile", "scenario", "client", "depth", "param", "k", "shard", "baseline", "allow_xpass",
               "deadline", "case_timeout")


def recorded_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options of a run as run.json keeps them (files as absolute paths: a resume may start elsewhere)."""
    from .providers import NAMED

    def where(spec: str) -> str:
        return spec if spec in NAMED or not Path(spec).exists() else str(Path(spec).resolve())

    opts = {k: getattr(args, k) for k in RUN_OPTIONS}
    opts["target"] = [where(t) for t in args.target]
    opts["client"] = [where(c) for c in args.client]
    opts["baseline"] = where(args.baseline) if args.baseline else None
    opts["n"] = args.n
    return opts


def resumed_args(args: argparse.Namespace) -> tuple[argparse.Namespace, dict[str, Any]]:
    """``lemonade run --resume DIR``: the options recorded in DIR/run.json (only -n may be given anew)."""
    from .rundir import check_resumable

    defaults = build_parser().parse_args(["run"])
    given = [k for k in (*RUN_OPTIONS, "output") if getattr(args, k) != getattr(defaults, k)]
    if given:
        raise BadInput(f"--resume takes every option from the run directory's run.json; do not give "
                       f"{', '.join('--' + k.replace('_', '-') for k in given)} (only -n)")
    meta = check_resumable(Path(args.resume))
    for k, v in meta["options"].items():
        if k == "n" and args.n:
            continue
        setattr(args, k, v)
    return args, meta


def cmd_run(args: argparse.Namespace) -> int:
    """Validate, prepare the targets, run the checks under pytest, finalise, render, exit code."""
    from .runplan import plan_run

    try:  # everything is validated before anything starts: bad input is exit 2 with one clear line
        previous = None
        if args.resume:
            args, previous = resumed_args(args)
        plan = plan_run(targets=args.target, profiles=args.profile, scenarios=args.scenario,
                        depth=args.depth or "quick", clients=args.client, params=args.param,
                        deadline=args.deadline, case_timeout=args.case_timeout)
        baseline = None
        if args.baseline:
            from .baseline import load_baseline

            baseline = load_baseline(args.baseline, set(plan.catalog.requirements))
        problem = prepare_targets(plan)
        if problem:
            return die(problem)
        out = Path(args.resume) if args.resume else make_run_dir(args.output)
    except BadInput as e:
        return die(str(e))
    from .processes import REGISTRY_DIR, Reaper, RunProcesses, new_marker

    processes = RunProcesses(new_marker(), out / REGISTRY_DIR)
    environment = processes.enter()  # everything started from here on carries the run's marker
    processes.record(os.getpid(), "lemonade run")
    reaper = Reaper(processes).start()  # ends the run's processes if this one dies without finishing
    stop = Interruption(processes).install()
    try:
        return run_and_finish(out, plan, args, previous, baseline, processes, stop)
    finally:
        stop.uninstall()
        reaper.finish()
        processes.leave(environment)


def run_and_finish(out: Path, plan, args: argparse.Namespace, previous: dict[str, Any] | None, baseline,
                   processes, stop: "Interruption") -> int:
    """Run the checks; then, however they ended (Ctrl-C and SIGTERM included), end what is left of the run's
    processes, finalise results.json and the report with what was done, and say what did not run."""
    t0 = time.monotonic()
    rc = 2
    try:
        start_run_meta(out, plan, args, previous)
        console().print(f"[bold]lemonade run[/] {'(resumed) ' if previous else ''}"
                        f"{'clients=' + ','.join(plan.clients) + ' ' if plan.clients else ''}"
                        f"targets={', '.join(plan.target_names.values())} "
                        f"profiles={', '.join(plan.profiles)} depth={plan.depth} -> {out}", markup=True)
        rc = run_checks(out, plan, args)
    except KeyboardInterrupt:  # a signal outside pytest (pytest itself returns 2 when interrupted)
        stop.note_if_unknown()
    leftovers = processes.sweep(exclude={reaper_pid(processes)})
    if leftovers and not stop.by:
        console(stderr=True).print(f"lemonade: {len(leftovers)} process(es) of the run were still alive at its end "
                                   f"and were ended: " + "; ".join(f"{p} ({w})" for p, w in
                                                                 sorted(leftovers.items())[:8]), markup=False)
    run_meta = read_run_meta_or(out, plan, args)
    segment = {"started": run_meta.get("segment_started", ""), "wall_s": round(time.monotonic() - t0, 2),
               "interrupted": stop.by or None}
    run_meta["segments"] = [*run_meta.get("segments", []), segment]
    run_meta.pop("segment_started", None)
    run_meta["wall_s"] = round(sum(s["wall_s"] or 0 for s in run_meta["segments"]), 2)
    run_meta["pytest_exit"] = int(rc)
    from .results import read_partial
    from .rundir import interruption, plan_status, write_run_meta

    write_run_meta(out, run_meta)
    run_meta["targets"] = target_descriptions(out, plan.targets, plan.target_names)
    run_meta.update(plan_status(out, read_partial(out / "results.d")))
    if stop.by:
        run_meta["interrupted"] = interruption(out, stop.by, stop.at, f"stopped by {stop.by}: the results of the "
                                               f"cases that finished are kept; 'lemonade run --resume {out}' runs "
                                               "the rest")
    doc = finalize_run(out, run_meta, plan.catalog, plan.profiles, baseline, args.allow_xpass)
    from .report import render_all

    render_all(out, doc)
    print_summary(doc, out)
    missing = len(run_meta["not_run"])
    if stop.by:
        return die(f"interrupted by {stop.by}: {missing} planned case(s) did not run; "
                   f"'lemonade run --resume {out}' runs them")
    if missing:
        return die(f"{missing} planned case(s) have no result (see 'not run' in the report); "
                   f"'lemonade run --resume {out}' runs them")
    if not doc["results"]:
        if int(rc) in (3, 4):
            return die("the checks could not be collected (see the message above)")
        return die("nothing was selected: no check matches the given profiles, scenarios and -k expression")
    from .results import exit_code

    return exit_code(doc)


def reaper_pid(processes) -> int:
    return next((r["pid"] for r in processes.records() if r.get("what") == "reaper"
                 and r.get("marker") == processes.marker), -1)


def read_run_meta_or(out: Path, plan, args: argparse.Namespace) -> dict[str, Any]:
    from .rundir import read_run_meta

    try:
        return read_run_meta(out)
    except BadInput:  # interrupted before run.json was written
        return start_run_meta(out, plan, args, None)


@dataclass
class Interruption:
    """Ctrl-C (SIGINT) and SIGTERM of ``lemonade run``: the first one is noted (which, when), passed on to the
    run's pytest workers as SIGINT (each ends its case without a result and stops its servers), and ends the
    checks with KeyboardInterrupt; the run then finalises what was done (exit 2)."""

    processes: Any
    by: str = ""
    at: str = ""
    _previous: dict[int, Any] = field(default_factory=dict)

    def install(self) -> "Interruption":
        if threading.current_thread() is not threading.main_thread():
            return self  # signals reach the main thread only (lemonade called from a thread of another program)
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def note_if_unknown(self, by: str = "SIGINT") -> None:
        if not self.by:
            self.by, self.at = by, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    def _handle(self, signum: int, frame) -> None:
        if not self.by:
            self.note_if_unknown(signal.Signals(signum).name)
            for pid in self.processes.workers():
                try:
                    os.kill(pid, signal.SIGINT)
                except (ProcessLookupError, PermissionError):
                    pass
        raise KeyboardInterrupt


def prepare_targets(plan) -> str | None:
    """Container targets: skipped (one line each) without an engine, else their images built once, here,
    visibly. External targets: probed. Returns the message that stops the run, if any."""
    from .errors import HarnessError
    from .providers import NAMED, is_container_target

    containers = [t for t in plan.targets if is_container_target(t)]
    if containers:
        from .providers.engine import engine_problem
        from .providers.images import build_all

        problem = engine_problem()
        if problem:
            for t in containers:
                console(stderr=True).print(f"lemonade: skipping target {t}: {problem}", markup=False)
                plan.drop_target(t)
            if not plan.targets:
                return "nothing to run: every target needs a container engine and none answers"
        else:
            try:
                build_all(containers)
            except HarnessError as e:
                return str(e)
    for t in plan.targets:
        if t not in NAMED:
            unreachable = probe_target_file(t)
            if unreachable:
                return unreachable
    return None


def start_run_meta(out: Path, plan, args: argparse.Namespace | None = None,
                   previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """run.json: what the run is, written before the checks start (a killed run still says what it was, and
    --resume takes its options from it). A resumed run keeps its first run.json and notes the new start.
    Without ``args`` (``lemonade load``) no options are recorded: such a run cannot be resumed."""
    from .processes import ProcInfo
    from .rundir import write_run_meta

    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    command = "lemonade " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    me = ProcInfo.read(os.getpid())
    if previous is not None:
        run_meta = {k: v for k, v in previous.items() if k not in ("interrupted", "finished", "segment_started")}
        if previous.get("segment_started"):  # the invocation before was killed: it never noted its end
            run_meta["segments"] = [*previous.get("segments", []), {"started": previous["segment_started"],
                                                                    "wall_s": None, "interrupted": "unknown"}]
        run_meta["resumed"] = [*previous.get("resumed", []), {"started": now, "command": command}]
    else:
        run_meta = {"id": out.name, "started": now, "command": command, "suite_version": suite_version(),
                    **plan.as_run_meta(), "targets": [], "output": str(out)}
        if args is not None:
            run_meta["options"] = recorded_options(args)
    run_meta.update({"pid": os.getpid(), "pid_start": me.start if me else None, "segment_started": now})
    write_run_meta(out, run_meta)
    return run_meta


# pytest's plugins a run does without: the results are the plugin's, not pytest's cache, terminal or warnings;
# unraisableexception and threadexception end every process with five full garbage collections (a second of
# the run's tail, and of every worker's exit)
QUIET_PLUGINS = ("-p", "no:cacheprovider", "-p", "no:terminal", "-p", "no:warnings", "-p", "no:anyio", "-p", "no:timeout",
                 "-p", "no:unraisableexception", "-p", "no:threadexception")


def checks_args() -> list[str]:
    """pytest over conformance/checks with the plugin, nothing else: what every run's command line starts with."""
    from . import checks

    return [str(checks.CHECKS_DIR), "-p", "conformance.plugin", *QUIET_PLUGINS, "--rootdir", str(checks.CHECKS_DIR),
            "-c", os.devnull]


def pytest_args_for(out: Path, plan, targets: list[str] | None = None) -> list[str]:
    """The pytest command line of a run: conformance/checks with the plugin and the plan's options."""
    pytest_args = [*checks_args(), "--lemonade-output", str(out), "--lemonade-depth", plan.depth,
                   "--lemonade-deadline", repr(plan.deadline_s), "--lemonade-case-timeout", repr(plan.case_timeout_s)]
    for t in plan.targets if targets is None else targets:
        pytest_args += ["--lemonade-target", t]
    for p in plan.profiles_given:
        pytest_args += ["--lemonade-profile", p]
    for s in plan.scenarios_given:
        pytest_args += ["--lemonade-scenario", s]
    for p in plan.params_given:
        pytest_args += ["--lemonade-param", p]
    return pytest_args


def run_checks(out: Path, plan, args: argparse.Namespace) -> int:
    """pytest over conformance/checks with the plugin (and xdist for -n); the plugin appends the results."""
    import pytest

    pytest_args = pytest_args_for(out, plan)
    if args.resume:
        pytest_args.append("--lemonade-resume")
    if args.k:
        pytest_args += ["-k", args.k]
    for c in plan.clients:
        pytest_args += ["--lemonade-client", c]
    if args.shard:
        pytest_args += ["--lemonade-shard", args.shard]
    whole = not (args.k or args.shard or plan.profiles_given or plan.scenarios_given or plan.clients)
    workers = worker_setting(args.n, pytest_args, plan.targets, whole)
    from .forkserver import ForkServer
    from .progress import progress_for

    # the fork server imports the checks as the workers' collection will (no run options: nothing is run)
    with only_named_plugins(), ForkServer(collect=checks_args()) if workers != "0" else contextlib.nullcontext() as forks:
        if workers != "0":
            tx = forks.tx(int(workers)) if workers.isdigit() else None
            # the workers forked from the run's fork server (forkserver.py), or fresh interpreters
            pytest_args += ["-p", "xdist", *(["--tx", tx] if tx else ["-n", workers])]
            if args.schedule == "collection":
                pytest_args += ["--dist", "load", "--lemonade-schedule", "collection"]
            elif plan.clients:  # client cases wait for minutes or seconds: idle workers take pending cases from busy
                pytest_args += ["--dist", "worksteal"]
            elif tx:
                pytest_args += ["--dist", "load"]  # what -n implies
        from .coverage import warm_index

        with progress_for(console()) as progress:
            warm_index()  # the checks' markers, read while the cases run (the results' coverage needs them)
            return int(pytest.main(pytest_args, plugins=[progress]))


@contextlib.contextmanager
def only_named_plugins():
    """pytest (and the xdist workers it starts, which inherit the environment) loads only the plugins the run names
    with ``-p``, not every plugin installed beside it: hypothesis alone, pulled in by the suite's own tests, costs
    each process 0.6 CPU-s at start. The variable is restored afterwards (``lemonade`` may run inside a test)."""
    before = os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD")
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD", None)
        else:
            os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = before


class CaseCollector:
    """A pytest plugin object: keeps the node ids of the selected cases (for ``-n auto``)."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def pytest_collection_finish(self, session) -> None:
        self.ids = [item.nodeid for item in session.items]


def worker_setting(n: str | None, pytest_args: list[str], targets: list[str], whole: bool = False) -> str:
    """The -n given to pytest. ``auto`` (the default): the count comes from the selected cases' expected durations
    (``plugin/schedule.py``: more workers than cores, as cases mostly wait; none, i.e. this process, for a single
    case or a few short ones). A ``whole`` run (no -k, profile, scenario, shard or client given) is the run the
    expectations were measured on, so they are used as they are; any other selection is collected here first.
    ``0`` runs every case in this process."""
    if n not in (None, "auto"):
        return n
    from .plugin.schedule import auto_workers, expected_s, load_durations

    if whole and load_durations():
        expected = list(load_durations().values()) * max(1, len(targets))
    else:
        import pytest

        collector = CaseCollector()
        with only_named_plugins():  # a problem shows in the run itself
            pytest.main([*pytest_args, "--collect-only"], plugins=[collector])
        expected = [expected_s(i) for i in collector.ids]
    workers = str(auto_workers(expected, targets))
    console().print(f"workers: {workers} for {len(expected)} cases (-n auto)", markup=False)
    return workers


def suite_version() -> str:
    """The installed package's version (the source tree's when it is not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lemonade-conformance")
    except PackageNotFoundError:
        return __version__


def target_descriptions(out: Path, targets: list[str], names: dict[str, str]) -> list[dict[str, Any]]:
    """What results.json says about each target (no secrets). Embedded targets describe themselves."""
    from .providers import NAMED
    from .targets import load_target_file

    descs = []
    for t in targets:
        if t in NAMED:
            prefix = f"target-{names[t]}-"  # then a worker id (main, gw0...): 'dovecot' must not match 'dovecot-2.4'
            info_files = sorted(f for f in (out / "results.d").glob(f"{prefix}*.json")
                                if "-" not in f.name[len(prefix):-len(".json")])
            if info_files:
                descs.append(json.loads(info_files[0].read_text()))
            else:
                descs.append({"name": names[t], "provider": "local", "note": NAMED[t][0]})
        else:
            descs.append(load_target_file(t).describe())
    return descs


def finalize_run(out: Path, run_meta: dict[str, Any], catalog, profiles: list[str], baseline=None,
                 allow_xpass: bool = False) -> dict[str, Any]:
    """results.json from results.d: coverage (from the verdicts the checks gave, before any baseline), the
    catalog facts of each requirement, the baseline applied, the summary; written once, whole."""
    from .coverage import coverage_for
    from .report.requirements import requirements_map
    from .results import FAILING, finalize_doc, mark_incomplete, summarize, write_results

    doc = finalize_doc(out, run_meta)
    doc["coverage"] = coverage_for(catalog, profiles, doc["results"])
    doc["requirements"] = requirements_map(catalog, profiles, doc["results"])
    if baseline is not None:
        baseline.apply(doc, allow_xpass=allow_xpass)
    failing = tuple(v for v in FAILING if not (allow_xpass and v == "xpass"))
    doc["summary"] = summarize(doc["results"], profiles, doc["coverage"], failing, doc["requirements"])
    mark_incomplete(doc)
    write_results(out, doc)
    return doc


def probe_target_file(spec: str) -> str | None:
    """A message if no endpoint of an external target answers a TCP connect within 3 s."""
    import socket

    from .targets import load_target_file

    target = load_target_file(spec)
    problems = []
    for name, ep in target.endpoints.items():
        try:
            with socket.create_connection((ep.host, ep.port), timeout=3):
                return None
        except OSError as e:
            problems.append(f"{name} {ep.host}:{ep.port}: {e}")
    return f"target '{target.name}' ({spec}) is unreachable: " + "; ".join(problems)


def print_summary(doc: dict[str, Any], out: Path) -> None:
    from rich.table import Table

    from .progress import VERDICT_STYLE
    from .verdicts import VERDICTS

    con = console()
    s = doc["summary"]

    shown = [v for v in VERDICTS if s["counts"].get(v)]
    table = Table(title="lemonade: verdicts per profile", show_lines=False)
    table.add_column("profile")
    table.add_column("verdict")
    for v in shown:
        table.add_column(v, justify="right", style=VERDICT_STYLE.get(v, ""))
    table.add_column("untested", justify="right")
    for name, p in s["profiles"].items():
        c = p["counts"]
        cov = p.get("coverage", {})
        style = {"pass": "green", "fail": "red", "error": "magenta"}.get(p["verdict"], "default")
        table.add_row(name, f"[{style}]{p['verdict']}[/]", *[str(c.get(v, 0) or "") for v in shown],
                      f"{len(cov.get('untested', []))}/{cov.get('total', '?')}")
    con.print(table)
    counts = ", ".join(f"{k} {v}" for k, v in s["counts"].items())
    con.print(f"{s['total']} results: {counts or 'none'}")
    left = doc.get("leftovers") or []
    if left:
        kept = [x for x in left if x.get("kind") != "upload"]
        uploads = len(left) - len(kept)
        con.print(f"leftovers: {len(kept)} thing(s) the run created and could not remove"
                  + (f", {uploads} case(s) with uploads left to the server's expiry" if uploads else "")
                  + " (results.json 'leftovers', report section Leftovers)")
        for x in kept[:10]:
            con.print(f"  {x.get('kind')}: {x.get('what')} ({x.get('reason')})", markup=False)
    con.print(f"verdict: [bold]{s['verdict'].upper()}[/]   report: {out / 'index.html'}", markup=True)


# -- other commands ------------------------------------------------------------------------------
def cmd_scenarios(args: argparse.Namespace) -> int:
    from .intermediaries.scenario import describe_all

    rows = describe_all()
    if args.format == "json":
        print(json.dumps(rows, indent=1))
        return 0
    from rich.table import Table

    table = Table(title="scenarios (compose with '+', e.g. link:latency=200+nat-idle:timeout=30)")
    for col in ("name", "kind", "path", "parameters (quick / full default)", "what it does"):
        table.add_column(col)
    for r in rows:
        params = "\n".join(f"{p['name']}={p['quick']}/{p['full']}{p['unit']}"
                           + (f" ({'|'.join(p['choices'])})" if p["choices"] else "") for p in r["params"])
        table.add_row(r["name"], r.get("kind", ""), r["path"], params or "-", r["summary"])
    console().print(table)
    return 0


def cmd_clients(args: argparse.Namespace) -> int:
    from .subjects.adapters import load_adapters

    try:
        rows = [a.describe() for a in load_adapters().values()]
    except BadInput as e:
        return die(str(e))
    if args.format == "json":
        print(json.dumps(rows, indent=1))
        return 0
    from rich.table import Table

    table = Table(title="clients under test (adapters in clients/<name>/; lemonade run --client NAME)")
    for col in ("name", "version", "protocols", "supports", "cases", "package"):
        table.add_column(col)
    for r in rows:
        version = r["version"] or ("[red]not installed[/]" if not r["installed"] else "?")
        table.add_row(r["name"], version, ", ".join(r["protocols"]), ", ".join(r["supports"]), ", ".join(r["cases"]),
                      r["package"])
    console().print(table)
    return 0


def cmd_profiles(args: argparse.Namespace) -> int:
    from .profiles_cli import profiles_list, profiles_show

    try:
        if args.action == "list":
            return profiles_list(args.format)
        return profiles_show(args.name, args.format)
    except BadInput as e:
        return die(str(e))


def cmd_report(args: argparse.Namespace) -> int:
    """Render a run's report from its results.json; a run without one (killed, or still going) is assembled
    from its results.d first, marked interrupted, with the planned cases that did not run listed."""
    from .report import render_all
    from .results import load_results

    given = Path(args.results)
    try:
        if given.is_dir() and not (given / "results.json").exists() and (given / "run.json").is_file():
            doc = assemble_partial(given)
        else:
            doc = load_results(given)
    except BadInput as e:
        return die(str(e))
    out = Path(args.output) if args.output else (given if given.is_dir() else given.parent)
    out.mkdir(parents=True, exist_ok=True)
    render_all(out, doc)
    console().print(f"report: {out / 'index.html'}")
    return 0


def assemble_partial(out: Path) -> dict[str, Any]:
    """results.json of a run that did not write one: what results.d holds, the run marked interrupted (killed) or
    in progress (still going: then nothing is written but the report), the cases without a result listed."""
    from .catalog import load_catalog
    from .rundir import partial_meta

    meta, live = partial_meta(out)
    interrupted = meta["interrupted"]
    console(stderr=True).print(f"lemonade: {out} has no results.json: {interrupted['message']}; assembled from "
                               f"results.d ({len(meta['not_run'])} planned case(s) without a result)", markup=False)
    catalog = load_catalog()
    profiles = [p for p in meta.get("profiles", []) if p in catalog.profiles]
    baseline = None
    options = meta.get("options") or {}
    if options.get("baseline") and Path(options["baseline"]).is_file():
        from .baseline import load_baseline

        baseline = load_baseline(options["baseline"], set(catalog.requirements))
    if live:
        from .coverage import coverage_for
        from .report.requirements import requirements_map
        from .results import finalize_doc

        doc = finalize_doc(out, meta)
        doc["coverage"] = coverage_for(catalog, profiles, doc["results"])
        doc["requirements"] = requirements_map(catalog, profiles, doc["results"])
        return doc
    return finalize_run(out, meta, catalog, profiles, baseline, bool(options.get("allow_xpass")))


def cmd_diff(args: argparse.Namespace) -> int:
    from .diffing import diff_runs, print_diff
    from .results import load_results

    if not 0 <= args.tolerance:
        return die("--tolerance must be >= 0")
    old, new = load_results(Path(args.old)), load_results(Path(args.new))
    d = diff_runs(old, new, args.tolerance)
    print_diff(d)
    if args.html:
        from .report.html import render_diff_html

        Path(args.html).write_text(render_diff_html(d, old, new), encoding="utf-8")
        console().print(f"diff report: {args.html}")
    if args.json:
        Path(args.json).write_text(json.dumps(d.as_dict(), indent=1, ensure_ascii=False), encoding="utf-8")
    return d.exit_code


def cmd_merge(args: argparse.Namespace) -> int:
    from .catalog import load_catalog
    from .diffing import merge_runs
    from .report import render_all
    from .results import exit_code, load_results, write_results

    docs = [load_results(Path(p)) for p in args.inputs]
    try:
        catalog = load_catalog()
    except BadInput:
        catalog = None  # the merged report then keeps the inputs' coverage
    doc = merge_runs(docs, args.inputs, catalog)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    write_results(out, doc)
    render_all(out, doc)
    print_summary(doc, out)
    return exit_code(doc)


def cmd_site(args: argparse.Namespace) -> int:
    from .site import build_site, print_outcome

    out = Path(args.output)
    outcome = build_site(args.inputs, out, args.title or "")
    print_outcome(outcome, out)
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import main as doctor

    return doctor(args.format)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="lemonade", description=__doc__.splitlines()[0])
    ap.add_argument("--version", action="version", version=f"lemonade-conformance {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run checks against targets and write a report")
    r.add_argument("--target", action="append", default=[], help="dovecot (default) or a target file; repeatable")
    r.add_argument("--profile", action="append", default=[], help="select checks by profile; repeatable (default: all)")
    r.add_argument("--scenario", action="append", default=[], help="scenario string; repeatable (default: per check)")
    r.add_argument("--client", action="append", default=[], help="judge this client program (adapter name from "
                   "'lemonade clients list', or an adapter folder); repeatable; the targets become partner servers")
    r.add_argument("--depth", choices=("quick", "full"), default=None, help="quick (default) or full")
    r.add_argument("--param", action="append", default=[], metavar="REQ:NAME=VALUE",
                   help="set a numeric requirement parameter (a bound, a duration) for this run, over the profile's "
                        "value at every depth; repeatable; the value used is in each result's measurements")
    r.add_argument("--output", help="run directory (default reports/<UTC timestamp>, reports/latest points at it)")
    r.add_argument("--resume", metavar="DIR", help="run only the planned cases of the run in DIR that have no result "
                                                   "yet (an interrupted or killed run), with the options it recorded; "
                                                   "the results join that run")
    r.add_argument("-k", help="pytest -k expression over check names")
    r.add_argument("-n", default="auto", help="parallel workers (pytest-xdist): a number, 0 for none, or auto "
                                              "(default: more workers than cores, as cases mostly wait; the "
                                              "longest expected waits start first)")
    r.add_argument("--shard", help="i/n: run only this deterministic share of the cases")
    r.add_argument("--schedule", choices=("longest-first", "collection"), default="longest-first",
                   help="order in which workers get the cases: the longest expected waits first (default), or "
                        "pytest-xdist's own load scheduling in collection order")
    r.add_argument("--baseline", help="TOML file of expected failures (reason mandatory): matching failures become "
                                      "xfail, matching passes xpass")
    r.add_argument("--allow-xpass", action="store_true", help="an xpass (baseline entry that now passes) does not "
                                                              "fail the run")
    r.add_argument("--deadline", metavar="SECONDS", help="how long a client waits for one answer of the server "
                                                         "before the server is judged to stall (default 10)")
    r.add_argument("--case-timeout", metavar="SECONDS", help="time limit of one case, a safety net: a case over it "
                                                             "is an error showing where it hung, and the run goes "
                                                             "on (default 300 at quick depth, 7200 at full)")
    r.set_defaults(fn=cmd_run)
    s = sub.add_parser("scenarios", help="scenario catalogue")
    s.add_argument("action", choices=["list"])
    s.add_argument("--format", choices=["text", "json"], default="text")
    s.set_defaults(fn=cmd_scenarios)
    cl = sub.add_parser("clients", help="client programs the suite can judge (adapters), their versions and support")
    cl.add_argument("action", choices=["list"])
    cl.add_argument("--format", choices=["text", "json"], default="text")
    cl.set_defaults(fn=cmd_clients)
    p = sub.add_parser("profiles", help="requirement profiles and their coverage")
    p.add_argument("action", choices=["list", "show"])
    p.add_argument("name", nargs="?")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(fn=cmd_profiles)
    rep = sub.add_parser("report", help="re-render index.html and junit.xml from a results.json")
    rep.add_argument("results", help="results.json or a run directory")
    rep.add_argument("-o", "--output", help="directory to write into (default: beside the results)")
    rep.set_defaults(fn=cmd_report)
    d = sub.add_parser("diff", help="compare two runs: regressions, fixes, new and removed cases, measurements")
    d.add_argument("old", help="results.json or run directory of the earlier run")
    d.add_argument("new", help="results.json or run directory of the later run")
    d.add_argument("--tolerance", type=float, default=0.25, help="relative change of a measurement that counts "
                                                                 "(default 0.25 = 25%%)")
    d.add_argument("--html", help="also write the comparison as a self-contained HTML file")
    d.add_argument("--json", help="also write the comparison as JSON")
    d.set_defaults(fn=cmd_diff)
    c = sub.add_parser("calibrate", help="run the checks under each emulator and its real counterpart; "
                                          "write the agreement table")
    c.add_argument("--target", action="append", default=[], help="only these targets of each pair (dovecot, "
                                                                 "cyrus-push); repeatable")
    c.add_argument("--pair", action="append", default=[], help="only these pairs (see "
                                                               "conformance/intermediaries/real/pairs.yaml); repeatable")
    c.add_argument("--output", help="directory for the runs and calibration.md/.json (default reports/<stamp>)")
    c.add_argument("--depth", choices=("quick", "full"), default="quick")
    c.add_argument("-n", default="2", help="parallel workers per run (default 2)")
    c.set_defaults(fn=lambda a: __import__("conformance.intermediaries.real.calibrate",
                                           fromlist=["cmd_calibrate"]).cmd_calibrate(a))
    m = sub.add_parser("merge", help="join results of shards or machines into one run (with a matrix report)")
    m.add_argument("inputs", nargs="+", help="results.json files or run directories")
    m.add_argument("-o", "--output", required=True, help="directory for the merged results.json, index.html, junit.xml")
    m.set_defaults(fn=cmd_merge)
    st = sub.add_parser("site", help="a static site of many runs: index, stable report permalinks, latest "
                                     "subject x scenario matrix, history per subject with diffs, site.json")
    st.add_argument("inputs", nargs="*", help="results.json files, run directories, or folders of run directories "
                                              "(added to the runs the site already holds)")
    st.add_argument("-o", "--output", required=True, help="the site folder (made, or extended when it holds a site)")
    st.add_argument("--title", help="heading of every page (default: lemonade interop results)")
    st.set_defaults(fn=cmd_site)
    sv = sub.add_parser("serve", help="start a reference server (optionally behind a scenario's intermediaries), "
                                      "print its target file and keep it up until SIGINT/SIGTERM")
    sv.add_argument("--target", required=True, help="a reference target (dovecot, cyrus-push, cyrus-3.10, ...) or a "
                                                    "target file (then only the scenario's path is started in front)")
    sv.add_argument("--scenario", help="put this scenario's intermediaries in front (e.g. nat-idle:timeout=30)")
    sv.add_argument("--depth", choices=("quick", "full"), default="quick", help="server settings and scenario "
                                                                                 "defaults of this depth")
    sv.add_argument("--write", metavar="FILE", help="also save the target file here (mode 0600: it holds passwords)")
    sv.add_argument("--logs", metavar="DIR", help="keep the server's logs here when it stops")
    sv.set_defaults(fn=lambda a: __import__("conformance.serve", fromlist=["cmd_serve"]).cmd_serve(a))
    doc = sub.add_parser("doctor", help="what this machine lacks for each part of the suite, and how to install it "
                                        "(exit 1: the default run cannot work here)")
    doc.add_argument("--format", choices=["text", "json"], default="text")
    doc.set_defaults(fn=cmd_doctor)
    from .load.command import add_parser as add_load_parser

    add_load_parser(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "profiles" and args.action == "show" and not args.name:
        return die("profiles show needs a profile name")
    try:
        return args.fn(args)
    except BadInput as e:
        return die(str(e))
    except KeyboardInterrupt:
        return die("interrupted; results appended so far are kept in the run directory's results.d/")
    finally:
        if argv is None:  # the `lemonade` command itself, about to exit: skip the final walk of every object
            import gc

            gc.freeze()


if __name__ == "__main__":
    sys.exit(main())
