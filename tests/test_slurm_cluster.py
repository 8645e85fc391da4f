"""The slurm executor on a real one-node Slurm cluster (``scripts/local-slurm``).

The module starts its own cluster (munged, slurmctld, slurmd) in a temporary
folder and stops it at the end; without Slurm installed, or not as root, the
tests that need it skip and say why. Jobs are told apart by their
``--comment``, and Slurm's job-completion log (``jobcomp/filetxt``) is read
for its own record of how every job ended.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from replaybench.cli import main
from replaybench.errors import ConfigError
from replaybench.executors import SlurmOptions, make_executor

ROOT = Path(__file__).resolve().parent.parent
LOCAL_SLURM = ROOT / "scripts" / "local-slurm"
DAEMONS = ("munged", "slurmctld", "slurmd")
WAIT_S = 60.0
"""The longest any step here waits for the cluster (jobs start in seconds)."""


def _run(*cmd: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """``scripts/local-slurm up`` in a fresh folder; ``down`` after the module. Yields that folder."""
    missing = [b for b in (*DAEMONS, "mungekey", "sbatch", "squeue", "scancel") if shutil.which(b) is None]
    if missing:
        pytest.skip(f"Slurm is not installed (no {', '.join(missing)}): apt-get install slurm-wlm munge")
    if os.geteuid() != 0:
        pytest.skip("scripts/local-slurm runs slurmd as root; these tests need root")
    folder = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, "LOCAL_SLURM_DIR": str(folder)}
    up = _run(str(LOCAL_SLURM), "up", env=env)
    if up.returncode != 0:
        _run(str(LOCAL_SLURM), "down", env=env)
        pytest.skip(f"scripts/local-slurm up failed: {up.stderr.strip() or up.stdout.strip()}")
    (line,) = [ln for ln in up.stdout.splitlines() if ln.startswith("export SLURM_CONF=")]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLURM_CONF", line.partition("=")[2])
        mp.setenv("LOCAL_SLURM_DIR", str(folder))
        yield folder
    _run(str(LOCAL_SLURM), "down", env=env)


def our_jobs(comment: str) -> dict[str, str]:
    """Job id -> state code (PD, R, CG...) of the queued jobs carrying ``comment``."""
    out = _run("squeue", "--me", "--noheader", "--array", "--format=%i|%t|%k").stdout
    return {i: t for i, t, k in (ln.split("|", 2) for ln in out.splitlines()) if k == comment}


def wait_for(predicate, what: str, timeout_s: float = WAIT_S):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def jobcomp(folder: Path, array_id: str, n_tasks: int) -> dict[str, str]:
    """Array task -> JobState from Slurm's own completion log, once all ``n_tasks`` of an array are in it.

    A job's record is written when it ends, which is after its result reached the driver.
    """

    def records() -> dict[str, str]:
        found = {}
        for line in (folder / "log" / "jobcomp.log").read_text().splitlines():
            fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
            if fields.get("ArrayJobId") == array_id:
                found[fields["ArrayTaskId"]] = fields["JobState"]
        return found if len(found) >= n_tasks else {}

    return wait_for(records, f"Slurm's records of the {n_tasks} jobs of array {array_id}", timeout_s=30)


def array_id(out: Path) -> str:
    """The id of the (latest) job array a sweep in ``out`` submitted, from submitit's files."""
    submitted = sorted((out / ".submitit").glob("*_submitted.pkl"), key=lambda p: p.stat().st_mtime)
    return submitted[-1].name.split("_")[0]


def sweep_argv(out: Path, *extra: str, agents=("naive",), seeds=("0", "1"), epochs: int = 1) -> list[str]:
    return [
        "sweep",
        "--streams",
        "split-digits",
        "--agents",
        *agents,
        "--seeds",
        *seeds,
        "-o",
        f"epochs={epochs}",
        "--out",
        str(out),
        "--store",
        str(out.parent / f"{out.name}.sqlite"),
        "--no-plots",
        *extra,
    ]


