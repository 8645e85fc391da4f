"""The command line: the real entry point on tiny budgets, and every bad-input case."""

from __future__ import annotations

import json
import subprocess
import sys

from replaybench.cli import main
from replaybench.results import options_hash
from replaybench.streams import datasets


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "replaybench", *args], capture_output=True, text=True, timeout=300)


def test_run_writes_results_and_prints_tables(tmp_path):
    proc = run_cli(
        "run",
        "--no-preset",  # one options hash for both agents: their defaults, not their presets
        "--stream",
        "split-digits",
        "--agent",
        "naive",
        "er",
        "--seeds",
        "0",
        "1",
        "-o",
        "epochs=1",
        "-o",
        "hidden=[16]",
        "--out",
        str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    files = sorted(p.name for p in tmp_path.glob("*.json"))
    assert [f.rpartition("__")[0] for f in files] == [
        f"split-digits__{a}__seed{s}" for a in ("er", "naive") for s in (0, 1)
    ]
    assert len({f.rpartition("__")[2] for f in files}) == 1  # one options hash: the same -o for both agents
    assert len(list(tmp_path.glob("*.png"))) == 4
    assert "Mean ± 90% t-interval over seeds" in proc.stdout and "forgetting_max" in proc.stdout
    (er1,) = tmp_path.glob("split-digits__er__seed1__*.json")
    data = json.loads(er1.read_text())
    assert data["spec"]["seed"] == 1 and data["provenance"]["config"]["epochs"] == 1


def test_list_shows_one_line_per_name():
    proc = run_cli("list", "agents")
    assert proc.returncode == 0
    names = [line.split()[0] for line in proc.stdout.splitlines()]
    assert {"naive", "joint", "er", "ewc", "lwf", "avalanche:*"} <= set(names)
    streams = run_cli("list", "streams").stdout
    assert "split-fmnist" in streams and "permuted-digits" in streams


def _one_line_error(capsys, *args: str) -> str:
    """Run the CLI in this process (the entry point itself is run above); expect exit 2 and one line."""
    assert main(list(args)) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_unknown_stream_lists_known_names(capsys):
    line = _one_line_error(capsys, "run", "--stream", "split-fminst", "--agent", "naive")
    assert "Unknown stream 'split-fminst'" in line and "Did you mean 'split-fmnist'" in line and "split-digits" in line


def test_unknown_agent_lists_known_names(capsys):
    line = _one_line_error(capsys, "run", "--stream", "split-digits", "--agent", "nieve")
    assert "Unknown agent 'nieve'" in line and "naive" in line and "ewc" in line


def test_unknown_avalanche_strategy_lists_strategies(capsys):
    line = _one_line_error(capsys, "run", "--stream", "split-digits", "--agent", "avalanche:Replai")
    assert "Did you mean 'Replay'" in line


def test_malformed_config_names_the_key(tmp_path, capsys):
    bad_key = tmp_path / "bad.toml"
    bad_key.write_text("[agent]\nlearning_rate = 0.1\n")
    line = _one_line_error(capsys, "run", "--stream", "split-digits", "--agent", "naive", "--config", str(bad_key))
    assert "Unknown option 'learning_rate'" in line and "Known options:" in line and "lr" in line

    bad_value = tmp_path / "value.toml"
    bad_value.write_text("[agent]\nepochs = 0\n")
    line = _one_line_error(capsys, "run", "--stream", "split-digits", "--agent", "naive", "--config", str(bad_value))
    assert "'epochs'" in line and "Got 0" in line

    broken = tmp_path / "broken.toml"
    broken.write_text("[agent\nlr = \n")
    line = _one_line_error(capsys, "run", "--stream", "split-digits", "--agent", "naive", "--config", str(broken))
    assert "Malformed config" in line

    top = tmp_path / "top.toml"
    top.write_text("[agents_options]\n")
    assert "'agents_options'" in _one_line_error(
        capsys, "run", "--stream", "split-digits", "--agent", "naive", "--config", str(top)
    )


def test_bad_cli_option_is_one_line(capsys):
    line = _one_line_error(capsys, "run", "--stream", "split-digits", "--agent", "er", "-o", "memory_size=-3")
    assert "The 'memory_size' parameter of agent 'er' must be an int in the range [1, inf). Got -3 instead." in line


def test_missing_dataset_says_how_to_get_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(datasets, "DEBIAN_FASHION_MNIST", tmp_path / "absent")
    code = main(
        [
            "run",
            "--stream",
            "split-fmnist",
            "--agent",
            "naive",
            "--data-dir",
            str(tmp_path / "empty"),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "apt-get install dataset-fashion-mnist" in err[0] and "--data-dir" in err[0] and "--download" in err[0]


def test_corrupt_idx_file_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(datasets, "DEBIAN_FASHION_MNIST", tmp_path / "absent")
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for stem in ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte"):
        (raw / stem).write_bytes((0x0803).to_bytes(4, "big") + (10).to_bytes(4, "big") + b"\x00" * 20)
    for stem in ("train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / stem).write_bytes(b"\x00\x00\x09\x99" + b"\x00" * 8)
    code = main(["run", "--stream", "split-fmnist", "--agent", "naive", "--data-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and ("truncated" in err or "magic" in err)


def test_a_failing_run_keeps_results_already_written(tmp_path, capsys):
    assert (
        main(
            [
                "run",
                "--no-preset",
                "--stream",
                "split-digits",
                "--agent",
                "naive",
                "-o",
                "epochs=1",
                "-o",
                "hidden=[8]",
                "--out",
                str(tmp_path),
                "--no-plots",
            ]
        )
        == 0
    )
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    capsys.readouterr()
    code = main(
        [
            "run",
            "--no-preset",
            "--stream",
            "split-digits",
            "--agent",
            "naive",
            "--seeds",
            "0",
            "1",
            "-o",
            "lr=1e30",
            "--out",
            str(tmp_path),
            "--no-plots",
        ]
    )
    assert code == 1 and "lower the learning rate" in capsys.readouterr().err  # runs failed: exit 1, each recorded
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert {k: v for k, v in after.items() if k in before} == before
    digest = options_hash({"agent_options": {"lr": 1e30}, "stream_options": {}, "device": "cpu"})
    assert sorted(set(after) - set(before)) == [f"split-digits__naive__seed{s}__{digest}.failed.json" for s in (0, 1)]


def test_streams_show_prints_fingerprint_and_sizes():
    proc = run_cli("streams", "show", "split-digits")
    info = json.loads(proc.stdout)
    assert info["scenario"] == "class-il" and len(info["fingerprint"]) == 64
    assert info["classes"] == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    assert sum(info["train_sizes"]) + sum(info["test_sizes"]) == 1797


def test_intransigence_is_measured_against_a_joint_reference(tmp_path):
    code = main(
        [
            "run",
            "--stream",
            "split-digits",
            "--agent",
            "naive",
            "-o",
            "epochs=2",
            "-o",
            "hidden=[16]",
            "--intransigence",
            "--out",
            str(tmp_path),
            "--no-plots",
        ]
    )
    assert code == 0
    (path,) = tmp_path.glob("split-digits__naive__seed0__*.json")
    data = json.loads(path.read_text())
    assert data["spec"]["intransigence_reference"] and "intransigence" in data["metrics"]
    assert -1.0 <= data["metrics"]["intransigence"] <= 1.0


def test_run_logs_each_run_to_wandb_offline(tmp_path, monkeypatch):
    for var in ("WANDB_DIR", "WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wb"))
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    code = main(
        [
            "run",
            "--stream",
            "split-digits",
            "--agent",
            "naive",
            "-o",
            "epochs=1",
            "-o",
            "hidden=[8]",
            "--wandb",
            "--out",
            str(tmp_path / "out"),
            "--no-plots",
        ]
    )
    import wandb

    wandb.teardown()  # wandb keeps its settings (and so WANDB_DIR) per process until torn down
    assert code == 0
    runs = list((tmp_path / "wb").rglob("offline-run-*"))
    assert len(runs) == 1 and any(p.stat().st_size > 0 for p in runs[0].glob("run-*.wandb"))
    assert list(runs[0].rglob("*.table.json"))


def test_undefined_metrics_show_as_na_and_stay_out_of_intervals():
    from replaybench.cli import _cell, interval_text

    assert _cell(None) == "n/a" and _cell(float("nan")) == "n/a" and _cell(0.25) == "0.250"
    assert interval_text([None, None, None]) == "n/a"
    assert interval_text([0.70, None, 0.74]) == interval_text([0.70, 0.74]) == "0.720 ± 0.126"
    assert interval_text([0.70, None]) == "0.700"  # one defined seed: no interval


def test_results_table_prints_na_for_undefined_metrics(capsys):
    from replaybench.cli import print_results
    from replaybench.results import RunResult

    def result(seed: int, bwt: float | None) -> RunResult:
        return RunResult(
            spec={"stream": "split-digits", "agent": "naive", "seed": seed},
            R=[[0.9, 0.1], [0.5, 0.8]],
            baseline=[0.1, 0.1],
            metrics={
                "acc": 0.65,
                "forgetting_max": 0.4,
                "forgetting_first_last": 0.4,
                "bwt": bwt,
                "fwt": None,
                "plasticity": 0.85,
            },
            costs={"wall_seconds": 1.0, "peak_rss_mb": 100.0},
            provenance={},
        )

    print_results([result(0, -0.4), result(1, None)])
    out = capsys.readouterr().out
    per_seed, summary = out.split("Mean ± 90% t-interval over seeds")
    assert per_seed.count("n/a") == 3  # fwt on both seeds, bwt on seed 1
    summary_row = next(line for line in summary.splitlines() if "naive" in line)
    cells = [c.strip() for c in summary_row.split("│")]
    assert "n/a" in cells  # fwt: undefined on every seed
    assert "-0.400" in cells  # bwt: the one defined seed, not averaged with a 0
