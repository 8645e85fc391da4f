"""Tampering with results, the store or the code is refused or caught (issue #18, "Trust")."""

from __future__ import annotations

import html
import json
import re
import sqlite3
import sys

import pytest

from replaybench.cli import main
from replaybench.errors import ConfigError
from replaybench.leaderboards import export
from replaybench.leaderboards.boards import load_board
from replaybench.leaderboards.ranking import board_table
from replaybench.leaderboards.store import Store
from replaybench.leaderboards.verify import VerificationFailed, verify
from replaybench.provenance import agent_source_files, source_hash
from replaybench.registry import AGENTS
from replaybench.results import read_result, safe_name

BOARD = """\
name = "trust"
version = "1"
seeds = [0, 1, 2]
metrics = ["acc", "forgetting_max", "bwt", "plasticity"]
primary_metric = "acc"
direction = "higher"

[streams.split-digits]
fingerprint = "{fingerprint}"

[budget]
epochs = 1
"""
PRESETS = {"format": 1, "board": "trust", "board_version": "1", "agents": {"naive": {"options": {"hidden": [16]}}}}


@pytest.fixture(scope="module")
def submitted(tmp_path_factory):
    """A real three-seed submission of naive (tiny net, one epoch), and where its files are."""
    folder = tmp_path_factory.mktemp("trust")
    board = folder / "trust.toml"
    board.write_text(BOARD.format(fingerprint=load_board("quick").stream("split-digits").fingerprint))
    (folder / "trust.presets.json").write_text(json.dumps(PRESETS))
    store = folder / "lb.sqlite"
    argv = ["submit", "naive", "--board", str(board), "--store", str(store), "--out", str(folder / "out")]
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("WANDB_MODE", raising=False)  # submit logs to W&B when WANDB_MODE is set
        assert main([*argv, "--no-plots"]) == 0
    return {"board": board, "store": store, "out": folder / "out", "folder": folder}


def copy_store(submitted, tmp_path):
    target = tmp_path / "copy.sqlite"
    with sqlite3.connect(submitted["store"]) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    return target


def test_a_result_whose_metrics_were_edited_is_refused_on_import(submitted, tmp_path, capsys):
    """The reproduction: edit metrics.acc in a sweep's results, then import them with --board."""
    out, store = tmp_path / "sweep", tmp_path / "s.sqlite"
    argv = ["sweep", "--streams", "split-digits", "--agents", "naive", "--seeds", "0", "1", "2"]
    argv += ["-o", "epochs=1", "-o", "hidden=[16]", "--executor", "inline", "--out", str(out), "--no-plots"]
    assert main([*argv, "--store", str(tmp_path / "plain.sqlite")]) == 0
    (path,) = out.glob("*seed1*.json")
    honest = path.read_text()
    edited = json.loads(honest)
    edited["metrics"]["acc"] = 0.99
    path.write_text(json.dumps(edited))
    capsys.readouterr()
    board_import = [*argv, "--board", str(submitted["board"]), "--store", str(store), "--resume"]
    assert main(board_import) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("error") == 1  # one line, after "resuming ..."
    assert re.search(r"error: .*split-digits seed 1 states acc = 0\.99, but its R gives 0\.\d+", err)
    with Store(store) as s:
        assert 1 not in {r.seed for sub in s.submissions("trust", status=None) for r in s.runs(sub.id)}
        assert not any(r.metrics.get("acc") == 0.99 for r in s.sweep_runs(str(out.resolve())))
    path.write_text(honest)  # the file as written is accepted, with the metrics recomputed from its R
    assert main(board_import) == 0
    with Store(store) as s:
        (sub,) = s.submissions("trust")
        (seed1,) = [r for r in s.runs(sub.id) if r.seed == 1]
        assert seed1.metrics["acc"] == pytest.approx(json.loads(honest)["metrics"]["acc"], abs=1e-12)


