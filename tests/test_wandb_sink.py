"""The W&B sink in offline mode: what lands on disk, where runs are filed, history and summary.

W&B (0.31) writes an offline run as a transaction log (``run-*.wandb``: the
LevelDB log format holding ``wandb_internal_pb2.Record`` protobufs) plus
media files; ``config.yaml`` and the summary file appear only after
``wandb sync``. :func:`records` reads the log, so the tests see exactly what
a sync would upload. The summary is W&B's own (``run.summary`` just before
``finish``), which includes what history keys leave behind.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from replaybench import metrics
from replaybench.cli import main
from replaybench.errors import ConfigError
from replaybench.leaderboards import wandb_sink
from replaybench.results import RunResult

R = [[0.9, 0.1, 0.0], [0.5, 0.8, 0.1], [0.4, 0.6, 0.7]]
WANDB_VARS = ("WANDB_API_KEY", "WANDB_MODE", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_RUN_ID", "WANDB_RUN_GROUP")
WANDB_VARS += ("WANDB_TAGS", "WANDB_JOB_TYPE", "WANDB_BASE_URL", "WANDB_IDENTITY_TOKEN_FILE")


@pytest.fixture
def wandb_dir(tmp_path, monkeypatch):
    """Every W&B file under tmp_path; no key, no mode, no netrc."""
    for var in WANDB_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NETRC", str(tmp_path / "home" / ".netrc"))
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    for var, sub in (("WANDB_DATA_DIR", "data"), ("WANDB_CACHE_DIR", "cache"), ("WANDB_CONFIG_DIR", "config")):
        monkeypatch.setenv(var, str(tmp_path / sub))
    yield tmp_path
    import wandb

    wandb.teardown()  # the W&B singleton keeps the first WANDB_DIR it saw


@pytest.fixture
def summaries(monkeypatch) -> list[dict[str, Any]]:
    """W&B's summary of each run, read just before it finishes."""
    from wandb.sdk.wandb_run import Run

    seen: list[dict[str, Any]] = []
    real_finish = Run.finish

    def finish(self, *args, **kwargs):
        seen.append(dict(self.summary))
        return real_finish(self, *args, **kwargs)

    monkeypatch.setattr(Run, "finish", finish)
    return seen


