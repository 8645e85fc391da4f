"""Tampering with results, the store or the code is refused or caught (issue #18, "Trust")."""

from __future__ import annotations

import json
import sqlite3

import pytest

from replaybench.cli import main
from replaybench.errors import ConfigError
from replaybench.leaderboards import export
from replaybench.leaderboards.boards import load_board
from replaybench.leaderboards.ranking import board_table
from replaybench.leaderboards.store import Store
from replaybench.leaderboards.verify import VerificationFailed, verify
from replaybench.provenance import agent_source_files
from replaybench.registry import AGENTS
from replaybench.results import read_result, result_json

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
    assert main([*argv, "--no-plots"]) == 0
    return {"board": board, "store": store, "out": folder / "out", "folder": folder}


def copy_store(submitted, tmp_path):
    target = tmp_path / "copy.sqlite"
    with sqlite3.connect(submitted["store"]) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    return target


def test_a_result_whose_metrics_were_edited_is_refused_on_import(submitted, tmp_path):
    (path,) = sorted(submitted["out"].rglob("*seed1*.json"))
    result = read_result(path)
    result.metrics["acc"] = 0.99  # the edit a submitter could make before a sweep's --board import
    board = load_board(str(submitted["board"]))
    with Store(tmp_path / "s.sqlite") as store:
        sid = store.add_submission(
            board=board, display_name="x", agent="naive", config={}, config_hash="c", source_hash="d", source_files={}
        )
        with pytest.raises(ConfigError, match=r"states acc = 0\.99, but its R gives"):
            store.add_run(sid, board, result)
        untouched = read_result(path)
        store.add_run(sid, board, untouched)  # the file as written is accepted
    edited_file = tmp_path / "edited.json"
    edited_file.write_text(result_json(result))
    assert read_result(edited_file).metrics["acc"] == 0.99


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


def test_secrets_stay_out_of_file_names_and_wandb(tmp_path, monkeypatch):
    secret = "s3cr3t-t0ken-abcdef"
    monkeypatch.setenv("EXAMPLE_API_KEY", secret)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))
    folder = tmp_path / secret
    folder.mkdir()
    source = "from replaybench.agents.naive import NaiveAgent\n\nclass A(NaiveAgent):\n    pass\n"
    (folder / "agent.py").write_text(source)
    out = tmp_path / "out"
    argv = ["run", "--stream", "split-digits", "--agent", f"{folder}/agent.py:A", "-o", "epochs=1", "-o", "hidden=[8]"]
    assert main([*argv, "--out", str(out), "--no-plots", "--wandb", "offline"]) == 0
    names = [p.name for p in out.iterdir()]
    assert names and not any(secret in n for n in names) and any("redacted" in n for n in names)
    assert list((tmp_path / "wb").rglob("*.wandb")), "an offline W&B run was written"
    leaks = [p for p in (tmp_path / "wb").rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert leaks == []  # config, run name, command line (wandb-metadata), the .wandb log


@pytest.mark.parametrize(
    "name",
    ["[x](javascript:alert(1))", "![x](http://evil.example/pixel.png)", "back`tick | pipe"],
)
def test_markdown_export_renders_names_as_text(name):
    text = export.escape_markdown(name)
    assert "](" not in text and "![" not in text and "`" not in text.replace("\\`", "")
    assert "|" not in text.replace("\\|", "")


def test_the_source_hash_covers_the_spiking_simulator_and_the_core():
    snn = agent_source_files(AGENTS.load("snn")[0])
    assert {"replaybench/spiking/network.py", "replaybench/spiking/learning.py"} <= set(snn)
    assert {"replaybench/params.py", "replaybench/protocols.py"} <= set(snn)
    naive = agent_source_files(AGENTS.load("naive")[0])
    assert "replaybench/agents/_supervised.py" in naive and not any("spiking" in k for k in naive)