def test_a_result_without_its_scenario_cannot_change_a_defined_metric(submitted, tmp_path):
    """Results from before provenance named the scenario still import; only FWT may stay undefined."""
    (path,) = submitted["out"].rglob("*seed0*.json")
    result = read_result(path)
    del result.provenance["scenario"]  # as in a results file from an older replaybench
    assert result.metrics["fwt"] is None  # class-IL
    board = load_board(str(submitted["board"]))
    with Store(tmp_path / "s.sqlite") as store:
        sid = store.add_submission(
            board=board, display_name="x", agent="naive", config={}, config_hash="c", source_hash="d", source_files={}
        )
        store.add_run(sid, board, result)
        (run,) = store.runs(sid)
        assert "fwt" not in run.metrics and run.metrics["acc"] == pytest.approx(result.metrics["acc"])
        result.metrics["bwt"] = 0.5
        with pytest.raises(ConfigError, match="states bwt = 0.5"):
            store.add_run(sid, board, result)


def test_a_metric_edited_in_the_store_never_reaches_the_board(submitted, tmp_path):
    path = copy_store(submitted, tmp_path)
    board = load_board(str(submitted["board"]))
    with Store(path) as store:
        before = board_table(board, store).rows[0].metrics["acc"].mean
    with sqlite3.connect(path) as db:
        db.execute("UPDATE metrics SET value = 0.99 WHERE name = 'acc'")
    with Store(path) as store:
        after = board_table(board, store).rows[0].metrics["acc"].mean
    assert after == pytest.approx(before) and after < 0.9


def test_an_R_edited_on_a_later_seed_fails_the_default_verify(submitted, tmp_path):
    path = copy_store(submitted, tmp_path)
    board = load_board(str(submitted["board"]))
    with sqlite3.connect(path) as db:
        (run_id, r_json) = db.execute("SELECT id, r_json FROM runs WHERE seed = 2").fetchone()
        R = json.loads(r_json)
        R[-1] = [0.99] * len(R[-1])
        db.execute("UPDATE runs SET r_json = ? WHERE id = ?", (json.dumps(R), run_id))
    with Store(path) as store:
        sid = store.submissions("trust")[0].id
        assert [c.passed for c in verify(store, sid, board, seed=0)] == [True]  # the submitter's seed passes
        with pytest.raises(VerificationFailed, match="seed 2"):
            verify(store, sid, board)  # every seed by default
        assert not store.submission(sid).verified
        rows = store._db.execute("SELECT seed, passed FROM verifications ORDER BY id").fetchall()
        assert rows[-3:] == [(0, 1), (1, 1), (2, 0)]


def test_verify_can_draw_its_own_seed(submitted, tmp_path, capsys):
    path = copy_store(submitted, tmp_path)
    assert main(["verify", "1", "--board", str(submitted["board"]), "--store", str(path), "--seed", "random"]) == 0
    assert "drawn at random from [0, 1, 2]" in capsys.readouterr().err