def result(**spec: Any) -> RunResult:
    return RunResult(
        spec={"stream": "split-digits", "agent": "er", "seed": 3, **spec},
        R=R,
        baseline=[0.1, 0.1, 0.1],
        metrics={**metrics.summarize(R, [0.1, 0.1, 0.1]), "fwt": None},
        costs={
            "wall_seconds": 2.0,
            "learn_seconds": 1.5,
            "peak_rss_mb": 100.0,
            "replay_samples": 30.0,
            "per_experience": [
                {"learn_seconds": 0.5, "eval_seconds": 0.1, "replay_samples": 10.0, "epoch_losses": [2.0, 1.5]},
                {"learn_seconds": 0.5, "eval_seconds": 0.1, "replay_samples": 10.0, "epoch_losses": [1.2, 1.0]},
                {"learn_seconds": 0.5, "eval_seconds": 0.1, "replay_samples": 10.0, "epoch_losses": [0.9, 0.8]},
            ],
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
    """The offline runs under ``root``, complete: W&B's service may write a run's log after ``finish``
    returns, and ``teardown`` waits for the service to stop."""
    import wandb

    wandb.teardown()
    return sorted((root / "wandb").glob("offline-run-*"))


def records(run_dir: Path) -> list[Any]:
    """The records of an offline run's ``run-*.wandb`` (LevelDB log: 32 KiB blocks of CRC, length, type, data)."""
    from wandb.proto import wandb_internal_pb2 as pb

    (path,) = run_dir.glob("run-*.wandb")
    data, block, pos = path.read_bytes(), 32768, 7  # a 7-byte header: ':W&B', magic, version
    assert data[:4] == b":W&B"
    chunks, partial = [], b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        body, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind in (1, 4):  # full, last
            chunks.append(partial + body)
            partial = b""
        elif kind in (2, 3):  # first, middle
            partial += body
    out = []
    for chunk in chunks:
        record = pb.Record()
        record.ParseFromString(chunk)
        out.append(record)
    return out


def _key(item: Any) -> str:
    return item.key or "/".join(item.nested_key)


def run_record(run_dir: Path) -> Any:
    (run,) = [r.run for r in records(run_dir) if r.WhichOneof("record_type") == "run"]
    return run


def run_config(run_dir: Path) -> dict[str, Any]:
    return {i.key: json.loads(i.value_json) for i in run_record(run_dir).config.update}


def history(run_dir: Path) -> list[dict[str, Any]]:
    rows = [r.history for r in records(run_dir) if r.WhichOneof("record_type") == "history"]
    return [{_key(i): json.loads(i.value_json) for i in row.item if not _key(i).startswith("_")} for row in rows]


def metric_defs(run_dir: Path) -> dict[str, Any]:
    return {
        r.metric.name or r.metric.glob_name: r.metric
        for r in records(run_dir)
        if r.WhichOneof("record_type") == "metric"
    }


def test_mode_precedence(wandb_dir, monkeypatch):
    assert wandb_sink.resolve_mode(None) == "offline"
    assert wandb_sink.resolve_mode("") == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    assert wandb_sink.resolve_mode(None) == "online"  # logged in: online by default
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_sink.resolve_mode(None) == "disabled"
    assert wandb_sink.resolve_mode("offline") == "offline"
    monkeypatch.setenv("WANDB_MODE", "dryrun")
    assert wandb_sink.resolve_mode(None) == "offline"
    with pytest.raises(ConfigError, match="--wandb.*Got 'onlin'"):
        wandb_sink.resolve_mode("onlin")
    monkeypatch.setenv("WANDB_MODE", "bogus")
    with pytest.raises(ConfigError, match="WANDB_MODE"):
        wandb_sink.resolve_mode(None)


def test_a_netrc_login_counts_as_a_key(wandb_dir):
    netrc = wandb_dir / "home" / ".netrc"
    netrc.parent.mkdir()
    netrc.write_text("machine example.org\n  login user\n  password " + "k" * 40 + "\n")
    netrc.chmod(0o600)
    assert not wandb_sink.api_key_configured()  # another host's entry
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    assert wandb_sink.api_key_configured() and wandb_sink.resolve_mode(None) == "online"


def test_options_flag_then_variable_then_default(wandb_dir, monkeypatch):
    default = wandb_sink.resolve_options()
    assert (default.project, default.entity, default.group, default.tags) == ("replaybench", None, None, ())
    monkeypatch.setenv("WANDB_PROJECT", "x")
    monkeypatch.setenv("WANDB_ENTITY", "lab")
    monkeypatch.setenv("WANDB_RUN_GROUP", "g")
    monkeypatch.setenv("WANDB_TAGS", "a, b,")
    env = wandb_sink.resolve_options()
    assert (env.project, env.entity, env.group, env.tags) == ("x", "lab", "g", ("a", "b"))
    flags = wandb_sink.resolve_options(project="p", entity="e", group="h", tags=["c"])
    assert (flags.project, flags.entity, flags.group, flags.tags) == ("p", "e", "h", ("c",))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"project": "a/b"}, r"W&B project \(--wandb-project\) must not contain /\. Got 'a/b' instead"),
        ({"entity": "me:you"}, r"W&B entity \(--wandb-entity\) must not contain :"),
        ({"tags": ["t" * 65]}, r"W&B tag \(--wandb-tags\) must be 1 to 64 characters"),
        ({"tags": [""]}, r"W&B tag \(--wandb-tags\) must be 1 to 64"),
        ({"group": " "}, r"W&B group \(--wandb-group\) must be 1 to 128"),
    ],
)
def test_bad_options_are_refused(wandb_dir, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        wandb_sink.resolve_options(**kwargs)


def test_a_bad_variable_is_named(wandb_dir, monkeypatch):
    monkeypatch.setenv("WANDB_PROJECT", "a#b")
    with pytest.raises(ConfigError, match=r"W&B project \(WANDB_PROJECT\) must not contain #"):
        wandb_sink.resolve_options()


def test_offline_run_writes_wandb_file_r_table_and_results_json(wandb_dir):
    where = wandb_sink.log_run(result())
    (run_dir,) = run_dirs(wandb_dir)
    assert where == str(run_dir)
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


def test_a_run_is_filed_by_the_variables_grouped_by_stream_and_agent(wandb_dir, monkeypatch):
    monkeypatch.setenv("WANDB_PROJECT", "x")
    monkeypatch.setenv("WANDB_ENTITY", "lab")
    monkeypatch.setenv("WANDB_TAGS", "nightly")
    r = result()
    wandb_sink.log_run(r)
    (run_dir,) = run_dirs(wandb_dir)
    run = run_record(run_dir)
    assert (run.project, run.entity, run.run_group, run.job_type) == ("x", "lab", "split-digits/er", "run")
    assert list(run.tags) == ["nightly"] and run.display_name == f"{r.run_id}__run"
    config = run_config(run_dir)
    assert config["agent_config"] == {"lr": 0.1, "memory_size": 200} and config["run_id"] == r.run_id


def test_job_type_variable_wins_over_the_kind(wandb_dir, monkeypatch):
    monkeypatch.setenv("WANDB_JOB_TYPE", "eval")
    wandb_sink.log_run(result(), kind="submission")
    (run_dir,) = run_dirs(wandb_dir)
    assert run_record(run_dir).job_type == "eval"


def test_history_steps_by_experience_and_by_epoch(wandb_dir):
    r = result()
    wandb_sink.log_run(r)
    (run_dir,) = run_dirs(wandb_dir)
    rows = history(run_dir)
    by_experience = [row for row in rows if "experience" in row]
    by_epoch = [row for row in rows if "train/epoch" in row]
    assert len(rows) == len(by_experience) + len(by_epoch)  # no row of media alone
    assert [row["experience"] for row in by_experience] == [0, 1, 2]
    assert [row["train/epoch"] for row in by_epoch] == [0, 1, 2, 3, 4, 5]
    assert [row["train/loss"] for row in by_epoch] == [2.0, 1.5, 1.2, 1.0, 0.9, 0.8]
    assert [row["train/experience"] for row in by_epoch] == [0, 0, 1, 1, 2, 2]
    assert [[row[f"R/exp_{j}"] for j in range(3)] for row in by_experience] == R
    assert [row["eval/average_accuracy"] for row in by_experience] == pytest.approx(metrics.average_accuracy_curve(R))
    assert "eval/bwt" not in by_experience[0]  # undefined after one experience
    assert [row["eval/bwt"] for row in by_experience[1:]] == pytest.approx([-0.4, -0.35])
    assert by_experience[2]["eval/forgetting_max"] == pytest.approx(r.metrics["forgetting_max"])
    assert [row["stats/replay_samples"] for row in by_experience] == [10.0, 10.0, 10.0]
    defs = metric_defs(run_dir)
    assert defs["train/loss"].step_metric == "train/epoch"
    assert all(defs[ns].step_metric == "experience" for ns in ("R/*", "eval/*", "stats/*"))


def test_summary_holds_final_metrics_and_cost_totals_only(wandb_dir, summaries):
    r = result()
    wandb_sink.log_run(r)
    (summary,) = summaries
    keys = {k for k in summary if not k.startswith("_")}
    finals = {f"metrics/{k}" for k, v in r.metrics.items() if isinstance(v, float)}
    costs = {"costs/wall_seconds", "costs/learn_seconds", "costs/peak_rss_mb", "costs/replay_samples"}
    assert keys == finals | costs | {"R", "R_heatmap"}
    assert summary["costs/replay_samples"] == 30.0 and summary["metrics/acc"] == r.metrics["acc"]


def test_a_run_and_a_submission_of_one_spec_have_different_names(wandb_dir):
    r = result()
    wandb_sink.log_run(r, kind="run")
    wandb_sink.log_run(r, kind="submission", extra_config={"board": "quick", "submission": 1})
    names = {run_record(d).display_name for d in run_dirs(wandb_dir)}
    assert names == {f"{r.run_id}__run", f"{r.run_id}__submission"}
    assert wandb_sink.results_artifact_name(r, "run") != wandb_sink.results_artifact_name(r, "submission")
    other = result(agent_options={"lr": 0.5})  # same stream, agent and seed; another spec
    assert wandb_sink.results_artifact_name(other, "run") != wandb_sink.results_artifact_name(r, "run")


def test_online_without_a_key_falls_back_to_offline(wandb_dir, capsys):
    where = wandb_sink.log_run(result(), options=wandb_sink.resolve_options("online"))
    assert "no W&B API key" in capsys.readouterr().err
    assert where is not None and Path(where) in run_dirs(wandb_dir)


def test_disabled_writes_nothing(wandb_dir):
    assert wandb_sink.log_run(result(), options=wandb_sink.resolve_options("disabled")) is None
    assert not (wandb_dir / "wandb").exists()


def test_publish_writes_a_board_run(wandb_dir):
    columns = ["rank", "name", "acc_mean", "acc_low", "acc_high"]
    data = [[1, "er", 0.8, 0.7, 0.9], [2, "naive", 0.2, 0.1, 0.3]]
    where = wandb_sink.log_board(columns, data, board={"board": "quick", "version": "1", "rows": []})
    (run_dir,) = run_dirs(wandb_dir)
    assert where == str(run_dir)
    run = run_record(run_dir)
    assert (run.job_type, run.run_group, run.display_name) == ("board", "leaderboards", "leaderboard-quick-v1")
    (table_file,) = (run_dir / "files" / "media" / "table").glob("leaderboard_*.table.json")
    table = json.loads(table_file.read_text())
    assert table["columns"] == columns and table["data"] == data
    assert json.loads((run_dir / "files" / "leaderboard.json").read_text())["board"] == "quick"
    assert history(run_dir) == []  # the table is in the summary


def test_a_published_board_names_the_logged_results_it_ranks(wandb_dir):
    r = result()
    logged = Path(wandb_sink.log_run(r, kind="submission"))
    name = wandb_sink.results_artifact_name(r, "submission")
    wandb_sink.log_board(["rank"], [[1]], board={"board": "quick", "version": "1", "rows": []}, inputs=[(r, name)])
    (board_run,) = [d for d in run_dirs(wandb_dir) if d != logged]
    manifest = json.loads((board_run / "files" / "inputs.json").read_text())
    assert manifest == {"results_artifacts": [wandb_sink.results_artifact_name(r, "submission")]}
    assert manifest["results_artifacts"][0] == f"results-{r.run_id}__submission"
    (input_file,) = (board_run / "files" / "inputs").glob("*.json")
    assert input_file.read_bytes() == (logged / "files" / "results.json").read_bytes()  # same bytes: one version


# --- end to end: the CLI ------------------------------------------------------------------------
def test_cli_run_files_the_run_where_flags_and_variables_say(wandb_dir, monkeypatch, summaries):
    monkeypatch.setenv("WANDB_PROJECT", "x")
    out = wandb_dir / "out"
    argv = ["run", "--stream", "split-digits", "--agent", "naive", "--seeds", "0", "-o", "epochs=2"]
    argv += ["-o", "hidden=[16]", "--no-plots", "--out", str(out), "--wandb", "offline"]
    assert main([*argv, "--wandb-group", "g1", "--wandb-tags", "a,b", "--wandb-tags", "c"]) == 0
    (run_dir,) = run_dirs(wandb_dir)
    run = run_record(run_dir)
    assert (run.project, run.run_group, list(run.tags), run.job_type) == ("x", "g1", ["a", "b", "c"], "run")
    (path,) = out.glob("split-digits__naive__seed0__*.json")
    saved = json.loads(path.read_text())
    losses = [p["epoch_losses"] for p in saved["costs"]["per_experience"]]
    assert all(len(epochs) == 2 for epochs in losses)
    for epochs, p in zip(losses, saved["costs"]["per_experience"]):
        assert sum(epochs) / 2 == pytest.approx(p["train_loss"])  # equal epochs: the mean of the means
    by_epoch = [row["train/loss"] for row in history(run_dir) if "train/epoch" in row]
    assert by_epoch == [v for epochs in losses for v in epochs]
    (summary,) = summaries
    assert not [k for k in summary if k.startswith(("stats/", "eval/", "R/", "train/"))]  # no last-step leftovers
    assert summary["metrics/acc"] == pytest.approx(saved["metrics"]["acc"])


def test_cli_sweep_logs_each_run_with_job_type_sweep(wandb_dir):
    out = wandb_dir / "my-sweep"
    argv = ["sweep", "--streams", "split-digits", "--agents", "naive", "--seeds", "0", "1", "--out", str(out)]
    argv += ["--store", str(wandb_dir / "store.sqlite"), "-o", "epochs=1", "-o", "hidden=[8]", "--no-plots"]
    assert main([*argv, "--wandb", "offline"]) == 0
    runs = [run_record(d) for d in run_dirs(wandb_dir)]
    assert sorted(r.display_name.split("__")[2] for r in runs) == ["seed0", "seed1"]
    for run in runs:
        assert (run.project, run.job_type, run.run_group) == ("replaybench", "sweep", "split-digits/naive")
        assert list(run.tags) == ["sweep-my-sweep"]
    configs = [run_config(d) for d in run_dirs(wandb_dir)]
    assert {c["sweep"] for c in configs} == {str(out.resolve())}


def test_cli_bad_wandb_option_is_one_line_before_any_work(wandb_dir, capsys):
    out = wandb_dir / "out"
    argv = ["run", "--stream", "split-digits", "--agent", "naive", "--out", str(out), "--wandb", "offline"]
    assert main([*argv, "--wandb-project", "a/b"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--wandb-project" in err[0]
    assert not out.exists() and not run_dirs(wandb_dir)


@pytest.mark.parametrize("agent", ["sigprop", "replay"])
def test_the_runner_records_each_epochs_mean_loss(agent):
    from replaybench.runner import RunSpec, run

    res = run(RunSpec(stream="split-digits", agent=agent, agent_options={"epochs": 2, "hidden": [16, 16]}))
    for p in res.costs["per_experience"]:
        assert len(p["epoch_losses"]) == 2  # the waking pass's epochs only
        assert sum(p["epoch_losses"]) / 2 == pytest.approx(p["train_loss"])


def test_an_agent_given_as_a_long_path_still_gets_a_valid_unique_artifact_name_and_group(wandb_dir):
    long_a, long_b = (result(agent=f"/tmp/{'x' * 150}/{name}.py:MyAgent") for name in ("a", "b"))
    names = [wandb_sink.results_artifact_name(r, "submission") for r in (long_a, long_b)]
    assert all(len(n) == 128 for n in names) and names[0] != names[1]
    assert names[0] == wandb_sink.results_artifact_name(long_a, "submission")  # stable: publish finds it again
    wandb_sink.log_run(long_a, kind="submission")  # W&B itself refuses an artifact name past 128
    (run_dir,) = run_dirs(wandb_dir)
    group = run_record(run_dir).run_group
    assert len(group) == 128 and group.startswith("split-digits//tmp/xxx")


def test_cli_a_wandb_target_without_wandb_is_refused(wandb_dir, capsys):
    argv = ["run", "--stream", "split-digits", "--agent", "naive", "--out", str(wandb_dir / "out")]
    assert main([*argv, "--wandb-group", "g"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--wandb-group needs --wandb" in err[0]
