"""Board budgets, presets chosen on validation, reference entries, and the board views built on them."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from replaybench.cli import main
from replaybench.errors import ConfigError
from replaybench.executors import InlineExecutor
from replaybench.leaderboards import export, tune
from replaybench.leaderboards.boards import BOARDS_DIR, load_board, parse_board
from replaybench.leaderboards.presets import Preset, board_options, load_presets, preset_for_stream, write_presets
from replaybench.leaderboards.ranking import board_table
from replaybench.leaderboards.references import REFERENCE, ensure_references, failed_references, references_path
from replaybench.leaderboards.store import Store
from replaybench.metrics import summarize
from replaybench.results import RunResult


@pytest.fixture
def board(tmp_path):
    """A copy of the quick board in its own folder, so presets and references are written there."""
    path = tmp_path / "quick.toml"
    shutil.copy(BOARDS_DIR / "quick.toml", path)
    return load_board(str(path))


# --- presets ----------------------------------------------------------------------------------
def test_options_are_preset_then_user_then_budget_and_the_budget_cannot_be_changed(board):
    write_presets(board, {"er": Preset("er", {"lr": 0.07, "class_balanced": True})})
    options, preset = board_options(board, "er", {"class_balanced": False})
    assert options == {"lr": 0.07, "class_balanced": False, "epochs": 10, "batch_size": 32, "memory_bytes": 50_000}
    assert preset is not None and preset.options["lr"] == 0.07
    with pytest.raises(ConfigError, match="fixes epochs=10 for every agent"):
        board_options(board, "er", {"epochs": 3})
    options, preset = board_options(board, "lc-snn")  # no preset; declares epochs and batch_size only
    assert preset is None and options == {"epochs": 10, "batch_size": 32}


def test_presets_of_another_board_version_are_refused(board):
    write_presets(board, {"naive": Preset("naive", {"lr": 0.05})})
    data = json.loads((board.path.parent / "quick.presets.json").read_text())
    data["board_version"] = "0"
    (board.path.parent / "quick.presets.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="rerun 'replaybench leaderboard tune quick'"):
        load_presets(board)


def test_run_uses_the_agents_preset_for_the_stream_and_records_it(tmp_path, capsys):
    found = preset_for_stream("naive", "split-digits", {})
    assert found is not None, "the shipped quick board has a preset for naive"
    options, label = found
    assert label == f"quick v{load_board('quick').version}" and options["epochs"] == 10
    other = preset_for_stream("naive", "split-digits", {"train_per_class": 10})
    assert other is not None and "tuned on split-digits with its defaults" in other[1]
    assert preset_for_stream("naive", "split-digits-task", {}) is None  # on no board
    out = tmp_path / "out"
    assert main(["run", "--agent", "naive", "--stream", "split-digits", "--out", str(out), "--no-plots"]) == 0
    (path,) = out.glob("*.json")
    result = json.loads(path.read_text())
    assert result["provenance"]["preset"] == label and result["spec"]["agent_options"]["lr"] == options["lr"]
    assert "options from its preset for board" in capsys.readouterr().err
    plain = tmp_path / "plain"
    assert main(["run", "--agent", "naive", "--stream", "split-digits", "--out", str(plain), "--no-preset"]) == 0
    (path,) = plain.glob("*.json")
    assert "preset" not in json.loads(path.read_text())["provenance"]


# --- the search -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "table, message",
    [
        ({"epochs": {"int": [1, 3]}}, "which a board's budget fixes"),
        ({"lr": {"log": [0.0, 1.0]}}, "malformed"),
        ({"lr": {"normal": [0, 1]}}, "must be one of"),
        ({"lr": {"uniform": [1.0, 0.5]}}, "malformed"),
        ({"hidden": {"int": [1.5, 3]}}, "malformed"),
    ],
)
def test_bad_search_spaces_are_refused(table, message):
    with pytest.raises(ConfigError, match=message):
        tune.parse_space(table, where="test")


def test_each_agent_searches_the_defaults_it_declares_plus_its_own_space():
    spaces = tune.load_spaces()
    assert [d.name for d in tune.agent_space("naive", spaces)] == ["lr"]
    assert sorted(d.name for d in tune.agent_space("ewc", spaces)) == ["ewc_lambda", "lr"]
    snn = [d.name for d in tune.agent_space("snn", spaces)]
    assert snn == ["n_neurons", "max_rate_hz", "inh_strength", "time_steps"]  # no lr: STDP has none to search
    assert tune.agent_fixed("snn", spaces) == {"assignment": "relabel"}
    avalanche = [d.name for d in tune.agent_space("avalanche:EWC", spaces)]
    assert "strategy_options.ewc_lambda" in avalanche
    assert tune.nest({"strategy_options.a": 1, "lr": 2}) == {"strategy_options": {"a": 1}, "lr": 2}


def test_every_board_agent_has_a_valid_space_and_supervised_boards_list_avalanche():
    spaces = tune.load_spaces()
    board = load_board("quick")
    agents = tune.board_agents(board, {"supervised"})
    assert {"snn", "lc-snn", "sigprop", "efp", "replay-gsemm", "avalanche:GEM", "avalanche:GDumb"} <= set(agents)
    assert "snn-features" not in agents and "ppo" not in agents
    for agent in agents:
        tune.agent_space(agent, spaces)  # raises on a dimension the agent does not declare


def test_the_search_is_seeded_scores_validation_only_and_records_itself(board, monkeypatch):
    built = []
    real = tune.make_stream

    def spy(name, **options):
        built.append(options)
        return real(name, **options)

    monkeypatch.setattr(tune, "make_stream", spy)
    first = tune.tune(board, ["naive"], executor=InlineExecutor(), trials=3, log=lambda line: None)
    again = tune.tune(board, ["naive"], executor=InlineExecutor(), trials=3, log=lambda line: None)
    assert built and all(o.get("validation_fraction") == tune.VALIDATION_FRACTION for o in built)
    preset = first["naive"]
    assert preset.options == again["naive"].options  # seeded sampler, deterministic runs
    record = preset.search
    assert record["space"] == ["lr ~ log-uniform [0.003, 0.3]"] and len(record["trials"]) == 3
    best = max(t["validation_acc"] for t in record["trials"])
    assert record["validation_acc"] == best and preset.options["lr"] == record["chosen"]["lr"]
    assert "optuna" in record["engine"] and record["trial_budget"] == 3


def test_memory_counted_in_items_gets_the_board_budget_in_bytes():
    board = load_board("quick")
    from replaybench.runner import make_stream

    stream = make_stream("split-digits")
    items = tune.memory_items("avalanche:Replay", board, tune.load_spaces(), stream)
    assert items == {"strategy_options.mem_size": 50_000 // (64 * 4 + 8)}
    per_exp = tune.memory_items("avalanche:GEM", board, tune.load_spaces(), stream)
    assert per_exp == {"strategy_options.patterns_per_exp": 50_000 // (64 * 4 + 8) // 5}


# --- reference entries ------------------------------------------------------------------------
def test_references_are_built_shipped_and_shown_on_a_fresh_store(board, tmp_path):
    write_presets(board, {"naive": Preset("naive", {"lr": 0.05})})
    argv = ["leaderboard", "references", str(board.path), "--agent", "naive", "--agent", "avalanche:EWC"]
    assert main([*argv, "--out", str(tmp_path / "res"), "--no-plots"]) == 1  # avalanche:EWC needs its preset
    entries = {e["agent"]: e for e in json.loads(references_path(board).read_text())["entries"]}
    assert entries["naive"]["preset"] == f"quick v{board.version}" and len(entries["naive"]["runs"]) == 3
    assert "ewc_lambda" in entries["avalanche:EWC"]["failed"]  # listed with its reason, not hidden
    assert [e["agent"] for e in failed_references(board)] == ["avalanche:EWC"]
    with Store(tmp_path / "fresh.sqlite") as store:
        assert ensure_references(store, board) == 1
        assert ensure_references(store, board) == 1  # idempotent
        (row,) = board_table(board, store).rows
        assert row.submission.origin == REFERENCE and row.submission.agent == "naive"
        assert row.metrics["acc"].n == 3
        text = references_path(board).read_text().replace('"note": ""', '"note": "rebuilt"')
        references_path(board).write_text(text)
        assert ensure_references(store, board) == 1  # a changed file replaces the old entries
        (row,) = board_table(board, store).rows
        assert row.submission.note == "rebuilt"
        assert "reference" in export.to_markdown(board_table(board, store))


def test_a_tampered_reference_file_is_refused_on_import(board, tmp_path):
    write_presets(board, {"naive": Preset("naive", {"lr": 0.05})})
    assert main(["leaderboard", "references", str(board.path), "--agent", "naive", "--out", str(tmp_path)]) == 0
    data = json.loads(references_path(board).read_text())
    data["entries"][0]["runs"][1]["metrics"]["acc"] = 0.99
    references_path(board).write_text(json.dumps(data))
    with Store(tmp_path / "fresh.sqlite") as store, pytest.raises(ConfigError, match="acc"):
        ensure_references(store, board)


# --- board views ------------------------------------------------------------------------------
FP = {"s1": "a1" * 32, "s2": "b2" * 32}


def two_stream_board():
    return parse_board(
        {
            "name": "two",
            "version": "1",
            "seeds": [0, 1, 2],
            "metrics": ["acc", "fwt", "bwt"],
            "primary_metric": "acc",
            "direction": "higher",
            "streams": {s: {"fingerprint": fp} for s, fp in FP.items()},
        }
    )


def result(stream, seed, R, scenario):
    baseline = [0.1] * len(R)
    metrics = summarize(R, baseline, scenario=scenario)
    return RunResult(
        spec={"stream": stream, "agent": "naive", "seed": seed},
        R=R,
        baseline=baseline,
        metrics=metrics,
        costs={"wall_seconds": 1.0},
        provenance={"stream_fingerprint": FP[stream], "stream_version": "1", "seed": seed, "scenario": scenario},
    )


def enter(store, board, name, acc, one_experience=False):
    sid = store.add_submission(
        board=board, display_name=name, agent="naive", config={}, config_hash="c", source_hash="d", source_files={}
    )
    for seed in board.seeds:
        a = acc + 0.01 * seed
        class_il = [[a]] if one_experience else [[a + 0.1, 0.0], [a - 0.1, a + 0.1]]
        store.add_run(sid, board, result("s1", seed, class_il, "class-il"))
        store.add_run(sid, board, result("s2", seed, [[a, 0.3], [a, a]], "domain-il"))
    store.finish_submission(sid, "complete")
    return sid


def test_undefined_metrics_are_na_never_zero_and_per_stream_columns_lead(tmp_path):
    board = two_stream_board()
    with Store(":memory:") as store:
        enter(store, board, "two experiences", 0.5)
        table = board_table(board, store)
        (row,) = table.rows
        assert "fwt" not in row.per_stream["s1"]  # class-IL: FWT undefined
        assert row.per_stream["s2"]["fwt"].mean == pytest.approx(0.3 - 0.1)
        assert row.metrics["fwt"].mean == pytest.approx(0.2)  # the mean over the streams where it is defined
        md = export.to_markdown(table)
        header = md.splitlines()[2]
        assert header.index("acc s1") < header.index("acc s2") < header.index("acc (mean)") < header.index("fwt")
        data = json.loads(export.to_json(table))
        assert "fwt" not in data["rows"][0]["per_stream"]["s1"] and "fwt" in data["rows"][0]["per_stream"]["s2"]
    with Store(":memory:") as store:
        short = enter(store, board, "one experience on s1", 0.9, one_experience=True)
        (row,) = board_table(board, store).rows
        assert row.submission.id == short and "bwt" not in row.per_stream["s1"]
        assert np.isfinite(row.metrics["bwt"].mean)  # s2 still defines it
        assert "n/a" in export.to_markdown(board_table(board, store))


def test_a_row_whose_primary_metric_is_undefined_ranks_last():
    board = parse_board(
        {
            "name": "fwtboard",
            "version": "1",
            "seeds": [0, 1, 2],
            "metrics": ["fwt", "acc"],
            "primary_metric": "fwt",
            "direction": "higher",
            "streams": {"s1": {"fingerprint": FP["s1"]}},
        }
    )
    with Store(":memory:") as store:
        sid = store.add_submission(
            board=board, display_name="x", agent="naive", config={}, config_hash="c", source_hash="d", source_files={}
        )
        for seed in board.seeds:
            store.add_run(sid, board, result("s1", seed, [[0.9, 0.0], [0.5, 0.9]], "class-il"))
        store.finish_submission(sid, "complete")
        (row,) = board_table(board, store).rows
        assert "fwt" not in row.metrics and row.rank == 1
        assert "n/a" in export.to_markdown(board_table(board, store))


def test_rank_rows_puts_undefined_last_and_ties_share_a_rank():
    from replaybench.leaderboards.ranking import Interval, rank_rows
    from replaybench.leaderboards.store import Submission

    def sub(i):
        return Submission(i, "b", "1", f"s{i}", "naive", {}, "c", "d", {}, "complete", "now", False)

    rows = [
        (sub(1), {}),  # undefined primary metric
        (sub(2), {"fwt": Interval(-0.1, 0.0, 3)}),
        (sub(3), {"fwt": Interval(0.2, 0.0, 3)}),
        (sub(4), {"fwt": Interval(0.2, 0.0, 3)}),
    ]
    ranked = rank_rows(rows, metric="fwt", higher_is_better=True)
    assert [(r[0], r[1].id) for r in ranked] == [(1, 3), (1, 4), (3, 2), (4, 1)]


def test_site_writes_a_page_per_board_from_the_shipped_references(tmp_path):
    out = tmp_path / "site"
    assert main(["leaderboard", "site", "--out", str(out), "--store", ":memory:", "--board", "quick"]) == 0
    md = (out / "quick.md").read_text()
    assert "replaybench leaderboard site" in md and "| reference |" in md
    entries = json.loads(references_path(load_board("quick")).read_text())["entries"]
    assert md.count("| reference |") == len([e for e in entries if not e["failed"]])
    for failed in [e for e in entries if e["failed"]]:  # listed with the reason, not hidden
        assert f"{failed['agent']}: ".replace("_", "\\_") in md
    assert "<table" in (out / "quick.html").read_text() and "[quick](quick.md)" in (out / "index.md").read_text()


def test_quick_records_the_baselines_in_the_store_beside_the_references(tmp_path, monkeypatch):
    from replaybench.leaderboards import boards

    board_dir = tmp_path / "boards"
    shutil.copytree(BOARDS_DIR, board_dir)
    text = (board_dir / "quick.toml").read_text().replace('baselines = ["naive", "ewc", "lwf", "er", "joint"]', "")
    (board_dir / "quick.toml").write_text(text.replace("seeds = [0, 1, 2]", 'seeds = [0, 1, 2]\nbaselines = ["naive"]'))
    monkeypatch.setattr(boards, "BOARDS_DIR", board_dir)
    store = tmp_path / "s.sqlite"
    assert main(["quick", "--out", str(tmp_path / "out"), "--store", str(store), "--no-plots"]) == 0
    with Store(store) as s:
        board = load_board("quick")
        (mine,) = s.submissions("quick", board.version, origin="user")
        assert mine.agent == "naive" and len(s.runs(mine.id)) == 3
        assert len(s.submissions("quick", board.version, origin=REFERENCE)) >= 28


def test_export_can_show_a_subset_of_metrics_and_keeps_the_primary_one():
    board = two_stream_board()
    with Store(":memory:") as store:
        enter(store, board, "x", 0.5)
        table = export.only_metrics(board_table(board, store), ["bwt"])
        header = export.to_markdown(table).splitlines()[2]
        assert "acc s1" in header and "acc (mean)" in header and "bwt" in header and "fwt" not in header
        with pytest.raises(ConfigError, match="no metric 'plast'"):
            export.only_metrics(table, ["plast"])


def test_tuning_a_board_whose_streams_have_no_validation_split_is_refused():
    with pytest.raises(ConfigError, match="has no validation split"):
        tune.tune(load_board("sequence"), ["elman"], executor=InlineExecutor(), trials=1, log=lambda line: None)


def test_a_replay_preset_is_dropped_when_the_user_picks_another_learner_source_or_schedule():
    from replaybench.leaderboards.presets import untuned_choices

    assert untuned_choices("replay", {"lr": 0.01}) == []  # tuning values may be overridden freely
    assert untuned_choices("replay", {"learner": "backprop"}) == []  # the tuned choice itself
    assert untuned_choices("replay", {"learner": "efp", "source": "gsemm"}) == ["learner=efp", "source=gsemm"]
    assert untuned_choices("replay-gsemm", {"source": "gsemm"}) == []  # the alias was tuned with it
    assert untuned_choices("er", {"class_balanced": True}) == []  # agents without a preset_scope