def start_driver(argv: list[str]) -> subprocess.Popen[str]:
    """The CLI in a child process, with Python's own SIGINT handler even where ours ignores SIGINT."""
    return subprocess.Popen(
        [sys.executable, "-m", "replaybench", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


# --- options: checked before any work -----------------------------------------------------
@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"mem": "lots"}, "The 'mem' parameter of slurm must be a size such as '4G'"),
        ({"memory": "4G"}, "Did you mean 'mem'?"),
        ({"gpus_per_task": 0}, "The 'gpus_per_task' parameter of slurm must be None or an int in the range [1, inf)"),
        ({"account": "two words"}, "The 'account' parameter of slurm must be one word"),
        ({"sbatch_lines": ["-C a100"]}, "must hold long sbatch options such as '--constraint=a100'"),
        ({"sbatch_lines": ["--array=0-9"]}, "--array is set by the slurm executor itself"),
        ({"setup": ["module load cuda\nrm -rf /"]}, "must hold non-empty single lines"),
        ({"time_min": 0}, "The 'time_min' parameter of slurm must be None or an int in the range [1, inf)"),
    ],
)
def test_bad_slurm_options_are_refused_on_one_line(values, message):
    with pytest.raises(ConfigError) as info:
        SlurmOptions.from_dict(values)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_bad_slurm_flag_exits_2_before_any_work(tmp_path, capsys):
    out = tmp_path / "out"
    code = main([*sweep_argv(out), "--executor", "slurm", "--cluster", "local", "--slurm-sbatch", "=a100"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "sbatch options such as" in err[0]
    assert not out.exists()


def test_options_map_to_submitit_and_other_executors_ignore_them(tmp_path):
    options = SlurmOptions.from_dict(
        {
            "mem": "4g",
            "gpus_per_task": 2,
            "account": "lab",
            "qos": "high",
            "time_min": 90,
            "sbatch_lines": ["--constraint=a100", "#SBATCH --exclusive", "mail-type=END"],
            "setup": ["module load cuda"],
        }
    )
    assert options.submitit_parameters() == {
        "slurm_mem": "4G",
        "slurm_gpus_per_task": 2,
        "slurm_account": "lab",
        "slurm_qos": "high",
        "timeout_min": 90,
        "slurm_additional_parameters": {"constraint": "a100", "exclusive": True, "mail-type": "END"},
        "slurm_setup": ["module load cuda"],
    }
    assert make_executor("inline", slurm={"mem": "4G"}).name == "inline"
    with pytest.raises(ConfigError, match="'mem' parameter of slurm"):
        make_executor("inline", slurm={"mem": "4 G"})


# --- on the cluster --------------------------------------------------------------------------
def test_sbatch_script_holds_the_options_and_results_record_queue_time(cluster, tmp_path):
    out, comment = tmp_path / "out", f"rb-{uuid.uuid4().hex[:8]}"
    sweep_file = tmp_path / "sweep.toml"
    sweep_file.write_text(
        '[slurm]\nmem = "1G"\naccount = "lab"\ntime_min = 3\n'
        f'sbatch_lines = ["--comment={comment}"]\nsetup = ["echo setup-ran-$SLURM_ARRAY_TASK_ID"]\n'
    )
    argv = sweep_argv(out, "--executor", "slurm", "--cluster", "slurm", "--slurm-qos", "normal")
    assert main([argv[0], str(sweep_file), *argv[1:]]) == 0
    (script,) = (out / ".submitit").glob("*_submission.sh")
    text = script.read_text()
    for line in ("--mem=1G", "--account=lab", "--qos=normal", "--time=3", f"--comment={comment}", "--array=0-1%"):
        assert f"#SBATCH {line}" in text
    assert "\n# setup\necho setup-ran-$SLURM_ARRAY_TASK_ID\n" in text
    logs = "".join(p.read_text() for p in (out / ".submitit").glob("*_log.out"))
    assert "setup-ran-0" in logs and "setup-ran-1" in logs  # the setup lines ran in the jobs
    for path in out.glob("split-digits__*.json"):
        costs = json.loads(path.read_text())["costs"]
        assert costs["queue_seconds"] >= 0 and costs["wall_seconds"] > 0
    assert jobcomp(cluster, array_id(out), 2) == {"0": "COMPLETED", "1": "COMPLETED"}


def test_a_refused_job_array_is_one_line_and_keeps_its_script(cluster, tmp_path, capsys):
    out = tmp_path / "out"
    argv = sweep_argv(out, "--executor", "slurm", "--cluster", "slurm", "--slurm-gpus-per-task", "1")
    code = main([*argv, "--slurm-sbatch", "constraint=a100", "--slurm-sbatch=--exclusive"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("replaybench: error: Slurm refused the job array (sbatch: error:")
    (script,) = (out / ".submitit").glob(".submission_file_*.sh")  # sbatch refused it, so submitit kept its name
    text = script.read_text()
    assert "#SBATCH --gpus-per-task=1" in text and "#SBATCH --constraint=a100" in text
    assert "#SBATCH --exclusive" in text


def test_results_equal_inline_and_every_job_completed(cluster, tmp_path):
    two_by_two = {"agents": ("naive", "er"), "seeds": ("0", "1")}
    slurm, inline = tmp_path / "slurm", tmp_path / "inline"
    assert main(sweep_argv(slurm, "--executor", "slurm", "--cluster", "slurm", **two_by_two)) == 0
    assert main(sweep_argv(inline, "--executor", "inline", "--threads", "1", **two_by_two)) == 0
    runs = sorted(p.name for p in inline.glob("split-digits__*.json"))
    assert len(runs) == 4 and runs == sorted(p.name for p in slurm.glob("split-digits__*.json"))
    for name in runs:
        on_slurm, here = json.loads((slurm / name).read_text()), json.loads((inline / name).read_text())
        assert on_slurm["R"] == here["R"] and on_slurm["metrics"] == here["metrics"]
        assert "queue_seconds" in on_slurm["costs"] and "queue_seconds" not in here["costs"]
    assert jobcomp(cluster, array_id(slurm), 4) == {str(k): "COMPLETED" for k in range(4)}


@pytest.mark.parametrize(("signum", "exit_code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupting_the_driver_cancels_its_jobs(cluster, tmp_path, signum, exit_code):
    out, comment = tmp_path / "out", f"rb-{uuid.uuid4().hex[:8]}"
    # Runs of thousands of epochs: minutes each, far longer than the test waits.
    slurm = ("--executor", "slurm", "--cluster", "slurm", "--slurm-sbatch", f"comment={comment}")
    driver = start_driver(sweep_argv(out, *slurm, seeds=("0", "1", "2"), epochs=5000))
    try:
        wait_for(lambda: "R" in our_jobs(comment).values(), "a job of the sweep to run")
        driver.send_signal(signum)
        _, err = driver.communicate(timeout=WAIT_S)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == exit_code, err
    wait_for(lambda: not our_jobs(comment), "the sweep's jobs to leave the queue", timeout_s=30)
    states = jobcomp(cluster, array_id(out), 3)
    assert set(states.values()) == {"CANCELLED"}, states
    assert not list(out.glob("split-digits__*.json"))


def test_resume_after_scancel_of_half_the_array_reruns_only_those(cluster, tmp_path):
    out, comment = tmp_path / "out", f"rb-{uuid.uuid4().hex[:8]}"
    # Two at a time (--workers 2): tasks 2 and 3 wait while 0 and 1 run, and are cancelled there.
    argv = sweep_argv(
        out,
        *("--executor", "slurm", "--cluster", "slurm", "--workers", "2", "--slurm-sbatch", f"comment={comment}"),
        seeds=("0", "1", "2", "3"),
        epochs=30,
    )
    driver = start_driver(argv)
    try:
        jobs = wait_for(lambda: our_jobs(comment) if len(our_jobs(comment)) == 4 else None, "the job array")
        half = sorted(jobs, key=lambda i: int(i.rpartition("_")[2]))[2:]
        assert _run("scancel", *half).returncode == 0
        _, err = driver.communicate(timeout=3 * WAIT_S)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 1, err  # two runs failed: their jobs left the queue without a result
    first = array_id(out)
    states = jobcomp(cluster, first, 2)
    # Slurm records a cancelled array task that never left the pending array only when it was split off.
    assert states["0"] == states["1"] == "COMPLETED" and states.get("2", "CANCELLED") == "CANCELLED", states
    assert states.get("3", "CANCELLED") == "CANCELLED", states
    failed = sorted(p.name.removesuffix(".failed.json") for p in out.glob("*.failed.json"))
    assert len(failed) == 2 and all(
        json.loads((out / f"{i}.failed.json").read_text())["kind"] == "crashed" for i in failed
    )
    kept = {p.name: p.stat().st_mtime_ns for p in out.glob("split-digits__*.json") if "failed" not in p.name}
    assert len(kept) == 2

    resumed = subprocess.run(
        [sys.executable, "-m", "replaybench", *argv, "--resume"], capture_output=True, text=True, timeout=3 * WAIT_S
    )
    assert resumed.returncode == 0, resumed.stderr
    second = array_id(out)
    assert second != first and jobcomp(cluster, second, 2) == {"0": "COMPLETED", "1": "COMPLETED"}
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("split-digits__*.json") if p.name in kept} == kept
    assert (
        sorted(p.name.removesuffix(".json") for p in out.glob("split-digits__*.json") if p.name not in kept) == failed
    )
    assert not list(out.glob("*.failed.json"))


def test_up_is_idempotent_and_refuses_a_cluster_it_did_not_start(cluster, tmp_path):
    pids = (cluster / "pids").read_text()
    again = _run(str(LOCAL_SLURM), "up")
    assert again.returncode == 0 and again.stdout.strip() == f"export SLURM_CONF={os.environ['SLURM_CONF']}"
    assert (cluster / "pids").read_text() == pids  # the same daemons, none restarted
    other = _run(str(LOCAL_SLURM), "up", env={**os.environ, "LOCAL_SLURM_DIR": str(tmp_path / "other")})
    assert other.returncode == 1 and other.stderr.strip().splitlines() == [
        "local-slurm: a slurmctld that this script did not start is running; refusing to touch it."
    ]
    assert (
        _run(str(LOCAL_SLURM), "down", env={**os.environ, "LOCAL_SLURM_DIR": str(tmp_path / "other")}).returncode == 0
    )
    assert (cluster / "pids").read_text() == pids and "slurmd: running" in _run(str(LOCAL_SLURM), "status").stdout


def test_down_leaves_no_daemon_behind(cluster):
    """Last in the module: the fixture's ``down`` at the end is then a no-op."""
    pids = dict(line.split() for line in (cluster / "pids").read_text().splitlines())
    assert set(pids) == set(DAEMONS)
    down = _run(str(LOCAL_SLURM), "down")
    assert down.returncode == 0, down.stderr
    for name in ("slurmctld", "slurmd", "slurmstepd"):
        assert _run("pgrep", "-r", "D,R,S,T", "-x", name).stdout == "", f"a {name} is still running"
    for name, pid in pids.items():
        alive = Path(f"/proc/{pid}").exists() and Path(f"/proc/{pid}/comm").read_text().strip() == name
        assert not alive, f"{name} (pid {pid}) is still running"
    assert not (cluster / "pids").exists()
    assert "not running" in _run(str(LOCAL_SLURM), "status").stdout
