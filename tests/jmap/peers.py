"""Running the JMAP checks against the scripted peer (tests/fakes/jmap.py) and reading what each judged."""

from __future__ import annotations

from contextlib import ExitStack

from tests.fakes.jmap import FakeJmapServer


def run_peer(lemonade, tmp_path, k: str, *, behaviour: str = "conformant", faults: tuple[str, ...] = (),
             args: tuple[str, ...] = (), workers: int = 2):
    """``lemonade run`` of the checks matching ``k`` against one scripted peer; (the run, {check: result}).
    ``workers=1`` for a run of one or two checks: starting workers costs more than they save there."""
    with FakeJmapServer(behaviour, faults=faults) as fake:
        par = ("-n", str(workers)) if workers > 1 else ()
        run = lemonade("run", "--target", str(fake.target_file(tmp_path)), *par, "-k", k, *args)
    results = {r["check"]: r for r in run.results["results"]}
    return run, results


def run_peers(lemonade, tmp_path, k: str, peers: dict[str, tuple[str, ...]], *, behaviour: str = "conformant"):
    """One ``lemonade run`` of the checks matching ``k`` against several scripted peers at once (one target each,
    ``peers`` maps a name to its faults): one start-up for all the proofs; (the run, {name: {check: result}})."""
    with ExitStack() as stack:
        files = []
        for name, faults in peers.items():
            fake = stack.enter_context(FakeJmapServer(behaviour, faults=faults))
            files += ["--target", str(fake.target_file(tmp_path, name))]
        run = lemonade("run", *files, "-n", "2", "-k", k)
    by_peer: dict[str, dict] = {name: {} for name in peers}
    for r in run.results["results"]:
        by_peer[r["target"].removeprefix("fake-jmap-")][r["check"]] = r
    return run, by_peer


def proven(prove, run, check: str, rid: str, reason: str | list[str], *, target: str | None = None) -> dict:
    """``check`` judged ``rid`` fail (non-strict for a SHOULD/MAY) for ``reason``, asserted and recorded through the
    ``prove`` fixture (tests/proving.py), and the failure carries a transcript; the result."""
    r = prove(run, check, rid, reason, target=target)
    assert r["evidence"]["transcript"], f"{check} failed without a transcript"
    return r


def assert_passes(results: dict, checks: set[str]) -> None:
    missing = checks - set(results)
    assert not missing, f"no result for {sorted(missing)}"
    bad = {c: (results[c]["verdict"], results[c]["message"][:300]) for c in checks if results[c]["verdict"] != "pass"}
    assert not bad, bad
