"""The W&B sink in offline mode: what lands on disk, mode precedence, a missing key."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from replaybench.errors import ConfigError
from replaybench.leaderboards import wandb_sink
from replaybench.results import RunResult

R = [[0.9, 0.1, 0.0], [0.5, 0.8, 0.1], [0.4, 0.6, 0.7]]


@pytest.fixture
def wandb_dir(tmp_path, monkeypatch):
    """Every W&B file under tmp_path; no key, no mode, no netrc."""
    for var in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_RUN_ID"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NETRC", str(tmp_path / "home" / ".netrc"))
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    for var, sub in (("WANDB_DATA_DIR", "data"), ("WANDB_CACHE_DIR", "cache"), ("WANDB_CONFIG_DIR", "config")):
        monkeypatch.setenv(var, str(tmp_path / sub))
    yield tmp_path
    import wandb

    wandb.teardown()  # the W&B singleton keeps the first WANDB_DIR it saw


def result() -> RunResult:
    return RunResult(
        spec={"stream": "split-digits", "agent": "er", "seed": 3},
        R=R,
        baseline=[0.1, 0.1, 0.1],
        metrics={"acc": 0.5667, "bwt": -0.25, "average_accuracy_curve": [0.9, 0.65, 0.5667]},
        costs={
            "wall_seconds": 2.0,
            "peak_rss_mb": 100.0,
            "per_experience": [{"learn_seconds": 0.5, "eval_seconds": 0.1}] * 3,
        },
        provenance={
            "stream_fingerprint": "ab" * 32,
            "stream_version": "1",
            "git_commit": "abc",
            "seed": 3,
            "config": {"lr": 0.1, "memory_size": 200},
            "torch_version": "2.x",
        },
    )


def run_dirs(root: Path) -> list[Path]:
    return sorted((root / "wandb").glob("offline-run-*"))


def test_mode_precedence(monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert wandb_sink.resolve_mode(None) == "offline"
    assert wandb_sink.resolve_mode("") == "offline"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_sink.resolve_mode(None) == "disabled"
    assert wandb_sink.resolve_mode("online") == "online"
    monkeypatch.setenv("WANDB_MODE", "dryrun")
    assert wandb_sink.resolve_mode(None) == "offline"
    with pytest.raises(ConfigError, match="--wandb.*Got 'onlin'"):
        wandb_sink.resolve_mode("onlin")
    monkeypatch.setenv("WANDB_MODE", "bogus")
    with pytest.raises(ConfigError, match="WANDB_MODE"):
        wandb_sink.resolve_mode(None)


def test_offline_run_writes_wandb_file_r_table_and_results_json(wandb_dir):
    where = wandb_sink.log_run(result())
    (run_dir,) = run_dirs(wandb_dir)
    assert where == str(run_dir)
    (binary,) = run_dir.glob("run-*.wandb")
    assert binary.stat().st_size > 0
    (table_file,) = (run_dir / "files" / "media" / "table").glob("R_*.table.json")
    table = json.loads(table_file.read_text())
    assert table["columns"] == ["after_experience", "exp_0", "exp_1", "exp_2"]
    assert table["data"] == [[i, *row] for i, row in enumerate(R)]
    assert list((run_dir / "files" / "media" / "images").glob("R_heatmap_*.png"))
    saved = json.loads((run_dir / "files" / "results.json").read_text())
    assert saved["R"] == R and saved["provenance"]["stream_fingerprint"] == "ab" * 32
    # The run is waiting for `wandb sync`, which needs no key to list it.
    listing = subprocess.run(
        [sys.executable, "-m", "wandb", "sync", "--dry-run", str(run_dir)], capture_output=True, text=True, timeout=120
    )
    assert run_dir.name in listing.stdout + listing.stderr


def test_online_without_a_key_falls_back_to_offline(wandb_dir, capsys):
    where = wandb_sink.log_run(result(), mode="online")
    assert "no W&B API key" in capsys.readouterr().err
    assert where is not None and Path(where) in run_dirs(wandb_dir)


def test_disabled_writes_nothing(wandb_dir):
    assert wandb_sink.log_run(result(), mode="disabled") is None
    assert not (wandb_dir / "wandb").exists()


def test_publish_writes_a_leaderboard_run(wandb_dir, monkeypatch):
    import wandb

    calls = []
    real_init = wandb.init
    monkeypatch.setattr(wandb, "init", lambda **kw: calls.append(kw) or real_init(**kw))
    columns = ["rank", "name", "acc_mean", "acc_low", "acc_high"]
    data = [[1, "er", 0.8, 0.7, 0.9], [2, "naive", 0.2, 0.1, 0.3]]
    where = wandb_sink.log_board(columns, data, board={"board": "quick", "version": "1", "rows": []})
    (run_dir,) = run_dirs(wandb_dir)
    assert where == str(run_dir) and calls[0]["job_type"] == "leaderboard"
    (table_file,) = (run_dir / "files" / "media" / "table").glob("leaderboard_*.table.json")
    table = json.loads(table_file.read_text())
    assert table["columns"] == columns and table["data"] == data
    assert json.loads((run_dir / "files" / "leaderboard.json").read_text())["board"] == "quick"


def test_a_published_board_names_the_logged_results_it_ranks(wandb_dir):
    r = result()
    logged = Path(wandb_sink.log_run(r, mode="offline"))
    wandb_sink.log_board(["rank"], [[1]], board={"board": "quick", "version": "1", "rows": []}, inputs=[r])
    (board_run,) = [d for d in run_dirs(wandb_dir) if d != logged]
    manifest = json.loads((board_run / "files" / "inputs.json").read_text())
    assert manifest == {"results_artifacts": [f"results-{r.run_name}"]}
    (input_file,) = (board_run / "files" / "inputs").glob("*.json")
    assert input_file.read_bytes() == (logged / "files" / "results.json").read_bytes()  # same bytes: one version
