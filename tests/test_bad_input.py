"""Bad input is refused before any work: one line on stderr, exit 2, nothing written.

Failed runs are not bad input: they exit 1 and are recorded, and the runs that
finished are kept. SIGTERM is handled like Ctrl-C.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from replaybench.agents.naive import NaiveAgent
from replaybench.cli import main
from replaybench.results import RunResult, read_result, result_json, write_result

HERE = Path(__file__).resolve()
TINY = ["-o", "epochs=1", "-o", "hidden=[8]"]


class RaisingInInit(NaiveAgent):
    def __init__(self, **kwargs):
        raise ValueError("cannot build on purpose")


class ExitingAgent(NaiveAgent):
    """Calls sys.exit(0) from learn: a run that must not pass for a success."""

    def learn(self, experience):
        raise SystemExit(0)


class SlowAgent(NaiveAgent):
    def learn(self, experience):
        time.sleep(0.5)
        return super().learn(experience)


def agent(cls: type) -> str:
    return f"{HERE}:{cls.__name__}"


def refused(capsys, argv: list[str], *, code: int = 2) -> str:
    """Run the CLI in this process; expect ``code`` and exactly one line on stderr; return it."""
    assert main(argv) == code
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    assert err[0].startswith("replaybench: error: ") and "Traceback" not in err[0]
    return err[0]


def run_args(out: Path, *extra: str, agent_name: str = "naive", plots: bool = False) -> list[str]:
    return [
        "run",
        "--stream",
        "split-digits",
        "--agent",
        agent_name,
        *TINY,
        "--out",
        str(out),
        *([] if plots else ["--no-plots"]),
        *extra,
    ]


# --- the output folder ----------------------------------------------------------------------------
def test_out_pointing_at_a_file_is_refused_and_the_file_kept(tmp_path, capsys):
    target = tmp_path / "results.txt"
    target.write_text("mine")
    assert "is not a folder" in refused(capsys, run_args(target))
    assert target.read_text() == "mine"
    assert "is not a folder" in refused(capsys, run_args(target / "below"))


def test_an_unwritable_out_is_refused_before_any_run(tmp_path, capsys):
    # /proc refuses new files even to root; a read-only folder does so to other users
    assert "cannot be written" in refused(capsys, run_args(Path("/proc/replaybench-results")))
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        assert "cannot be written" in refused(capsys, run_args(ro / "out"))


def test_other_options_in_the_same_out_never_replace_earlier_results(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(run_args(out, "--seeds", "0", plots=True)) == 0
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(run_args(out, "--seeds", "0", "-o", "lr=0.05")) == 0
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert {k: after[k] for k in first} == first and len(after) == len(first) + 1
    # the same spec without heatmaps: its result is rewritten and its PNG removed, not left stale
    assert main(run_args(out, "--seeds", "0")) == 0
    assert not list(out.glob("*.png"))


# --- seeds, threads, devices, configs ------------------------------------------------------------
@pytest.mark.parametrize(
    "seeds, message",
    [
        (["99999999999999999999"], "The seeds (--seeds) must be ints in the range [0, 4294967295]"),
        (["0", "0"], "repeat [0]"),
    ],
)
def test_bad_seeds_on_the_command_line(tmp_path, capsys, seeds, message):
    assert message in refused(capsys, run_args(tmp_path / "out", "--seeds", *seeds))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "text, message",
    [
        ("seeds = 0\n", "must be a list of ints"),
        ("seeds = []\n", "are empty; give at least one seed"),
        ("seeds = [1, 1]\n", "repeat [1]"),
        ("seeds = ['a']\n", "must be ints"),
        ("seeds = [-1]\n", "must be ints in the range [0, 4294967295]"),
        ("out = 3\n", "Key 'out'"),
    ],
)
def test_bad_seeds_in_a_config(tmp_path, capsys, text, message):
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    assert message in refused(capsys, run_args(tmp_path / "out", "--config", str(cfg)))
    assert not (tmp_path / "out").exists()


def test_a_config_that_is_not_utf8_is_one_line(tmp_path, capsys):
    cfg = tmp_path / "latin1.toml"
    cfg.write_bytes("[agent]\n# caf\u00e9\nlr = 0.1\n".encode("latin-1"))
    assert "is not UTF-8 text" in refused(capsys, run_args(tmp_path / "out", "--config", str(cfg)))


def test_zero_threads_and_bad_devices_are_refused(tmp_path, capsys):
    assert "'--threads' option must be an int in the range [1, inf)" in refused(
        capsys, run_args(tmp_path / "out", "--threads", "0")
    )
    assert "Unknown device 'bogus'" in refused(capsys, run_args(tmp_path / "out", "--device", "bogus"))
    if not torch.cuda.is_available():
        assert "CUDA is not available" in refused(capsys, run_args(tmp_path / "out", "--device", "cuda"))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "option, message",
    [
        ("hidden=[1000000000]", "raised RuntimeError"),  # the network cannot be allocated: caught while building
        ("lr=inf", "'lr' parameter of agent 'naive' must be a float in the range (0, inf). Got inf instead."),
        ("lr=nan", "Got nan instead."),
    ],
)
def test_impossible_options_fail_while_the_agent_is_built(tmp_path, capsys, option, message):
    line = refused(capsys, run_args(tmp_path / "out", "-o", option))
    assert message in line and "Agent 'naive'" in line if "RuntimeError" in message else message in line
    assert not (tmp_path / "out").exists()


# --- agents that cannot be loaded or built ----------------------------------------------------
def test_an_agent_file_that_raises_at_import_is_named(tmp_path, capsys):
    broken = tmp_path / "broken_agent.py"
    broken.write_text("raise RuntimeError('no GPU driver here')\n")
    line = refused(capsys, run_args(tmp_path / "out", agent_name=f"{broken}:Agent"))
    assert "broken_agent.py" in line and "RuntimeError: no GPU driver here" in line


def test_a_relative_module_name_is_refused(tmp_path, capsys):
    line = refused(capsys, run_args(tmp_path / "out", agent_name="..agents.x:Cls"))
    assert "absolute module name" in line


def test_an_agent_whose_init_raises_is_named_and_traceback_shows_the_trace(tmp_path, capsys):
    line = refused(capsys, run_args(tmp_path / "out", agent_name=agent(RaisingInInit)))
    assert "RaisingInInit" in line and "ValueError: cannot build on purpose" in line
    assert main(["--traceback", *run_args(tmp_path / "out", agent_name=agent(RaisingInInit))]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "cannot build on purpose" in err
    assert not (tmp_path / "out").exists()


def sweep_args(tmp_path: Path, agent_name: str, *seeds: str) -> list[str]:
    return ["sweep", "--streams", "split-digits", "--agents", agent_name, "--seeds", *seeds, *TINY,
            "--executor", "inline", "--out", str(tmp_path / "sweep"), "--no-plots",
            "--store", str(tmp_path / "s.sqlite")]  # fmt: skip


# --- runs that fail: exit 1, recorded, the rest kept -----------------------------------------------
def test_an_agent_calling_sys_exit_is_a_failed_run_not_a_success(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(run_args(out, agent_name=agent(ExitingAgent))) == 1
    (record,) = out.glob("*.failed.json")
    data = json.loads(record.read_text())
    assert data["kind"] == "raised" and data["error"].startswith("SystemExit")
    assert "1 failed of 1 runs" in capsys.readouterr().out


def test_a_sweep_whose_runs_all_failed_exits_1(tmp_path, capsys):
    assert main(sweep_args(tmp_path, agent(ExitingAgent), "0", "1")) == 1
    assert len(list((tmp_path / "sweep").glob("*.failed.json"))) == 2


def test_another_grid_in_a_sweep_folder_is_refused_and_its_manifest_kept(tmp_path, capsys):
    base = sweep_args(tmp_path, "naive", "0")
    assert main(base) == 0
    manifest = (tmp_path / "sweep" / "sweep.json").read_bytes()
    capsys.readouterr()
    assert "holds another sweep's grid" in refused(capsys, [*base, "-o", "lr=0.2"])
    assert "holds another sweep's grid" in refused(capsys, [*base, "-o", "lr=0.2", "--resume"])
    assert (tmp_path / "sweep" / "sweep.json").read_bytes() == manifest


# --- results files ---------------------------------------------------------------------------
def _strict(text: str) -> dict:
    def refuse(name: str) -> None:
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_statistics_are_written_as_null_and_restored(tmp_path):
    result = RunResult(
        spec={"stream": "s", "agent": "a", "seed": 0, "agent_options": {}, "stream_options": {}, "device": "cpu"},
        R=[[0.5]],
        baseline=[0.1],
        metrics={"acc": 0.5, "bwt": float("nan"), "fwt": float("-inf"), "curve": [0.5, float("inf")]},
        costs={"wall_seconds": 1.0},
        provenance={},
    )
    data = _strict(result_json(result))  # standard JSON: browsers and SQLite's json_extract read it
    assert data["metrics"]["bwt"] is None and data["metrics"]["curve"][1] is None
    assert data["non_finite"] == {"metrics.bwt": "nan", "metrics.fwt": "-inf", "metrics.curve.1": "inf"}
    back = read_result(write_result(result, tmp_path, heatmap=False))
    assert math.isnan(back.metrics["bwt"]) and back.metrics["fwt"] == float("-inf")
    assert back.metrics["curve"] == [0.5, float("inf")] and back.R == [[0.5]]


# --- signals ------------------------------------------------------------------------------------
def test_sigterm_marks_a_submission_failed_like_ctrl_c(tmp_path):
    from replaybench.runner import make_stream

    board = tmp_path / "b.toml"
    board.write_text(
        'name = "slow"\nversion = "1"\nseeds = [0, 1, 2, 3]\nmetrics = ["acc"]\nprimary_metric = "acc"\n'
        f'direction = "higher"\n[streams.split-digits]\nfingerprint = "{make_stream("split-digits").fingerprint}"\n'
        "[budget]\nepochs = 1\n"
    )
    store = tmp_path / "s.sqlite"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "replaybench",
            "submit",
            agent(SlowAgent),
            "--board",
            str(board),
            "--store",
            str(store),
            "--out",
            str(tmp_path / "out"),
            "--no-plots",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120

    def recorded_runs() -> int:  # the store's row comes after the results file: wait for the row
        if not store.exists():
            return 0
        try:
            with sqlite3.connect(store, timeout=5) as db:
                return db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        except sqlite3.OperationalError:  # not created yet
            return 0

    while recorded_runs() < 1:
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 143
    assert "terminated; finished runs are kept" in proc.stderr.read()
    proc.stderr.close()
    from replaybench.leaderboards.store import Store

    with Store(store) as s:
        (sub,) = s.submissions("slow", status=None)
        assert sub.status == "failed" and 1 <= len(s.runs(sub.id)) < 4
