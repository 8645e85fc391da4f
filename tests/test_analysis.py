"""Analysis: load_results over folders, files and stores, and the four figures of `replaybench plot`."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from scipy.stats import t as student_t

import replaybench
from replaybench.analysis import COLUMNS, load_results, runs_frame
from replaybench.cli import main
from replaybench.errors import ConfigError
from replaybench.leaderboards.boards import load_board
from replaybench.leaderboards.store import Store
from replaybench.plots import (
    FIGURES,
    plot_agent_comparison,
    plot_average_accuracy,
    plot_forgetting,
    plot_heatmaps,
    write_figures,
)
from replaybench.results import read_result, write_failure, write_result

SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A real sweep (naive and er on split-digits, 3 seeds, one epoch): its folder and its store."""
    root = tmp_path_factory.mktemp("analysis")
    folder, store = root / "sweep", root / "store.sqlite"
    code = main(
        ["sweep", "--streams", "split-digits", "--agents", "naive", "er", "--seeds", *map(str, SEEDS)]
        + ["-o", "epochs=1", "-o", "hidden=[16]", "--executor", "inline", "--no-plots"]
        + ["--out", str(folder), "--store", str(store)]
    )
    assert code == 0
    return folder, store


def result_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.json") if p.name != "sweep.json")


def scalar_metrics(data: dict) -> dict:
    return {k: v for k, v in data["metrics"].items() if not isinstance(v, list)}


def mean_R(folder: Path, agent: str) -> np.ndarray:
    return np.mean([json.loads(p.read_text())["R"] for p in result_files(folder) if f"__{agent}__" in p.name], axis=0)


# --- load_results ---------------------------------------------------------------------------------
def test_one_row_per_run_and_metric_with_the_files_values_and_R(sweep):
    folder, _ = sweep
    df = load_results(folder)
    files = result_files(folder)
    assert len(files) == 6 and list(df.columns) == list(COLUMNS)
    expected_rows = sum(len(scalar_metrics(json.loads(p.read_text()))) for p in files)
    assert len(df) == expected_rows == 6 * 6  # acc, both forgettings, bwt, fwt, plasticity
    for path in files:
        data = json.loads(path.read_text())
        rows = df[df.run_id == path.stem]
        assert set(rows.agent) == {data["spec"]["agent"]} and set(rows.seed) == {data["spec"]["seed"]}
        assert rows.board.isna().all() and set(rows.source) == {str(path)}
        for metric, value in scalar_metrics(data).items():
            got = rows[rows.metric == metric].value.item()
            assert math.isnan(got) if value is None else got == value  # fwt: undefined in class-IL
        np.testing.assert_array_equal(rows.R.iloc[0], np.array(data["R"]))
    runs = runs_frame(df)
    assert len(runs) == 6 and "metric" not in runs.columns
    assert sorted(runs.run_id) == sorted(p.stem for p in files)


def test_nested_folders_are_read_and_failures_manifests_and_hidden_folders_skipped(sweep, tmp_path):
    folder, _ = sweep
    outer = tmp_path / "outer"
    shutil.copytree(folder, outer / "sweep")
    # another run in a nested folder, written as the suite writes results
    other = read_result(result_files(folder)[0])
    other.spec = {**other.spec, "agent": "er-copy"}
    write_result(other, outer / "more" / "deeper", heatmap=False)
    write_failure(outer / "sweep", "split-digits__broken__seed0__00000000", {**other.spec, "agent": "broken"},
                  {"kind": "raised", "error": "boom"}, seconds=1.0, host="here")  # fmt: skip
    hidden = outer / "sweep" / ".submitit"
    hidden.mkdir()
    shutil.copy(result_files(folder)[0], hidden / "stray.json")
    (outer / "notes.json").write_text('{"what": "not a result"}')
    df = load_results(outer)
    assert sorted(df.agent.unique()) == ["er", "er-copy", "naive"]
    assert df.run_id.nunique() == 7 and "broken" not in set(df.agent)
    assert not df.source.str.contains(".submitit").any()


