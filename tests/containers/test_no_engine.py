"""Without a reachable container engine, container targets are skipped with one clear line."""

from __future__ import annotations


def test_container_target_without_engine_is_skipped_with_one_line(lemonade, tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    run = lemonade("run", "--target", "dovecot-2.4", "--target", "dovecot", "-k", "capability_code")
    assert run.rc in (0, 1), run.out + run.err
    lines = [line for line in run.err.splitlines() if "dovecot-2.4" in line]
    assert len(lines) == 1 and "skipping target dovecot-2.4" in lines[0] and "no container engine" in lines[0], run.err
    assert "Traceback" not in run.err + run.out
    assert {r["target"] for r in run.results["results"]} == {"dovecot"}


def test_only_container_targets_without_engine_is_exit_2(lemonade, tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    run = lemonade("run", "--target", "dovecot-2.3", "-k", "capability_code")
    assert run.rc == 2 and "nothing to run" in run.err and "Traceback" not in run.err, run.err