def test_a_damaged_store_is_refused_before_anything_runs(submitted, tmp_path, capsys):
    path = copy_store(submitted, tmp_path)
    data = bytearray(path.read_bytes())
    assert len(data) > 6 * 4096  # several pages: damage one in the middle
    start = len(data) // 2 // 4096 * 4096
    data[start : start + 4096] = b"\xa5" * 4096
    path.write_bytes(bytes(data))
    out = tmp_path / "out"
    argv = ["submit", "naive", "--board", str(submitted["board"]), "--store", str(path), "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "damaged" in err[0]
    assert not list(out.rglob("*.json"))  # nothing ran


@pytest.fixture
def wandb_dir(tmp_path, monkeypatch):
    """Every W&B file under tmp_path/wb, with no key; the W&B singleton is torn down after."""
    for var in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_RUN_ID"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))
    for var in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wb" / var.lower()))
    yield tmp_path / "wb"
    import wandb

    wandb.teardown()  # it keeps the first WANDB_DIR it saw, which later tests must not inherit


def test_secrets_stay_out_of_file_names_and_wandb(tmp_path, monkeypatch, wandb_dir):
    secret = "s3cr3t-t0ken-abcdef"
    monkeypatch.setenv("EXAMPLE_API_KEY", secret)
    folder = tmp_path / secret
    folder.mkdir()
    source = "from replaybench.agents.naive import NaiveAgent\n\nclass A(NaiveAgent):\n    pass\n"
    (folder / "agent.py").write_text(source)
    out = tmp_path / "out"
    argv = ["run", "--stream", "split-digits", "--agent", f"{folder}/agent.py:A", "-o", "epochs=1", "-o", "hidden=[8]"]
    argv += ["--out", str(out), "--no-plots", "--wandb", "offline"]
    monkeypatch.setattr(sys, "argv", ["replaybench", *argv])  # what W&B records as the command line
    assert main(argv) == 0
    names = [p.name for p in out.iterdir()]
    assert names and not any(secret in n for n in names) and any("redacted" in n for n in names)
    assert list(wandb_dir.rglob("*.wandb")), "an offline W&B run was written"
    leaks = [p for p in wandb_dir.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert leaks == []  # config, run name, command line (wandb-metadata), the .wandb log
    assert safe_name(f"display {secret}") == "display-redacted"  # submission folders, exports


@pytest.mark.parametrize(
    "name",
    ["[x](javascript:alert(1))", "![x](http://evil.example/pixel.png)", "back`tick | pipe", "<b>x</b> \\[x](y)"],
)
def test_markdown_export_renders_names_as_text(submitted, tmp_path, name):
    markdown_it = pytest.importorskip("markdown_it")
    path = copy_store(submitted, tmp_path)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE submissions SET display_name = ?, agent = ?", (name, "agent`with | ticks`"))
    with Store(path) as store:
        md = export.to_markdown(board_table(load_board(str(submitted["board"])), store))
    page = markdown_it.MarkdownIt("commonmark").enable("table").render(md)
    assert not re.search(r"<(a|img|code|b)\b", page)  # no link, image, code span or HTML of the name's
    cells = re.findall(r"<tr>(.*?)</tr>", page, re.S)
    assert len(cells) == 2 and cells[0].count("<th") == cells[1].count("<td")  # no cell shifted
    row = re.findall(r"<td[^>]*>(.*?)</td>", cells[1], re.S)
    assert row[1] == html.escape(name, quote=False) and row[2] == "agent`with | ticks`"


def test_the_source_hash_covers_the_spiking_simulator_and_the_core():
    snn = agent_source_files(AGENTS.load("snn")[0])
    assert {"replaybench/spiking/network.py", "replaybench/spiking/learning.py"} <= set(snn)
    assert {"replaybench/params.py", "replaybench/protocols.py"} <= set(snn)
    naive = agent_source_files(AGENTS.load("naive")[0])
    assert "replaybench/agents/_supervised.py" in naive and not any("spiking" in k for k in naive)


def test_the_source_hash_of_a_file_agent_covers_its_folder_and_replaybench(tmp_path, monkeypatch, request):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "trust_helper.py").write_text("WIDTH = 8\n")
    (folder / "agent.py").write_text(
        "from trust_helper import WIDTH\nfrom replaybench.agents.snn import SNNClassifier\n\n"
        "class A(SNNClassifier):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(folder))  # as a user's PYTHONPATH would
    request.addfinalizer(lambda: sys.modules.pop("trust_helper", None))
    agent_cls, _ = AGENTS.load(f"{folder}/agent.py:A")
    files = agent_source_files(agent_cls)
    assert {"agent.py", "trust_helper.py", "replaybench/agents/snn.py", "replaybench/spiking/nodes.py"} <= set(files)
    assert not any(str(tmp_path) in k for k in files)  # keys are the same on every machine
    before = source_hash(files)
    (folder / "trust_helper.py").write_text("WIDTH = 9\n")
    assert source_hash(agent_source_files(agent_cls)) != before