def test_files_lists_and_duplicates(sweep):
    folder, _ = sweep
    files = result_files(folder)
    one = load_results(files[0])
    assert one.run_id.unique().tolist() == [files[0].stem]
    two = load_results([str(files[0]), files[1]])
    assert sorted(two.run_id.unique()) == sorted(p.stem for p in files[:2])
    # a run read twice is kept once
    assert load_results([folder, files[0]]).run_id.nunique() == 6


def test_store_rows_carry_their_board_and_recomputed_metrics(sweep, tmp_path):
    folder, store_path = sweep
    store_copy = tmp_path / "store.sqlite"
    shutil.copy(store_path, store_copy)
    board = load_board("quick")
    with Store(store_copy) as store:
        sub = store.add_submission(
            board=board, display_name="er", agent="er", config={}, config_hash="c", source_hash="s", source_files={}
        )
        for path in result_files(folder):
            if "__er__" in path.name:
                store.add_run(sub, board, read_result(path))
        df = load_results(store)
    files = {p.stem: json.loads(p.read_text()) for p in result_files(folder)}
    assert sorted(df.run_id.unique()) == sorted(files)  # er from its board rows, not again from the sweep's
    assert set(df[df.agent == "er"].board) == {"quick"} and df[df.agent == "naive"].board.isna().all()
    assert df[df.agent == "er"].source.str.contains("submission").all()
    for run_id, data in files.items():
        rows = df[df.run_id == run_id]
        assert rows[rows.metric == "acc"].value.item() == pytest.approx(data["metrics"]["acc"], abs=1e-9)
        np.testing.assert_array_equal(rows.R.iloc[0], np.array(data["R"]))


