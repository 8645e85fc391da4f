"""Sweeps: grid expansion, failure records, timeouts, the local pool, and resuming after a real SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from replaybench import executors
from replaybench.agents.naive import NaiveAgent
from replaybench.cli import main
from replaybench.errors import ConfigError
from replaybench.leaderboards.sinks import SweepRowsSink
from replaybench.leaderboards.store import Store
from replaybench.sweep import SweepConfig, expand_grid, run_sweep

TINY = {"epochs": 1, "hidden": [16]}
HERE = Path(__file__).resolve()


class RaisingAgent(NaiveAgent):
    """Learns the first experience, then raises."""

    def learn(self, experience):
        if experience.index == 1:
            raise ValueError("boom on purpose")
        return super().learn(experience)


class SlowNaiveAgent(NaiveAgent):
    """The naive baseline, slowed down so that a sweep can be killed midway."""

    def learn(self, experience):
        time.sleep(0.2)
        return super().learn(experience)


class SleepingAgent(NaiveAgent):
    def learn(self, experience):
        time.sleep(60)


class StubbornAgent(NaiveAgent):
    """Ignores SIGALRM, so only the driver can stop it."""

    def learn(self, experience):
        signal.signal(signal.SIGALRM, signal.SIG_IGN)
        time.sleep(600)


def agent(cls: type) -> str:
    return f"{HERE}:{cls.__name__}"


def config(tmp_path, **values) -> SweepConfig:
    base = {
        "streams": ["split-digits"],
        "agents": ["naive"],
        "seeds": [0],
        "agent_options": TINY,
        "executor": "inline",
        "out": str(tmp_path / "sweep"),
    }
    return SweepConfig.from_dict({**base, **values})


# --- the grid ---------------------------------------------------------------------
def test_grid_is_the_product_and_ids_hash_the_options(tmp_path):
    cfg = config(
        tmp_path,
        agents=["naive", "er"],
        seeds=[0, 1],
        grid={"lr": [0.01, 0.1]},
        agent_options_by_agent={"er": {"memory_size": 20}},
    )
    plans = expand_grid(cfg)
    assert len(plans) == 2 * 2 * 2
    assert len({p.run_id for p in plans}) == 8
    er = [p for p in plans if p.spec.agent == "er"]
    assert all(p.spec.agent_options["memory_size"] == 20 and p.spec.agent_options["epochs"] == 1 for p in er)
    assert {p.spec.agent_options["lr"] for p in er} == {0.01, 0.1}
    # the same name and seed with other options is another run
    lrs = {p.spec.agent_options["lr"]: p.run_id for p in plans if p.spec.agent == "naive" and p.spec.seed == 0}
    assert lrs[0.01] != lrs[0.1] and lrs[0.01].startswith("split-digits__naive__seed0__")


def test_bad_sweeps_fail_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="Unknown option 'agnets' for sweep.*Did you mean 'agents'"):
        SweepConfig.from_dict({"streams": ["split-digits"], "agnets": ["naive"]})
    with pytest.raises(ConfigError, match="'executor' parameter of sweep must be one of"):
        config(tmp_path, executor="threads")
    with pytest.raises(ConfigError, match="'agents' parameter of sweep must be a non-empty list"):
        config(tmp_path, agents=[])
    with pytest.raises(ConfigError, match=r"repeat \[0\]"):
        expand_grid(config(tmp_path, seeds=[0, 0]))
    with pytest.raises(ConfigError, match="Unknown option 'memory_sise'"):
        run_sweep(config(tmp_path, agent_options={**TINY, "memory_sise": 3}))
    assert not (tmp_path / "sweep").exists()


def test_cli_bad_input_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("streams = ['split-digits']\nagents = ['naive']\nworkers = 0\n")
    assert main(["sweep", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'workers' parameter of sweep must be None or an int in the range [1, inf)" in err[0]


# --- failures ---------------------------------------------------------------------
def test_a_raising_agent_and_a_nan_run_are_recorded_as_failed_and_the_sweep_goes_on(tmp_path):
    cfg = config(tmp_path, agents=[agent(RaisingAgent), "naive"], grid={"lr": [0.1, 1e30]})
    report = run_sweep(cfg, show_progress=False)
    out = Path(cfg.out)
    by_kind = {
        (spec["agent"], spec["agent_options"]["lr"]): json.loads(p.read_text())
        for p in out.glob("*.failed.json")
        for spec in [json.loads(p.read_text())["spec"]]
    }
    raised = by_kind[(agent(RaisingAgent), 0.1)]
    assert raised["kind"] == "raised" and "boom on purpose" in raised["error"]
    assert "Traceback" in raised["traceback"] and "ValueError: boom on purpose" in raised["traceback"]
    assert by_kind[("naive", 1e30)]["kind"] == "nan" and "DivergenceError" in by_kind[("naive", 1e30)]["error"]
    # the healthy run finished and was written next to the failures
    assert len(report.results) == 1 and len(report.failures) == 3
    (ok_id,) = report.results
    assert json.loads((out / f"{ok_id}.json").read_text())["spec"]["agent_options"]["lr"] == 0.1


def test_resume_reruns_failed_runs_unless_told_not_to(tmp_path):
    cfg = config(tmp_path, agents=[agent(RaisingAgent), "naive"])
    first = run_sweep(cfg, show_progress=False)
    (failed_id,) = first.failures
    with pytest.raises(ConfigError, match="already holds 2 of this sweep's 2 runs; pass --resume"):
        run_sweep(cfg, show_progress=False)
    again = run_sweep(cfg, resume=True, show_progress=False)
    assert again.executed == [failed_id] and len(again.skipped) == 1
    kept = run_sweep(cfg, resume=True, skip_failed=True, show_progress=False)
    assert kept.executed == [] and set(kept.failures) == {failed_id}
    # a folder holds one grid: another one is refused, resumed or not, and sweep.json is left as it was
    manifest = (Path(cfg.out) / "sweep.json").read_bytes()
    for resume in (False, True):
        with pytest.raises(ConfigError, match="holds another sweep's grid"):
            run_sweep(
                config(tmp_path, agents=["naive"], agent_options={**TINY, "lr": 0.2}),
                resume=resume,
                show_progress=False,
            )
    assert (Path(cfg.out) / "sweep.json").read_bytes() == manifest


def test_a_run_past_its_timeout_is_stopped_and_recorded(tmp_path):
    start = time.monotonic()
    report = run_sweep(config(tmp_path, agents=[agent(SleepingAgent)], timeout_s=1.0), show_progress=False)
    assert time.monotonic() - start < 30
    (record,) = report.failures.values()
    assert record["kind"] == "timeout" and "RunTimeoutError" in record["error"]


# --- the local pool -------------------------------------------------------------------
def test_local_pool_matches_inline_and_kills_a_run_that_ignores_its_timeout(tmp_path, monkeypatch):
    monkeypatch.setattr(executors, "GRACE_S", 1.0)
    agents = ["naive", "er", agent(RaisingAgent), agent(StubbornAgent)]
    cfg = config(
        tmp_path,
        agents=agents,
        executor="local",
        workers=2,
        timeout_s=3.0,
        agent_options_by_agent={"er": {"memory_size": 20}},
    )
    pool = run_sweep(cfg, show_progress=False, plots=False)
    inline = run_sweep(
        config(tmp_path / "inline", agents=["naive", "er"], agent_options_by_agent={"er": {"memory_size": 20}}),
        show_progress=False,
        plots=False,
    )
    assert set(inline.results) <= set(pool.results)
    for run_id, result in inline.results.items():
        assert pool.results[run_id].R == result.R
        assert pool.results[run_id].provenance["hardware"]["torch_threads"] == 1
    kinds = {pool.failures[i]["spec"]["agent"]: pool.failures[i]["kind"] for i in pool.failures}
    assert kinds == {agent(RaisingAgent): "raised", agent(StubbornAgent): "timeout"}
    assert "worker was killed" in next(f["error"] for f in pool.failures.values() if f["kind"] == "timeout")


# --- interrupted sweeps ----------------------------------------------------------------
def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.slow  # ~12 s on 2 cores (a fresh driver and a spawned pool): `make test-all`
def test_sigkill_mid_sweep_then_resume_loses_nothing_and_reruns_nothing(tmp_path):
    out = tmp_path / "killed"
    seeds = [0, 1, 2, 3]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "replaybench",
            "sweep",
            "--streams",
            "split-digits",
            "--agents",
            agent(SlowNaiveAgent),
            "--seeds",
            *map(str, seeds),
            "-o",
            "epochs=1",
            "-o",
            "hidden=[16]",
            "--executor",
            "local",
            "--workers",
            "2",
            "--out",
            str(out),
            "--no-plots",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 240
    while len(list(out.glob("*__seed*.json"))) < 2:
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "the sweep wrote no results in time"
        time.sleep(0.05)
    workers = _children(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    for _ in range(100):  # the pool's workers die with their driver
        if not any(_alive(w) for w in workers):
            break
        time.sleep(0.1)
    assert workers and not any(_alive(w) for w in workers)
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.glob("*__seed*.json")}
    assert 2 <= len(before) < len(seeds), "kill the sweep midway"
    assert not list(out.glob(".*.tmp")), "an interrupted write left a temporary file"

    cfg = SweepConfig.from_dict(
        {
            "streams": ["split-digits"],
            "agents": [agent(SlowNaiveAgent)],
            "seeds": seeds,
            "agent_options": TINY,
            "executor": "inline",
            "out": str(out),
        }
    )
    with Store() as store:  # the default store: a row for every run finished before the kill but the last, at most
        rows_before = {r.run_id for r in store.sweep_runs(str(out.resolve()))}
        assert rows_before <= {name[:-5] for name in before} and len(rows_before) >= len(before) - 1
        report = run_sweep(cfg, sinks=[SweepRowsSink(store, out)], resume=True, show_progress=False, plots=False)
    finished = {f"{i}.json" for i in report.planned}
    assert {f"{i}.json" for i in report.skipped} == set(before)
    assert {f"{i}.json" for i in report.executed} == finished - set(before)
    assert {p.name for p in out.glob("*__seed*.json")} == finished and not report.failures
    for name, (mtime, content) in before.items():
        assert (out / name).stat().st_mtime_ns == mtime and (out / name).read_bytes() == content
    assert sorted(r.spec["seed"] for r in report.results.values()) == seeds
    with Store() as store:  # one row per run, none lost, none twice
        rows = store.sweep_runs(str(out.resolve()))
    assert sorted(r.run_id for r in rows) == sorted(report.planned) and {r.status for r in rows} == {"done"}
    assert all(r.R == report.results[r.run_id].R for r in rows)


# --- the store and the command ------------------------------------------------------------
def test_a_sweep_without_a_board_records_every_outcome_in_the_store(tmp_path):
    out, store_file = tmp_path / "sweep", tmp_path / "s.sqlite"
    cfg = config(tmp_path, agents=["naive", agent(RaisingAgent)], seeds=[0], store=str(store_file))
    with Store(store_file) as store:
        report = run_sweep(cfg, sinks=[SweepRowsSink(store, out)], show_progress=False, plots=False)
        rows = {r.agent: r for r in store.sweep_runs(str(out.resolve()))}
        assert store.count("submissions") == 0  # no board: no leaderboard rows
    done, failed = rows["naive"], rows[agent(RaisingAgent)]
    (result,) = report.results.values()
    assert done.status == "done" and done.R == result.R and done.metrics["acc"] == result.metrics["acc"]
    assert json.loads(Path(done.results_path).read_text())["R"] == result.R
    assert failed.status == "failed" and failed.R is None and failed.failure["kind"] == "raised"
    assert "boom on purpose" in failed.failure["traceback"] and Path(failed.results_path).is_file()
    # a resumed sweep that reruns the failed run replaces its row; the finished one keeps its own
    with Store(store_file) as store:
        run_sweep(cfg, sinks=[SweepRowsSink(store, out)], resume=True, show_progress=False, plots=False)
        assert store.count("sweep_runs") == 2


def test_cli_sweep_records_each_run_in_the_store_once(tmp_path, capsys):
    args = [
        "sweep",
        "--streams",
        "split-digits",
        "--agents",
        "naive",
        "--seeds",
        "0",
        "1",
        "-o",
        "epochs=10",  # the quick board's budget: a sweep recorded on a board must keep it
        "-o",
        "batch_size=32",
        "-o",
        "hidden=[16]",
        "--executor",
        "inline",
        "--out",
        str(tmp_path / "o"),
        "--no-plots",
    ]
    board = ["--board", "quick", "--store", str(tmp_path / "lb.sqlite")]
    assert main([*args, *board]) == 0
    stdout = capsys.readouterr().out
    assert (
        "Mean ± 90% t-interval over seeds" in stdout
        and "2 finished, 0 failed of 2 runs (2 run now, 0 skipped)" in stdout
    )
    with Store(tmp_path / "lb.sqlite") as store:
        (sub,) = store.submissions("quick", status=None)
        assert sub.status == "complete" and sub.agent == "naive"
        runs = store.runs(sub.id)
        seed1 = json.loads(next((tmp_path / "o").glob("*seed1*.json")).read_text())
        assert sorted(r.seed for r in runs) == [0, 1] and seed1["R"] == next(r for r in runs if r.seed == 1).R
    # a seed the board does not have is refused before any work
    assert main([*args[:-3], "--seeds", "7", "--out", str(tmp_path / "q"), *board]) == 2
    assert "Seeds [7] are not on board 'quick'" in capsys.readouterr().err and not (tmp_path / "q").exists()
    # runs finished without their store row (a kill between the two writes) get it on resume, once
    assert main([*args, "--out", str(tmp_path / "p")]) == 0
    for _ in range(2):
        assert (
            main([*args, "--out", str(tmp_path / "p"), *board, "--store", str(tmp_path / "lb2.sqlite"), "--resume"])
            == 0
        )
        assert "0 run now, 2 skipped" in capsys.readouterr().out
        with Store(tmp_path / "lb2.sqlite") as store:
            (sub,) = store.submissions("quick", status=None)
            assert sub.status == "complete" and store.count("runs") == 2
