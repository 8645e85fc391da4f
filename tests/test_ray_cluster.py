"""Sweeps and tuning on a running Ray cluster (``ray start --head``), joined by address.

One cluster of 2 CPUs for the module, in a private temp dir and on free ports,
so it clashes with no other Ray on the machine. It is stopped by killing the
processes of its own session, not with ``ray stop``, which stops every Ray
cluster of the machine.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="the Ray executor needs ray (pip install replaybench[ray])")

import contextlib

from replaybench.agents.naive import NaiveAgent
from replaybench.sweep import SweepConfig, run_sweep

HERE = Path(__file__).resolve()
TINY = {"epochs": 1, "hidden": [16]}
GATE_ENV = "REPLAYBENCH_TEST_GATE"


class GatedAgent(NaiveAgent):
    """The naive baseline, held in its first experience while the cluster's gate file exists."""

    def learn(self, experience):
        gate = os.environ.get(GATE_ENV)
        while gate and os.path.exists(gate):
            time.sleep(0.05)
        return super().learn(experience)


GATED = f"{HERE}:GatedAgent"


@dataclass(frozen=True)
class Cluster:
    address: str
    session: int
    """The session id of every process of the cluster (``ray start`` ran in a new session)."""
    gate: Path


def _session_pids(sid: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":  # fields: state, ppid, pgrp, session
            pids.append(int(stat.parent.name))
    return pids


def _titles(sid: int) -> list[str]:
    """Process titles in the cluster: a worker running a run is ``ray::run_one``."""
    titles = []
    for pid in _session_pids(sid):
        try:
            titles.append(Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode())
        except OSError:
            continue
    return titles


def _stop(sid: int) -> list[int]:
    """SIGTERM, then SIGKILL, every process of the session; return those still alive."""
    for sig, wait_s in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 10.0)):
        for pid in _session_pids(sid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while _session_pids(sid) and time.monotonic() < deadline:
            time.sleep(0.2)
    return _session_pids(sid)


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.fixture(scope="module")
def cluster():
    if not sys.platform.startswith("linux"):
        pytest.skip("the cluster's processes are found through /proc")
    temp = Path(tempfile.mkdtemp(prefix="rb-ray-", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    gcs, client, dashboard, agent, agent_grpc, env_agent, metrics = _free_ports(7)
    env = {
        **os.environ,
        GATE_ENV: str(temp / "gate"),  # the cluster's workers inherit it
        # Ray turns on token authentication where ~/.ray/auth_token exists; a driver given an
        # explicit address would then need RAY_AUTH_MODE=token too. This cluster is private and brief.
        "RAY_AUTH_MODE": "disabled",
    }
    env.pop("RAY_ADDRESS", None)
    command = [
        str(Path(sys.executable).with_name("ray")),
        "start",
        "--head",
        "--num-cpus=2",
        "--disable-usage-stats",
        "--include-dashboard=false",
        f"--temp-dir={temp}",
        f"--port={gcs}",
        f"--ray-client-server-port={client}",
        f"--dashboard-port={dashboard}",
        f"--dashboard-agent-listen-port={agent}",
        f"--dashboard-agent-grpc-port={agent_grpc}",
        f"--runtime-env-agent-port={env_agent}",
        f"--metrics-export-port={metrics}",
    ]
    starter = subprocess.Popen(
        command, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        output, _ = starter.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        output = "no answer in 180 s"
    address_file = temp / "ray_current_cluster"
    if starter.returncode != 0 or not address_file.is_file():
        _stop(starter.pid)
        last = (output.strip().splitlines() or ["?"])[-1]
        pytest.skip(f"`ray start --head` could not start a cluster here: {last}")
    yield Cluster(address_file.read_text().strip(), starter.pid, temp / "gate")
    left = _stop(starter.pid)
    assert not left, f"Ray processes left after stopping the cluster: {left}"


def _driver_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    return {**env, "RAY_AUTH_MODE": "disabled", **extra}


def _sweep_command(out: Path, agents: list[str], address: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "replaybench",
        "sweep",
        "--streams",
        "split-digits",
        "--agents",
        *agents,
        "--seeds",
        "0",
        "1",
        "-o",
        "epochs=1",
        "-o",
        "hidden=[16]",
        "--executor",
        "ray",
        "--address",
        address,
        "--out",
        str(out),
        "--store",
        str(out.parent / f"{out.name}.sqlite"),
        "--no-plots",
        *extra,
    ]


@pytest.fixture(scope="module")
def inline_results(tmp_path_factory):
    cfg = SweepConfig.from_dict(
        {
            "streams": ["split-digits"],
            "agents": ["naive", "er"],
            "seeds": [0, 1],
            "agent_options": TINY,
            "executor": "inline",
            "out": str(tmp_path_factory.mktemp("inline")),
        }
    )
    report = run_sweep(cfg, show_progress=False, plots=False)
    assert len(report.results) == 4 and not report.failures
    return {run_id: result.R for run_id, result in report.results.items()}


@pytest.mark.parametrize("how", ["address", "auto"])
def test_a_sweep_on_a_running_cluster_gives_inline_results(cluster, inline_results, tmp_path, how):
    import json

    out = tmp_path / "sweep"
    # `--address auto` finds the cluster through RAY_ADDRESS (its temp dir is not Ray's default one)
    address, env = (
        (cluster.address, _driver_env()) if how == "address" else ("auto", _driver_env(RAY_ADDRESS=cluster.address))
    )
    done = subprocess.run(
        _sweep_command(out, ["naive", "er"], address), env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = {p.stem: json.loads(p.read_text())["R"] for p in out.glob("*__seed*.json")}
    assert results == inline_results
    assert any("raylet" in t for t in _titles(cluster.session)), "the driver stopped a cluster it did not start"


@pytest.mark.slow  # ~30 s each on 2 cores (two fresh drivers): `make test-all`
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_driver_cancels_its_tasks_and_resume_reruns_only_those(cluster, tmp_path, sig, code):
    out = tmp_path / "sweep"
    cluster.gate.touch()
    try:
        driver = subprocess.Popen(
            _sweep_command(out, ["naive", GATED], cluster.address),
            env=_driver_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        # naive's two runs go first and finish; then both gated runs hold the cluster's 2 CPUs
        deadline = time.monotonic() + 300
        while len(list(out.glob("*__seed*.json"))) < 2 or _titles(cluster.session).count("ray::run_one") < 2:
            assert driver.poll() is None, driver.stderr.read()
            assert time.monotonic() < deadline, f"no 2 runs done and 2 running: {_titles(cluster.session)}"
            time.sleep(0.1)
        finished = {p.name: p.stat().st_mtime_ns for p in out.glob("*__seed*.json")}
        assert all("__naive__" in name for name in finished)
        driver.send_signal(sig)
        _, stderr = driver.communicate(timeout=120)
        assert driver.returncode == code, stderr[-2000:]
        assert "finished runs are kept" in stderr
        deadline = time.monotonic() + 30
        while "ray::run_one" in _titles(cluster.session):
            assert time.monotonic() < deadline, "the interrupted driver left its tasks running on the cluster"
            time.sleep(0.2)
        probe = "import ray; ray.init(address=%r, log_to_driver=False); print(ray.available_resources().get('CPU'))"
        deadline = time.monotonic() + 30
        while True:  # the scheduler's view: both CPUs free again
            cpus = subprocess.run(
                [sys.executable, "-c", probe % cluster.address],
                env=_driver_env(),
                capture_output=True,
                text=True,
                timeout=120,
            ).stdout.strip()
            if cpus == "2.0" or time.monotonic() > deadline:
                break
        assert cpus == "2.0", f"free CPUs after the interruption: {cpus!r}"
    finally:
        cluster.gate.unlink(missing_ok=True)

    resumed = subprocess.run(
        _sweep_command(out, ["naive", GATED], cluster.address, "--resume"),
        env=_driver_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "2 of 4 runs already finished, 2 to run" in resumed.stderr
    now = {p.name: p.stat().st_mtime_ns for p in out.glob("*__seed*.json")}
    assert len(now) == 4 and all(now[name] == mtime for name, mtime in finished.items())


def test_an_interrupted_sweep_cancels_its_tasks_on_a_cluster_its_caller_joined(cluster, tmp_path, monkeypatch):
    """A caller that stays connected (a notebook, a script calling ray.init) keeps no orphaned runs."""
    import threading

    import ray

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    out = tmp_path / "sweep"
    cfg = SweepConfig.from_dict(
        {
            "streams": ["split-digits"],
            "agents": ["naive", GATED],
            "seeds": [0, 1],
            "agent_options": TINY,
            "executor": "ray",
            "out": str(out),
        }
    )
    stop, late = threading.Event(), []

    def ctrl_c_once_both_gated_runs_run() -> None:
        deadline = time.monotonic() + 300
        while not stop.is_set():
            running = _titles(cluster.session).count("ray::run_one")
            if (len(list(out.glob("*__seed*.json"))) >= 2 and running >= 2) or time.monotonic() > deadline:
                late.extend([] if time.monotonic() <= deadline else ["never 2 runs done and 2 running"])
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.1)

    ray.init(address=cluster.address, log_to_driver=False)
    cluster.gate.touch()
    watcher = threading.Thread(target=ctrl_c_once_both_gated_runs_run, daemon=True)
    try:
        watcher.start()
        with pytest.raises(KeyboardInterrupt):
            run_sweep(cfg, show_progress=False, plots=False)
        assert not late, late
        assert ray.is_initialized(), "the executor closed a connection it did not open"
        deadline = time.monotonic() + 30
        while "ray::run_one" in _titles(cluster.session) or ray.available_resources().get("CPU") != 2.0:
            assert time.monotonic() < deadline, "the interrupted sweep left its tasks running on the cluster"
            time.sleep(0.2)
    finally:
        stop.set()
        cluster.gate.unlink(missing_ok=True)
        ray.shutdown()
    assert sorted(p.name.split("__")[1] for p in out.glob("*__seed*.json")) == ["naive", "naive"]


def test_without_an_address_a_cluster_ray_would_join_instead_is_refused(cluster, monkeypatch):
    import ray

    from replaybench.errors import ConfigError
    from replaybench.executors import make_executor

    monkeypatch.setenv("RAY_ADDRESS", cluster.address)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    with pytest.raises(ConfigError, match="join it with --address auto"):
        make_executor("ray", workers=2)
    assert not ray.is_initialized()


@pytest.mark.slow  # ~35 s on 2 cores (18 trials, a spawned pool): `make test-all`
def test_tuning_on_the_pool_and_on_the_cluster_gives_the_inline_presets(cluster, monkeypatch, capsys):
    from replaybench.cli import main
    from replaybench.leaderboards import tune

    monkeypatch.setattr(tune, "STARTUP_TRIALS", 2)  # so that TPE, not only random sampling, sees batches
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    real, found = tune.tune, []

    def keep(*args, **kwargs):
        found.append(real(*args, **kwargs))
        return found[-1]

    monkeypatch.setattr(tune, "tune", keep)
    base = ["leaderboard", "tune", "quick", "--agent", "naive", "--trials", "6", "--batch", "2", "--dry-run"]
    for executor in (["inline"], ["local", "--workers", "2"], ["ray", "--address", cluster.address]):
        assert main([*base, "--executor", *executor]) == 0
        rounds = [line for line in capsys.readouterr().err.splitlines() if line.startswith("round ")]
        assert len(rounds) == 3 and all(line.count("naive#") == 2 for line in rounds)
    inline, pool, ray_ = (presets["naive"] for presets in found)
    assert len(inline.search["trials"]) == 6 and "2 trials per agent per round" in inline.search["engine"]
    assert len({t["values"]["lr"] for t in inline.search["trials"]}) == 6
    assert pool == inline and ray_ == inline  # same trials, same validation scores, same choice