def empty_store(path: Path) -> Path:
    with Store(path):
        return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "absent", "No such results folder or file"),
        (lambda d: d, "No finished runs found"),
        (lambda d: (d / "broken.json").write_text('{"spec": ') and d, "is not valid JSON"),
        (lambda d: (d / "x.json").write_text('{"a": 1}') and d / "x.json", "is not a replaybench result"),
        (lambda d: (d / "r.json").write_text('{"spec": {}, "R": [[1, 2]], "metrics": {}}') and d, "malformed result"),
        (lambda d: empty_store(d / "s.sqlite"), "is a leaderboard store: pass replaybench.leaderboards.store.Store"),
        (lambda d: 42, "got an object of type int"),
    ],
)
def test_bad_sources_are_one_line_config_errors(tmp_path, make, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_results(make(tmp_path))
    assert "\n" not in str(info.value)


def test_import_replaybench_does_not_import_pandas_until_load_results_is_asked_for():
    code = "import sys, replaybench; assert 'pandas' not in sys.modules; print(replaybench.load_results.__module__)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "replaybench.analysis"
    assert replaybench.load_results is load_results
    with pytest.raises(AttributeError):
        replaybench.no_such_name  # noqa: B018


# --- the figures ----------------------------------------------------------------------------------
def test_plot_writes_four_figures_in_both_formats(sweep, tmp_path):
    folder, _ = sweep
    out = tmp_path / "figures"
    assert main(["plot", str(folder), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}.{f}" for n in FIGURES for f in ("png", "svg"))
    for path in out.iterdir():
        assert path.stat().st_size > 5_000, path
        if path.suffix == ".svg":
            assert ET.parse(path).getroot().tag.endswith("svg")
        else:
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_reads_a_store_file_and_refuses_bad_input(sweep, tmp_path, capsys):
    _, store = sweep
    assert main(["plot", str(store), "--out", str(tmp_path / "f"), "--format", "png"]) == 0
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == sorted(f"{n}.png" for n in FIGURES)
    capsys.readouterr()
    assert main(["plot", str(tmp_path / "absent")]) == 2
    err = capsys.readouterr().err
    assert "No such results folder" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(ConfigError, match="formats"):
        write_figures(tmp_path / "f", tmp_path / "g", formats=["jpg"])


def test_average_accuracy_lines_are_the_mean_A_k_with_a_t_interval_band(sweep):
    folder, _ = sweep
    fig = plot_average_accuracy(load_results(folder))
    (ax,) = fig.axes
    lines = {line.get_label().split(" ")[0]: line for line in ax.get_lines()}
    assert sorted(lines) == ["er", "naive"]
    for agent, line in lines.items():
        curves = np.array(
            [
                [np.mean(np.array(json.loads(p.read_text())["R"])[k - 1, :k]) for k in range(1, 6)]
                for p in result_files(folder)
                if f"__{agent}__" in p.name
            ]
        )
        np.testing.assert_allclose(line.get_xdata(), [1, 2, 3, 4, 5])
        np.testing.assert_allclose(line.get_ydata(), curves.mean(axis=0))
        half = student_t.ppf(0.95, 2) * curves.std(axis=0, ddof=1) / np.sqrt(3)
        band = next(c for c in ax.collections if tuple(c.get_facecolor()[0][:3]) == to_rgb(line.get_color()))
        upper = band.get_paths()[0].vertices[:, 1].max()
        assert upper == pytest.approx((curves.mean(axis=0) + half).max())


def test_forgetting_bars_comparison_bars_and_mean_heatmaps_hold_the_data(sweep):
    folder, _ = sweep
    df = load_results(folder)
    by_agent = {
        a: [np.array(json.loads(p.read_text())["R"]) for p in result_files(folder) if f"__{a}__" in p.name]
        for a in ("er", "naive")
    }

    (ax,) = plot_forgetting(df).axes
    bars = {c.get_label(): c for c in ax.containers if hasattr(c, "patches")}
    assert sorted(bars) == ["er", "naive"]
    for agent, container in bars.items():
        forgetting = [[R[j:4, j].max() - R[4, j] for j in range(4)] for R in by_agent[agent]]
        heights = [bar.get_height() for bar in container.patches]
        np.testing.assert_allclose(heights, np.mean(forgetting, axis=0))

    (ax,) = plot_agent_comparison(df).axes
    bars = {c.get_label(): c for c in ax.containers if hasattr(c, "patches")}
    assert sorted(bars) == ["er", "naive"]
    for agent, container in bars.items():
        acc = [R[4].mean() for R in by_agent[agent]]
        assert container.patches[0].get_height() == pytest.approx(np.mean(acc))

    fig = plot_heatmaps(df)
    titles = {ax.get_title().split(" ")[0]: ax for ax in fig.axes if ax.images}
    assert sorted(titles) == ["er", "naive"]
    for agent, ax in titles.items():
        np.testing.assert_allclose(ax.images[0].get_array(), mean_R(folder, agent))
        assert "mean of 3 seeds" in ax.get_title()


def test_option_sets_of_one_agent_are_told_apart_in_the_legend(sweep, tmp_path):
    folder, _ = sweep
    for path in result_files(folder):
        result = read_result(path)
        if result.spec["agent"] == "er":
            result.spec = {**result.spec, "agent_options": {**result.spec["agent_options"], "lr": 0.5}}
            write_result(result, tmp_path, heatmap=False)
    df = load_results([folder, tmp_path])
    (ax,) = plot_average_accuracy(df).axes
    labels = sorted(line.get_label() for line in ax.get_lines())
    assert labels == ["er (lr=0.5) (n=3)", "er (lr=default) (n=3)", "naive (n=3)"]


def test_an_agent_with_other_options_on_another_stream_is_one_bar_group(sweep, tmp_path):
    folder, _ = sweep
    for path in result_files(folder):
        result = read_result(path)
        # as a preset per board does: other options on another stream
        result.spec = {**result.spec, "stream": "other-stream", "agent_options": {"lr": 0.5}}
        write_result(result, tmp_path, heatmap=False)
    (ax,) = plot_agent_comparison(load_results([folder, tmp_path])).axes
    bars = {c.get_label(): c for c in ax.containers if hasattr(c, "patches")}
    assert sorted(bars) == ["er", "naive"] and all(len(c.patches) == 2 for c in bars.values())
    assert [tick.get_text() for tick in ax.get_xticklabels()] == ["other-stream", "split-digits"]
